"""Watch fan-out benchmark: how fast a promotion reaches N concurrent watchers.

Starts `modelreg serve` on a fresh PostgreSQL database, opens `--watchers`
Watch streams on one alias (`--streams-per-channel` streams per HTTP/2
connection), promotes the alias `--promotions` times and measures, for
every watcher and promotion, the time from the commit to the watcher
receiving the event. Client and server share the machine's clock: the
commit time is the event's own `time` (set inside the committing
transaction); the delay after the SetAlias reply is printed too. Also
prints the server's peak RSS (VmHWM) and checks that every watcher got
every promotion, in order, exactly once.

The watchers run in `--procs` grpc.aio client processes (`--client
python`, the default), or with `--client go` in one process of the Go load
generator (loadtest/loadgen, built on first use with Debian's Go toolchain;
see go_loadgen.py). A Python client spends about as much CPU per received
message as the server, so on a small machine the Python figures include
the clients' share of the cores; the Go client's is about a quarter of
that (both are printed, per delivery).

    .venv/bin/python loadtest/bench_watch.py --watchers 1000
    .venv/bin/python loadtest/bench_watch.py --watchers 1000 --promotions 30 --client go
    .venv/bin/python loadtest/bench_watch.py --watchers 10000 --procs 4 --interval 1
    .venv/bin/python loadtest/bench_watch.py --watchers 10000 --workers 1,2 --client go

With several `--workers` values the server is started once per value and
the figures are printed for each, side by side. Server CPU and memory are
summed over the supervisor and its workers.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import go_loadgen
import grpc
from common import pct, run_async
from modelregistry import RegistryClient
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import event_service_pb2_grpc
from profiling import py_spy, top_frames
from support.postgres import PG_HOST, PG_PORT, PG_USER, fresh_database
from support.processes import CLI, CLI_MODULE, ServeProcess, running
from support.procfs import tree_cpu_seconds, tree_status_kb

ALIAS = "models/bench/aliases/production"


@dataclass
class Received:
    """One client process's observations: per watcher, (revision, commit µs, receive s)."""

    streams: int
    opened: int
    # Seconds from this process's first stream request until all were open.
    open_s: float
    failures: list[str]
    events: list[list[tuple[int, int, float]]]
    # CPU seconds this process spent once the streams were open, to the end.
    cpu_s: float


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
    conn.send(("go", 0))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # every process set up
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
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(ready.wait(), 120)
    except TimeoutError:
        failures.append(f"only {opened[0]} of {streams} streams opened")
    open_s = time.monotonic() - t0
    conn.send(("ready", opened[0]))
    cpu0 = time.process_time()
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
    cpu = time.process_time() - cpu0
    conn.send(("result", Received(streams, opened[0], open_s, failures, outs, cpu)))


def client_process(
    target: str, streams: int, per_channel: int, expected: int, conn: Any, seed: int
) -> None:
    run_async(_client_main(target, streams, per_channel, expected, conn, seed))


async def promote(target: str, count: int, interval: float) -> list[float]:
    replies = []
    # A server busy delivering to thousands of streams answers late, not never.
    async with RegistryClient(target, timeout=120) as client:
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
    status = 0
    for workers in [int(w) for w in str(args.workers).split(",")]:
        print(f"--- server with --workers {workers} ---", flush=True)
        status |= run_one(args, workers)
    return status


def run_one(args: argparse.Namespace, workers: int) -> int:
    pg_server = f"postgresql://{args.pg_user}@{args.pg_host}:{args.pg_port}"
    command = CLI
    if args.profile:
        command = [sys.executable, "-m", "cProfile", "-o", args.profile, "-m", CLI_MODULE]
    flags = ("--shutdown-grace", "2", "--workers", str(workers))
    with (
        fresh_database(pg_server, prefix="modelreg_bench") as url,
        running(None, *flags, database_url=url, command=command, within=180) as server,
    ):
        time.sleep(3 if workers > 1 else 0)  # every worker ready, not just one
        results, replies, base_rss, idle_rss, peak = watch(server, args, workers)
    return report(args, results, replies, base_rss, idle_rss, peak)


class PythonWatchers:
    """`--procs` grpc.aio client processes, their streams spread evenly."""

    def __init__(self, target: str, args: argparse.Namespace) -> None:
        self.procs: list[tuple[Any, Any]] = []
        ctx = mp.get_context("spawn")
        per_proc = [
            args.watchers // args.procs + (i < args.watchers % args.procs)
            for i in range(args.procs)
        ]
        try:
            for i, n in enumerate(per_proc):
                parent, child = ctx.Pipe()
                p = ctx.Process(
                    target=client_process,
                    args=(target, n, args.streams_per_channel, args.promotions, child, i),
                )
                p.start()
                self.procs.append((p, parent))
            for _, parent in self.procs:
                parent.recv()  # channels made
        except BaseException:
            self.close()
            raise

    def open(self) -> int:
        """Open every stream; how many received their first message."""
        for _, parent in self.procs:
            parent.send("open")
        return sum(parent.recv()[1] for _, parent in self.procs)

    def finish(self) -> list[Received]:
        """After the promotions: what every process received."""
        for _, parent in self.procs:
            parent.send("finish")
        return [parent.recv()[1] for _, parent in self.procs]

    def close(self) -> None:
        for p, _ in self.procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()


