"""Chaos soak: mixed load through the SDK while the server is SIGKILLed and
restarted and PostgreSQL is restarted (fast or as a crash) at random moments.

Each worker owns a model and loops over writes (new versions, alias moves,
artifact pushes) and reads (resolve, list events); a watcher follows the log
throughout. Afterwards, on a quiet system:

- every acknowledged write is there (versions, the alias values, READY
  versions with the pushed digest);
- the hash chain verifies from the first event to the head;
- the watcher saw every revision once, in order, across every restart;
- no upload is stuck: a push interrupted by the chaos completes when run again;
- clients recovered on their own: no call failed outside a blip (from its
  start to the server being SERVING again, plus two seconds) where a retry
  would have succeeded.

    .venv/bin/python loadtest/soak.py [--duration 180] [--workers 4] [--seed 1]

CI runs a short form (tests/e2e/test_soak_smoke.py); longer runs by flag.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import common  # noqa: F401  (puts tests/ on the module path, for `support`)
import grpc
from modelregistry import RegistryClient
from modelregistry.errors import RegistryError
from modelregistry.event_chain import verify_events
from modelregistry.v1.error_reasons import ErrorReason
from pg_cluster import PgCluster
from support.processes import ServeProcess

# A call that fails this long after a blip ended (the server SERVING
# again) counts against recovery: the SDK reconnects within about a second.
RECOVERY_GRACE_S = 2.0
AMBIGUOUS = {
    code.name
    for code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    )
}


@dataclass
class Blips:
    """When the system was disturbed: (start, end) on the monotonic clock."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    current: float | None = None

    def excused(self, start: float, end: float) -> bool:
        """A call over [start, end] overlapped a blip (or its grace)."""
        if self.current is not None and end >= self.current:
            return True
        return any(end >= a and start <= b + RECOVERY_GRACE_S for a, b in self.spans)


@dataclass
class Worker:
    """What one worker was told succeeded, and what may have."""

    model: str
    versions: set[str] = field(default_factory=set)
    # alias -> (acknowledged version, versions tried since the acknowledgement)
    aliases: dict[str, tuple[int, set[int]]] = field(default_factory=dict)
    pushed: dict[str, str] = field(default_factory=dict)  # version -> digest
    interrupted: dict[str, Path] = field(default_factory=dict)  # version -> files
    calls: int = 0
    failures: list[str] = field(default_factory=list)  # outside every blip


async def run_worker(w: Worker, address: str, blips: Blips, stop: float, tmp: Path) -> None:
    rng = random.Random(w.model)
    async with RegistryClient(address) as client:
        await _until_ok(lambda: client.create_model(w.model.removeprefix("models/")))
        while time.monotonic() < stop:
            op = rng.choice(["version", "version", "alias", "push", "read", "read", "list"])
            began = time.monotonic()
            w.calls += 1
            try:
                await _one(client, w, op, rng, tmp)
            except RegistryError as err:
                code = err.code.name if err.code else "UNKNOWN"
                if code not in AMBIGUOUS or not blips.excused(began, time.monotonic()):
                    w.failures.append(f"{op}: {code} {err.reason} {err.message[:120]}")
            await asyncio.sleep(rng.uniform(0.01, 0.05))


async def _one(client: RegistryClient, w: Worker, op: str, rng: random.Random, tmp: Path) -> None:
    if op == "version":
        version = await client.create_model_version(w.model, source_uri="s3://soak/run")
        w.versions.add(version.name)
    elif op == "alias" and w.versions:
        alias = f"{w.model}/aliases/a{rng.randrange(3)}"
        target = int(rng.choice(sorted(w.versions)).rsplit("/", 1)[1])
        acked, tried = w.aliases.get(alias, (0, set()))
        w.aliases[alias] = (acked, tried | {target})
        await client.set_alias(alias, target)
        w.aliases[alias] = (target, set())
    elif op == "push":
        version = await client.create_model_version(w.model)
        files = tmp / version.name.replace("/", "_")
        files.mkdir(parents=True)
        (files / "weights.bin").write_bytes(os.urandom(rng.randrange(64 << 10, 3 << 20)))
        w.interrupted[version.name] = files
        ready = await client.push(version.name, files, state_dir=tmp / "push-state")
        w.pushed[version.name] = ready.artifact.digest
        del w.interrupted[version.name]
    elif op == "read" and w.aliases:
        await client.resolve_alias(rng.choice(sorted(w.aliases)))
    else:
        [e async for e in client.list_events(model=w.model, page_size=50)]


