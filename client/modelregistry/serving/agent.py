"""The serving agent: keeps the right model version loaded, off the hot path.

    agent = ServingAgent("registry:50051", alias="models/fraud/aliases/production",
                         instance_id=pod_name, cache_dir="/var/cache/models", load=load_fn)
    await agent.start()
    model = agent.current()   # a local read: no I/O, no registry call

Start-up resolves the alias (stable version, rollout candidate, percent),
picks this instance's version (its cohort is fixed by its id), downloads it
into the local cache (verified, resumable, nothing if cached), loads it and
serves it. Afterwards a watch on the model, with a TTL refresh as fallback,
tells the agent of promotions and rollout steps; a new version is
downloaded and loaded in the background while the old one serves, then one
reference swap makes it live. The old model stays loaded for the grace
period, so a rollback flips back at once without a download. If the
registry is unreachable the loaded model keeps serving; at start-up the
last version this instance served is loaded from the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..client import RegistryClient
from ..errors import RegistryError, RevisionCompactedError
from ..signing import SignatureVerificationError, Trust, verify_pulled
from ..v1 import registry_service_pb2 as rpc
from ..v1 import resources_pb2 as pb
from .cache import MARKER, ArtifactCache
from .cohort import serves_candidate

log = logging.getLogger("modelregistry.serving")

T = TypeVar("T")
Loader = Callable[[Path], "T | Awaitable[T]"]
RUNNING = (pb.Rollout.ACTIVE, pb.Rollout.PAUSED)
STATE_FILE = "agent-state.json"


@dataclass(frozen=True)
class Target:
    """The version this instance should serve, and why."""

    version: str
    digest: str
    via_rollout: str = ""  # the rollout that put this instance on the candidate
    # The alias's running rollout as (stable, candidate) versions, whether or
    # not this instance is in its cohort: how the agent tells a rollout's
    # completion from a rollback once the registry no longer reports it.
    rollout: tuple[str, str] | None = None


@dataclass(frozen=True)
class Loaded(Generic[T]):
    version: str
    digest: str
    path: Path
    model: T
    loaded_at: float


@dataclass(frozen=True)
class AgentStatus:
    live_version: str | None
    live_digest: str | None
    warming_version: str | None
    previous_version: str | None
    previous_release_at: float | None
    last_revision: int
    last_refresh_ok_at: float | None
    last_error: str | None
    flips: int
    downloads: int


def choose(resolved: rpc.ResolveAliasResponse, instance_id: str) -> Target:
    """Stable or candidate for this instance, by the contract's cohort rule."""
    rollout = resolved.rollout if resolved.HasField("rollout") else None
    if (
        rollout is not None
        and rollout.state in RUNNING
        and resolved.HasField("candidate_version")
        and serves_candidate(rollout.name, instance_id, rollout.percent)
    ):
        cand = resolved.candidate_version
        return Target(cand.name, cand.artifact.digest, rollout.name, running(resolved))
    mv = resolved.model_version
    return Target(mv.name, mv.artifact.digest, rollout=running(resolved))


def running(resolved: rpc.ResolveAliasResponse) -> tuple[str, str] | None:
    """(stable, candidate) of the alias's active or paused rollout, if any."""
    if not resolved.HasField("rollout") or resolved.rollout.state not in RUNNING:
        return None
    return resolved.model_version.name, resolved.rollout.candidate_version


def flip_reason(target: Target, last_rollout: tuple[str, str] | None, to_previous: bool) -> str:
    """Why the agent moves to `target`, as `on_transition` reports it:
    `rollout` (this instance joined a rollout's cohort), `rollout_completed`
    (the rollout it last saw finished with its candidate), `rollback` (back to
    the rollout's stable version, or to the model served before), else
    `promotion`. Whether the bytes are still loaded does not change the why."""
    if target.via_rollout:
        return "rollout"
    if last_rollout is not None and target.version == last_rollout[1]:
        return "rollout_completed"
    if to_previous or (last_rollout is not None and target.version == last_rollout[0]):
        return "rollback"
    return "promotion"


