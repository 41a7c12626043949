"""Data-plane benchmark: push and pull one large file through a real `modelreg serve`.

Measures, in the same run and on the same disk, what bounds a durable
upload (`sha256sum` speed and `dd ... conv=fdatasync` write speed), then a
push and a pull of a generated file through the SDK, each in its own client
process, while sampling the server's memory. Prints MB/s (10^6 bytes/s),
the server's peak RSS (VmHWM), and each figure against its target:

    durable upload  >= 80 % of min(fdatasync write, sha256)
    download        >= 500 MB/s (one stream)
    server RSS      <  150 MB (peak, push and pull)

    .venv/bin/python loadtest/bench_artifacts.py [--size 1G|5G|256M] [--dir /path] [--store s3]

`--store s3` keeps the server's blobs in S3: a moto server process on
loopback (moto keeps objects in its own memory, so S3 figures are bound by
it, not by the disk).

`--encryption compare` measures encryption at rest instead: push and pull
with and without `--encryption-keyring`, alternating, in one run (see
`bench_encryption.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts tests/ on the module path, for `support`)
from modelregistry import SyncRegistryClient
from support.processes import running
from support.procfs import cpu_seconds, reset_peak_rss, status_kb

MB = 1_000_000
MIB = 1024 * 1024
UPLOAD_TARGET = 0.80
DOWNLOAD_TARGET_MBS = 500.0
RSS_TARGET_MB = 150.0

# Runs in the client process: the SDK exactly as a training pipeline uses it.
PUSH = """
import asyncio, json, resource, sys, time
from modelregistry import RegistryClient, push_files

async def main() -> None:
    target, version, path, state_dir, chunk = sys.argv[1:6]
    first: list[float] = []
    def progress(done: int, total: int, name: str) -> None:
        if not first:
            first.append(time.perf_counter())
    async with RegistryClient(target) as client:
        start = time.perf_counter()
        result = await push_files(
            client, version, path, progress=progress, state_dir=state_dir, chunk_size=int(chunk)
        )
        end = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"total_s": end - start, "upload_s": end - first[0],
                      "cpu_s": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss,
                      "bytes_sent": result.bytes_sent, "digest": result.digest}))

asyncio.run(main())
"""

PULL = """
import asyncio, json, resource, sys, time
from modelregistry import RegistryClient, pull

async def main() -> None:
    target, name, dest, chunk = sys.argv[1:5]
    async with RegistryClient(target) as client:
        start = time.perf_counter()
        result = await pull(client, name, dest, chunk_size=int(chunk))
        end = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"total_s": end - start, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "rss_kb": usage.ru_maxrss,
                      "bytes_received": result.bytes_received, "digest": result.digest}))

