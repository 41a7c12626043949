"""Garbage-collection benchmark: the load-test fleet plus gigabytes of garbage.

Starts `modelreg serve` (periodic collection off), seeds the fleet
(seed.py: 500 models, 5,000 versions, 500 stored artifacts), force-deletes a
tenth of the models (their blobs become garbage the real way), then writes
`--garbage-gb` of unreferenced blobs straight into the store (what abandoned
pushes leave behind; writing them through the API would measure uploads, not
the collector) and ages every blob past the grace period. Then, in one run:

    dry run      list + mark, no delete      (the cost of looking)
    collection   list + mark + sweep          (bytes reclaimed, sweep time)
    again        on the now clean store       (a periodic run's steady cost)
    raw unlink   the same number of files of the same size, deleted by a
                 bare loop of os.unlink: the floor the sweep is compared with

and finally downloads and verifies every remaining model's artifact.

    .venv/bin/python loadtest/bench_gc.py [--garbage-gb 10] [--blob-mib 64]
        [--small-blobs 20000] [--models 500] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import common  # noqa: F401  (puts tests/ on the module path, for `support`)
import grpc
from common import Fleet
from modelregistry import RegistryClient
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc as apb_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc as rpc_grpc
from seed import seed
from support.processes import running

MIB = 1024 * 1024
GB = 1_000_000_000
AGE_S = 3 * 86400


def write_blobs(blob_dir: Path, count: int, size: int, seed_byte: int) -> int:
    """`count` aged files of `size` bytes under random digests; returns bytes."""
    block = os.urandom(min(size, 4 * MIB)) if size else b""
    then = time.time() - AGE_S
    for n in range(count):
        name = hashlib.sha256(f"garbage-{seed_byte}-{n}-{size}".encode()).hexdigest()
        path = blob_dir / name[:2] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left > 0:
                f.write(block[: min(left, len(block))])
                left -= len(block)
        os.utime(path, (then, then))
    return count * size


def age_everything(blob_dir: Path) -> None:
    then = time.time() - AGE_S
    for path in blob_dir.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def raw_unlink(root: Path, count: int, size: int) -> float:
    scratch = root / "unlink-baseline"
    write_blobs(scratch, count, size, 99)
    os.sync()
    files = [p for p in scratch.rglob("*") if p.is_file()]
    start = time.perf_counter()
    for path in files:
        path.unlink()
    elapsed = time.perf_counter() - start
    shutil.rmtree(scratch)
    return elapsed


async def delete_models(address: str, fleet: Fleet, count: int) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = rpc_grpc.RegistryServiceStub(ch)
        for i in range(fleet.models - count, fleet.models):
            await stub.DeleteModel(rpc.DeleteModelRequest(name=fleet.model(i), force=True))


async def verify_fleet(address: str, fleet: Fleet, kept: int) -> int:
    """Download every kept model's artifact (manifest and file) and check its digest."""
    checked = 0
    async with grpc.aio.insecure_channel(address) as ch:
        artifacts = apb_grpc.ArtifactServiceStub(ch)

        async def fetch(request: apb.DownloadRequest) -> bytes:
            body = bytearray()
            async for msg in artifacts.Download(request):
                if msg.WhichOneof("kind") == "chunk":
                    body += msg.chunk.data
            return bytes(body)

        for i in range(kept):
            version = fleet.version(i, fleet.artifact_version)
            manifest = await fetch(apb.DownloadRequest(version=version))
            for entry in json.loads(manifest)["files"]:
                data = await fetch(apb.DownloadRequest(digest=entry["digest"]))
                assert "sha256:" + hashlib.sha256(data).hexdigest() == entry["digest"], version
                checked += 1
    return checked


async def collect(address: str, dry_run: bool) -> tuple[apb.CollectGarbageResponse, float]:
    async with RegistryClient(address, timeout=3600) as client:
        start = time.perf_counter()
        report = await client.collect_garbage(dry_run=dry_run, grace=timedelta(hours=1))
        return report, time.perf_counter() - start


def line(label: str, report: apb.CollectGarbageResponse, wall: float) -> str:
    return (
        f"{label:<12} scanned {report.blobs_scanned:>7}  referenced {report.blobs_referenced:>5}"
        f"  deleted {report.blobs_deleted:>7}  {report.bytes_deleted / GB:8.3f} GB"
        f"  {wall:8.2f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--garbage-gb", type=float, default=10.0, help="large garbage (%(default)s)")
    ap.add_argument("--blob-mib", type=int, default=64, help="size of a large blob (%(default)s)")
    ap.add_argument(
        "--small-blobs", type=int, default=20_000, help="4 KiB garbage blobs (%(default)s)"
    )
    ap.add_argument("--models", type=int, default=Fleet().models, help="fleet (%(default)s)")
    ap.add_argument("--database-url", default=None, help="PostgreSQL instead of SQLite")
    ap.add_argument("--dir", default=None, help="where the server's data goes (a temp dir)")
    ns = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-gc-", dir=ns.dir))
    fleet = Fleet(models=ns.models)
    deleted_models = max(1, ns.models // 10)
    try:
        data_dir = root / "data"
        extra = ("--gc-interval-hours", "0")
        with running(data_dir, *extra, database_url=ns.database_url) as server:
            t = time.perf_counter()
            asyncio.run(seed(server.address, fleet, quiet=True))
            print(f"seeded {fleet.models} models in {time.perf_counter() - t:.0f} s")
            asyncio.run(delete_models(server.address, fleet, deleted_models))
            blob_dir = data_dir / "blobs" / "blobs" / "sha256"
            large = int(ns.garbage_gb * GB) // (ns.blob_mib * MIB)
            t = time.perf_counter()
            written = write_blobs(blob_dir, large, ns.blob_mib * MIB, 1)
            written += write_blobs(blob_dir, ns.small_blobs, 4096, 2)
            os.sync()
            print(
                f"garbage: {large} x {ns.blob_mib} MiB + {ns.small_blobs} x 4 KiB ="
                f" {written / GB:.2f} GB, written in {time.perf_counter() - t:.0f} s"
            )
            age_everything(blob_dir)
            runs = [
                ("dry run", *asyncio.run(collect(server.address, True))),
                ("collection", *asyncio.run(collect(server.address, False))),
                ("again", *asyncio.run(collect(server.address, False))),
            ]
            for label, report, wall in runs:
                print(line(label, report, wall))
            swept = runs[1][1]
            kept = fleet.models - deleted_models
            checked = asyncio.run(verify_fleet(server.address, fleet, kept))
            print(f"verified {checked} files of {kept} kept models")
        sample = min(200, large)
        floor = raw_unlink(root, sample, ns.blob_mib * MIB) / max(sample, 1)
        small_floor = raw_unlink(root, 2000, 4096) / 2000
        est = floor * large + small_floor * ns.small_blobs
        wall = runs[1][2]
        print(
            f"raw unlink floor for the same files (sampled): {est:.2f} s;"
            f" collection / floor = {wall / est:.1f}x;"
            f" collection / dry run = {wall / runs[0][2]:.1f}x"
        )
        print(
            f"reclaimed {swept.bytes_deleted / GB:.3f} GB in {swept.blobs_deleted} blobs,"
            f" {swept.blobs_deleted / wall:.0f} blobs/s, {swept.bytes_deleted / GB / wall:.1f} GB/s"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