class ServingAgent(Generic[T]):
    def __init__(
        self,
        server: str | Sequence[str] | RegistryClient,
        *,
        alias: str,
        instance_id: str,
        cache_dir: str | Path,
        load: Callable[[Path], T | Awaitable[T]],
        unload: Callable[[T], Any] | None = None,
        grace_period: timedelta = timedelta(minutes=20),
        ttl: timedelta = timedelta(seconds=60),
        cache_max_bytes: int | None = None,
        on_transition: Callable[[str, dict[str, Any]], None] | None = None,
        token: str | None = None,
        token_file: str | Path | None = None,
        verify: Trust | None = None,
    ) -> None:
        """`token`/`token_file` (or `$MODELREG_TOKEN`/`$MODELREG_TOKEN_FILE`)
        authenticate the agent's own client; a file is re-read when rotated.
        A fleet needs roles/viewer on the model (files are fetched by digest).
        `server` may list several addresses, nearest first (the region's
        edge, then the primary): the agent reads from the first that
        answers and goes back to the nearest once it is up again.

        With `verify` (keys and chains the fleet trusts), a version is loaded
        only once one of its signatures verifies against the files on disk,
        hashed again; one that does not is never loaded, the old model keeps
        serving and a "rejected" transition reports it."""
        self._own_client = not isinstance(server, RegistryClient)
        self.client = (
            server
            if isinstance(server, RegistryClient)
            else RegistryClient(server, token=token, token_file=token_file)
        )
        self.alias = alias
        self.model_name = alias.split("/aliases/")[0]
        self.instance_id = instance_id
        self.cache = ArtifactCache(Path(cache_dir), cache_max_bytes)
        self._load = load
        self._unload = unload
        self.grace_period = grace_period.total_seconds()
        self.ttl = ttl.total_seconds()
        self._on_transition = on_transition
        self._verify = verify
        self._live: Loaded[T] | None = None
        self._previous: Loaded[T] | None = None
        self._previous_release_at: float | None = None
        self._target: Target | None = None
        self._last_rollout: tuple[str, str] | None = None
        self._warming: tuple[Target, asyncio.Task[None]] | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._revision = 0
        self._last_ok: float | None = None
        self._last_error: str | None = None
        self.flips = 0

    # -- the hot path ---------------------------------------------------------

    def current(self) -> T:
        """The live model: one attribute read."""
        live = self._live
        if live is None:
            raise RuntimeError("ServingAgent.start() has not completed")
        return live.model

    def live(self) -> Loaded[T] | None:
        return self._live

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Resolve, download, verify, load and serve; then keep up to date."""
        try:
            resolved = await self.client.resolve_alias(self.alias)
        except RegistryError as err:
            fallback = self._last_served()
            if fallback is None:
                raise
            self._note_error("resolve failed at start-up; serving the cached version", err)
            await self._activate(fallback, await self._load_target(fallback))
        else:
            self._revision = resolved.revision
            self._last_ok = time.time()
            target = choose(resolved, self.instance_id)
            self._target = target
            self._last_rollout = target.rollout
            await self._activate(target, await self._load_target(target))
        self._tasks = [
            asyncio.create_task(self._watch_loop()),
            asyncio.create_task(self._ttl_loop()),
            asyncio.create_task(self._janitor_loop()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._warming is not None:
            self._warming[1].cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._own_client:
            await self.client.close()

    async def __aenter__(self) -> ServingAgent[T]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def status(self) -> AgentStatus:
        live, prev = self._live, self._previous
        return AgentStatus(
            live_version=live.version if live else None,
            live_digest=live.digest if live else None,
            warming_version=self._warming[0].version if self._warming else None,
            previous_version=prev.version if prev else None,
            previous_release_at=self._previous_release_at,
            last_revision=self._revision,
            last_refresh_ok_at=self._last_ok,
            last_error=self._last_error,
            flips=self.flips,
            downloads=self.cache.downloads,
        )

    # -- keeping up -----------------------------------------------------------

    async def refresh(self) -> None:
        """Resolve the alias now and move towards what it says."""
        resolved = await self.client.resolve_alias(self.alias)
        self._revision = max(self._revision, resolved.revision)
        self._last_ok = time.time()
        await self._reconcile(choose(resolved, self.instance_id))

    async def _reconcile(self, target: Target) -> None:
        async with self._lock:
            self._target = target
            last_rollout, self._last_rollout = self._last_rollout, target.rollout
            live = self._live
            if live is not None and live.digest == target.digest:
                self._cancel_warming()
                return
            prev = self._previous
            reason = flip_reason(
                target,
                target.rollout or last_rollout,
                prev is not None and prev.digest == target.digest,
            )
            if prev is not None and prev.digest == target.digest:
                # Back to the model still loaded from before: swap, no download.
                self._cancel_warming()
                self._flip(prev, reason)
                return
            if self._warming is not None and self._warming[0].digest == target.digest:
                return
            self._cancel_warming()
            task = asyncio.create_task(self._warm(target, reason))
            self._warming = (target, task)

    def _cancel_warming(self) -> None:
        if self._warming is not None:
            self._warming[1].cancel()
            self._warming = None

    async def _warm(self, target: Target, reason: str) -> None:
        self._emit("warming", version=target.version, digest=target.digest)
        try:
            loaded = await self._load_target(target)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._note_error(
                f"could not prepare {target.version}; the old model keeps serving", err
            )
            self._emit("failed", version=target.version, error=type(err).__name__)
            async with self._lock:
                if self._warming is not None and self._warming[0] == target:
                    self._warming = None
            return
        async with self._lock:
            if self._target is None or self._target.digest != target.digest:
                return  # superseded while warming
            self._warming = None
            self._flip(loaded, reason)

    def _flip(self, new: Loaded[T], reason: str) -> None:
        """The one atomic step: a reference swap. The outgoing model stays
        loaded for the grace period."""
        old = self._live
        started = time.perf_counter()
        self._live = new
        flip_us = (time.perf_counter() - started) * 1e6
        if old is not None and old.digest != new.digest:
            if self._previous is not None and self._previous.digest != new.digest:
                self._release(self._previous)
            self._previous = old
            self._previous_release_at = time.time() + self.grace_period
        elif self._previous is not None and self._previous.digest == new.digest:
            self._previous = old
            self._previous_release_at = time.time() + self.grace_period
        self.flips += 1
        self._save_state(new)
        self._emit(
            "live",
            version=new.version,
            digest=new.digest,
            previous=old.version if old else None,
            reason=reason,
            flip_us=round(flip_us, 3),
        )

    async def _activate(self, target: Target, loaded: Loaded[T]) -> None:
        async with self._lock:
            self._flip(loaded, reason="start")

    async def _load_target(self, target: Target) -> Loaded[T]:
        if not target.digest:
            raise RuntimeError(f"{target.version} has no stored artifact to serve")
        path = await self.cache.ensure(self.client, target.version, target.digest)
        if self._verify is not None:
            await self._check_signature(target, path, self._verify)
        result = self._load(path)
        if inspect.isawaitable(result):
            model: T = await result
        else:
            model = result
        return Loaded(target.version, target.digest, path, model, time.time())

    async def _check_signature(self, target: Target, path: Path, trust: Trust) -> None:
        started = time.perf_counter()
        try:
            signer = await verify_pulled(self.client, target.version, path, trust, [MARKER])
        except SignatureVerificationError as err:
            self._emit("rejected", version=target.version, digest=target.digest, error=str(err))
            raise
        self._emit(
            "verified",
            version=target.version,
            signer=signer,
            verify_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def _release(self, old: Loaded[T]) -> None:
        if self._unload is not None:
            try:
                self._unload(old.model)
            except Exception as err:
                self._note_error(f"unload of {old.version} failed", err)
        self._emit("released", version=old.version, digest=old.digest)

    async def _watch_loop(self) -> None:
        while True:
            try:
                stream = self.client.watch(model=self.model_name, start_revision=self._revision + 1)
                async for event in stream:
                    self._revision = max(self._revision, event.revision)
                    if self._concerns_us(event):
                        await self._refresh_logged()
            except asyncio.CancelledError:
                raise
            except RevisionCompactedError as err:
                self._note_error("watch fell behind the log; re-resolving", err)
                await self._refresh_logged()
            except Exception as err:
                self._note_error("watch failed; retrying", err)
                await asyncio.sleep(1.0)

    def _concerns_us(self, event: pb.Event) -> bool:
        if event.resource == self.alias:
            return True
        if event.type.startswith("ROLLOUT_"):
            for doc in (event.after_json, event.before_json):
                if doc and json.loads(doc).get("alias") == self.alias:
                    return True
        return False

    async def _ttl_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl * random.uniform(0.8, 1.2))
            await self._refresh_logged()

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except RegistryError as err:
            self._note_error("refresh failed; the loaded model keeps serving", err)

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, max(self.grace_period / 4, 0.05)))
            async with self._lock:
                prev, due = self._previous, self._previous_release_at
                if prev is not None and due is not None and time.time() >= due:
                    self._previous = None
                    self._previous_release_at = None
                    self._release(prev)
            in_use = {x.digest for x in (self._live, self._previous) if x is not None}
            if self._warming is not None:
                in_use.add(self._warming[0].digest)
            with contextlib.suppress(OSError):
                await self.cache.evict(in_use)

    # -- bookkeeping ----------------------------------------------------------

    def _state_path(self) -> Path:
        return self.cache.root / STATE_FILE

    def _save_state(self, live: Loaded[T]) -> None:
        try:
            self.cache.root.mkdir(parents=True, exist_ok=True)
            tmp = self._state_path().with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": live.version, "digest": live.digest}))
            tmp.replace(self._state_path())
        except OSError as err:
            self._note_error("could not record the live version", err)

    def _last_served(self) -> Target | None:
        try:
            state = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return None
        target = Target(str(state["version"]), str(state["digest"]))
        return target if self.cache.has(target.digest) else None

    def _note_error(self, message: str, err: BaseException) -> None:
        self._last_error = f"{message}: {err}"
        log.warning(message, extra={"alias": self.alias, "error": str(err)})
        self._emit("error", message=message, error=str(err))

    def _emit(self, kind: str, **details: Any) -> None:
        details.setdefault("alias", self.alias)
        details.setdefault("instance_id", self.instance_id)
        log.info("agent %s", kind, extra={"transition": kind, **details})
        if self._on_transition is not None:
            self._on_transition(kind, details)
