"""Who is calling: bearer tokens (JWT, service account), client certificates, caching."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from modelregistry_server.auth import service_tokens
from modelregistry_server.auth.authenticator import Authenticator, bearer_token
from modelregistry_server.auth.jwt_verifier import JwtSettings, JwtVerifier
from modelregistry_server.auth.mtls import certificate_principal
from modelregistry_server.domain.errors import Unauthenticated
from modelregistry_server.domain.principals import service_account, user
from modelregistry_server.domain.tokens import ServiceAccountToken
from support.jwt_issuer import AUDIENCE, ISSUER, Issuer


class Tokens:
    def __init__(self) -> None:
        self.records: dict[str, ServiceAccountToken] = {}
        self.lookups = 0

    def add(self, account: str, expire_time_us: int = 0) -> service_tokens.IssuedToken:
        issued = service_tokens.issue()
        self.records[issued.token_id] = ServiceAccountToken(
            issued.token_id, account, issued.secret_hash, "", "user:root", 1, expire_time_us, 0
        )
        return issued

    def revoke(self, token_id: str) -> None:
        from dataclasses import replace

        self.records[token_id] = replace(self.records[token_id], revoke_time_us=2)

    async def get_token(self, token_id: str) -> ServiceAccountToken | None:
        self.lookups += 1
        return self.records.get(token_id)


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def jwt_verifier(issuer: Issuer, tmp_path: Path) -> JwtVerifier:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    return JwtVerifier(JwtSettings(str(jwks), ISSUER, AUDIENCE))


def bearer(token: str) -> list[tuple[str, str | bytes]]:
    return [("authorization", f"Bearer {token}")]


def test_service_tokens_round_trip_and_hash_only() -> None:
    issued = service_tokens.issue()
    assert issued.token.startswith(f"mrsa_{issued.token_id}_")
    assert len(issued.token) == len("mrsa_") + 16 + 1 + 43
    presented = service_tokens.parse(issued.token)
    assert presented is not None
    assert issued.secret_hash not in issued.token
    assert service_tokens.matches(presented, issued.secret_hash)
    other = service_tokens.issue()
    assert not service_tokens.matches(presented, other.secret_hash)
    for bad in ("mrsa_", "mrsa_zz_x", issued.token + "x", issued.token[:-1]):
        assert service_tokens.parse(bad) is None


def test_bearer_header_is_strict() -> None:
    assert bearer_token([("x-request-id", "1")]) is None
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "bearer  abc ")]) == "abc"
    for bad in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "abc", "x" * 20_000):
        with pytest.raises(Unauthenticated) as exc:
            bearer_token([("authorization", bad)])
        assert exc.value.reason == "CREDENTIALS_INVALID"


async def test_a_jwt_is_verified_once(issuer: Issuer, jwt_verifier: JwtVerifier) -> None:
    auth = Authenticator(jwt_verifier, None)
    token = issuer.token("alice")
    for _ in range(5):
        assert await auth.authenticate(bearer(token), {}) == user("alice")
    assert auth.verifications == 1


async def test_cached_jwt_expires_with_the_token(issuer: Issuer, jwt_verifier: JwtVerifier) -> None:
    now = [time.time()]
    auth = Authenticator(jwt_verifier, None, clock=lambda: now[0])
    token = issuer.token("alice", exp=int(now[0]) + 60)
    await auth.authenticate(bearer(token), {})
    await auth.authenticate(bearer(token), {})
    assert auth.verifications == 1
    now[0] += 60 + 31  # past exp and the leeway: the cached answer is not used
    await auth.authenticate(bearer(token), {})
    assert auth.verifications == 2


async def test_service_account_tokens(jwt_verifier: JwtVerifier) -> None:
    tokens = Tokens()
    auth = Authenticator(jwt_verifier, tokens)
    issued = tokens.add("ci")
    assert await auth.authenticate(bearer(issued.token), {}) == service_account("ci")
    await auth.authenticate(bearer(issued.token), {})
    assert tokens.lookups == 1
    tokens.revoke(issued.token_id)
    auth.forget(issued.token_id)
    with pytest.raises(Unauthenticated) as exc:
        await auth.authenticate(bearer(issued.token), {})
    assert exc.value.reason == "CREDENTIALS_REVOKED"
    wrong_secret = issued.token[:-4] + ("AAAA" if not issued.token.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated) as exc:
        await auth.authenticate(bearer(wrong_secret), {})
    assert exc.value.reason == "CREDENTIALS_INVALID"
    expired = tokens.add("ci", expire_time_us=int(time.time() * 1e6) - 1)
    with pytest.raises(Unauthenticated) as exc:
        await auth.authenticate(bearer(expired.token), {})
    assert exc.value.reason == "CREDENTIALS_EXPIRED"


async def test_no_jwt_settings_means_no_jwts(issuer: Issuer) -> None:
    auth = Authenticator(None, Tokens())
    with pytest.raises(Unauthenticated):
        await auth.authenticate(bearer(issuer.token("alice")), {})


async def test_certificates_and_anonymous() -> None:
    auth = Authenticator(None, None)
    ctx = {"x509_common_name": [b"alice"], "x509_subject": [b"CN=alice,O=ml"]}
    assert await auth.authenticate([], ctx) == user("alice")
    assert await auth.authenticate([], {}) is None
    assert certificate_principal({"x509_common_name": [b"has space"]}) is None
    assert certificate_principal({"x509_common_name": [b"\xff"]}) is None


async def test_a_bearer_token_wins_over_the_certificate(
    issuer: Issuer, jwt_verifier: JwtVerifier
) -> None:
    auth = Authenticator(jwt_verifier, None)
    ctx = {"x509_common_name": [b"alice"]}
    assert await auth.authenticate(bearer(issuer.token("bob")), ctx) == user("bob")
    with pytest.raises(Unauthenticated):  # a bad token is not rescued by the certificate
        await auth.authenticate(bearer("garbage"), ctx)
