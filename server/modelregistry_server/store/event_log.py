"""The event log in SQL: appending inside a change's transaction, and reading.

Appends lock the single `event_log_head` row, so revisions are handed out
and committed in the same order; on PostgreSQL each append also queues a
NOTIFY (delivered at commit) so other replicas wake at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import Integer, and_, bindparam, delete, func, insert, select, text, true, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement, Select

from ..domain import errors
from ..domain.events import (
    CHECKPOINT_RESOURCE,
    MAX_EVENT_BYTES,
    Event,
    EventType,
    canonical_json,
    chain_hash,
)
from ..domain.names import ModelName
from ..domain.request_context import current_actor
from ..domain.resources import Page
from .tables import C, E, H, event_log_head, events
from .transactions import SqlBase, appended, now_us, touch

NOTIFY_CHANNEL = "modelreg_events"
# A read returns at most this many bytes of resource JSON (and at least one
# event), whatever its row limit: a page of the largest events at the
# largest page size would otherwise be hundreds of megabytes in memory.
READ_MAX_BYTES = 4 * 1024 * 1024


# A read's optional conditions, by the parameter that carries the value.
_CONDITIONS: dict[str, Callable[[], ColumnElement[bool]]] = {
    "upto": lambda: E.revision <= bindparam("upto"),
    "model": lambda: E.model == bindparam("model"),
    "resource": lambda: E.resource == bindparam("resource"),
    "models": lambda: E.model.in_(bindparam("models", expanding=True)),
    "types": lambda: E.type.in_(bindparam("types", expanding=True)),
    "start_us": lambda: E.time_us >= bindparam("start_us"),
    "end_us": lambda: E.time_us < bindparam("end_us"),
}


@functools.lru_cache(maxsize=128)
def _read_statement(given: frozenset[str]) -> Select[Any]:
    """The query of `SqlEventLog.read` with the conditions whose parameters
    are `given`, built once: building it (a windowed subquery) cost more
    server time than running it, and the watch hub runs it after every
    commit."""
    conditions = [E.revision > bindparam("after")]
    conditions += [make() for name, make in _CONDITIONS.items() if name in given]
    # Bytes of JSON up to and including each row, so the database stops
    # where the budget runs out instead of handing over `limit` rows of any size.
    size = func.length(E.before_json) + func.length(E.after_json)
    ranked = (
        select(events, func.sum(size).over(order_by=E.revision).label("upto_bytes"))
        .where(and_(true(), *conditions))
        .order_by(E.revision)
        .limit(bindparam("limit", type_=Integer))
        .subquery()
    )
    own = func.length(ranked.c.before_json) + func.length(ranked.c.after_json)
    return (
        select(ranked)
        .where(ranked.c.upto_bytes - own < bindparam("max_bytes", type_=Integer))
        .order_by(ranked.c.revision)
    )


class EventTooLarge(Exception):
    """An event over MAX_EVENT_BYTES: the field limits failed to bound it.
    A server fault (INTERNAL); the write's transaction rolls back."""


async def append_event(
    conn: AsyncConnection,
    type_: EventType,
    model: ModelName | None,
    resource: str,
    before: Any,
    after: Any,
) -> int:
    """Write one event in the caller's transaction; returns its revision.
    `model` is None for changes to the registry itself (its policy, tokens)."""
    model_text = str(model) if model is not None else ""
    if model_text:
        touch(model_text)
    revision = await _append(
        conn, type_, model_text, resource, canonical_json(before), canonical_json(after)
    )
    appended(revision)
    return revision


async def _append(
    conn: AsyncConnection,
    type_: EventType,
    model: str,
    resource: str,
    before_json: str,
    after_json: str,
) -> int:
    now = now_us()
    actor = current_actor()[:512]
    size = sum(
        len(part.encode()) for part in (type_.value, resource, actor, before_json, after_json)
    )
    if size > MAX_EVENT_BYTES:
        raise EventTooLarge(f"{type_.value} of {resource[:200]}: {size} bytes")
    values = {
        "type": type_.value,
        "resource": resource,
        "model": model,
        "actor": actor,
        "time_us": now,
        "before_json": before_json,
        "after_json": after_json,
    }
    if conn.dialect.name == "postgresql" and await _utf8(conn):
        # One round trip: the head moves (its row lock orders appends), the
        # hash is computed from the head's previous hash by the same UPDATE,
        # the row is inserted, and other replicas are woken at commit.
        row = (
            await conn.execute(
                _APPEND_PG, {**values, "time_text": str(now), "channel": NOTIFY_CHANNEL}
            )
        ).one()
        return int(row.revision)
    head = (await conn.execute(select(H.revision, H.hash).where(H.id == 1).with_for_update())).one()
    revision = head.revision + 1
    digest = chain_hash(
        revision, type_.value, resource, model, actor, now, before_json, after_json, head.hash
    )
    await conn.execute(
        insert(events).values(revision=revision, prev_hash=head.hash, hash=digest, **values)
    )
    await conn.execute(
        update(event_log_head)
        .where(H.id == 1)
        .values(revision=revision, hash=digest, prev_hash=head.hash)
    )
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, str(revision))))
    return int(revision)


async def _utf8(conn: AsyncConnection) -> bool:
    """Whether the database hashes text as the chain expects (UTF-8 bytes)."""
    cached = conn.info.get("modelreg_utf8")
    if cached is None:
        encoding = (
            await conn.execute(
                text(
                    "SELECT pg_encoding_to_char(encoding) FROM pg_database "
                    "WHERE datname = current_database()"
                )
            )
        ).scalar()
        cached = conn.info["modelreg_utf8"] = encoding == "UTF8"
    return bool(cached)


