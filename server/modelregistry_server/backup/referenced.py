"""Which blobs a registry's database refers to: what a backup must carry.

One query, so that every table that points at blobs is named in one place:
a new table holding digests (signature bundles, for instance) joins the
UNION here and backups carry its blobs from then on.
"""

from __future__ import annotations

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from ..store.tables import BR, VS, V


async def referenced_blobs(conn: AsyncConnection) -> list[str]:
    """Every digest the database refers to, sorted: artifacts (manifests),
    the files their manifests list, and signature bundles."""
    query = union(
        select(V.artifact_digest.label("digest")).where(V.artifact_digest.is_not(None)),
        select(BR.digest.label("digest")),
        select(VS.blob_digest.label("digest")),
    )
    rows = await conn.execute(query)
    return sorted({str(row.digest) for row in rows})
