"""SignatureService over gRPC: parse, call the use case, convert."""

from __future__ import annotations

from typing import Any

from modelregistry.v1 import signature_service_pb2 as rpc
from modelregistry.v1 import signature_service_pb2_grpc as rpc_grpc

from ..domain.names import parse_version_name
from ..domain.trust import TrustPolicy, parse_policy_name
from ..service.signatures import Listed, Signatures
from ..signing.oms import SignerKind
from .convert import timestamp

Ctx = Any  # grpc.aio.ServicerContext

_KINDS = {
    SignerKind.PUBLIC_KEY: rpc.Signature.PUBLIC_KEY,
    SignerKind.CERTIFICATE: rpc.Signature.CERTIFICATE,
}


def signature_to_pb(listed: Listed) -> rpc.Signature:
    r = listed.record
    return rpc.Signature(
        name=r.name,
        digest=r.digest,
        size_bytes=r.size_bytes,
        signer_kind=_KINDS[r.kind],
        signer=r.signer,
        trust_anchor=r.trust_anchor,
        trusted=not listed.untrusted_reason,
        untrusted_reason=listed.untrusted_reason,
        file_count=r.file_count,
        create_time=timestamp(r.create_time_us),
        creator=r.creator,
    )


def policy_to_pb(p: TrustPolicy) -> rpc.TrustPolicy:
    return rpc.TrustPolicy(
        name=p.name,
        trusted_keys=[k.pem for k in p.keys],
        trusted_chains=[
            rpc.TrustedChain(certificates_pem=c.pem, identity_pattern=c.identity_pattern)
            for c in p.chains
        ],
        require_signature_aliases=list(p.require_signature_aliases),
        update_time=timestamp(p.update_time_us) if p.update_time_us else None,
        etag=p.etag,
    )


class SignatureServicer(rpc_grpc.SignatureServiceServicer):
    def __init__(self, signatures: Signatures) -> None:
        self._signatures = signatures

    async def AttachSignature(
        self, request: rpc.AttachSignatureRequest, context: Ctx
    ) -> rpc.Signature:
        name = parse_version_name(request.parent, "parent")
        record = await self._signatures.attach(name, request.bundle)
        policy = await self._signatures.effective_policy(name.parent)
        return signature_to_pb(Listed(record, policy.untrusted_reason(record)))

    async def ListSignatures(
        self, request: rpc.ListSignaturesRequest, context: Ctx
    ) -> rpc.ListSignaturesResponse:
        listed = await self._signatures.list(parse_version_name(request.parent, "parent"))
        return rpc.ListSignaturesResponse(signatures=[signature_to_pb(s) for s in listed])

    async def GetTrustPolicy(
        self, request: rpc.GetTrustPolicyRequest, context: Ctx
    ) -> rpc.TrustPolicy:
        return policy_to_pb(await self._signatures.get_policy(parse_policy_name(request.name)))

    async def UpdateTrustPolicy(
        self, request: rpc.UpdateTrustPolicyRequest, context: Ctx
    ) -> rpc.TrustPolicy:
        p = request.policy
        policy = await self._signatures.update_policy(
            parse_policy_name(p.name, "policy.name"),
            list(p.trusted_keys),
            [(c.certificates_pem, c.identity_pattern) for c in p.trusted_chains],
            list(p.require_signature_aliases),
            list(request.update_mask.paths),
            p.etag,
        )
        return policy_to_pb(policy)
