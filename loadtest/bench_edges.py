"""Regional edges benchmark: warm-ahead, load from an edge, reads, watch fan-out.

Starts a primary and three edges (`modelreg serve --upstream`, regions
eu-west, us-east and ap-south), each a separate process with its own SQLite
database and blob directory on loopback, and measures in one run:

1. warm-ahead: a version with a `--size-mib` artifact (1 GiB by default) is
   uploaded to the primary; the time from StartRollout until GetRollout on
   the primary shows all three regions warm (each edge fetched, verified
   and stored the artifact by itself);
2. load from the edge: an agent-style client with `[edge, primary]` pulls
   the artifact into an empty directory from its (warm) edge, next to the
   same pull from the primary (target: < 5 s for 1 GiB);
3. reads: `--reads` sequential GetAlias/ResolveAlias on the primary and on
   an edge, p50/p95 side by side;
4. watch fan-out: `--watchers` Watch streams spread evenly over the three
   edges (client processes as in bench_watch.py), `--promotions` alias moves
   on the primary, commit -> watcher p50/p99, next to the same watchers on
   the primary alone (`--no-watch-baseline` skips that).

    .venv/bin/python loadtest/bench_edges.py
    .venv/bin/python loadtest/bench_edges.py --size-mib 64 --watchers 600
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_watch import ALIAS, Received, client_process
from common import pct
from modelregistry import RegistryClient
from support.processes import ServeProcess

REGIONS = ("eu-west", "us-east", "ap-south")
MODEL = "models/bench"


def _write_artifact(path: Path, size: int) -> None:
    block = os.urandom(4 * 1024 * 1024)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
            block = block[1:] + block[:1]  # no two blocks alike: no dedup by chance


async def seed(primary: str, artifact: Path) -> tuple[str, float]:
    """v1 (small) behind the alias, v2 (the big artifact); (v2, upload s)."""
    async with RegistryClient(primary, timeout=600) as client:
        await client.create_model("bench")
        small = artifact.parent / "small.bin"
        small.write_bytes(b"the stable model")
        v1 = await client.create_model_version(MODEL)
        await client.push(v1.name, small, state_dir=artifact.parent / "state")
        await client.set_alias(ALIAS, v1.name)
        v2 = await client.create_model_version(MODEL)
        t0 = time.monotonic()
        await client.push(v2.name, artifact, state_dir=artifact.parent / "state")
        return v2.name, time.monotonic() - t0


async def warm_ahead(primary: str, candidate: str) -> tuple[str, float, dict[str, float]]:
    """StartRollout, then poll GetRollout until every region is warm."""
    async with RegistryClient(primary) as client:
        t0 = time.time()
        rollout = await client.start_rollout(ALIAS, candidate)
        seen: dict[str, float] = {}
        while len(seen) < len(REGIONS):
            states = (await client.get_rollout(rollout.name)).warm_regions
            for s in states:
                if s.warm and s.region not in seen:
                    seen[s.region] = time.time() - t0
            if time.time() - t0 > 1800:
                raise RuntimeError(f"not warm after 30 min: {seen}")
            await asyncio.sleep(0.05)
        return rollout.name, time.time() - t0, seen


async def load_time(addresses: list[str], version: str, dest: Path) -> float:
    async with RegistryClient(addresses, timeout=600) as client:
        t0 = time.monotonic()
        await client.pull(version, dest)
        return time.monotonic() - t0


async def read_latencies(address: str, count: int, min_revision: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"GetAlias": [], "ResolveAlias": []}
    async with RegistryClient(address) as client:
        client.core.min_revision = min_revision
        for _ in range(20):  # warm the channel and the caches
            await client.get_alias(ALIAS)
        for _ in range(count):
            t0 = time.perf_counter()
            await client.get_alias(ALIAS)
            out["GetAlias"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await client.resolve_alias(ALIAS)
            out["ResolveAlias"].append((time.perf_counter() - t0) * 1000)
    return out


async def promote(primary: str, count: int, interval: float) -> int:
    async with RegistryClient(primary) as client:
        for i in range(count):
            await client.set_alias(ALIAS, f"{MODEL}/versions/{1 + (i + 1) % 2}")
            await asyncio.sleep(interval)
        return client.core.last_write_revision


def watch_fan_out(targets: list[str], args: argparse.Namespace, primary: str) -> list[float]:
    """Watchers spread over `targets`; commit -> watcher delays in ms."""
    ctx = mp.get_context("spawn")
    procs: list[tuple[Any, Any]] = []
    per_proc = [
        args.watchers // args.procs + (i < args.watchers % args.procs) for i in range(args.procs)
    ]
    try:
        for i, n in enumerate(per_proc):
            parent, child = ctx.Pipe()
            target = targets[i % len(targets)]
            p = ctx.Process(
                target=client_process,
                args=(target, n, args.streams_per_channel, args.promotions, child, i),
            )
            p.start()
            procs.append((p, parent))
        opened = sum(parent.recv()[1] for _, parent in procs)
        print(f"  {opened}/{args.watchers} streams open over {len(targets)} server(s)")
        asyncio.run(promote(primary, args.promotions, args.interval))
        for _, parent in procs:
            parent.send("finish")
        results: list[Received] = [parent.recv()[1] for _, parent in procs]
    finally:
        for p, _ in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    delays = [
        (recv - commit_us / 1e6) * 1000
        for res in results
        for w in res.events
        for _, commit_us, recv in w
    ]
    failures = [f for res in results for f in res.failures]
    for f in failures[:3]:
        print(f"  failure: {f}")
    print(f"  deliveries {len(delays)}/{args.watchers * args.promotions}")
    return delays


def _row(label: str, values: list[float]) -> str:
    return (
        f"  {label:<28} p50={statistics.median(values):7.2f} ms  p95={pct(values, 95):7.2f} ms"
        f"  p99={pct(values, 99):7.2f} ms"
    )


def run(args: argparse.Namespace, work: Path) -> int:
    primary = ServeProcess(work / "primary", "--shutdown-grace", "1", own_session=True)
    edges = [
        ServeProcess(
            work / region,
            *("--upstream", primary.address, "--region", region, "--shutdown-grace", "1"),
            *("--watch-progress-interval", "30"),
            own_session=True,
        )
        for region in REGIONS
    ]
    servers = [primary, *edges]
    try:
        primary.start()
        for edge in edges:
            edge.launch()
        for edge in edges:
            edge.wait_serving()
        artifact = work / "artifact.bin"
        _write_artifact(artifact, args.size_mib * 1024 * 1024)
        candidate, upload_s = asyncio.run(seed(primary.address, artifact))
        print(f"uploaded {args.size_mib} MiB to the primary in {upload_s:.1f} s")

        rollout, all_warm, per_region = asyncio.run(warm_ahead(primary.address, candidate))
        print(f"StartRollout -> all {len(REGIONS)} regions warm: {all_warm:.2f} s")
        for region, s in sorted(per_region.items(), key=lambda kv: kv[1]):
            print(f"  {region:<9} warm after {s:.2f} s")

        from_edge = asyncio.run(
            load_time([edges[0].address, primary.address], candidate, work / "load-edge")
        )
        from_primary = asyncio.run(load_time([primary.address], candidate, work / "load-primary"))
        verdict = "PASS" if from_edge < 5 else "MISS"
        print(
            f"agent load of {args.size_mib} MiB: from its edge {from_edge:.2f} s, "
            f"from the primary {from_primary:.2f} s (edge/primary {from_edge / from_primary:.2f}x)"
            f" -- {verdict}: target < 5 s"
        )
        shutil.rmtree(work / "load-edge", ignore_errors=True)
        shutil.rmtree(work / "load-primary", ignore_errors=True)

        async def complete() -> int:
            async with RegistryClient(primary.address) as client:
                await client.advance_rollout(rollout, percent=100)
                return client.core.last_write_revision

        revision = asyncio.run(complete())
        print(f"reads ({args.reads} sequential each, one client):")
        at_primary = asyncio.run(read_latencies(primary.address, args.reads, 0))
        at_edge = asyncio.run(read_latencies(edges[0].address, args.reads, revision))
        for rpc in at_primary:
            print(_row(f"{rpc} primary", at_primary[rpc]))
            print(_row(f"{rpc} edge", at_edge[rpc]))
            ratio = pct(at_edge[rpc], 95) / pct(at_primary[rpc], 95)
            print(f"  {rpc} p95 edge/primary: {ratio:.2f}x")

        print(f"watch fan-out: {args.watchers} watchers, {args.promotions} promotions")
        spread = watch_fan_out([e.address for e in edges], args, primary.address)
        if spread:
            print(_row("over 3 edges commit->watcher", spread))
        if args.watch_baseline:
            direct = watch_fan_out([primary.address], args, primary.address)
            if direct:
                print(_row("on the primary alone", direct))
                print(f"  p99 edges/primary: {pct(spread, 99) / pct(direct, 99):.2f}x")
        return 0
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="candidate artifact size")
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--watchers", type=int, default=1500)
    parser.add_argument("--procs", type=int, default=3, help="watch client processes")
    parser.add_argument("--streams-per-channel", type=int, default=100)
    parser.add_argument("--promotions", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between promotions")
    parser.add_argument(
        "--no-watch-baseline",
        dest="watch_baseline",
        action="store_false",
        help="skip the same watchers on the primary alone",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelreg-bench-edges-"))
    try:
        raise SystemExit(run(args, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
