"""The signature store: signatures on versions and trust policies, one
transaction per method around a function of signatures_sql."""

from __future__ import annotations

from typing import Protocol

from ..domain.etags import Etag
from ..domain.names import ModelName, VersionName
from ..domain.trust import EffectivePolicy, PolicyFields, SignatureRecord, TrustPolicy
from ..signing.oms import Verified
from . import signatures_sql
from .transactions import SqlBase


class SignatureStore(Protocol):
    async def version_manifest(self, name: VersionName) -> str: ...

    async def effective_policy(self, model: ModelName) -> EffectivePolicy: ...

    async def attach(
        self,
        name: VersionName,
        manifest_digest: str,
        digest: str,
        size: int,
        verified: Verified,
    ) -> SignatureRecord: ...

    async def list_signatures(
        self, name: VersionName
    ) -> tuple[list[SignatureRecord], EffectivePolicy]: ...

    async def get_policy(self, model: ModelName | None) -> TrustPolicy: ...

    async def update_policy(
        self,
        model: ModelName | None,
        fields: PolicyFields,
        paths: frozenset[str],
        etag: Etag | None,
    ) -> TrustPolicy: ...


class SqlSignatureStore(SqlBase):
    async def version_manifest(self, name: VersionName) -> str:
        async with self._tx("version_manifest") as conn:
            return await signatures_sql.version_manifest(conn, name)

    async def effective_policy(self, model: ModelName) -> EffectivePolicy:
        async with self._tx("effective_policy") as conn:
            return await signatures_sql.effective_policy(conn, model)

    async def attach(
        self,
        name: VersionName,
        manifest_digest: str,
        digest: str,
        size: int,
        verified: Verified,
    ) -> SignatureRecord:
        async with self._tx("attach_signature", write=True) as conn:
            return await signatures_sql.attach(conn, name, manifest_digest, digest, size, verified)

    async def list_signatures(
        self, name: VersionName
    ) -> tuple[list[SignatureRecord], EffectivePolicy]:
        async with self._tx("list_signatures") as conn:
            return await signatures_sql.list_for_version(conn, name)

    async def get_policy(self, model: ModelName | None) -> TrustPolicy:
        async with self._tx("get_trust_policy") as conn:
            return await signatures_sql.get_policy(conn, model)

    async def update_policy(
        self,
        model: ModelName | None,
        fields: PolicyFields,
        paths: frozenset[str],
        etag: Etag | None,
    ) -> TrustPolicy:
        async with self._tx("update_trust_policy", write=True) as conn:
            return await signatures_sql.update_policy(conn, model, fields, paths, etag)
