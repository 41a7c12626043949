"""The narrow interfaces the service layer and the event machinery need from
storage: the registry store, the upload sessions, the event log and the relay
cursors. Nothing above the store names a concrete class; the server's wiring
alone builds them.

One SQL implementation of each serves PostgreSQL and SQLite; the conformance
suite in tests/server/store runs against both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ..domain.etags import Etag
from ..domain.events import Event
from ..domain.filters import Filter
from ..domain.names import AliasName, ModelName, RolloutName, VersionName
from ..domain.quotas import UploadLimits
from ..domain.resources import (
    Alias,
    Artifact,
    Model,
    ModelFields,
    ModelVersion,
    Page,
    Resolution,
    Rollout,
    UploadRecord,
    VersionFields,
)


class RegistryStore(Protocol):
    async def ping(self) -> None:
        """Raise Unavailable unless the database answers."""

    async def close(self) -> None: ...

    async def get_or_create_setting(self, key: str, create: Callable[[], bytes]) -> bytes:
        """The setting's value; the first caller on any replica creates it."""

    async def create_model(self, name: ModelName, fields: ModelFields) -> Model: ...

    async def get_model(self, name: ModelName) -> Model: ...

    async def list_models(
        self, flt: Filter, after: str | None, limit: int, only: frozenset[str] | None = None
    ) -> Page[Model]:
        """Models in name order, strictly after `after`; only those in `only`
        (the ones the caller may see) unless it is None."""

    async def update_model(
        self, name: ModelName, fields: ModelFields, paths: frozenset[str], etag: Etag | None
    ) -> Model: ...

    async def delete_model(self, name: ModelName, etag: Etag | None, force: bool) -> None: ...

    async def create_version(self, parent: ModelName, fields: VersionFields) -> ModelVersion:
        """Allocate the next number under a lock on the model row, insert."""

    async def get_version(self, name: VersionName) -> ModelVersion: ...

    async def list_versions(
        self, parent: ModelName, flt: Filter, before: int | None, limit: int
    ) -> Page[ModelVersion]:
        """Versions newest first, strictly older than `before`."""

    async def update_version(
        self, name: VersionName, fields: VersionFields, paths: frozenset[str], etag: Etag | None
    ) -> ModelVersion: ...

    async def delete_version(self, name: VersionName, etag: Etag | None, force: bool) -> None: ...

    async def set_alias(self, name: AliasName, version: int, etag: Etag | None) -> Alias:
        """Compare-and-set when `etag` is given, upsert otherwise."""

    async def get_alias(self, name: AliasName) -> Alias: ...

    async def list_aliases(
        self, parent: ModelName, after: str | None, limit: int
    ) -> Page[Alias]: ...

    async def delete_alias(self, name: AliasName, etag: Etag | None) -> None: ...

    async def batch_set_aliases(
        self, parent: ModelName, moves: list[tuple[AliasName, int, Etag | None]]
    ) -> list[Alias]:
        """All or nothing, in one transaction."""

    async def review_version(
        self, name: VersionName, approve: bool, comment: str, etag: Etag | None
    ) -> ModelVersion: ...

    async def resolve_alias(self, name: AliasName) -> Resolution: ...

    async def start_rollout(
        self,
        alias: AliasName,
        candidate: VersionName,
        steps: tuple[int, ...],
        alias_etag: Etag | None,
    ) -> Rollout: ...

    async def get_rollout(self, name: RolloutName) -> Rollout: ...

    async def list_rollouts(
        self, parent: ModelName, active_only: bool, before_id: int | None, limit: int
    ) -> tuple[Page[Rollout], int | None]:
        """Newest first; also the cursor (row id) after the page, if more."""

    async def advance_rollout(
        self, name: RolloutName, etag: Etag | None, percent: int
    ) -> Rollout: ...

    async def pause_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout: ...

    async def resume_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout: ...

    async def rollback_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout: ...


