"""A regional edge's read model in SQL: the primary's rows, rebuilt from its
events (or a snapshot), under the primary's own ids and row versions.

Every resource in an event's `after_json` is complete and carries its etag,
`<row id>-<row version>` (hex), so an edge stores each row under the same
id and version and hands out the very etags the primary does. The
registry's own read paths then serve the edge unchanged.

Applying never moves a row back: a row is written only when the incoming
row version is at least the stored one, so replaying events older than a
snapshot's rows (the snapshot is read after the revision it follows from)
changes nothing. Ids are never reused, so of two rows with one name the
larger id is the newer: the older one is dropped.

IAM policies are replicated the same way (POLICY_SET events carry the
whole policy and its etag), so an edge authorizes its callers with the
primary's policies. Service-account tokens are not: the log never carries
their secrets' hashes.

Each batch of the primary's events is stored verbatim in the local event
log in the same transaction as its rows: the edge's watch and event
listing serve from it, and its head is where the edge resumes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.etags import parse_etag
from ..domain.events import Event
from ..domain.names import parse_alias_name, parse_model_name, parse_version_name
from ..store.tables import (
    BR,
    IB,
    IP,
    A,
    E,
    H,
    M,
    R,
    V,
    aliases,
    blob_refs,
    event_log_head,
    events,
    iam_bindings,
    iam_policies,
    model_versions,
    models,
    rollouts,
)
from ..store.transactions import SqlBase, touch

Plain = dict[str, Any]

_VERSION_EVENTS = frozenset(
    {"VERSION_CREATED", "VERSION_UPDATED", "VERSION_READY", "VERSION_APPROVED", "VERSION_REJECTED"}
)


@dataclass
class Snapshot:
    """Every model, version, alias and rollout as the primary listed them,
    as plain values (the shape of an event's `after_json`)."""

    revision: int
    models: list[Plain] = field(default_factory=list)
    versions: list[Plain] = field(default_factory=list)
    aliases: list[Plain] = field(default_factory=list)
    rollouts: list[Plain] = field(default_factory=list)
    policies: list[Plain] = field(default_factory=list)


def _ids(etag: str) -> tuple[int, int]:
    parsed = parse_etag(etag)
    if parsed is None:
        raise ValueError("a replicated resource without an etag")
    return parsed.row_id, parsed.row_version


async def _model_id(conn: AsyncConnection, model: str) -> int | None:
    found = (await conn.execute(select(M.id).where(M.name == model))).scalar()
    return int(found) if found is not None else None


async def _version_id(conn: AsyncConnection, name: str) -> int | None:
    parsed = parse_version_name(name)
    found = (
        await conn.execute(
            select(V.id)
            .join(models, M.id == V.model_id)
            .where(M.name == parsed.model, V.version == parsed.version)
        )
    ).scalar()
    return int(found) if found is not None else None


async def _newer_or_same(conn: AsyncConnection, table: Any, row_id: int, version: int) -> bool:
    """Whether a row version `version` of row `row_id` may be written."""
    stored = (await conn.execute(select(table.c.row_version).where(table.c.id == row_id))).scalar()
    return stored is None or int(stored) <= version


async def _upsert(
    conn: AsyncConnection, table: Any, row_id: int, values: Plain, same_name: Any
) -> None:
    """Write row `row_id`, dropping an older row under the same unique name
    (`same_name`) first, or giving way to a newer one."""
    other = (await conn.execute(select(table.c.id).where(same_name, table.c.id != row_id))).scalar()
    if other is not None:
        if int(other) > row_id:
            return
        await _delete_row(conn, table, int(other))
    exists = (await conn.execute(select(table.c.id).where(table.c.id == row_id))).scalar()
    if exists is None:
        await conn.execute(insert(table).values(id=row_id, **values))
    else:
        await conn.execute(update(table).where(table.c.id == row_id).values(**values))


async def _delete_row(conn: AsyncConnection, table: Any, row_id: int) -> None:
    if table is models:
        await _delete_model_rows(conn, row_id)
    elif table is model_versions:
        await _delete_version_rows(conn, row_id)
    else:
        await conn.execute(delete(table).where(table.c.id == row_id))


async def _delete_version_rows(conn: AsyncConnection, version_id: int) -> None:
    refer = (R.stable_version_id == version_id) | (R.candidate_version_id == version_id)
    await conn.execute(delete(rollouts).where(refer))
    await conn.execute(delete(aliases).where(A.version_id == version_id))
    await conn.execute(delete(blob_refs).where(BR.model_version_id == version_id))
    await conn.execute(delete(model_versions).where(V.id == version_id))


async def _delete_model_rows(conn: AsyncConnection, model_id: int) -> None:
    await conn.execute(delete(rollouts).where(R.model_id == model_id))
    await conn.execute(delete(aliases).where(A.model_id == model_id))
    versions = (await conn.execute(select(V.id).where(V.model_id == model_id))).scalars().all()
    for version_id in versions:
        await _delete_version_rows(conn, int(version_id))
    await conn.execute(delete(models).where(M.id == model_id))


async def put_model(conn: AsyncConnection, m: Plain) -> None:
    row_id, row_version = _ids(m["etag"])
    if not await _newer_or_same(conn, models, row_id, row_version):
        return
    name = parse_model_name(m["name"]).model
    values = {
        "name": name,
        "uid": m["uid"],
        "display_name": m.get("display_name", ""),
        "description": m.get("description", ""),
        "labels": m.get("labels") or {},
        "latest_version": int(m.get("latest_version", 0)),
        "protected_aliases": list(m.get("protected_aliases") or ()),
        "separation_of_duties": bool(m.get("separation_of_duties", False)),
        "row_version": row_version,
        "create_time_us": int(m["create_time_us"]),
        "update_time_us": int(m["update_time_us"]),
    }
    stored = (await conn.execute(select(M.latest_version).where(M.id == row_id))).scalar()
    if stored is not None:  # version creation bumps it without a model event
        values["latest_version"] = max(int(stored), values["latest_version"])
    await _upsert(conn, models, row_id, values, M.name == name)


async def put_version(conn: AsyncConnection, v: Plain) -> None:
    row_id, row_version = _ids(v["etag"])
    name = parse_version_name(v["name"])
    model_id = await _model_id(conn, name.model)
    if model_id is None or not await _newer_or_same(conn, model_versions, row_id, row_version):
        return
    artifact = v.get("artifact") or {}
    approval = v.get("approval") or {}
    values = {
        "model_id": model_id,
        "version": name.version,
        "uid": v["uid"],
        "state": v["state"],
        "source_uri": v.get("source_uri", ""),
        "description": v.get("description", ""),
        "labels": v.get("labels") or {},
        "metadata": v.get("metadata") or {},
        "artifact_digest": artifact.get("digest") or None,
        "artifact_size": artifact.get("size_bytes") if artifact else None,
        "artifact_chunk_size": artifact.get("chunk_size_bytes") if artifact else None,
        "artifact_media_type": artifact.get("media_type") if artifact else None,
        "approval_state": approval.get("state", "PENDING"),
        "approval_actor": approval.get("actor", ""),
        "approval_comment": approval.get("comment", ""),
        "approval_time_us": int(approval.get("time_us", 0)),
        "creator": v.get("creator", ""),
        "row_version": row_version,
        "create_time_us": int(v["create_time_us"]),
        "update_time_us": int(v["update_time_us"]),
    }
    same = and_(V.model_id == model_id, V.version == name.version)
    await _upsert(conn, model_versions, row_id, values, same)
    await conn.execute(
        update(models)
        .where(M.id == model_id, M.latest_version < name.version)
        .values(latest_version=name.version)
    )
    digest = artifact.get("digest")
    if digest:
        await add_blob_refs(conn, row_id, [digest])


async def add_blob_refs(conn: AsyncConnection, version_id: int, digests: Sequence[str]) -> None:
    """Blobs a version references (its artifact; a manifest's files once the
    edge has read the manifest): what a download by digest is checked on."""
    for digest in digests:
        have = (
            await conn.execute(
                select(BR.digest).where(BR.digest == digest, BR.model_version_id == version_id)
            )
        ).first()
        if have is None:
            await conn.execute(insert(blob_refs).values(digest=digest, model_version_id=version_id))


async def put_alias(conn: AsyncConnection, a: Plain) -> None:
    row_id, row_version = _ids(a["etag"])
    name = parse_alias_name(a["name"])
    model_id = await _model_id(conn, name.model)
    version_id = await _version_id(conn, a["version"])
    if model_id is None or version_id is None:
        return
    if not await _newer_or_same(conn, aliases, row_id, row_version):
        return
    values = {
        "model_id": model_id,
        "name": name.alias,
        "version_id": version_id,
        "row_version": row_version,
        "create_time_us": int(a["create_time_us"]),
        "update_time_us": int(a["update_time_us"]),
    }
    await _upsert(conn, aliases, row_id, values, and_(A.model_id == model_id, A.name == name.alias))


async def put_rollout(conn: AsyncConnection, r: Plain) -> None:
    row_id, row_version = _ids(r["etag"])
    name = r["name"]
    if isinstance(name, dict):  # events spell a rollout's name as its parts
        model, rollout_id = str(name["model"]), str(name["rollout"])
    else:
        model, _, rollout_id = str(name).removeprefix("models/").partition("/rollouts/")
    model_id = await _model_id(conn, model)
    stable = await _version_id(conn, r["stable_version"])
    candidate = await _version_id(conn, r["candidate_version"])
    if model_id is None or stable is None or candidate is None:
        return
    if not await _newer_or_same(conn, rollouts, row_id, row_version):
        return
    values = {
        "model_id": model_id,
        "rollout_id": rollout_id,
        "alias": parse_alias_name(r["alias"]).alias,
        "stable_version_id": stable,
        "candidate_version_id": candidate,
        "steps": list(r["steps"]),
        "percent": int(r["percent"]),
        "state": r["state"],
        "row_version": row_version,
        "create_time_us": int(r["create_time_us"]),
        "update_time_us": int(r["update_time_us"]),
    }
    if r["state"] in ("ACTIVE", "PAUSED"):  # one running rollout per alias
        await conn.execute(
            delete(rollouts).where(
                R.model_id == model_id,
                R.alias == values["alias"],
                R.state.in_(("ACTIVE", "PAUSED")),
                R.id != row_id,
            )
        )
    same = and_(R.model_id == model_id, R.rollout_id == rollout_id)
    await _upsert(conn, rollouts, row_id, values, same)


async def put_policy(conn: AsyncConnection, p: Plain) -> None:
    """An IAM policy (the shape of a POLICY_SET event's `after_json`)."""
    row_id, row_version = _ids(p["etag"])
    resource = str(p["resource"])
    if row_id == 0 or not await _newer_or_same(conn, iam_policies, row_id, row_version):
        return
    model = "" if resource == "registry" else resource.removeprefix("models/").split("/")[0]
    values = {
        "resource": resource,
        "model": model,
        "row_version": row_version,
        "update_time_us": int(p.get("update_time_us", 0)),
    }
    await _upsert(conn, iam_policies, row_id, values, IP.resource == resource)
    await conn.execute(delete(iam_bindings).where(IB.policy_id == row_id))
    rows = [
        {"policy_id": row_id, "role": b["role"], "member": m}
        for b in p.get("bindings") or ()
        for m in b["members"]
    ]
    if rows:
        await conn.execute(insert(iam_bindings), rows)


async def _remove(conn: AsyncConnection, table: Any, before: Plain) -> None:
    row_id, _ = _ids(before["etag"])
    await _delete_row(conn, table, row_id)


async def apply_event(conn: AsyncConnection, event: Event) -> None:
    """The row change an event stands for (none for policy, token and
    checkpoint events, which only enter the local log)."""
    kind = event.type
    after = json.loads(event.after_json) if event.after_json else None
    before = json.loads(event.before_json) if event.before_json else None
    if kind in ("MODEL_CREATED", "MODEL_UPDATED") and after:
        await put_model(conn, after)
    elif kind == "MODEL_DELETED" and before:
        await _remove(conn, models, before)
        # The model's and its aliases' policies go with it.
        await conn.execute(
            delete(iam_policies).where(IP.model == event.model.removeprefix("models/"))
        )
    elif kind in _VERSION_EVENTS and after:
        await put_version(conn, after)
    elif kind == "VERSION_DELETED" and before:
        await _remove(conn, model_versions, before)
    elif kind == "ALIAS_SET" and after:
        await put_alias(conn, after)
    elif kind == "ALIAS_DELETED" and before:
        await _remove(conn, aliases, before)
    elif kind.startswith("ROLLOUT_") and after:
        await put_rollout(conn, after)
    elif kind == "POLICY_SET" and after:
        await put_policy(conn, after)


class SqlReadModel(SqlBase):
    """The edge's side of the local database: where it stands, applying a
    batch of the primary's events, and replacing everything by a snapshot."""

    async def position(self) -> tuple[int, str]:
        """(the last applied revision, its hash; "" right after a snapshot)."""
        async with self._tx("edge_position") as conn:
            row = (await conn.execute(select(H.revision, H.hash))).one()
        return int(row.revision), str(row.hash)

    async def running_candidates(self) -> list[str]:
        """The candidate versions of every ACTIVE or PAUSED rollout."""
        async with self._tx("edge_running_candidates") as conn:
            rows = (
                await conn.execute(
                    select(M.name, V.version)
                    .select_from(rollouts)
                    .join(model_versions, V.id == R.candidate_version_id)
                    .join(models, M.id == R.model_id)
                    .where(R.state.in_(("ACTIVE", "PAUSED")))
                )
            ).all()
        return [f"models/{r.name}/versions/{r.version}" for r in rows]

    async def apply(self, batch: Sequence[Event]) -> None:
        """Apply events (in revision order, after the position) and append
        them to the local log, in one transaction."""
        if not batch:
            return
        async with self._tx("edge_apply", write=True) as conn:
            for event in batch:
                await apply_event(conn, event)
                if event.model:
                    touch(event.model)
                await conn.execute(insert(events).values(**_event_row(event)))
            last = batch[-1]
            await conn.execute(
                update(event_log_head)
                .where(H.id == 1)
                .values(revision=last.revision, hash=last.hash, prev_hash=last.prev_hash)
            )

    async def replace(self, snapshot: Snapshot) -> None:
        """Everything local gives way to `snapshot`, in one transaction:
        readers see the old state or the new one, never an empty registry.
        The local log restarts at the snapshot's revision (older events are
        as good as compacted)."""
        async with self._tx("edge_snapshot", write=True) as conn:
            for row_id in (await conn.execute(select(M.id))).scalars().all():
                await _delete_model_rows(conn, int(row_id))
            await conn.execute(delete(events).where(E.revision > 0))
            await conn.execute(delete(iam_policies))
            for m in snapshot.models:
                await put_model(conn, m)
            for v in snapshot.versions:
                await put_version(conn, v)
            for a in snapshot.aliases:
                await put_alias(conn, a)
            for r in snapshot.rollouts:
                await put_rollout(conn, r)
            for p in snapshot.policies:
                await put_policy(conn, p)
            await conn.execute(
                update(event_log_head)
                .where(H.id == 1)
                .values(
                    revision=snapshot.revision,
                    hash="",
                    prev_hash="",
                    compacted_revision=snapshot.revision,
                    compacted_hash="",
                )
            )


def _event_row(e: Event) -> Plain:
    return {
        "revision": e.revision,
        "type": e.type,
        "resource": e.resource,
        "model": e.model,
        "actor": e.actor,
        "time_us": e.time_us,
        "before_json": e.before_json,
        "after_json": e.after_json,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }
