"""Signatures and trust policies in SQL: functions over a connection, run in
the store's transaction. `check_signed` is the promotion gate: it runs in the
alias write's transaction, after the model row is share-locked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.names import ModelName, VersionName
from ..domain.request_context import current_actor
from ..domain.resources import VersionState
from ..domain.rules import version_not_ready
from ..domain.trust import (
    DEFAULT_POLICY,
    MAX_SIGNATURES_PER_VERSION,
    ChainRule,
    EffectivePolicy,
    PolicyFields,
    SignatureRecord,
    TrustedKey,
    TrustPolicy,
    effective,
)
from ..signing.oms import SignerKind, Verified
from .event_log import append_event
from .locks import model_id, share_lock_model
from .tables import (
    BR,
    TP,
    VS,
    A,
    M,
    V,
    aliases,
    blob_refs,
    model_versions,
    models,
    trust_policies,
    version_signatures,
)
from .transactions import dialect_insert, now_us


def _scope(model: ModelName | None) -> str:
    return DEFAULT_POLICY if model is None else f"{model}/trustPolicy"


def _to_policy(row: Any, model: ModelName | None) -> TrustPolicy:
    return TrustPolicy(
        model=model,
        keys=tuple(TrustedKey(k["pem"], k["fingerprint"]) for k in row.trusted_keys),
        chains=tuple(
            ChainRule(c["pem"], c["identity_pattern"], c["root_fingerprint"])
            for c in row.trusted_chains
        ),
        require_signature_aliases=tuple(row.require_signature_aliases),
        update_time_us=row.update_time_us,
        etag=str(Etag(row.id, row.row_version)),
    )


def _to_record(row: Any, version: VersionName) -> SignatureRecord:
    return SignatureRecord(
        version=version,
        digest=row.blob_digest,
        size_bytes=row.size_bytes,
        kind=SignerKind(row.signer_kind),
        signer=row.signer,
        trust_anchor=row.trust_anchor,
        file_count=row.file_count,
        create_time_us=row.create_time_us,
        creator=row.creator,
    )


# Read on every promotion: built once.
_POLICIES = select(trust_policies).where(TP.scope.in_([bindparam("p_own"), bindparam("p_default")]))


async def _policies(
    conn: AsyncConnection, model: ModelName
) -> tuple[TrustPolicy | None, TrustPolicy | None]:
    params = {"p_own": _scope(model), "p_default": DEFAULT_POLICY}
    rows = (await conn.execute(_POLICIES, params)).all()
    own = next((r for r in rows if r.scope != DEFAULT_POLICY), None)
    default = next((r for r in rows if r.scope == DEFAULT_POLICY), None)
    return (
        _to_policy(own, model) if own is not None else None,
        _to_policy(default, None) if default is not None else None,
    )


async def effective_policy(conn: AsyncConnection, model: ModelName) -> EffectivePolicy:
    return effective(*await _policies(conn, model))


async def version_manifest(conn: AsyncConnection, name: VersionName) -> str:
    """The manifest digest of a READY version (what a signature must match)."""
    row = (
        await conn.execute(
            select(V.state, V.artifact_digest, V.artifact_media_type)
            .join(models, M.id == V.model_id)
            .where(M.name == name.model, V.version == name.version)
        )
    ).one_or_none()
    if row is None:
        raise errors.version_not_found(str(name))
    if row.state != VersionState.READY.value:
        raise version_not_ready(str(name), VersionState(row.state))
    if row.artifact_digest is None:
        raise errors.FailedPrecondition(
            ErrorReason.VERSION_NOT_READY,
            f"{name} has no managed artifact (it points at its source_uri): nothing to sign",
            {ErrorMetadataKey.RESOURCE: str(name), ErrorMetadataKey.STATE: row.state},
        )
    return str(row.artifact_digest)


async def attach(
    conn: AsyncConnection,
    name: VersionName,
    manifest_digest: str,
    digest: str,
    size: int,
    verified: Verified,
) -> SignatureRecord:
    """Record a verified signature (its bundle already stored as a blob)."""
    await share_lock_model(conn, name.parent)
    version = (
        await conn.execute(
            select(V.id, V.state, V.artifact_digest)
            .join(models, M.id == V.model_id)
            .where(M.name == name.model, V.version == name.version)
            .with_for_update(read=True, of=model_versions)
        )
    ).one_or_none()
    if version is None:
        raise errors.version_not_found(str(name))
    if version.artifact_digest != manifest_digest:
        raise errors.Aborted(
            ErrorReason.ETAG_MISMATCH,
            f"{name} changed while its signature was verified; retry",
            {ErrorMetadataKey.RESOURCE: str(name)},
        )
    existing = (
        await conn.execute(
            select(version_signatures).where(
                VS.model_version_id == version.id, VS.blob_digest == digest
            )
        )
    ).one_or_none()
    if existing is not None:
        return _to_record(existing, name)
    count = (
        await conn.execute(
            select(func.count())
            .select_from(version_signatures)
            .where(VS.model_version_id == version.id)
        )
    ).scalar_one()
    if count >= MAX_SIGNATURES_PER_VERSION:
        raise errors.FailedPrecondition(
            ErrorReason.SIGNATURE_LIMIT_REACHED,
            f"{name} already carries {count} signatures, the most a version may",
            {
                ErrorMetadataKey.RESOURCE: str(name),
                ErrorMetadataKey.LIMIT: str(MAX_SIGNATURES_PER_VERSION),
            },
        )
    row = (
        await conn.execute(
            insert(version_signatures)
            .values(
                model_version_id=version.id,
                blob_digest=digest,
                size_bytes=size,
                signer_kind=verified.kind.value,
                signer=verified.signer[:512],
                trust_anchor=verified.trust_anchor,
                file_count=len(verified.files),
                creator=current_actor()[:512],
                create_time_us=now_us(),
            )
            .returning(version_signatures)
        )
    ).one()
    # Whoever may download the version may download its signatures by digest.
    await conn.execute(
        dialect_insert(conn, blob_refs)
        .values(digest=digest, model_version_id=version.id)
        .on_conflict_do_nothing(index_elements=[BR.digest, BR.model_version_id])
    )
    record = _to_record(row, name)
    await append_event(conn, EventType.SIGNATURE_ATTACHED, name.parent, record.name, None, record)
    return record


async def list_for_version(
    conn: AsyncConnection, name: VersionName
) -> tuple[list[SignatureRecord], EffectivePolicy]:
    version_id = (
        await conn.execute(
            select(V.id)
            .join(models, M.id == V.model_id)
            .where(M.name == name.model, V.version == name.version)
        )
    ).scalar()
    if version_id is None:
        raise errors.version_not_found(str(name))
    rows = await conn.execute(
        select(version_signatures).where(VS.model_version_id == version_id).order_by(VS.id)
    )
    return [_to_record(r, name) for r in rows], await effective_policy(conn, name.parent)


async def check_signed(
    conn: AsyncConnection, model: ModelName, alias: str, version_id: int, version: VersionName
) -> None:
    """Refuse to move `alias` to a version without a signature that counts
    under the model's trust policy, if the policy requires one for it."""
    policy = await effective_policy(conn, model)
    if alias not in policy.required:
        return
    rows = (
        await conn.execute(select(version_signatures).where(VS.model_version_id == version_id))
    ).all()
    records = [_to_record(r, version) for r in rows]
    problems = [policy.untrusted_reason(r) for r in records]
    if records and any(not p for p in problems):
        return
    if not policy.keys and not policy.chains:
        missing = "the trust policy lists no trusted key or chain"
    elif not records:
        missing = f"{version} carries no signature"
    else:
        missing = f"none of its {len(records)} signatures counts: " + "; ".join(
            dict.fromkeys(problems)
        )
    raise errors.FailedPrecondition(
        ErrorReason.SIGNATURE_REQUIRED,
        f"alias {alias!r} requires a version signed under the trust policy: {missing}"[:1000],
        {ErrorMetadataKey.RESOURCE: str(version), ErrorMetadataKey.ALIAS: alias},
    )


