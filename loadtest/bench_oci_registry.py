"""modelreg against an OCI registry: the same file through Debian's
`docker-registry` (distribution 2.8) and through `modelreg serve`, in one
run, on the same disk, each client in its own process as a user runs it.

    apt-get install docker-registry      # Debian/Ubuntu; the binary is /usr/bin/docker-registry
    .venv/bin/python loadtest/bench_oci_registry.py [--size 512M] [--streams 4]
    .venv/bin/python loadtest/bench_oci_registry.py --baseline-tree ../modelreg-old

The registry runs on loopback with its filesystem driver under the work
directory, no auth. Its client does what a container runtime does with one
large layer: upload (POST, PATCH in 16 MiB chunks, PUT with the digest) and
download (GET, written to a file in 16 MiB reads, sha256 checked, fsynced).
modelreg's clients are the SDK's `push_files` and `pull` (one stream, then
`--streams` ranged streams; 0 = chosen by size). Upload MB/s excludes the
client hashing the file first (both need the digest). `--baseline-tree`
also measures another checkout of modelreg (its `client/` and `server/`)
with the same file, e.g. the commit before a change. Prints MB/s (10^6
bytes/s), CPU seconds per GB of each side (a download client's from its
request on, without the interpreter's start-up), the server's peak RSS,
and each figure as a ratio to docker-registry's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bench_artifacts as ba
import common  # noqa: F401  (puts tests/ on the module path, for `support`)
from support.ports import free_port
from support.procfs import cpu_seconds

MB = 1_000_000
MIB = 1024 * 1024

OCI_PUSH = """
import hashlib, http.client, json, resource, sys, time, urllib.parse
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
CHUNK = 16 << 20
h = hashlib.sha256()
with open(path, "rb", buffering=0) as f:
    while block := f.read(CHUNK):
        h.update(block)
digest = "sha256:" + h.hexdigest()
conn = http.client.HTTPConnection(host, port)
start = time.perf_counter()
conn.request("POST", "/v2/bench/blobs/uploads/")
r = conn.getresponse(); r.read()
assert r.status == 202, r.status
location = r.getheader("Location")
offset = 0
buf = bytearray(CHUNK)
with open(path, "rb", buffering=0) as f:
    while n := f.readinto(buf):
        url = urllib.parse.urlsplit(location)
        target = url.path + ("?" + url.query if url.query else "")
        conn.request("PATCH", target, body=memoryview(buf)[:n], headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + n - 1}", "Content-Length": str(n)})
        r = conn.getresponse(); r.read()
        assert r.status == 202, r.status
        location = r.getheader("Location")
        offset += n
url = urllib.parse.urlsplit(location)
sep = "&" if url.query else ""
conn.request("PUT", f"{url.path}?{url.query}{sep}digest={digest}", body=b"",
             headers={"Content-Length": "0"})
r = conn.getresponse(); r.read()
assert r.status == 201, r.status
end = time.perf_counter()
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"upload_s": end - start, "digest": digest, "cpu_s": u.ru_utime + u.ru_stime}))
"""

OCI_PULL = """
import hashlib, http.client, json, os, resource, sys, time
host, port, digest, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
CHUNK = 16 << 20
conn = http.client.HTTPConnection(host, port)
u0 = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
conn.request("GET", f"/v2/bench/blobs/{digest}")
r = conn.getresponse()
assert r.status == 200, r.status
h = hashlib.sha256()
buf = bytearray(CHUNK); view = memoryview(buf)
fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
while n := r.readinto(buf):
    h.update(view[:n])
    os.write(fd, view[:n])
os.fsync(fd); os.close(fd)
end = time.perf_counter()
assert "sha256:" + h.hexdigest() == digest
u = resource.getrusage(resource.RUSAGE_SELF)
cpu_s = u.ru_utime + u.ru_stime - u0.ru_utime - u0.ru_stime
print(json.dumps({"total_s": end - start, "cpu_s": cpu_s}))
"""

# modelreg's pull with a stream count, for checkouts whose pull takes one.
PULL = """
import asyncio, inspect, json, resource, sys, time
from modelregistry import RegistryClient, pull

async def main() -> None:
    target, name, dest, streams = sys.argv[1:5]
    kwargs = {"streams": int(streams)} if "streams" in inspect.signature(pull).parameters else {}
    async with RegistryClient(target) as client:
        u0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        result = await pull(client, name, dest, **kwargs)
        end = time.perf_counter()
        u = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = u.ru_utime + u.ru_stime - u0.ru_utime - u0.ru_stime
    print(json.dumps({"total_s": end - start, "cpu_s": cpu_s,
                      "digest": result.digest, "streamed": bool(kwargs)}))

