"""Use cases of signed models: attach and list signatures, read and change
trust policies.

Attaching verifies before it stores anything: the bundle's shape, then its
signature under the model's trust policy, then its file list against the
version's manifest (read from the blob store: the manifest, never the
files). Only then is the bundle written, through the blob store interface
like any other blob, and recorded on the version with an event.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..blobs.base import BlobStore
from ..domain import errors
from ..domain.etags import parse_etag
from ..domain.manifest import MAX_MANIFEST_BYTES, parse_manifest
from ..domain.names import ModelName, VersionName
from ..domain.trust import (
    POLICY_PATHS,
    EffectivePolicy,
    PolicyFields,
    SignatureRecord,
    TrustPolicy,
    check_chains,
    check_keys,
    check_required_aliases,
)
from ..signing.oms import (
    Bundle,
    BundleError,
    Problem,
    Trust,
    VerificationError,
    Verified,
    compare_files,
    parse_bundle,
    verify_bundle,
)
from ..store.signature_store import SignatureStore
from .update_masks import resolve_mask


def _signature_invalid(message: str, metadata: dict[str, str]) -> errors.InvalidArgument:
    err = errors.InvalidArgument(ErrorReason.SIGNATURE_INVALID, message)
    err.metadata.update(metadata)
    return err


def _bundle_error(err: BundleError) -> errors.InvalidArgument:
    return errors.InvalidArgument(ErrorReason.INVALID_SIGNATURE_BUNDLE, f"bundle: {err}", "bundle")


def _invalid(err: VerificationError, name: VersionName) -> errors.InvalidArgument:
    metadata: dict[str, str] = {
        ErrorMetadataKey.SIGNATURE_PROBLEM: err.problem.value,
        ErrorMetadataKey.RESOURCE: str(name),
    }
    if err.path:
        metadata[ErrorMetadataKey.PATH] = err.path[:256]
    return _signature_invalid(f"signature for {name}: {err.problem}: {err}", metadata)


def _verify(parsed: Bundle, trust: Trust, expected: Mapping[str, str]) -> Verified:
    """The CPU-bound part (ECDSA, X.509, the statement): run off the event loop."""
    verified = verify_bundle(parsed, trust)
    compare_files(verified.files, expected)
    return verified


@dataclass(frozen=True)
class Listed:
    record: SignatureRecord
    # "" if it counts under the policy now, else why not.
    untrusted_reason: str


class Signatures:
    def __init__(self, store: SignatureStore, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs

    async def _manifest_files(self, digest: str) -> dict[str, str]:
        data = bytearray()
        async with aclosing(self._blobs.open_reader(digest)) as reader:
            async for chunk in reader:
                data += chunk
                if len(data) > MAX_MANIFEST_BYTES:
                    break
        manifest = parse_manifest(bytes(data))
        return {f.path: f.digest.removeprefix("sha256:") for f in manifest.files}

    async def attach(self, name: VersionName, bundle: bytes) -> SignatureRecord:
        if not bundle:
            raise errors.InvalidArgument(
                ErrorReason.INVALID_SIGNATURE_BUNDLE, "bundle: empty", "bundle"
            )
        try:  # the cheap checks first, before any read
            parsed = await asyncio.to_thread(parse_bundle, bundle)
        except BundleError as err:
            raise _bundle_error(err) from None
        except VerificationError as err:
            raise _invalid(err, name) from None
        manifest_digest = await self._store.version_manifest(name)
        policy = await self._store.effective_policy(name.parent)
        if not policy.keys and not policy.chains:
            raise _signature_invalid(
                f"signature for {name}: UNKNOWN_KEY: the trust policy of {name.parent} lists"
                " no trusted key or chain (set one with UpdateTrustPolicy, e.g. modelreg"
                f" models update {name.model} --trusted-key KEY.pub)",
                {
                    ErrorMetadataKey.SIGNATURE_PROBLEM: Problem.UNKNOWN_KEY.value,
                    ErrorMetadataKey.RESOURCE: str(name),
                },
            )
        expected = await self._manifest_files(manifest_digest)
        try:
            verified = await asyncio.to_thread(_verify, parsed, policy.trust(), expected)
        except BundleError as err:
            raise _bundle_error(err) from None
        except VerificationError as err:
            raise _invalid(err, name) from None
        digest = "sha256:" + hashlib.sha256(bundle).hexdigest()
        await self._store_blob(bundle, digest)
        return await self._store.attach(name, manifest_digest, digest, len(bundle), verified)

    async def _store_blob(self, data: bytes, digest: str) -> None:
        if await self._blobs.stat(digest) is not None:
            return
        upload = await self._blobs.begin_upload(f"signature-{uuid.uuid4().hex}")
        try:
            await upload.write(data)
            await upload.flush()
        except BaseException:
            await upload.cancel()
            raise
        await upload.commit(digest, len(data))

    async def list(self, name: VersionName) -> list[Listed]:
        records, policy = await self._store.list_signatures(name)
        return [Listed(r, policy.untrusted_reason(r)) for r in records]

    async def effective_policy(self, model: ModelName) -> EffectivePolicy:
        return await self._store.effective_policy(model)

    async def get_policy(self, model: ModelName | None) -> TrustPolicy:
        return await self._store.get_policy(model)

    async def update_policy(
        self,
        model: ModelName | None,
        keys: Sequence[str],
        chains: Sequence[tuple[str, str]],
        aliases: Sequence[str],
        mask: Sequence[str],
        etag: str,
    ) -> TrustPolicy:
        paths = resolve_mask(mask, POLICY_PATHS, dict.fromkeys(POLICY_PATHS, True), POLICY_PATHS)
        fields = PolicyFields(
            check_keys(keys) if "trusted_keys" in paths else (),
            check_chains(chains) if "trusted_chains" in paths else (),
            check_required_aliases(aliases) if "require_signature_aliases" in paths else (),
        )
        return await self._store.update_policy(
            model, fields, paths, parse_etag(etag, "policy.etag")
        )