async def get_policy(conn: AsyncConnection, model: ModelName | None) -> TrustPolicy:
    if model is not None:
        await model_id(conn, model)
    row = (
        await conn.execute(select(trust_policies).where(TP.scope == _scope(model)))
    ).one_or_none()
    return _to_policy(row, model) if row is not None else TrustPolicy(model)


@dataclass(frozen=True)
class PolicyView:
    """A policy as events show it: fingerprints rather than PEM."""

    name: str
    trusted_keys: tuple[str, ...]
    trusted_chains: tuple[tuple[str, str], ...]
    require_signature_aliases: tuple[str, ...]
    etag: str


@dataclass(frozen=True)
class PolicyChange:
    policy: PolicyView
    # Aliases left pointing at versions that no longer count under the policy:
    # what serves is left alone; the next promotion of them is gated.
    left_serving_unsigned: tuple[str, ...]


def _view(policy: TrustPolicy) -> PolicyView:
    return PolicyView(
        name=policy.name,
        trusted_keys=tuple(k.fingerprint for k in policy.keys),
        trusted_chains=tuple((c.root_fingerprint, c.identity_pattern) for c in policy.chains),
        require_signature_aliases=policy.require_signature_aliases,
        etag=policy.etag,
    )


async def _left_serving(conn: AsyncConnection, model: ModelName | None) -> tuple[str, ...]:
    """`models/m/aliases/a -> versions/n` for each required alias whose
    version no longer counts (for one model, or every model for the default)."""
    query = select(M.name, M.id, A.name.label("alias"), A.version_id, V.version).select_from(
        aliases.join(models, M.id == A.model_id).join(model_versions, V.id == A.version_id)
    )
    if model is not None:
        query = query.where(M.name == model.model)
    found: list[str] = []
    policies: dict[str, EffectivePolicy] = {}
    for row in (await conn.execute(query.order_by(M.name, A.name).limit(10_000))).all():
        name = ModelName(row.name)
        if row.name not in policies:
            policies[row.name] = await effective_policy(conn, name)
        policy = policies[row.name]
        if row.alias not in policy.required:
            continue
        version = VersionName(row.name, row.version)
        signed = (
            await conn.execute(
                select(version_signatures).where(VS.model_version_id == row.version_id)
            )
        ).all()
        if not any(not policy.untrusted_reason(_to_record(s, version)) for s in signed):
            found.append(f"{name}/aliases/{row.alias} -> {version}")
        if len(found) >= 100:
            break
    return tuple(found)


