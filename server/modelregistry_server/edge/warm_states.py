"""The primary's view of its regional edges: which regions are live and
which versions each holds warm, and the rollout gate built on it.

A region is live while it has reported within `region_ttl_s` (edges send a
heartbeat well within it), so a retired edge stops holding rollouts back
once its reports stop; an edge that is merely slow keeps reporting and
keeps the gate closed until its copy is verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import delete, select

from ..domain import errors
from ..domain.names import VersionName
from ..store.tables import edge_regions, edge_warm_versions
from ..store.transactions import SqlBase, dialect_insert, now_us

REGION = re.compile(r"[a-z][a-z0-9-]{0,62}")
MAX_WARM_VERSIONS = 100
ER = edge_regions.c
EW = edge_warm_versions.c


@dataclass(frozen=True)
class RegionWarmth:
    region: str
    # 0: not warm.
    warm_time_us: int

    @property
    def warm(self) -> bool:
        return self.warm_time_us > 0


def check_region(region: str, field: str = "region") -> str:
    if not REGION.fullmatch(region):
        raise errors.InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: 1 to 63 characters of a-z, 0-9 and '-', starting with a letter",
            field,
        )
    return region


def not_warm(version: VersionName, lagging: list[str]) -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        ErrorReason.NOT_WARM,
        f"{version}: not yet warm in {', '.join(lagging)}; retry once they report it",
        {ErrorMetadataKey.REGIONS: ",".join(lagging), ErrorMetadataKey.RESOURCE: str(version)},
    )


class SqlWarmStates(SqlBase):
    async def report(self, region: str, versions: list[VersionName]) -> int:
        now = now_us()
        async with self._tx("edge_report", write=True) as conn:
            seen = dialect_insert(conn, edge_regions).values(region=region, last_seen_us=now)
            await conn.execute(
                seen.on_conflict_do_update(
                    index_elements=["region"], set_={"last_seen_us": seen.excluded.last_seen_us}
                )
            )
            for v in versions:
                warm = dialect_insert(conn, edge_warm_versions).values(
                    region=region, model=v.model, version=v.version, warm_time_us=now
                )
                await conn.execute(warm.on_conflict_do_nothing())
        return now

    async def of_version(self, version: VersionName, live_since_us: int) -> list[RegionWarmth]:
        """Every live region, warm for `version` or not, by name."""
        async with self._tx("edge_warmth") as conn:
            live = (
                (await conn.execute(select(ER.region).where(ER.last_seen_us >= live_since_us)))
                .scalars()
                .all()
            )
            rows = await conn.execute(
                select(EW.region, EW.warm_time_us).where(
                    EW.model == version.model, EW.version == version.version
                )
            )
            warm = {str(row.region): int(row.warm_time_us) for row in rows}
        return [RegionWarmth(r, int(warm.get(r, 0))) for r in sorted(live)]

    async def forget(self, region: str) -> None:
        async with self._tx("edge_forget", write=True) as conn:
            await conn.execute(delete(edge_warm_versions).where(EW.region == region))
            await conn.execute(delete(edge_regions).where(ER.region == region))


class WarmStates:
    """Reports from edges, the state per region, and the gate."""

    def __init__(self, store: SqlWarmStates, region_ttl_s: float) -> None:
        self._store = store
        self._ttl_us = int(region_ttl_s * 1_000_000)

    async def report(self, region: str, versions: list[VersionName]) -> int:
        return await self._store.report(region, versions)

    async def of_version(self, version: VersionName) -> list[RegionWarmth]:
        return await self._store.of_version(version, now_us() - self._ttl_us)

    async def require(self, version: VersionName) -> None:
        """NOT_WARM unless every live region holds `version`."""
        lagging = [r.region for r in await self.of_version(version) if not r.warm]
        if lagging:
            raise not_warm(version, lagging)