asyncio.run(main())
"""


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def generate(path: Path, size: int) -> None:
    """Incompressible-looking data without paying for os.urandom on every byte."""
    block = bytearray(os.urandom(16 * MIB))
    with path.open("wb") as f:
        written = 0
        index = 0
        while written < size:
            block[:8] = index.to_bytes(8, "little")
            n = min(len(block), size - written)
            f.write(memoryview(block)[:n])
            written += n
            index += 1


def sha256sum_mbs(path: Path, size: int) -> float:
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)  # warm the cache
    start = time.perf_counter()
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)
    return size / (time.perf_counter() - start) / MB


def fdatasync_mbs(directory: Path, size: int) -> float:
    target = directory / "dd.bin"
    count = max(size // (4 * MIB), 1)
    start = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=4M", f"count={count}", "conv=fdatasync"],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    target.unlink()
    return count * 4 * MIB / elapsed / MB


class RssSampler:
    """Samples a process's VmRSS and reads VmHWM (its peak) from /proc;
    `phase()` ends one phase's peak and starts the next."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.start_kb = status_kb(pid, "VmRSS")
        self.max_rss_kb = 0
        self.hwm_kb = 0
        self._phase_kb = 0
        reset_peak_rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss, hwm = status_kb(self.pid, "VmRSS"), status_kb(self.pid, "VmHWM")
            except OSError:
                return
            self.max_rss_kb = max(self.max_rss_kb, rss)
            self.hwm_kb = max(self.hwm_kb, hwm)
            self._phase_kb = max(self._phase_kb, hwm, rss)
            self._stop.wait(self.interval)

    def phase(self) -> int:
        """The peak RSS (kB) since the last call, or since the start."""
        peak = max(self._phase_kb, status_kb(self.pid, "VmHWM"))
        self.hwm_kb = max(self.hwm_kb, peak)
        reset_peak_rss(self.pid)
        self._phase_kb = 0
        return peak

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_client(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"client failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def hashlib_mbs(path: Path, size: int) -> float:
    """sha256 as the server and SDK compute it (OpenSSL); sha256sum may be far slower."""
    start = time.perf_counter()
    hasher = hashlib.sha256()
    with path.open("rb", buffering=0) as f:
        while block := f.read(8 * MIB):
            hasher.update(block)
    return size / (time.perf_counter() - start) / MB


@contextlib.contextmanager
def blob_store_args(store: str, work: Path) -> Iterator[list[str]]:
    """`modelreg serve` arguments for the blob store: none for the local
    disk; for S3 a moto server and a fresh bucket, with credentials in the
    environment the server inherits."""
    if store == "local":
        yield []
        return
    import boto3
    from support.moto import moto_server

    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    with moto_server(work / "moto.log") as endpoint:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield ["--blob-store", f"s3://{bucket}/registry", "--s3-endpoint-url", endpoint]


def verdict(ok: bool) -> str:
    return "OK" if ok else "BELOW TARGET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1024 * MIB, help="e.g. 256M, 1G, 5G")
    parser.add_argument(
        "--dir", type=Path, default=None, help="work directory (its disk is measured)"
    )
    parser.add_argument("--chunk-size", type=parse_size, default=MIB, help="push chunk bytes")
    parser.add_argument("--pull-chunk-size", type=parse_size, default=MIB, help="pull chunk bytes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--encryption",
        choices=("off", "compare"),
        default="off",
        help="compare: push and pull with encryption at rest on and off, alternating",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each, with --encryption")
    parser.add_argument(
        "--store", choices=("local", "s3"), default="local", help="the server's blob store"
    )
    args = parser.parse_args()
    size: int = args.size
    if args.encryption == "compare":
        from bench_encryption import compare

        work = Path(tempfile.mkdtemp(prefix="modelreg-bench-", dir=args.dir))
        try:
            print(f"work directory {work}, file {size / MB:.0f} MB", flush=True)
            generate(work / "model.bin", size)
            compare(work, work / "model.bin", size, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return

    work = Path(tempfile.mkdtemp(prefix="modelreg-bench-", dir=args.dir))
    try:
        source = work / "model.bin"
        print(f"work directory {work}, file {size / MB:.0f} MB", flush=True)
        generate(source, size)
        sha_mbs = sha256sum_mbs(source, size)
        py_sha_mbs = hashlib_mbs(source, size)
        sync_mbs = fdatasync_mbs(work, size)
        print(f"sha256sum          {sha_mbs:8.1f} MB/s")
        print(f"sha256 (hashlib)   {py_sha_mbs:8.1f} MB/s  (OpenSSL, as the server hashes)")
        print(f"dd conv=fdatasync  {sync_mbs:8.1f} MB/s", flush=True)

        with (
            blob_store_args(args.store, work) as store_args,
            running(work / "data", *store_args) as server,
        ):
            address = server.address
            with SyncRegistryClient(address) as registry:
                registry.create_model("bench")
                version = registry.create_model_version("models/bench").name

            with RssSampler(server.pid) as rss:
                before = cpu_seconds(server.pid)
                pushed = run_client(
                    PUSH, address, version, str(source), str(work / "state"), str(args.chunk_size)
                )
                middle = cpu_seconds(server.pid)
                push_peak_kb = rss.phase()
                pulled = run_client(
                    PULL, address, version, str(work / "pulled"), str(args.pull_chunk_size)
                )
                server_pull_cpu = cpu_seconds(server.pid) - middle
                pull_peak_kb = rss.phase()
        if pulled["digest"] != pushed["digest"]:
            raise SystemExit("pulled artifact differs from the pushed one")

        push_mbs = size / pushed["total_s"] / MB
        upload_mbs = size / pushed["upload_s"] / MB
        pull_mbs = size / pulled["total_s"] / MB
        rss_mb = rss.hwm_kb * 1024 / MB
        print(f"push (hash+upload) {push_mbs:8.1f} MB/s  ({pushed['total_s']:.2f} s)")
        print(f"upload, durable    {upload_mbs:8.1f} MB/s  ({pushed['upload_s']:.2f} s)")
        print(f"pull, verified     {pull_mbs:8.1f} MB/s  ({pulled['total_s']:.2f} s)")
        print(
            f"server peak RSS    {rss_mb:8.1f} MB     (VmHWM; max sampled VmRSS "
            f"{rss.max_rss_kb * 1024 / MB:.1f} MB; before the push "
            f"{rss.start_kb * 1024 / MB:.1f} MB, peak during the push "
            f"{push_peak_kb * 1024 / MB:.1f} MB, during the pull {pull_peak_kb * 1024 / MB:.1f} MB)"
        )
        print(
            f"CPU seconds        push: client {pushed['cpu_s']:.2f}, server {middle - before:.2f};"
            f" pull: client {pulled['cpu_s']:.2f}, server {server_pull_cpu:.2f}"
            f" ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})"
        )
        print(
            f"client peak RSS    push {pushed['rss_kb'] * 1024 / MB:.1f} MB, "
            f"pull {pulled['rss_kb'] * 1024 / MB:.1f} MB"
        )
        print()
        for label, sha in (("sha256sum", sha_mbs), ("hashlib sha256", py_sha_mbs)):
            bound = min(sync_mbs, sha)
            ratio = upload_mbs / bound
            print(
                f"upload: {ratio * 100:.0f}% of min(fdatasync, {label}) = {bound:.0f} MB/s "
                f"(target >= {UPLOAD_TARGET * 100:.0f}%): {verdict(ratio >= UPLOAD_TARGET)}; "
                f"with client hashing {push_mbs / bound * 100:.0f}%"
            )
        print(
            f"download: {pull_mbs / DOWNLOAD_TARGET_MBS * 100:.0f}% of {DOWNLOAD_TARGET_MBS:.0f}"
            f" MB/s: {verdict(pull_mbs >= DOWNLOAD_TARGET_MBS)}"
        )
        print(
            f"server RSS: {rss_mb / RSS_TARGET_MB * 100:.0f}% of {RSS_TARGET_MB:.0f} MB: "
            f"{verdict(rss_mb < RSS_TARGET_MB)}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