class UploadStore(Protocol):
    """Resumable upload sessions; the staged bytes live in the blob store."""

    async def create_upload(
        self,
        upload_id: str,
        version: VersionName | None,
        size_bytes: int,
        digest: str | None,
        media_type: str,
        ttl_us: int,
        *,
        model: ModelName | None = None,
        principal: str = "",
        limits: UploadLimits = ...,
    ) -> UploadRecord:
        """A session for `version`, which must be PENDING_UPLOAD (or none),
        counted against its model (or `model` for a blob upload) and
        `principal`: QUOTA_EXCEEDED or TOO_MANY_OPEN_UPLOADS if it does not fit."""

    async def get_upload(self, upload_id: str) -> UploadRecord:
        """The live session; NOT_FOUND once expired, cancelled or finished."""

    async def touch_upload(self, upload_id: str, ttl_us: int) -> None:
        """Progress extends the deadline: only idle uploads expire."""

    async def finish_upload(
        self,
        upload_id: str,
        artifact: Artifact,
        files: tuple[tuple[str, int], ...] = (),
        hold_deadline_us: int | None = None,
    ) -> ModelVersion | None:
        """End the session and, in the same transaction, make its version READY
        with `artifact` (None: the upload targets no version), recording that
        it references the artifact and `files` (digest and size of each file
        its manifest lists). `hold_deadline_us`: the blobs were claimed (see
        gc_sql) and the claims are trusted only until then (BLOB_COLLECTED)."""

    async def delete_upload(self, upload_id: str) -> bool:
        """Whether there was a session to delete."""

    async def expired_uploads(self, limit: int = 100) -> list[str]: ...


class GcStore(Protocol):
    """Blob references and claims, for garbage collection (see gc_sql)."""

    async def referenced_digests(self) -> set[str]:
        """Every digest some reference source names now (the mark phase)."""

    async def delete_if_unreferenced(
        self, digest: str, delete_blob: Callable[[str], Awaitable[bool]]
    ) -> bool | None:
        """Under the digest's lock: recheck, delete. True deleted, False
        already gone, None kept (referenced again)."""

    async def delete_unreferenced(
        self, digests: list[str], delete_blob: Callable[[str], Awaitable[bool]]
    ) -> dict[str, bool]:
        """The same for a batch in one transaction: {digest: deleted (True)
        or already gone (False)}; digests left out were kept."""

    async def hold(self, digests: Iterable[str], ttl_us: int) -> None:
        """Claim blobs for a while; waits for a sweep of any of them to end."""

    async def drop_expired_leases(self) -> int: ...

    async def incomplete_versions(self, limit: int = 500) -> list[tuple[int, str]]:
        """(version id, manifest digest) of versions whose file refs may be missing."""

    async def complete_version(self, version_id: int, refs: Iterable[tuple[str, int]]) -> None:
        """Add the file references read from its manifest; mark it complete."""


class EventLog(Protocol):
    """The log of every change, appended by the writes themselves."""

    async def head(self) -> tuple[int, int]:
        """(newest revision, newest compacted revision)."""

    async def read(
        self,
        after: int,
        limit: int,
        model: str = "",
        resource: str = "",
        types: frozenset[str] = frozenset(),
        start_time_us: int = 0,
        end_time_us: int = 0,
        upto: int | None = None,
        models: frozenset[str] | None = None,
        max_bytes: int = ...,
    ) -> Page[Event]:
        """Events with revision > `after` (and <= `upto`), in order: at most
        `limit`, and past the first at most `max_bytes` of resource JSON;
        OUT_OF_RANGE if `after` is before what compaction kept. `models`:
        only events of these models (ids; None: every event)."""

    async def last_event_before(self, resource: str, time_us: int) -> Event | None:
        """The latest event of `resource` committed at or before `time_us`."""

    async def compact(self, before_time_us: int) -> int:
        """Drop events older than `before_time_us`, but none a queue relay
        still owes; returns the new compacted revision."""

    async def append_checkpoint(self, sign: Callable[[int, str], str]) -> int | None:
        """Append a CHECKPOINT event signing the head (`sign(revision, hash)`
        is its after_json); None when the head already is one."""


class RelayLeadership(Protocol):
    """A session on which one replica at a time may lead a relay."""

    async def try_lead(self, name: str) -> bool:
        """Take the lead for relay `name` without waiting."""

    async def still_leading(self) -> None:
        """Raise if the session, and with it the lead, is gone."""


class RelayCursors(Protocol):
    """How far each outbox relay has published the event log."""

    async def get(self, name: str) -> int:
        """The persisted cursor of relay `name` (0: it never published)."""

    async def advance(self, name: str, revision: int) -> None:
        """Move the cursor forward to `revision`; never backwards."""

    async def event(self, revision: int) -> Event | None:
        """One event by revision (None if absent or compacted)."""

    def leadership(self) -> AbstractAsyncContextManager[RelayLeadership | None]:
        """A session for electing one publishing replica; None where the
        database serves one process only, so there is nothing to elect."""


class CommitHooks(Protocol):
    """A store that says when its write transactions have committed."""

    def on_commit(self, hook: Callable[[], None]) -> None: ...
