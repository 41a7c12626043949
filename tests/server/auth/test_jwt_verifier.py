"""JWT verification against a JWKS: what is accepted, and everything that is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelregistry_server.auth.jwt_verifier import JwksSource, JwtSettings, JwtVerifier, parse_jwks
from modelregistry_server.domain.errors import Unauthenticated
from modelregistry_server.domain.principals import user
from support.jwt_issuer import AUDIENCE, ISSUER, Issuer


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def verifier(issuer: Issuer, tmp_path: Path) -> JwtVerifier:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    return JwtVerifier(JwtSettings(jwks=str(jwks), issuer=ISSUER, audience=AUDIENCE))


async def test_valid_tokens_name_their_user(issuer: Issuer, verifier: JwtVerifier) -> None:
    for kid in ("rsa-1", "ec-1"):
        verified = await verifier.verify(issuer.token("alice", kid=kid))
        assert verified.principal == user("alice")


async def test_principal_claim_is_configurable(issuer: Issuer, tmp_path: Path) -> None:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    settings = JwtSettings(str(jwks), ISSUER, AUDIENCE, principal_claim="email")
    verifier = JwtVerifier(settings)
    token = issuer.token("opaque-id", email="alice@example.com")
    assert (await verifier.verify(token)).principal == user("alice@example.com")
    with pytest.raises(Unauthenticated) as exc:
        await verifier.verify(issuer.token("opaque-id"))
    assert exc.value.reason == "CREDENTIALS_INVALID"


@pytest.mark.parametrize(
    "case",
    [
        "alg none",
        "HS256 signed with the public key",
        "unknown kid",
        "known kid, another key",
        "wrong issuer",
        "wrong audience",
        "expired",
        "not yet valid",
        "issued in the future",
        "no exp",
        "no sub",
        "malformed",
        "garbage",
        "huge",
        "tampered payload",
    ],
)
async def test_bad_tokens_are_refused(issuer: Issuer, verifier: JwtVerifier, case: str) -> None:
    token = issuer.bad_tokens("alice")[case]
    with pytest.raises(Unauthenticated) as exc:
        await verifier.verify(token)
    expected = "CREDENTIALS_EXPIRED" if case in ("expired", "not yet valid") else None
    assert exc.value.reason in (expected or "CREDENTIALS_INVALID", "CREDENTIALS_EXPIRED")
    if case not in ("expired", "not yet valid", "issued in the future"):
        assert exc.value.reason == "CREDENTIALS_INVALID"
    assert "alice" not in exc.value.message  # nothing from the token is echoed


async def test_small_clock_skew_is_tolerated(issuer: Issuer, verifier: JwtVerifier) -> None:
    import time

    now = int(time.time())
    token = issuer.token("alice", iat=now + 10, nbf=now + 10, exp=now + 3600)
    assert (await verifier.verify(token)).principal == user("alice")
    just_expired = issuer.token("alice", iat=now - 100, exp=now - 10)
    assert (await verifier.verify(just_expired)).principal == user("alice")


def test_jwks_without_usable_signing_keys_is_refused(issuer: Issuer) -> None:
    jwks = issuer.jwks()
    symmetric = {"kty": "oct", "kid": "hs", "k": "c2VjcmV0"}
    encryption = dict(jwks["keys"][0], kid="enc", use="enc")
    keys = parse_jwks(json.dumps({"keys": [*jwks["keys"], symmetric, encryption]}).encode())
    assert sorted(keys) == ["ec-1", "rsa-1"]
    with pytest.raises(ValueError):
        parse_jwks(json.dumps({"keys": [symmetric]}).encode())
    with pytest.raises(ValueError):
        parse_jwks(b'{"keys": "nope"}')


async def test_unknown_kid_refetches_at_most_once_per_interval(issuer: Issuer) -> None:
    clock = [0.0]
    reads: list[str] = []
    document = {"keys": [issuer.jwks()["keys"][1]]}  # only ec-1 at first

    def read(location: str) -> bytes:
        reads.append(location)
        return json.dumps(document).encode()

    source = JwksSource("mem", refresh_s=300, min_refetch_s=30, clock=lambda: clock[0], read=read)
    verifier = JwtVerifier(JwtSettings("mem", ISSUER, AUDIENCE), source)
    with pytest.raises(Unauthenticated):
        await verifier.verify(issuer.token("alice", kid="rsa-1"))
    with pytest.raises(Unauthenticated):  # made-up kids do not make it fetch again
        await verifier.verify(issuer.bad_tokens("alice")["unknown kid"])
    assert len(reads) == 1
    document = issuer.jwks()  # the provider rotates in rsa-1
    clock[0] = 31
    assert (await verifier.verify(issuer.token("alice", kid="rsa-1"))).principal == user("alice")
    assert len(reads) == 2
    clock[0] = 400  # periodic refresh
    await verifier.verify(issuer.token("alice", kid="rsa-1"))
    assert len(reads) == 3


async def test_a_failing_refresh_keeps_the_keys_it_has(issuer: Issuer) -> None:
    clock = [0.0]
    fail = [False]

    def read(location: str) -> bytes:
        if fail[0]:
            raise OSError("connection refused")
        return json.dumps(issuer.jwks()).encode()

    source = JwksSource("mem", refresh_s=60, min_refetch_s=5, clock=lambda: clock[0], read=read)
    verifier = JwtVerifier(JwtSettings("mem", ISSUER, AUDIENCE), source)
    await verifier.verify(issuer.token("alice"))
    fail[0] = True
    clock[0] = 120
    assert (await verifier.verify(issuer.token("alice"))).principal == user("alice")
