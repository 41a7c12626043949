"""The disaster-recovery drill: build a registry, back it up, destroy it,
restore it, and time the way back.

1. `modelreg serve` on a fresh PostgreSQL database (or SQLite) and a local
   blob directory; the seed's fleet with `--artifact-kib` per artifact.
2. Record what a user can see: every model, version (with etag and
   artifact digest), alias, and the event log's head.
3. `modelreg admin backup` into a backup directory.
4. Stop the server, drop the database, delete the data directory (blobs
   included): "destroyed".
5. `modelreg admin restore` into the same places, start the server, and
   check through the API that every model, version, alias and event is as
   recorded, that the event chain verifies up to the recorded head
   (`modelreg events verify --expect`), and that every artifact downloads
   and verifies: "serving and verified".

Prints the time from "destroyed" to "serving and verified", the seed's
recovery objective being 15 minutes.

    scripts/dr_drill.sh [--database postgresql|sqlite] [--models 500] [--artifact-kib 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import Fleet
from modelregistry import RegistryClient
from seed import add_fleet_arguments, fleet_from, seed
from support.postgres import PG_SERVER, fresh_database, libpq_dsn
from support.processes import ServeProcess, modelreg

PULLS_AT_ONCE = 8


async def capture(address: str) -> dict[str, Any]:
    """Everything a user can read about the registry's state, as plain values."""
    async with RegistryClient(address) as client:
        models = [(m.name, m.etag, m.latest_version) async for m in client.list_models()]
        versions: list[tuple[str, int, str, str]] = []
        aliases: list[tuple[str, str, str]] = []
        for name, _, _ in models:
            versions += [
                (v.name, v.state, v.artifact.digest, v.etag)
                async for v in client.list_model_versions(name)
            ]
            aliases += [(a.name, a.version, a.etag) async for a in client.list_aliases(name)]
        events = [(e.revision, e.hash) async for e in client.list_events(page_size=1000)]
    return {"models": models, "versions": versions, "aliases": aliases, "events": events}


async def pull_all(address: str, versions: list[str], scratch: Path) -> None:
    """Download every artifact through the server; the client verifies each file."""
    queue = list(versions)

    async def worker(n: int) -> None:
        async with RegistryClient(address) as client:
            while queue:
                name = queue.pop()
                target = scratch / f"{n}"
                await client.pull(name, target)
                await asyncio.to_thread(shutil.rmtree, target)

    await asyncio.gather(*(worker(n) for n in range(PULLS_AT_ONCE)))


def run_ok(*args: str, timeout: float = 3600) -> str:
    done = modelreg(*args, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"modelreg {' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(libpq_dsn(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database(kind: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / 'data' / 'registry.db'}"
        return
    with fresh_database(PG_SERVER, prefix="modelreg_drill") as url:
        yield url


def drill(fleet: Fleet, kind: str, work: Path) -> float:
    data = work / "data"
    dest = work / "backup"
    with database(kind, work) as url:
        storage = ["--data-dir", str(data), "--database-url", url]
        server = ServeProcess(data, "--database-url", url)
        server.start()
        try:
            started = time.perf_counter()
            asyncio.run(seed(server.address, fleet, quiet=True))
            seeded = time.perf_counter() - started
            expected = asyncio.run(capture(server.address))
            head = f"{expected['events'][-1][0]}:{expected['events'][-1][1]}"
        finally:
            server.stop()
        blob_bytes = sum(p.stat().st_size for p in (data / "blobs").rglob("*") if p.is_file())
        print(
            f"seeded {len(expected['models'])} models, {len(expected['versions'])} versions,"
            f" {len(expected['aliases'])} aliases, {len(expected['events'])} events,"
            f" {blob_bytes / 2**20:.0f} MiB of blobs in {seeded:.0f} s"
        )
        started = time.perf_counter()
        print(run_ok("admin", "backup", str(dest), *storage).rstrip())
        print(f"backup: {time.perf_counter() - started:.1f} s")

        if kind == "postgresql":
            drop_database(url)
        shutil.rmtree(data)
        destroyed = time.perf_counter()
        print("destroyed: database and data directory (blobs included) gone")

        print(run_ok("admin", "restore", str(dest), *storage).rstrip())
        restored = time.perf_counter()
        server = ServeProcess(data, "--database-url", url)
        server.start()
        try:
            serving = time.perf_counter()
            seen = asyncio.run(capture(server.address))
            for part in ("models", "versions", "aliases", "events"):
                if seen[part] != expected[part]:
                    sys.exit(f"restored {part} differ from the recorded ones")
            verified = modelreg("--server", server.address, "events", "verify", "--expect", head)
            if verified.returncode != 0:
                sys.exit(f"event chain does not verify:\n{verified.stdout}{verified.stderr}")
            print(verified.stdout.splitlines()[0])
            artifacts = [name for name, _, digest, _ in expected["versions"] if digest]
            with tempfile.TemporaryDirectory(dir=work) as scratch:
                asyncio.run(pull_all(server.address, artifacts, Path(scratch)))
            done = time.perf_counter()
        finally:
            server.stop()
        print(
            f"checked {len(seen['models'])} models, {len(seen['versions'])} versions,"
            f" {len(seen['aliases'])} aliases, {len(seen['events'])} events;"
            f" downloaded and verified {len(artifacts)} artifacts"
        )
        print(
            f"restore {restored - destroyed:.1f} s, start {serving - restored:.1f} s,"
            f" verify {done - serving:.1f} s"
        )
        total = done - destroyed
        print(f"destroyed -> serving and verified: {total:.1f} s (objective: 900 s)")
        return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    add_fleet_arguments(ap)
    ap.set_defaults(artifact_kib=4096)
    ns = ap.parse_args()
    fleet = fleet_from(ns)
    work = ns.work or Path(tempfile.mkdtemp(prefix="modelreg-drill-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        drill(fleet, ns.database, work)
    finally:
        if ns.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
