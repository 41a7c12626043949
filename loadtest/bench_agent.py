"""Serving-agent benchmark: flip latency, promotion-to-fleet time, hot-path cost.

Starts `modelreg serve` (PostgreSQL by default, `--sqlite` for the embedded
default), pushes two small versions, points `production` at the first and
starts `--agents` serving agents in this process (each with its own cache
directory, as separate instances would have). Then it promotes back and forth
and prints:

- `current()` cost: the hot path, a local attribute read;
- flip: the atomic swap itself, as the agents time it;
- promotion -> fleet: from the SetAlias reply (the commit) until each agent
  serves the new version, for the first promotion (download, verify, load in
  the background slot) and for later ones (the previous model is still
  resident: no download);

    .venv/bin/python loadtest/bench_agent.py [--agents 100] [--rounds 5] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import timeit
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from common import pct
from modelregistry import RegistryClient, push
from modelregistry.serving import ServingAgent
from support.postgres import fresh_database
from support.processes import running

PROD = "models/bench/aliases/production"


def line(label: str, ms: list[float]) -> str:
    return (
        f"{label:34s} p50 {pct(ms, 50):8.2f}  p99 {pct(ms, 99):8.2f}  "
        f"max {max(ms):8.2f} ms  (n={len(ms)})"
    )


async def make_version(client: RegistryClient, work: Path, content: bytes) -> str:
    version = await client.create_model_version("models/bench")
    src = work / f"v{version.version}"
    src.mkdir()
    (src / "weights.bin").write_bytes(content)
    await push(client, version.name, src, state_dir=work / "push-state")
    return version.name


async def run(address: str, agents_n: int, rounds: int, size: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="modelreg-bench-agent-"))
    async with RegistryClient(address) as client:
        await client.create_model("bench")
        v1 = await make_version(client, work, b"1" * size)
        v2 = await make_version(client, work, b"2" * size)
        await client.set_alias(PROD, v1)
        flipped: dict[str, float] = {}
        flip_us: list[float] = []

        def record(instance: str) -> Any:
            def on(kind: str, details: dict[str, Any]) -> None:
                if kind == "live":
                    flipped[instance] = time.perf_counter()
                    flip_us.append(details["flip_us"])

            return on

        agents = [
            ServingAgent(
                client,
                alias=PROD,
                instance_id=f"pod-{i}",
                cache_dir=work / "cache" / str(i),
                load=lambda p: (p / "weights.bin").read_bytes(),
                grace_period=timedelta(minutes=30),
                ttl=timedelta(minutes=10),
                on_transition=record(f"pod-{i}"),
            )
            for i in range(agents_n)
        ]
        started = time.perf_counter()
        await asyncio.gather(*(a.start() for a in agents))
        print(
            f"{agents_n} agents started (resolve, download, load) in "
            f"{time.perf_counter() - started:.2f} s"
        )
        agent = agents[0]
        per_call = min(timeit.repeat(agent.current, number=200_000, repeat=5)) / 200_000
        print(f"current() (hot path)               {per_call * 1e9:8.1f} ns per call")
        flip_us.clear()
        first: list[float] = []
        later: list[float] = []
        fleet_first: list[float] = []
        fleet_later: list[float] = []
        target = v1
        for r in range(rounds * 2):
            target = v2 if target == v1 else v1
            expected = b"2" * size if target == v2 else b"1" * size
            flipped.clear()
            await client.set_alias(PROD, target)
            committed = time.perf_counter()
            deadline = committed + 60
            while not all(a.current() == expected for a in agents):
                if time.perf_counter() > deadline:
                    raise RuntimeError("the fleet did not converge in 60 s")
                await asyncio.sleep(0.001)
            times = [(flipped[a.instance_id] - committed) * 1000 for a in agents]
            (first if r == 0 else later).extend(times)
            (fleet_first if r == 0 else fleet_later).append(max(times))
        print(
            f"{'flip (the reference swap)':34s} p50 {pct(flip_us, 50):8.2f}  "
            f"p99 {pct(flip_us, 99):8.2f}  max {max(flip_us):8.2f} us  (n={len(flip_us)})"
        )
        print(line("promotion -> agent, 1st (download)", first))
        print(line("promotion -> agent, later (resident)", later))
        print(f"promotion -> whole fleet, 1st        {fleet_first[0]:8.2f} ms")
        print(
            f"promotion -> whole fleet, later      median {statistics.median(fleet_later):8.2f}"
            f" ms, max {max(fleet_later):8.2f} ms over {len(fleet_later)} promotions"
        )
        print(f"downloads per agent: {agents[0].cache.downloads} (2 versions)")
        await asyncio.gather(*(a.stop() for a in agents))


@contextlib.contextmanager
def database(sqlite: bool) -> Iterator[str | None]:
    if sqlite:
        yield None
    else:
        with fresh_database(prefix="modelreg_bench_agent") as url:
            yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="promotions back and forth")
    parser.add_argument("--size", type=int, default=64 * 1024, help="artifact bytes")
    parser.add_argument("--sqlite", action="store_true", help="embedded default database")
    opts = parser.parse_args()
    with database(opts.sqlite) as url, running(database_url=url, own_session=True) as server:
        print(f"server {server.address} on {'SQLite' if url is None else 'PostgreSQL'}")
        asyncio.run(run(server.address, opts.agents, opts.rounds, opts.size))


if __name__ == "__main__":
    main()
