"""What garbage collection and blob claims need from SQL.

A blob is garbage when no reference source names it. The sources are one
list, `REFERENCE_SOURCES`: the mark phase reads each in full, and the sweep
asks each about one digest again, under the lock, right before it deletes.
A new kind of reference (a table of signatures, say) is one more entry.

Deleting and claiming meet on the digest's `blob_leases` row. The sweep
creates (or finds) the row, locks it, checks every source once more,
deletes the blob and drops the row, all in one transaction. A writer about
to use a blob first upserts that row with a future expiry (`hold`), in its
own transaction, and only then checks that the blob exists. So either the
writer's claim commits first (the sweep then sees an unexpired lease and
keeps the blob) or the sweep commits first (the writer's upsert waits for
it, and its existence check then finds the blob gone and fails cleanly).
On SQLite the write transaction itself is the lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from .tables import BL, BR, VS, U, V, blob_leases, blob_refs, model_versions
from .transactions import SqlBase, dialect_insert, now_us


@dataclass(frozen=True)
class ReferenceSource:
    """One column of digests that keeps blobs alive, and what makes a row count."""

    name: str
    digest: ColumnElement[str]
    # Conditions for a row to count, given the time (microseconds): e.g. unexpired.
    live: Callable[[int], tuple[ColumnElement[bool], ...]] = field(default=lambda now: ())


REFERENCE_SOURCES: tuple[ReferenceSource, ...] = (
    # A version's manifest and every file the manifest lists.
    ReferenceSource("version", BR.digest),
    # A version's manifest again, in case its reference row is missing.
    ReferenceSource("version artifact", V.artifact_digest),
    # An upload in progress that declared its digest.
    ReferenceSource("upload", U.digest, lambda now: (U.expire_time_us > now,)),
    # A finished blob upload waiting for its manifest, a publish under way.
    ReferenceSource("lease", BL.digest, lambda now: (BL.expire_time_us > now,)),
    # A signature bundle attached to a version.
    ReferenceSource("signature", VS.blob_digest),
)


# Blob deletions running at once within a sweep batch.
SWEEP_PARALLELISM = 16


async def referenced_among(conn: AsyncConnection, digests: list[str], now: int) -> set[str]:
    """Which of `digests` some source names right now."""
    found: set[str] = set()
    for source in REFERENCE_SOURCES:
        rows = await conn.execute(
            select(source.digest).where(source.digest.in_(digests), *source.live(now)).distinct()
        )
        found.update(rows.scalars())
    return found


class SqlGcStore(SqlBase):
    async def referenced_digests(self) -> set[str]:
        """The mark phase: every digest any source names right now."""
        now = now_us()
        marked: set[str] = set()
        async with self._tx("gc_mark") as conn:
            for source in REFERENCE_SOURCES:
                rows = await conn.execute(
                    select(source.digest)
                    .where(source.digest.is_not(None), *source.live(now))
                    .distinct()
                )
                marked.update(rows.scalars())
        return marked

    async def delete_if_unreferenced(
        self, digest: str, delete_blob: Callable[[str], Awaitable[bool]]
    ) -> bool | None:
        """Delete the blob unless something references it now: True when it
        was deleted, False when it was already gone, None when it is kept."""
        outcome = await self.delete_unreferenced([digest], delete_blob)
        return outcome.get(digest)

    async def delete_unreferenced(
        self, digests: list[str], delete_blob: Callable[[str], Awaitable[bool]]
    ) -> dict[str, bool]:
        """The sweep of one batch, in one transaction: lock the digests' rows,
        ask every source again, delete what nothing references. Returns the
        digests it deleted (True) or found gone (False); the others are kept."""
        batch = sorted(set(digests))
        if not batch:
            return {}
        async with self._tx("gc_sweep", write=True) as conn:
            await conn.execute(
                dialect_insert(conn, blob_leases)
                .values([{"digest": d, "expire_time_us": 0} for d in batch])
                .on_conflict_do_nothing()
            )
            await conn.execute(
                select(BL.digest).where(BL.digest.in_(batch)).order_by(BL.digest).with_for_update()
            )
            now = now_us()
            keep = await referenced_among(conn, batch, now)
            doomed = [d for d in batch if d not in keep]
            gate = asyncio.Semaphore(SWEEP_PARALLELISM)

            async def delete_one(digest: str) -> bool:
                async with gate:
                    return await delete_blob(digest)

            results = await asyncio.gather(*(delete_one(d) for d in doomed))
            await conn.execute(
                delete(blob_leases).where(
                    BL.digest.in_(batch),
                    or_(BL.digest.in_(doomed), BL.expire_time_us <= now),
                )
            )
        return dict(zip(doomed, results, strict=True))

    async def hold(self, digests: Iterable[str], ttl_us: int) -> None:
        """Claim blobs for `ttl_us`; waits while a sweep of any of them runs."""
        expire = now_us() + ttl_us
        values = [{"digest": d, "expire_time_us": expire} for d in sorted(set(digests))]
        if not values:
            return
        async with self._tx("hold_blobs", write=True) as conn:
            stmt = dialect_insert(conn, blob_leases).values(values)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[BL.digest],
                    set_={"expire_time_us": stmt.excluded.expire_time_us},
                )
            )

    async def drop_expired_leases(self) -> int:
        async with self._tx("gc_drop_leases", write=True) as conn:
            gone = await conn.execute(
                delete(blob_leases).where(BL.expire_time_us <= now_us()).returning(BL.digest)
            )
            return len(gone.all())

    async def incomplete_versions(self, limit: int = 500) -> list[tuple[int, str]]:
        """Versions whose file references may be missing: (id, manifest digest)."""
        async with self._tx("gc_incomplete_versions") as conn:
            rows = await conn.execute(
                select(V.id, V.artifact_digest)
                .where(V.blob_refs_complete.is_(False), V.artifact_digest.is_not(None))
                .order_by(V.id)
                .limit(limit)
            )
            return [(r.id, r.artifact_digest) for r in rows]

    async def complete_version(self, version_id: int, refs: Iterable[tuple[str, int]]) -> None:
        async with self._tx("gc_complete_version", write=True) as conn:
            await add_sized_refs(conn, version_id, refs)
            await conn.execute(
                update(model_versions).where(V.id == version_id).values(blob_refs_complete=True)
            )


async def add_sized_refs(
    conn: AsyncConnection, version_id: int, refs: Iterable[tuple[str, int]]
) -> None:
    """Record that a version references these blobs (digest, size); repeats are no-ops."""
    sizes = dict(refs)
    values = [
        {"digest": d, "model_version_id": version_id, "size_bytes": sizes[d]} for d in sorted(sizes)
    ]
    if values:
        await conn.execute(dialect_insert(conn, blob_refs).values(values).on_conflict_do_nothing())


async def check_claims(conn: AsyncConnection, digests: Iterable[str], deadline_us: int) -> None:
    """In a publishing transaction: wait out any sweep of these blobs, then
    trust the claims taken on them only if they cannot have lapsed yet, and
    let them go: the references about to be written keep the blobs."""
    wanted = sorted(set(digests))
    await conn.execute(select(BL.digest).where(BL.digest.in_(wanted)).with_for_update())
    if now_us() >= deadline_us:
        raise errors.Aborted(
            ErrorReason.BLOB_COLLECTED,
            "the publish took too long to trust its claims on the blobs; upload the manifest again",
            {ErrorMetadataKey.DIGEST: wanted[0]},
        )
    # The version's references keep them now. (A push of the same files
    # still waiting for its manifest loses its lease too; the grace period
    # covers it, and at worst its publish fails with MANIFEST_BLOB_MISSING.)
    await conn.execute(delete(blob_leases).where(BL.digest.in_(wanted)))
