"""Watch fan-out benchmark: how fast a promotion reaches N concurrent watchers.

Starts `modelreg serve` on a fresh PostgreSQL database, opens `--watchers`
Watch streams on one alias spread over `--procs` client processes (grpc.aio,
`--streams-per-channel` streams per HTTP/2 connection), promotes the alias
`--promotions` times and measures, for every watcher and promotion, the
time from the commit to the watcher receiving the event. Client and server
share the machine's clock: the commit time is the event's own `time` (set
inside the committing transaction); the delay after the SetAlias reply is
printed too. Also prints the server's peak RSS (VmHWM) and checks that
every watcher got every promotion, in order, exactly once.

    .venv/bin/python loadtest/bench_watch.py --watchers 1000
    .venv/bin/python loadtest/bench_watch.py --watchers 10000 --procs 4
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from modelregistry import RegistryClient
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import event_service_pb2_grpc

CLI = [sys.executable, "-m", "modelregistry.cli.main"]
ALIAS = "models/bench/aliases/production"


@dataclass
class Received:
    """One process's observations: per watcher, (revision, commit µs, receive s)."""

    streams: int
    opened: int
    failures: list[str]
    events: list[list[tuple[int, int, float]]]


async def _watcher(
    stub: Any, expected: int, ready: asyncio.Event, opened: list[int], out: list[Any]
) -> None:
    call = stub.Watch(ev.WatchRequest(filter=ev.EventFilter(resource=ALIAS)))
    first = True
    try:
        async for response in call:
            now = time.time()
            if first:
                first = False
                opened[0] += 1
                if opened[0] == opened[1]:
                    ready.set()
            for e in response.events:
                out.append((e.revision, e.time.seconds * 1_000_000 + e.time.nanos // 1000, now))
            if len(out) >= expected:
                return
    finally:
        call.cancel()


async def _client_main(
    target: str, streams: int, per_channel: int, expected: int, conn: Any, seed: int
) -> None:
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.channel_id", seed * 10_000 + i)])
        for i in range((streams + per_channel - 1) // per_channel)
    ]
    ready = asyncio.Event()
    opened = [0, streams]
    outs: list[list[Any]] = [[] for _ in range(streams)]
    tasks = [
        asyncio.create_task(
            _watcher(
                event_service_pb2_grpc.EventServiceStub(channels[i // per_channel]),
                expected,
                ready,
                opened,
                outs[i],
            )
        )
        for i in range(streams)
    ]
    failures: list[str] = []
    try:
        await asyncio.wait_for(ready.wait(), 120)
    except TimeoutError:
        failures.append(f"only {opened[0]} of {streams} streams opened")
    conn.send(("ready", opened[0]))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # "finish": promotions are done
    done, pending = await asyncio.wait(tasks, timeout=120)
    for t in pending:
        t.cancel()
    for t in done:
        if t.exception() is not None:
            failures.append(repr(t.exception())[:200])
    if pending:
        failures.append(f"{len(pending)} streams did not get every event in time")
    for ch in channels:
        await ch.close(None)
    conn.send(("result", Received(streams, opened[0], failures, outs)))


def client_process(
    target: str, streams: int, per_channel: int, expected: int, conn: Any, seed: int
) -> None:
    try:
        import uvloop

        uvloop.run(_client_main(target, streams, per_channel, expected, conn, seed))
    except ImportError:  # pragma: no cover
        asyncio.run(_client_main(target, streams, per_channel, expected, conn, seed))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(address: str, timeout: float = 60) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for reply in stub.Watch(
            health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True
        ):
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return


def vm_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def promote(target: str, count: int, interval: float) -> list[float]:
    replies = []
    async with RegistryClient(target) as client:
        for i in range(count):
            await client.set_alias(ALIAS, 1 + i % 2)
            replies.append(time.time())
            await asyncio.sleep(interval)
    return replies


async def seed(target: str) -> None:
    async with RegistryClient(target) as client:
        await client.create_model("bench")
        for _ in range(2):
            await client.create_model_version("models/bench", source_uri="s3://bench/m")


def run(args: argparse.Namespace) -> int:
    admin = f"host={args.pg_host} port={args.pg_port} user={args.pg_user} dbname=postgres"
    db = f"modelreg_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = f"postgresql://{args.pg_user}@{args.pg_host}:{args.pg_port}/{db}"
    target = f"127.0.0.1:{free_port()}"
    data_dir = tempfile.mkdtemp(prefix="bench-watch-")
    server = subprocess.Popen(
        [
            *(CLI if not args.profile else [sys.executable, "-m", "cProfile", "-o", args.profile]),
            *(() if not args.profile else ("-m", "modelregistry.cli.main")),
            *("serve", "--listen", target, "--data-dir", data_dir, "--database-url", url),
            *("--log-level", "WARNING", "--shutdown-grace", "2"),
        ],
        stderr=open(os.path.join(data_dir, "server.log"), "wb"),  # noqa: SIM115
    )
    procs: list[tuple[Any, Any]] = []
    try:
        wait_serving(target)
        asyncio.run(seed(target))
        base_rss = vm_kb(server.pid, "VmRSS")
        ctx = mp.get_context("spawn")
        per_proc = [
            args.watchers // args.procs + (i < args.watchers % args.procs)
            for i in range(args.procs)
        ]
        for i, n in enumerate(per_proc):
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=client_process,
                args=(target, n, args.streams_per_channel, args.promotions, child, i),
            )
            p.start()
            procs.append((p, parent))
        t0 = time.time()
        opened = sum(parent.recv()[1] for _, parent in procs)
        print(f"{opened}/{args.watchers} watch streams open in {time.time() - t0:.1f}s")
        idle_rss = vm_kb(server.pid, "VmRSS")
        cpu0, wall0 = cpu_s(server.pid), time.time()
        replies = asyncio.run(promote(target, args.promotions, args.interval))
        cpu = cpu_s(server.pid) - cpu0
        print(f"server CPU during promotions: {cpu:.1f}s over {time.time() - wall0:.1f}s")
        for _, parent in procs:
            parent.send("finish")
        results: list[Received] = [parent.recv()[1] for _, parent in procs]
        peak = vm_kb(server.pid, "VmHWM")
    finally:
        for p, _ in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return report(args, results, replies, base_rss, idle_rss, peak)


def report(
    args: argparse.Namespace,
    results: list[Received],
    replies: list[float],
    base_rss: int,
    idle_rss: int,
    peak: int,
) -> int:
    from_commit: list[float] = []
    from_reply: list[float] = []
    bad_order = incomplete = 0
    revisions = sorted({r for res in results for w in res.events for r, _, _ in w})
    reply_of = dict(zip(revisions, replies, strict=False))
    for res in results:
        for w in res.events:
            got = [r for r, _, _ in w]
            if got != sorted(set(got)):
                bad_order += 1
            if len(got) < args.promotions:
                incomplete += 1
            for r, commit_us, recv in w:
                from_commit.append((recv - commit_us / 1e6) * 1000)
                if r in reply_of:
                    from_reply.append((recv - reply_of[r]) * 1000)
    failures = [f for res in results for f in res.failures]
    print(
        f"watchers={args.watchers} procs={args.procs} promotions={args.promotions} "
        f"interval={args.interval}s deliveries={len(from_commit)}"
        f"/{args.watchers * args.promotions}"
    )
    if from_commit:
        print(
            "commit -> watcher (ms): "
            f"p50={statistics.median(from_commit):.1f} p99={pct(from_commit, 99):.1f} "
            f"max={max(from_commit):.1f}"
        )
        print(
            "SetAlias reply -> watcher (ms): "
            f"p50={statistics.median(from_reply):.1f} p99={pct(from_reply, 99):.1f} "
            f"max={max(from_reply):.1f}"
        )
    print(
        f"server RSS: start {base_rss / 1024:.0f} MB, with watchers idle "
        f"{idle_rss / 1024:.0f} MB, peak (VmHWM) {peak / 1024:.0f} MB"
    )
    print(f"out of order or repeated: {bad_order} watchers; incomplete: {incomplete} watchers")
    for f in failures[:5]:
        print(f"failure: {f}")
    ok = not bad_order and not incomplete and not failures
    if from_commit and ok:
        verdict = "PASS" if pct(from_commit, 99) < args.target_p99_ms else "MISS"
        print(f"{verdict}: target p99 < {args.target_p99_ms:.0f} ms")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--streams-per-channel", type=int, default=100)
    parser.add_argument("--promotions", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between promotions")
    parser.add_argument("--target-p99-ms", type=float, default=250)
    parser.add_argument("--profile", default="", help="write the server's cProfile stats here")
    parser.add_argument("--pg-host", default=os.environ.get("MODELREG_TEST_PG_HOST", "127.0.0.1"))
    parser.add_argument("--pg-port", default=os.environ.get("MODELREG_TEST_PG_PORT", "5432"))
    parser.add_argument("--pg-user", default=os.environ.get("MODELREG_TEST_PG_USER", "postgres"))
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