asyncio.run(main())
"""


def registry_binary() -> str:
    for name in ("docker-registry", "registry"):
        if found := shutil.which(name):
            return found
    raise SystemExit("docker-registry not found: apt-get install docker-registry")


@contextmanager
def oci_registry(root: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """docker-registry on a free loopback port, storing under `root`."""
    port = free_port()
    root.mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([registry_binary(), "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("docker-registry did not start") from None
                time.sleep(0.1)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def measure_oci(work: Path, source: Path, size: int) -> dict[str, Any]:
    with oci_registry(work / "oci") as (proc, port), ba.RssSampler(proc.pid) as rss:
        before = cpu_seconds(proc.pid)
        pushed = ba.run_client(OCI_PUSH, "127.0.0.1", str(port), str(source))
        middle = cpu_seconds(proc.pid)
        pulled = ba.run_client(
            OCI_PULL, "127.0.0.1", str(port), pushed["digest"], str(work / "oci-pulled.bin")
        )
        after = cpu_seconds(proc.pid)
    (work / "oci-pulled.bin").unlink()
    shutil.rmtree(work / "oci", ignore_errors=True)
    return {
        "upload": size / pushed["upload_s"] / MB,
        "download": size / pulled["total_s"] / MB,
        "cpu_up": (middle - before, pushed["cpu_s"]),
        "cpu_down": (after - middle, pulled["cpu_s"]),
        "rss": rss.hwm_kb * 1024 / MB,
    }


@contextmanager
def tree_env(tree: Path | None) -> Iterator[None]:
    """Servers and clients started in the block import modelreg from `tree`."""
    old = os.environ.get("PYTHONPATH")
    if tree is not None:
        os.environ["PYTHONPATH"] = f"{tree / 'client'}:{tree / 'server'}"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def measure_modelreg(
    work: Path, source: Path, size: int, streams: int, tree: Path | None, tag: str
) -> dict[str, Any]:
    from modelregistry import SyncRegistryClient
    from support.processes import running

    with tree_env(tree), running(work / f"data-{tag}") as server:
        with SyncRegistryClient(server.address) as registry:
            registry.create_model("bench")
            version = registry.create_model_version("models/bench").name
        with ba.RssSampler(server.pid) as rss:
            before = cpu_seconds(server.pid)
            pushed = ba.run_client(
                ba.PUSH, server.address, version, str(source), str(work / "state"), str(MIB)
            )
            middle = cpu_seconds(server.pid)
            one = ba.run_client(PULL, server.address, version, str(work / f"{tag}-1"), "1")
            after_one = cpu_seconds(server.pid)
            many = ba.run_client(
                PULL, server.address, version, str(work / f"{tag}-n"), str(streams)
            )
            after = cpu_seconds(server.pid)
    for d in (f"{tag}-1", f"{tag}-n", f"data-{tag}"):
        shutil.rmtree(work / d, ignore_errors=True)
    return {
        "upload": size / pushed["upload_s"] / MB,
        "download": size / one["total_s"] / MB,
        "download_n": size / many["total_s"] / MB if many["streamed"] else None,
        "cpu_up": (middle - before, pushed["cpu_s"]),
        "cpu_down": (after_one - middle, one["cpu_s"]),
        "cpu_down_n": (after - after_one, many["cpu_s"]),
        "rss": rss.hwm_kb * 1024 / MB,
    }


def _cpu(pair: tuple[float, float], size: int) -> str:
    gb = size / 1e9
    return f"{pair[0] / gb:4.1f}/{pair[1] / gb:4.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=ba.parse_size, default=512 * MIB, help="e.g. 512M, 1G")
    parser.add_argument("--dir", type=Path, default=None, help="work directory")
    parser.add_argument(
        "--streams", type=int, default=0, help="modelreg's parallel pull (0: by size)"
    )
    parser.add_argument("--baseline-tree", type=Path, default=None, help="another checkout")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    size: int = args.size
    work = Path(tempfile.mkdtemp(prefix="modelreg-oci-bench-", dir=args.dir))
    try:
        source = work / "model.bin"
        ba.generate(source, size)
        print(f"file {size / MB:.0f} MB in {work}; {os.cpu_count()} cores", flush=True)
        rows: dict[str, dict[str, Any]] = {"docker-registry": measure_oci(work, source, size)}
        if args.baseline_tree is not None:
            rows["modelreg (baseline)"] = measure_modelreg(
                work, source, size, args.streams, args.baseline_tree.resolve(), "base"
            )
        rows["modelreg"] = measure_modelreg(work, source, size, args.streams, None, "this")
        print(f"load average {os.getloadavg()[0]:.1f} (figures are noisy on a shared machine)")
        oci = rows["docker-registry"]
        print(
            f"{'':20} {'upload':>8} {'x':>5} {'down 1':>8} {'x':>5} {'down N':>8} {'x':>5}"
            f" {'RSS MB':>7}   CPU-s/GB server/client: up | down 1 | down N"
        )
        for name, r in rows.items():
            n = r.get("download_n")
            print(
                f"{name:20} {r['upload']:8.1f} {r['upload'] / oci['upload']:5.2f}"
                f" {r['download']:8.1f} {r['download'] / oci['download']:5.2f}"
                + (f" {n:8.1f} {n / oci['download']:5.2f}" if n else f" {'-':>8} {'':>5}")
                + f" {r['rss']:7.1f}   {_cpu(r['cpu_up'], size)} | {_cpu(r['cpu_down'], size)}"
                + (f" | {_cpu(r['cpu_down_n'], size)}" if "cpu_down_n" in r else "")
            )
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