async def update_policy(
    conn: AsyncConnection,
    model: ModelName | None,
    fields: PolicyFields,
    paths: frozenset[str],
    etag: Etag | None,
) -> TrustPolicy:
    owner = None
    if model is not None:
        owner = (await share_lock_model(conn, model)).id
    scope = _scope(model)
    current = (
        await conn.execute(select(trust_policies).where(TP.scope == scope).with_for_update())
    ).one_or_none()
    before = _to_policy(current, model) if current is not None else None
    if etag is not None and (
        current is None or (current.id, current.row_version) != (etag.row_id, etag.row_version)
    ):
        raise errors.EtagMismatch(scope)
    values: dict[str, Any] = {"update_time_us": now_us()}
    if "trusted_keys" in paths:
        values["trusted_keys"] = [{"pem": k.pem, "fingerprint": k.fingerprint} for k in fields.keys]
    if "trusted_chains" in paths:
        values["trusted_chains"] = [
            {
                "pem": c.pem,
                "identity_pattern": c.identity_pattern,
                "root_fingerprint": c.root_fingerprint,
            }
            for c in fields.chains
        ]
    if "require_signature_aliases" in paths:
        values["require_signature_aliases"] = list(fields.require_signature_aliases)
    if current is None:
        values = {
            "trusted_keys": [],
            "trusted_chains": [],
            "require_signature_aliases": [],
            **values,
        }
        stmt: Any = insert(trust_policies).values(
            scope=scope, model_id=owner, row_version=1, **values
        )
    else:
        stmt = (
            update(trust_policies)
            .where(TP.id == current.id)
            .values(row_version=TP.row_version + 1, **values)
        )
    try:
        row = (await conn.execute(stmt.returning(trust_policies))).one()
    except IntegrityError:  # a concurrent first write of the same policy won
        raise errors.EtagMismatch(scope) from None
    policy = _to_policy(row, model)
    change = PolicyChange(_view(policy), await _left_serving(conn, model))
    await append_event(
        conn,
        EventType.TRUST_POLICY_UPDATED,
        model,
        policy.name,
        _view(before) if before is not None else None,
        change,
    )
    return policy
