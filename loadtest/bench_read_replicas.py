"""Read replicas: what a read costs on a streaming replica next to the
primary, in the same run, on a real pair (two PostgreSQL clusters on
loopback, the second streaming from the first).

Two `modelreg serve` processes on the same primary database, one with
`--read-database-url` pointing at the replica; the read cache is off on
both, so that every read is a database read. Rounds alternate between the
two servers so that the machine's load drifts for both alike. Measured:
sequential GetModel (p50/p95), and a write followed at once by a read
through the same server (UpdateModel then GetModel: read-your-writes, which
on the replica server waits for the replica to apply the write or falls
back to the primary after --read-replica-wait-ms).

    .venv/bin/python loadtest/bench_read_replicas.py [--reads 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from common import pct, run_async
from google.protobuf import field_mask_pb2
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc as rpc_grpc
from modelregistry.v1 import resources_pb2 as pb
from support.pg_replication import replicated_pair
from support.processes import ServeProcess


async def reads(address: str, n: int) -> list[float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rpc_grpc.RegistryServiceStub(channel)
        get = rpc.GetModelRequest(name="models/bench")
        for _ in range(100):
            await stub.GetModel(get)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            await stub.GetModel(get)
            out.append(time.perf_counter() - t)
        return out


async def write_then_read(address: str, n: int) -> tuple[list[float], int]:
    """Latency of the read right after a write, and how many reads missed it."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = rpc_grpc.RegistryServiceStub(channel)
        out, stale = [], 0
        mask = field_mask_pb2.FieldMask(paths=["description"])
        for i in range(n):
            text = f"{address}-{i}-{time.monotonic_ns()}"
            await stub.UpdateModel(
                rpc.UpdateModelRequest(
                    model=pb.Model(name="models/bench", description=text), update_mask=mask
                )
            )
            t = time.perf_counter()
            model = await stub.GetModel(rpc.GetModelRequest(name="models/bench"))
            out.append(time.perf_counter() - t)
            stale += model.description != text
        return out, stale


def line(name: str, values: list[float]) -> str:
    """`primary`: the server without replicas; `replica`: the one with."""
    return f"  {name:34s} p50 {pct(values, 50) * 1e3:6.2f} ms  p95 {pct(values, 95) * 1e3:6.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reads", type=int, default=2000, help="reads per round (%(default)s)")
    ap.add_argument("--writes", type=int, default=200, help="writes per round (%(default)s)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per server (%(default)s)")
    ns = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelreg-bench-replicas-"))
    with replicated_pair() as pair:
        pair.create("registry")
        url = pair.primary.url("registry")
        common = ("--database-url", url, "--read-cache-seconds", "0")
        primary = ServeProcess(work / "primary" / "data", *common)
        replica = ServeProcess(
            work / "replica" / "data", *common, "--read-database-url", pair.replica.url("registry")
        )
        for server in (primary, replica):
            server.start()
        try:

            async def create() -> None:
                async with grpc.aio.insecure_channel(primary.address) as channel:
                    stub = rpc_grpc.RegistryServiceStub(channel)
                    await stub.CreateModel(rpc.CreateModelRequest(model_id="bench"))

            run_async(create())
            time.sleep(1)  # the replica server's poller sees the replica's head
            got: dict[str, list[float]] = {}
            stale: dict[str, int] = {"primary": 0, "replica": 0}
            for _ in range(ns.rounds):
                for name, server in (("primary", primary), ("replica", replica)):
                    got.setdefault(f"{name} read", []).extend(
                        run_async(reads(server.address, ns.reads))
                    )
                    after, missed = run_async(write_then_read(server.address, ns.writes))
                    got.setdefault(f"{name} read after own write", []).extend(after)
                    stale[name] += missed
        finally:
            for server in (primary, replica):
                server.stop()
    print(f"GetModel, sequential, read cache off; {ns.rounds} alternating rounds:")
    for name, values in got.items():
        print(line(name, values))
    ratio = statistics.median(got["replica read"]) / statistics.median(got["primary read"])
    print(f"  replica/primary read p50 ratio {ratio:.2f}")
    misses = ", ".join(f"{name} {n}" for name, n in stale.items())
    print(f"  reads that missed their own write: {misses}")


if __name__ == "__main__":
    main()
