"""Which signatures count: the effective policy of a model and its default."""

from __future__ import annotations

from modelregistry_server.domain.names import ModelName, VersionName
from modelregistry_server.domain.trust import (
    ChainRule,
    SignatureRecord,
    TrustedKey,
    TrustPolicy,
    effective,
)
from modelregistry_server.signing.oms import SignerKind

MODEL = ModelName("fraud")
KEY_A = TrustedKey("pem-a", "sha256:" + "a" * 64)
KEY_B = TrustedKey("pem-b", "sha256:" + "b" * 64)
ROOT = "sha256:" + "c" * 64


def record(kind: SignerKind, signer: str, anchor: str) -> SignatureRecord:
    return SignatureRecord(
        VersionName("fraud", 1), "sha256:" + "d" * 64, 10, kind, signer, anchor, 1, 0, ""
    )


def test_a_model_with_keys_trusts_only_its_own_and_requires_both_alias_lists() -> None:
    own = TrustPolicy(MODEL, keys=(KEY_A,), require_signature_aliases=("staging",))
    default = TrustPolicy(None, keys=(KEY_B,), require_signature_aliases=("production",))
    policy = effective(own, default)
    assert policy.required == {"staging", "production"}
    assert (
        policy.untrusted_reason(record(SignerKind.PUBLIC_KEY, KEY_A.fingerprint, KEY_A.fingerprint))
        == ""
    )
    reason = policy.untrusted_reason(
        record(SignerKind.PUBLIC_KEY, KEY_B.fingerprint, KEY_B.fingerprint)
    )
    assert "no longer trusted" in reason


def test_a_model_without_keys_or_chains_uses_the_default() -> None:
    own = TrustPolicy(MODEL, require_signature_aliases=("production",))
    default = TrustPolicy(None, keys=(KEY_B,))
    policy = effective(own, default)
    assert policy.keys == (KEY_B,) and policy.required == {"production"}
    assert effective(None, None).required == frozenset()


def test_certificate_signatures_count_while_their_identity_matches() -> None:
    chain = ChainRule("pem", r"ci@example\.com", ROOT)
    policy = effective(TrustPolicy(MODEL, chains=(chain,)), None)
    assert policy.untrusted_reason(record(SignerKind.CERTIFICATE, "ci@example.com", ROOT)) == ""
    assert "no longer matches" in policy.untrusted_reason(
        record(SignerKind.CERTIFICATE, "dev@example.com", ROOT)
    )
    assert "chain" in policy.untrusted_reason(
        record(SignerKind.CERTIFICATE, "ci@example.com", "sha256:" + "e" * 64)
    )
