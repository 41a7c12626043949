"""Control-plane latency benchmark: a real `modelreg serve` on a fresh database.

Seeds models, versions and a `production` alias per model, then measures
client-side latency of GetModel, ListModelVersions, ResolveAlias,
CreateModelVersion and SetAlias (conditional, on the etag read just before),
first with one sequential client, then with many concurrent clients (one
channel, and so one connection, each) spread over client processes. By
default on two servers at once, one with authentication off and one with
it on (JWTs), each measurement run on one right after the other so that the
machine's load drifts for both alike, and the read p95s compared.

    .venv/bin/python loadtest/bench_control_plane.py [--sqlite] [--auth both|off|jwt]
    .venv/bin/python loadtest/bench_control_plane.py --auth off --workers 1,2 --client go

The clients are grpc.aio ones in `--client-procs` processes (`--client
python`, the default), or with `--client go` the Go load generator
(loadtest/loadgen, built on first use with Debian's Go toolchain; see
go_loadgen.py), one process per measurement, for every part of the run.
On a small machine the clients' CPU (the `cli cpu` column) is taken from
the server's: a Python client's is a third or so of the server's per read,
the Go client's about half the Python one's.

With several `--workers` values, one server per value (authentication off),
measured back to back, plus a capacity sweep: for each read, the most
calls/s any number of concurrent clients (`--sweep`) got at a p95 under
`--capacity-p95-ms`, per server, and the ratio to the first. Server CPU is
summed over a server's supervisor and workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TYPE_CHECKING, Any

import go_loadgen
import grpc
from bench_auth import ADMIN, CALLER, Metadata, bench_auth, compare
from common import run_async
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc as rpc_grpc
from modelregistry.v1 import resources_pb2 as pb
from profiling import py_spy, top_frames
from support.postgres import PG_SERVER, fresh_database
from support.processes import ServeProcess, running
from support.procfs import tree_cpu_seconds, tree_status_kb

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub

READS = ("GetModel", "ListModelVersions", "ResolveAlias")
WRITES = ("CreateModelVersion", "SetAlias")
TARGET_P95_MS = {**dict.fromkeys(READS, 2.0), **dict.fromkeys(WRITES, 10.0)}
ALIAS = "production"
# One connection per channel: channels to one target otherwise share a subchannel.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
# latencies (ns), non-OK codes, start and end (ns), client and server CPU (s)
Result = tuple[list[int], Counter[str], int, int, float, float]


def model(i: int) -> str:
    return f"models/bench-{i:04d}"


async def timed_call(
    stub: RegistryServiceAsyncStub, op: str, rng: random.Random, ns: Any, md: Metadata = ()
) -> tuple[int, str]:
    """One RPC on a random model: (latency in ns, status code name)."""
    name = model(rng.randrange(ns.models))
    alias = f"{name}/aliases/{ALIAS}"
    call: Callable[[Any], Awaitable[Any]]
    req: Any
    if op == "GetModel":
        call, req = stub.GetModel, rpc.GetModelRequest(name=name)
    elif op == "ListModelVersions":
        call, req = stub.ListModelVersions, rpc.ListModelVersionsRequest(parent=name, page_size=10)
    elif op == "ResolveAlias":
        call, req = stub.ResolveAlias, rpc.ResolveAliasRequest(name=alias)
    elif op == "CreateModelVersion":
        mv = pb.ModelVersion(source_uri=f"s3://bench/{name}/{uuid.uuid4().hex}")
        call, req = (
            stub.CreateModelVersion,
            rpc.CreateModelVersionRequest(parent=name, model_version=mv),
        )
    else:  # SetAlias, conditional on the etag read just before (not timed)
        etag = (await stub.GetAlias(rpc.GetAliasRequest(name=alias), metadata=md)).etag
        target = f"{name}/versions/{rng.randint(1, ns.versions)}"
        call, req = (
            stub.SetAlias,
            rpc.SetAliasRequest(alias=pb.Alias(name=alias, version=target), etag=etag),
        )
    start = time.perf_counter_ns()
    try:
        await call(req, metadata=md)
        code = "OK"
    except grpc.aio.AioRpcError as exc:
        code = exc.code().name
    return time.perf_counter_ns() - start, code


async def client(
    stub: RegistryServiceAsyncStub, op: str, calls: int, seed: int, ns: Any, md: Metadata
) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    return [await timed_call(stub, op, rng, ns, md) for _ in range(calls)]


async def worker_main(
    conn: Connection, barrier: Barrier, port: int, channels: int, ns: Any, md: Metadata
) -> None:
    chans = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", CHANNEL_OPTIONS) for _ in range(channels)
    ]
    stubs = [rpc_grpc.RegistryServiceStub(ch) for ch in chans]
    warm = random.Random()
    for stub in stubs:  # connect and warm every channel before any timing
        await timed_call(stub, "GetModel", warm, ns, md)
    while (msg := conn.recv()) is not None:
        op, counts, seed = msg
        barrier.wait()
        cpu = time.process_time()
        start = time.perf_counter_ns()  # CLOCK_MONOTONIC: comparable across processes
        runs = [
            client(s, op, n, seed + i, ns, md)
            for i, (s, n) in enumerate(zip(stubs, counts, strict=True))
            if n
        ]
        done = await asyncio.gather(*runs)
        end = time.perf_counter_ns()
        pairs = [p for run in done for p in run]
        codes = Counter(code for _, code in pairs if code != "OK")
        conn.send(([lat for lat, _ in pairs], codes, start, end, time.process_time() - cpu, 0.0))
    for ch in chans:
        await ch.close(None)


def worker(
    conn: Connection, barrier: Barrier, port: int, channels: int, ns: Any, md: Metadata
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up
    run_async(worker_main(conn, barrier, port, channels, ns, md))


class Clients:
    """`procs` client processes with `clients` channels between them."""

    def __init__(
        self, port: int, server_pid: int, procs: int, clients: int, ns: Any, md: Metadata = ()
    ) -> None:
        self.server_pid = server_pid
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(procs)
        self.per_proc = [clients // procs + (i < clients % procs) for i in range(procs)]
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for channels in self.per_proc:
            parent, child = ctx.Pipe()
            args = (child, self.barrier, port, channels, ns, md)
            proc = ctx.Process(target=worker, args=args, daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def run(self, op: str, calls: int, clients: int) -> Result:
        """`calls` calls of `op` over the first `clients` channels, all started together."""
        shares = [calls // clients + (i < calls % clients) for i in range(clients)]
        seed = random.randrange(1 << 30)
        server_cpu = tree_cpu_seconds(self.server_pid)
        for i, (conn, n) in enumerate(zip(self.conns, self.per_proc, strict=True)):
            first = sum(self.per_proc[:i])
            counts = [shares[first + j] if first + j < clients else 0 for j in range(n)]
            conn.send((op, counts, seed + first))
        parts: list[Result] = [conn.recv() for conn in self.conns]
        used = [p for p in parts if p[0]]
        lats = [lat for p in used for lat in p[0]]
        codes = sum((p[1] for p in parts), Counter[str]())
        client_cpu = sum(p[4] for p in parts)
        server_cpu = tree_cpu_seconds(self.server_pid) - server_cpu
        start, end = min(p[2] for p in used), max(p[3] for p in used)
        return lats, codes, start, end, client_cpu, server_cpu

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()


class GoClients:
    """The same runs by the Go load generator (loadtest/loadgen): one process
    per run, its clients connected (one connection each) and warmed before
    the timing starts."""

    def __init__(self, port: int, server_pid: int, tmp: Path, ns: Any, md: Metadata = ()) -> None:
        self.server_pid = server_pid
        self.target = f"127.0.0.1:{port}"
        models = [model(i) for i in range(ns.models)]
        self.models, self.aliases = tmp / "models.txt", tmp / "aliases.txt"
        self.models.write_text("".join(f"{m}\n" for m in models))
        self.aliases.write_text("".join(f"{m}/aliases/{ALIAS}\n" for m in models))
        self.flags = ["--versions", str(ns.versions)]
        for key, value in md:
            self.flags += ["--header", f"{key}={value}"]
        go_loadgen.binary()  # built before anything is timed

    def run(self, op: str, calls: int, clients: int) -> Result:
        """`calls` calls of `op` by `clients` clients, all started together."""
        names = self.aliases if op in ("ResolveAlias", "SetAlias") else self.models
        proc = go_loadgen.start(
            "read" if op in READS else "write",
            *("--target", self.target, "--method", op, "--names", str(names)),
            *("--clients", str(clients), "--calls", str(calls)),
            *("--seed", str(random.randrange(1 << 30)), "--wait", *self.flags),
        )
        try:
            go_loadgen.read_line(proc)  # every client connected and warm
            server_cpu = tree_cpu_seconds(self.server_pid)
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out = go_loadgen.read_line(proc)
            server_cpu = tree_cpu_seconds(self.server_pid) - server_cpu
        finally:
            go_loadgen.stop(proc)
        lats = [round(ms * 1e6) for ms in out["latency_ms"]]
        elapsed_ns = round(out["elapsed_s"] * 1e9)
        return lats, Counter(out["errors"]), 0, elapsed_ns, out["cpu_s"], server_cpu

    def close(self) -> None:
        pass


async def seed_data(port: int, ns: Any, md: Metadata = ()) -> None:
    chans = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", CHANNEL_OPTIONS) for _ in range(8)]
    sem = asyncio.Semaphore(ns.clients)

    async def one(i: int) -> None:
        stub = rpc_grpc.RegistryServiceStub(chans[i % len(chans)])
        async with sem:
            model_id = model(i).split("/")[1]
            await stub.CreateModel(rpc.CreateModelRequest(model_id=model_id), metadata=md)
            for v in range(ns.versions):
                mv = pb.ModelVersion(source_uri=f"s3://bench/{model(i)}/{v + 1}")
                await stub.CreateModelVersion(
                    rpc.CreateModelVersionRequest(parent=model(i), model_version=mv), metadata=md
                )
            alias = pb.Alias(name=f"{model(i)}/aliases/{ALIAS}", version=f"{model(i)}/versions/1")
            await stub.SetAlias(rpc.SetAliasRequest(alias=alias), metadata=md)

    await asyncio.gather(*(one(i) for i in range(ns.models)))
    for ch in chans:
        await ch.close(None)


def summary(op: str, mode: str, res: Result) -> dict[str, Any]:
    lats, codes, start, end, client_cpu, server_cpu = res
    ms = sorted(lat / 1e6 for lat in lats)

    def pct(q: float) -> float:
        return ms[max(0, math.ceil(q * len(ms)) - 1)]

    row: dict[str, Any] = {"op": op, "mode": mode, "calls": len(ms), "non_ok": dict(codes)}
    row["throughput"] = len(ms) / ((end - start) / 1e9)
    row["server_cpu_ms"] = server_cpu * 1000 / len(ms)
    row["client_cpu_ms"] = client_cpu * 1000 / len(ms)
    row.update(p50=pct(0.50), p95=pct(0.95), p99=pct(0.99), max=ms[-1])
    if mode in ("sequential", "seq, warm"):
        row["target_p95_ms"] = TARGET_P95_MS[op]
        row["pass"] = row["p95"] < TARGET_P95_MS[op]
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'operation':<19} {'mode':<13} {'calls':>6} {'calls/s':>8} {'p50':>7} {'p95':>7}"
    print(f"{head} {'p99':>7} {'max':>7} {'srv cpu':>7} {'cli cpu':>7}  target p95  non-OK")
    for r in rows:
        verdict = ""
        if "pass" in r:
            verdict = f"< {r['target_p95_ms']:g} ms {'PASS' if r['pass'] else 'MISS'}"
        codes = " ".join(f"{k}:{v}" for k, v in r["non_ok"].items())
        print(
            f"{r['op']:<19} {r['mode']:<13} {r['calls']:>6} {r['throughput']:>8.0f} "
            f"{r['p50']:>7.2f} {r['p95']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.2f} "
            f"{r['server_cpu_ms']:>7.2f} {r['client_cpu_ms']:>7.2f}  "
            f"{verdict:<11} {codes}"
        )
    print("latencies in ms, client-side per call; srv/cli cpu: CPU ms per call, server/clients")


def profile(clients: Clients | GoClients, pid: int, ns: Any) -> None:
    """An extra, unmeasured sequential read pass under py-spy; prints the top frames."""
    with py_spy(pid, Path(ns.profile), rate=250):
        time.sleep(1.0)  # py-spy attaches
        for op in READS:
            clients.run(op, ns.reads, 1)
    print(f"\npy-spy, server during sequential reads (raw: {ns.profile})")
    for line in top_frames(Path(ns.profile), ns.top) or ["no samples: is py-spy installed?"]:
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database-url", help="use this existing database instead of a fresh one")
    ap.add_argument("--sqlite", action="store_true", help="benchmark the embedded SQLite default")
    ap.add_argument(
        "--pg",
        default=PG_SERVER,
        help="PostgreSQL server for the fresh database (default %(default)s)",
    )
    for flag, default, text in (
        ("--models", 500, "models to seed"),
        ("--versions", 10, "versions per model"),
        ("--reads", 2000, "calls per read operation and mode"),
        ("--writes", 500, "calls per write operation and mode"),
        ("--clients", 32, "concurrent clients, one channel (connection) each"),
        ("--client-procs", 1, "client processes the concurrent clients are spread over"),
        ("--top", 25, "frames to print from the profile"),
    ):
        ap.add_argument(flag, type=int, default=default, help=f"{text} (default %(default)s)")
    ap.add_argument(
        "--workers",
        default="1",
        help="the server's --workers; several (1,2) start one server each, compared",
    )
    ap.add_argument(
        "--sweep",
        default="4,8,16,32,64",
        help="concurrent clients tried by the capacity sweep (default %(default)s)",
    )
    ap.add_argument("--capacity-p95-ms", type=float, default=10.0)
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument(
        "--profile", help="after measuring, profile a read pass with py-spy into this file"
    )
    ap.add_argument(
        "--client",
        choices=("python", "go"),
        default="python",
        help="clients in grpc.aio processes, or the Go load generator (loadtest/loadgen)"
        " (default %(default)s)",
    )
    ap.add_argument(
        "--auth",
        choices=("both", "off", "jwt"),
        default="both",
        help="authentication off, on with JWTs, or both in turn, compared (default %(default)s)",
    )
    ns = ap.parse_args()
    if ns.client == "go":
        go_loadgen.require()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        with contextlib.ExitStack() as stack:
            auths = ("off", "jwt") if ns.auth == "both" else (ns.auth,)
            counts = [int(w) for w in ns.workers.split(",")]
            if len(counts) > 1:
                auths = ("off",)
                ns.clients = max(ns.clients, *(int(c) for c in ns.sweep.split(",")))
            benches = [set_up(stack, auth, ns, w) for auth in auths for w in counts]
            # Last in, first out: a second Ctrl-C cannot cut the clean-up short.
            stack.callback(signal.signal, signal.SIGINT, signal.SIG_IGN)
            measure(benches, ns)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)


@dataclass
class Bench:
    """One server (authentication off, or on with JWTs), seeded, and its clients."""

    auth: str
    workers: int
    server: ServeProcess
    clients: Clients | GoClients
    seed_s: float
    rows: list[dict[str, Any]] = field(default_factory=list)


def set_up(stack: contextlib.ExitStack, auth: str, ns: Any, workers: int = 1) -> Bench:
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelreg-bench-")))
    if ns.sqlite:
        url = f"sqlite:///{tmp / 'registry.db'}"
    elif ns.database_url:
        url = ns.database_url
    else:
        url = stack.enter_context(fresh_database(ns.pg, prefix="modelreg_bench"))
    keys = bench_auth(tmp) if auth == "jwt" else None
    flags = [*(keys.flags() if keys else []), "--workers", str(workers)]
    server = stack.enter_context(
        running(tmp / "data", *flags, database_url=url, own_session=True, within=180)
    )
    if workers > 1:
        time.sleep(5)  # every worker ready, not only the first to answer
    print(
        f"auth {auth}, --workers {workers}: server pid {server.pid} on {server.address}, "
        f"db {url.split('@')[-1]}"
    )
    md: Metadata = ()
    if keys is not None:
        run_async(keys.grant_caller(server.address))
        md = keys.metadata(CALLER)
    t0 = time.perf_counter()
    run_async(seed_data(server.port, ns, keys.metadata(ADMIN) if keys else ()))
    seed_s = time.perf_counter() - t0
    print(
        f"  seeded {ns.models} models, {ns.models * ns.versions} versions, "
        f"{ns.models} aliases in {seed_s:.1f} s"
    )
    clients: Clients | GoClients
    if ns.client == "go":
        clients = GoClients(server.port, server.pid, tmp, ns, md)
    else:
        clients = Clients(server.port, server.pid, ns.client_procs, ns.clients, ns, md)
    stack.callback(clients.close)
    return Bench(auth, workers, server, clients, seed_s)


def measure(benches: list[Bench], ns: Any) -> None:
    """Every operation in every mode on every server; prints the tables, the
    comparison (and profiles)."""
    # Reads twice in a row: the first pass meets a cold read cache (every
    # model's first read goes to the database), the second shows a
    # serving fleet's steady state, where the same aliases are read again
    # and again. Writes follow, so they cannot warm or cool the reads.
    plan = (
        ("sequential", 1, READS),
        ("seq, warm", 1, READS),
        ("sequential", 1, WRITES),
        (f"concurrent {ns.clients}", ns.clients, READS + WRITES),
    )
    for mode, n, ops in plan:
        for op in ops:
            calls = ns.reads if op in READS else ns.writes
            for bench in benches:  # back to back: the machine's load drifts for all alike
                bench.rows.append(summary(op, mode, bench.clients.run(op, calls, n)))
    for bench in benches:
        report(bench, ns)
    if len({b.workers for b in benches}) > 1:
        capacity(benches, ns)
    elif len(benches) == 2:
        compare(benches[0].rows, benches[1].rows, READS)


def capacity(benches: list[Bench], ns: Any) -> None:
    """Reads/s at a p95 under the target: each read at each concurrency of
    the sweep on every server in turn; the best throughput that kept its p95
    under the target, per server, and the ratio to the first server."""
    sweep = [int(c) for c in ns.sweep.split(",")]
    best: dict[tuple[int, str], tuple[float, int, float]] = {}
    print(f"\n== capacity: reads/s with p95 < {ns.capacity_p95_ms:g} ms ==")
    print(
        f"{'operation':<19} {'clients':>7} "
        + " ".join(f"{'w=' + str(b.workers):>16}" for b in benches)
    )
    for op in READS:
        for n in sweep:
            cells = []
            for bench in benches:
                row = summary(op, f"sweep {n}", bench.clients.run(op, ns.reads, n))
                cells.append(f"{row['throughput']:>8.0f}/s {row['p95']:>5.1f}ms")
                if row["p95"] < ns.capacity_p95_ms and not row["non_ok"]:
                    old = best.get((bench.workers, op))
                    if old is None or row["throughput"] > old[0]:
                        best[(bench.workers, op)] = (row["throughput"], n, row["p95"])
            print(f"{op:<19} {n:>7} " + " ".join(f"{c:>16}" for c in cells))
    base = benches[0].workers
    for op in READS:
        line = []
        for bench in benches:
            got = best.get((bench.workers, op))
            if got is None:
                line.append(f"--workers {bench.workers}: none under target")
                continue
            ratio = ""
            ref = best.get((base, op))
            if ref is not None and bench.workers != base:
                ratio = f" = {got[0] / ref[0]:.2f}x"
            line.append(f"--workers {bench.workers}: {got[0]:.0f}/s ({got[1]} clients){ratio}")
        print(f"{op:<19} " + "; ".join(line))


def report(bench: Bench, ns: Any) -> None:
    rss = tree_status_kb(bench.server.pid, "VmHWM") / 1024
    where = f"{ns.client_procs} client process(es)"
    if ns.client == "go":
        where = "one Go process (loadtest/loadgen) per run"
    print(
        f"\n== auth {bench.auth}, --workers {bench.workers}: "
        f"{ns.clients} concurrent clients = {ns.clients} channels "
        f"in {where}; SetAlias wall time includes its etag reads"
    )
    print_table(bench.rows)
    print(f"server peak RSS (VmHWM): {rss:.0f} MB")
    if ns.json:
        doc = {
            "database": "sqlite" if ns.sqlite else "postgresql",
            "auth": bench.auth,
            "seed_s": bench.seed_s,
            "server_peak_rss_mb": rss,
            "args": vars(ns),
            "results": bench.rows,
        }
        out = Path(ns.json)
        if ns.auth == "both":
            out = out.with_name(f"{out.stem}-auth-{bench.auth}{out.suffix}")
        if "," in ns.workers:
            out = out.with_name(f"{out.stem}-workers-{bench.workers}{out.suffix}")
        out.write_text(json.dumps(doc, indent=2) + "\n")
    if ns.profile:
        profile(bench.clients, bench.server.pid, ns)


if __name__ == "__main__":
    main()