async def _until_ok(call: object, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await call()  # type: ignore[operator]
            return
        except RegistryError as err:
            if err.reason == ErrorReason.MODEL_ALREADY_EXISTS:
                return
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@dataclass
class Watched:
    revisions: list[int] = field(default_factory=list)
    moved: asyncio.Event = field(default_factory=asyncio.Event)


async def watch_all(address: str, seen: Watched) -> None:
    async with RegistryClient(address) as client:
        async for event in client.watch(start_revision=1):
            seen.revisions.append(event.revision)
            seen.moved.set()


async def chaos(server: ServeProcess, pg: PgCluster, blips: Blips, stop: float, seed: int) -> int:
    rng = random.Random(seed)
    count = 0
    while True:
        await asyncio.sleep(rng.uniform(3.0, 8.0))
        if time.monotonic() >= stop - 5:
            return count
        action = rng.choice(["kill server", "restart postgres", "crash postgres", "both"])
        blips.current = time.monotonic()
        print(f"  chaos: {action}", flush=True)
        if action in ("kill server", "both"):
            server.kill()
        if action in ("restart postgres", "both"):
            await asyncio.to_thread(pg.restart, "fast")
        if action == "crash postgres":
            await asyncio.to_thread(pg.restart, "immediate")
        if action in ("kill server", "both"):
            await asyncio.to_thread(server.start)
        else:
            await asyncio.to_thread(server.wait_serving)
        blips.spans.append((blips.current, time.monotonic()))
        blips.current = None
        count += 1


async def check(address: str, workers: list[Worker], watched: Watched, tmp: Path) -> list[str]:
    problems: list[str] = []
    async with RegistryClient(address) as client:
        for w in workers:
            for name in sorted(w.versions):
                await client.get_model_version(name)  # NOT_FOUND raises
            for alias, (acked, tried) in w.aliases.items():
                if not acked and not tried:
                    continue
                got = (await client.resolve_alias(alias)).model_version.version
                if got not in {acked, *tried}:
                    problems.append(f"{alias} is {got}, acknowledged {acked}, tried {tried}")
            for name, digest in w.pushed.items():
                version = await client.get_model_version(name)
                if version.artifact.digest != digest:
                    problems.append(f"{name} lost its artifact {digest}")
            for name, files in w.interrupted.items():  # no upload is stuck
                ready = await client.push(name, files, state_dir=tmp / "push-state")
                if not ready.artifact.digest:
                    problems.append(f"{name}: an interrupted push did not complete")
        report = await verify_events(client.list_events(page_size=1000))
        if report.broken_at or report.first_revision != 1:
            problems.append(f"hash chain: {report.reason or 'does not start at 1'}")
        head = report.last_revision
    seen = watched.revisions
    async with asyncio.timeout(30):
        while not seen or seen[-1] < head:
            watched.moved.clear()
            await watched.moved.wait()
    if seen != list(range(1, len(seen) + 1)) or seen[-1] < head:
        problems.append(f"watcher: {len(seen)} events, last {seen[-1:]} of head {head}")
    return problems


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="modelreg-soak-"))
    with PgCluster() as pg:
        server = ServeProcess(tmp / "data", database_url=pg.url, own_session=True)
        server.start()
        try:
            blips = Blips()
            stop = time.monotonic() + args.duration
            workers = [Worker(f"models/soak-{i}") for i in range(args.workers)]
            watched = Watched()
            watcher = asyncio.create_task(watch_all(server.address, watched))
            chaos_task = asyncio.create_task(chaos(server, pg, blips, stop, args.seed))
            await asyncio.gather(
                *(run_worker(w, server.address, blips, stop, tmp) for w in workers)
            )
            disruptions = await chaos_task
            problems = await check(server.address, workers, watched, tmp)
            watcher.cancel()
        finally:
            server.stop()
    calls = sum(w.calls for w in workers)
    failures = [f for w in workers for f in w.failures]
    print(f"soak: {args.duration:.0f} s, {args.workers} workers, {calls} calls, "
          f"{disruptions} disruptions, {len(watched.revisions)} events watched")  # fmt: skip
    print(f"acknowledged: {sum(len(w.versions) for w in workers)} versions, "
          f"{sum(len(w.pushed) for w in workers)} pushes, "
          f"{sum(len(w.aliases) for w in workers)} aliases")  # fmt: skip
    for line in [*problems, *(f"failed outside a blip: {f}" for f in failures)][:40]:
        print(f"  {line}")
    ok = not problems and not failures
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