class GoWatchers:
    """One loadgen process (loadtest/loadgen) holding every stream."""

    def __init__(self, target: str, args: argparse.Namespace) -> None:
        self.args = [
            "watch",
            *("--target", target, "--resource", ALIAS),
            *("--watchers", str(args.watchers), "--per-channel", str(args.streams_per_channel)),
            *("--expected", str(args.promotions), "--open-timeout", "120s"),
            # The promotions, each answered late on a busy server, then as
            # long as the Python clients wait after them.
            "--timeout",
            f"{args.promotions * (args.interval + 1) + 120:.0f}s",
        ]
        go_loadgen.binary()  # built before anything is timed
        self.proc: subprocess.Popen[str] | None = None

    def open(self) -> int:
        self.proc = go_loadgen.start(*self.args)
        opened: int = go_loadgen.read_line(self.proc)["open"]
        return opened

    def finish(self) -> list[Received]:
        assert self.proc is not None
        out = go_loadgen.read_line(self.proc)
        # [revision, commit µs, receive µs] -> (revision, commit µs, receive s)
        events = [[(r, c, recv / 1e6) for r, c, recv in w] for w in out["events"]]
        return [
            Received(len(events), out["open"], out["open_s"], out["failures"], events, out["cpu_s"])
        ]

    def close(self) -> None:
        if self.proc is not None:
            go_loadgen.stop(self.proc)


def watch(
    server: ServeProcess, args: argparse.Namespace, workers: int
) -> tuple[list[Received], list[float], int, int, int]:
    """Open the watchers, promote, collect what every watcher received."""
    target = server.address
    asyncio.run(seed(target))
    base_rss = tree_status_kb(server.pid, "VmRSS")
    clients = GoWatchers(target, args) if args.client == "go" else PythonWatchers(target, args)
    try:
        t0 = time.time()
        opened = clients.open()
        print(f"{opened}/{args.watchers} watch streams open in {time.time() - t0:.1f}s")
        idle_rss = tree_status_kb(server.pid, "VmRSS")
        cpu0, wall0 = tree_cpu_seconds(server.pid), time.time()
        spy = Path(args.py_spy)
        with py_spy(server.pid, spy, bool(args.py_spy), 250, args.native, workers > 1):
            replies = asyncio.run(promote(target, args.promotions, args.interval))
        cpu = tree_cpu_seconds(server.pid) - cpu0
        print(f"server CPU during promotions: {cpu:.1f}s over {time.time() - wall0:.1f}s")
        results = clients.finish()
        peak = tree_status_kb(server.pid, "VmHWM")
    finally:
        clients.close()
    return results, replies, base_rss, idle_rss, peak


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
    clients = "go" if args.client == "go" else f"python procs={args.procs}"
    print(
        f"watchers={args.watchers} client={clients} promotions={args.promotions} "
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
    client_cpu = sum(r.cpu_s for r in results)
    print(
        f"client CPU once the streams were open: {client_cpu:.1f}s"
        f" = {client_cpu / max(1, len(from_commit)) * 1e6:.0f} µs per delivery"
    )
    print(
        "streams open, slowest client process: "
        f"{max((r.open_s for r in results), default=0):.1f}s\n"
        f"server RSS: start {base_rss / 1024:.0f} MB, with watchers idle "
        f"{idle_rss / 1024:.0f} MB, peak (VmHWM) {peak / 1024:.0f} MB"
    )
    print(f"out of order or repeated: {bad_order} watchers; incomplete: {incomplete} watchers")
    for f in failures[:5]:
        print(f"failure: {f}")
    if args.py_spy:
        for line in top_frames(Path(args.py_spy)) or ["no samples: is py-spy installed?"]:
            print(line)
    ok = not bad_order and not incomplete and not failures
    if from_commit and ok:
        verdict = "PASS" if pct(from_commit, 99) < args.target_p99_ms else "MISS"
        print(f"{verdict}: target p99 < {args.target_p99_ms:.0f} ms")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument(
        "--workers", default="1", help="the server's --workers; several (1,2) run one after another"
    )
    parser.add_argument(
        "--client",
        choices=("python", "go"),
        default="python",
        help="watchers in grpc.aio processes, or in one Go process (loadtest/loadgen)",
    )
    parser.add_argument("--procs", type=int, default=4, help="client processes (python client)")
    parser.add_argument("--streams-per-channel", type=int, default=100)
    parser.add_argument("--promotions", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between promotions")
    parser.add_argument("--target-p99-ms", type=float, default=250)
    parser.add_argument("--profile", default="", help="write the server's cProfile stats here")
    parser.add_argument(
        "--py-spy", default="", help="sample the server with py-spy during the promotions, here"
    )
    parser.add_argument("--native", action="store_true", help="py-spy: C and Cython frames too")
    parser.add_argument("--pg-host", default=PG_HOST)
    parser.add_argument("--pg-port", default=PG_PORT)
    parser.add_argument("--pg-user", default=PG_USER)
    args = parser.parse_args()
    if args.client == "go":
        go_loadgen.require()
    sys.exit(run(args))


if __name__ == "__main__":
    main()
