"""Signed-model benchmark: server-side attach-and-verify, and the serving
agent's added time per flip when it verifies what it loads.

Starts `modelreg serve` (PostgreSQL by default, `--sqlite` for the embedded
default) and prints, each beside its baseline measured in the same run:

- attach: AttachSignature of a fresh bundle (a new ECDSA signature each
  time, so every call verifies in full) for a version of `--files` files,
  against the same for a 1-file version and against GetModelVersion (one
  round trip that reads the version). The server reads the manifest, never
  the files: the figure does not depend on the files' size.
- agent: a ServingAgent flip to a version of `--agent-mib` MiB whose files
  are already in its cache, with `verify=` (the files are hashed again and
  checked against the signature) and without; the difference is what
  verification adds to a flip. Raw sha256 over the same bytes is shown as
  the floor.

    .venv/bin/python loadtest/bench_signatures.py [--files 1000] [--attaches 20]
        [--agent-mib 1024] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts tests/ on the path for `support`)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from modelregistry import RegistryClient, push
from modelregistry.manifest import sha256_file
from modelregistry.serving import ServingAgent
from modelregistry.signing import Trust, sign_files
from support.postgres import fresh_database
from support.processes import running

PROD = "models/bench-signed/aliases/production"


def keypair(work: Path) -> tuple[Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = work / "bench.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (work / "bench.pub").write_bytes(public)
    return private, public.decode()


async def pushed(client: RegistryClient, work: Path, files: dict[str, bytes]) -> tuple[str, Path]:
    version = await client.create_model_version("models/bench-signed")
    src = work / f"v{version.version}"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    await push(client, version.name, src, state_dir=work / "push-state")
    return version.name, src


def listing(files: dict[str, bytes]) -> list[tuple[str, str]]:
    return sorted((rel, hashlib.sha256(data).hexdigest()) for rel, data in files.items())


def summary(label: str, ms: list[float]) -> str:
    return (
        f"{label:44s} median {statistics.median(ms):8.2f} ms  min {min(ms):8.2f}"
        f"  max {max(ms):8.2f}  (n={len(ms)})"
    )


async def bench_attach(
    client: RegistryClient, work: Path, key: Path, n_files: int, attaches: int
) -> None:
    many = {f"layer-{i:04d}/weights.bin": os.urandom(64) for i in range(n_files)}
    one = {"weights.bin": os.urandom(64)}
    big, _ = await pushed(client, work, many)
    small, _ = await pushed(client, work, one)
    for name, files in ((big, many), (small, one)):
        await client.attach_signature(name, sign_files(listing(files), key))  # warm up
    results: dict[str, list[float]] = {"get": [], big: [], small: []}
    for _ in range(attaches):
        started = time.perf_counter()
        await client.get_model_version(big)
        results["get"].append((time.perf_counter() - started) * 1000)
        for name, files in ((big, many), (small, one)):
            bundle = await asyncio.to_thread(sign_files, listing(files), key)
            started = time.perf_counter()
            await client.attach_signature(name, bundle)
            results[name].append((time.perf_counter() - started) * 1000)
    bundle_kib = len(sign_files(listing(many), key)) / 1024
    print(summary("baseline: GetModelVersion", results["get"]))
    print(summary("baseline: AttachSignature, 1-file model", results[small]))
    print(summary(f"AttachSignature, {n_files}-file model", results[big]))
    ratio = statistics.median(results[big]) / statistics.median(results[small])
    print(f"  bundle {bundle_kib:.0f} KiB; {n_files} files / 1 file: x{ratio:.1f}")


async def flip_ms(
    client: RegistryClient, work: Path, versions: tuple[str, str], verify: Trust | None
) -> tuple[list[float], list[float]]:
    """Flips back and forth between two cached versions, each time from a
    fresh agent state (nothing resident): (flip times, verify times)."""
    a, b = versions
    cache = work / "agent-cache"
    times: list[float] = []
    verify_ms: list[float] = []
    live: dict[str, float] = {}
    verified: list[float] = []

    def on(kind: str, details: dict[str, Any]) -> None:
        if kind == "live":
            live[details["version"]] = time.perf_counter()
        if kind == "verified":
            verified.append(details["verify_ms"])

    for target in (b, a, b):
        await client.set_alias(PROD, a if target == b else b)
        live.clear()

        agent = ServingAgent(
            client,
            alias=PROD,
            instance_id="pod-0",
            cache_dir=cache,
            load=lambda p: p,
            ttl=timedelta(minutes=10),
            on_transition=on,
            verify=verify,
        )
        async with agent:
            verified.clear()
            started = time.perf_counter()
            await client.set_alias(PROD, target)
            deadline = started + 600
            while target not in live:
                if time.perf_counter() > deadline:
                    raise RuntimeError("the agent did not flip in 600 s")
                await asyncio.sleep(0.002)
            times.append((live[target] - started) * 1000)
            verify_ms.extend(verified)
    return times, verify_ms


async def bench_agent(client: RegistryClient, work: Path, key: Path, mib: int) -> None:
    versions = []
    for label in (b"a", b"b"):
        data = os.urandom(1024 * 1024) * mib + label
        files = {"weights.bin": data, "config.json": b"{}"}
        name, src = await pushed(client, work, files)
        await client.attach_signature(name, sign_files(listing(files), key))
        versions.append((name, src))
    names = (versions[0][0], versions[1][0])
    trust = Trust.from_key_files(work / "bench.pub")
    # Fill the cache (and the page cache) with both versions first.
    await flip_ms(client, work, names, None)
    plain, _ = await flip_ms(client, work, names, None)
    checked, verify_ms = await flip_ms(client, work, names, trust)
    started = time.perf_counter()
    await asyncio.to_thread(sha256_file, versions[0][1] / "weights.bin")
    raw = (time.perf_counter() - started) * 1000
    print(summary(f"baseline: agent flip, {mib} MiB cached, no verify", plain))
    print(summary(f"agent flip, {mib} MiB cached, verify=", checked))
    added = statistics.median(checked) - statistics.median(plain)
    ratio = statistics.median(checked) / statistics.median(plain)
    print(
        f"  added per flip: {added:.0f} ms (x{ratio:.1f});"
        f" verification alone {statistics.median(verify_ms):.0f} ms;"
        f" raw sha256 of the same bytes {raw:.0f} ms"
    )


async def run(address: str, n_files: int, attaches: int, mib: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="modelreg-bench-sign-"))
    key, public = keypair(work)
    async with RegistryClient(address, timeout=120) as client:
        await client.create_model("bench-signed")
        await client.update_trust_policy("bench-signed", trusted_keys=[public])
        await bench_attach(client, work, key, n_files, attaches)
        if mib > 0:
            await bench_agent(client, work, key, mib)


@contextlib.contextmanager
def database(sqlite: bool) -> Iterator[str | None]:
    if sqlite:
        yield None
    else:
        with fresh_database(prefix="modelreg_bench_sign") as url:
            yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="files of the signed model")
    parser.add_argument("--attaches", type=int, default=20, help="at most 30")
    parser.add_argument("--agent-mib", type=int, default=1024, help="0 skips the agent part")
    parser.add_argument("--sqlite", action="store_true", help="embedded default database")
    opts = parser.parse_args()
    with database(opts.sqlite) as url, running(database_url=url, own_session=True) as server:
        print(f"server {server.address} on {'SQLite' if url is None else 'PostgreSQL'}")
        asyncio.run(run(server.address, opts.files, min(opts.attaches, 30), opts.agent_mib))


if __name__ == "__main__":
    main()
