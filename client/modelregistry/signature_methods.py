"""Signature methods of `RegistryClient`: attach and list OMS signatures,
read and change trust policies. Kept apart from client.py so each stays
small; `RegistryClient` inherits them and supplies the core."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import field_mask_pb2

from .core import Core
from .v1 import signature_service_pb2 as srpc

DEFAULT_TRUST_POLICY = "trustPolicies/default"


def trust_policy_name(model: str) -> str:
    """`models/fraud` or `fraud` -> `models/fraud/trustPolicy`; "" -> the default."""
    if not model:
        return DEFAULT_TRUST_POLICY
    return f"{model if model.startswith('models/') else 'models/' + model}/trustPolicy"


class SignatureMethods:
    _core: Core

    async def attach_signature(
        self, version: str, bundle: bytes, *, request_id: str | None = None
    ) -> srpc.Signature:
        """Attach a model-signing bundle to a READY version; the server
        verifies it against the version's files and the trust policy."""
        request = srpc.AttachSignatureRequest(parent=version, bundle=bundle)
        return await self._core.call(
            self._core.stubs.signatures.AttachSignature, request, request_id, read=False
        )

    async def list_signatures(
        self, version: str, *, request_id: str | None = None
    ) -> list[srpc.Signature]:
        request = srpc.ListSignaturesRequest(parent=version)
        response = await self._core.call(
            self._core.stubs.signatures.ListSignatures, request, request_id, read=True
        )
        return list(response.signatures)

    async def get_trust_policy(
        self, model: str = "", *, request_id: str | None = None
    ) -> srpc.TrustPolicy:
        """A model's trust policy; the registry-wide default for `model=""`."""
        request = srpc.GetTrustPolicyRequest(name=trust_policy_name(model))
        return await self._core.call(
            self._core.stubs.signatures.GetTrustPolicy, request, request_id, read=True
        )

    async def update_trust_policy(
        self,
        model: str = "",
        *,
        trusted_keys: Sequence[str] | None = None,
        trusted_chains: Sequence[tuple[str, str]] | None = None,
        require_signature_aliases: Sequence[str] | None = None,
        etag: str = "",
        request_id: str | None = None,
    ) -> srpc.TrustPolicy:
        """Replace the fields given (None leaves a field as it is):
        PEM public keys, (PEM chain, identity pattern) pairs, alias ids."""
        paths: list[str] = []
        policy = srpc.TrustPolicy(name=trust_policy_name(model), etag=etag)
        if trusted_keys is not None:
            paths.append("trusted_keys")
            policy.trusted_keys.extend(trusted_keys)
        if trusted_chains is not None:
            paths.append("trusted_chains")
            policy.trusted_chains.extend(
                srpc.TrustedChain(certificates_pem=pem, identity_pattern=pattern)
                for pem, pattern in trusted_chains
            )
        if require_signature_aliases is not None:
            paths.append("require_signature_aliases")
            policy.require_signature_aliases.extend(require_signature_aliases)
        if not paths:
            raise ValueError("nothing to update: give keys, chains or aliases")
        request = srpc.UpdateTrustPolicyRequest(
            policy=policy, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        return await self._core.call(
            self._core.stubs.signatures.UpdateTrustPolicy, request, request_id, read=False
        )