# The same text as domain.events.chain_hash: the fields joined by newlines,
# the previous hash last. In SET, `hash` and `revision` are the old values.
_APPEND_PG = text(
    """
    WITH head AS (
        UPDATE event_log_head
        SET revision = revision + 1,
            prev_hash = hash,
            hash = encode(sha256(convert_to(
                (revision + 1)::text || E'\\n' || :type || E'\\n' || :resource || E'\\n'
                || :model || E'\\n' || :actor || E'\\n' || :time_text || E'\\n'
                || :before_json || E'\\n' || :after_json || E'\\n' || hash, 'UTF8')), 'hex')
        WHERE id = 1
        RETURNING revision, prev_hash, hash
    ), appended AS (
        INSERT INTO events (revision, type, resource, model, actor, time_us,
                            before_json, after_json, prev_hash, hash)
        SELECT revision, :type, :resource, :model, :actor, :time_us,
               :before_json, :after_json, prev_hash, hash
        FROM head
        RETURNING revision
    )
    SELECT revision, pg_notify(:channel, revision::text) FROM appended
    """
)


def to_event(row: Row[Any]) -> Event:
    return Event(
        revision=row.revision,
        type=row.type,
        resource=row.resource,
        model=row.model,
        actor=row.actor,
        time_us=row.time_us,
        before_json=row.before_json,
        after_json=row.after_json,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def compacted(oldest: int) -> errors.OutOfRange:
    return errors.OutOfRange(
        ErrorReason.REVISION_COMPACTED,
        f"events before revision {oldest} have been compacted; re-list and resume from there",
        {ErrorMetadataKey.OLDEST_REVISION: str(oldest)},
    )


class SqlEventLog(SqlBase):
    async def append_checkpoint(self, sign: Callable[[int, str], str]) -> int | None:
        """Append a CHECKPOINT event of the head as it stands: its
        `after_json` is `sign(revision, hash)`. Nothing when the head is
        already a checkpoint (an idle log is signed once, not forever)."""
        async with self._tx("append_checkpoint", write=True) as conn:
            head = (
                await conn.execute(select(H.revision, H.hash).where(H.id == 1).with_for_update())
            ).one()
            if head.revision == 0:
                return None
            last = (await conn.execute(select(E.type).where(E.revision == head.revision))).scalar()
            if last == EventType.CHECKPOINT.value:
                return None
            statement = sign(int(head.revision), str(head.hash))
            return await _append(conn, EventType.CHECKPOINT, "", CHECKPOINT_RESOURCE, "", statement)

    async def head(self) -> tuple[int, int]:
        """(newest revision, newest compacted revision)."""
        async with self._tx("event_head") as conn:
            row = (await conn.execute(select(H.revision, H.compacted_revision))).one()
        return int(row.revision), int(row.compacted_revision)

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
        max_bytes: int = READ_MAX_BYTES,
    ) -> Page[Event]:
        """Events with revision > `after` (and <= `upto`), in order: at most
        `limit` of them and, past the first, at most `max_bytes` of JSON."""
        async with self._tx("read_events") as conn:
            head = (await conn.execute(select(H.compacted_revision))).one()
            if after < head.compacted_revision:
                raise compacted(head.compacted_revision + 1)
            optional = {
                "upto": upto,
                "model": model or None,
                "resource": resource or None,
                "models": None if models is None else sorted(f"models/{m}" for m in models),
                "types": sorted(types) or None,
                "start_us": start_time_us or None,
                "end_us": end_time_us or None,
            }
            given = {name: value for name, value in optional.items() if value is not None}
            params = {"after": after, "limit": limit + 1, "max_bytes": max_bytes, **given}
            rows = (await conn.execute(_read_statement(frozenset(given)), params)).all()
        # A read cut short by bytes says "more": at worst the next one is empty.
        cut = bool(rows) and rows[-1].upto_bytes >= max_bytes
        return Page([to_event(r) for r in rows[:limit]], more=len(rows) > limit or cut)

    async def last_event_before(self, resource: str, time_us: int) -> Event | None:
        """The latest event of `resource` committed at or before `time_us`."""
        async with self._tx("event_at") as conn:
            head = (await conn.execute(select(H.compacted_revision))).one()
            row = (
                await conn.execute(
                    select(events)
                    .where(E.resource == resource, E.time_us <= time_us)
                    .order_by(E.revision.desc())
                    .limit(1)
                )
            ).one_or_none()
            if row is None and head.compacted_revision > 0:
                oldest = (await conn.execute(select(func.min(E.time_us)))).scalar()
                if oldest is None or time_us < oldest:
                    raise compacted(head.compacted_revision + 1)
        return to_event(row) if row is not None else None

    async def compact(self, before_time_us: int) -> int:
        """Drop events older than `before_time_us`, but none that a queue relay
        has not yet published (past the lowest relay cursor); returns the new
        compacted revision. The head keeps the last dropped hash so the chain
        of what remains still verifies."""
        async with self._tx("compact_events", write=True) as conn:
            await conn.execute(select(H.id).where(H.id == 1).with_for_update())
            older = E.time_us < before_time_us
            unpublished_floor = (await conn.execute(select(func.min(C.revision)))).scalar()
            if unpublished_floor is not None:
                older = older & (E.revision <= unpublished_floor)
            last = (
                await conn.execute(
                    select(E.revision, E.hash).where(older).order_by(E.revision.desc()).limit(1)
                )
            ).one_or_none()
            if last is None:
                return int((await conn.execute(select(H.compacted_revision))).scalar_one())
            await conn.execute(delete(events).where(E.revision <= last.revision))
            await conn.execute(
                update(event_log_head)
                .where(H.id == 1)
                .values(compacted_revision=last.revision, compacted_hash=last.hash)
            )
            return int(last.revision)
