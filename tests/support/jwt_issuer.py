"""A test identity provider: keys generated per test run, a JWKS file, and
tokens good and bad (for the verifier's and the server's tests)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from modelregistry_server.config import ServerConfig

ISSUER = "https://idp.test.example"
AUDIENCE = "modelreg-test"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """Signs tokens with an RSA key (kid `rsa-1`) and an EC key (`ec-1`)."""

    def __init__(self, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.issuer, self.audience = issuer, audience
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        # Not in the JWKS: what an attacker with their own key would sign with.
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
        rsa_jwk.update(kid="rsa-1", use="sig", alg="RS256")
        ec_jwk = json.loads(ECAlgorithm.to_jwk(self.ec.public_key()))
        ec_jwk.update(kid="ec-1", use="sig")
        return {"keys": [rsa_jwk, ec_jwk]}

    def server_config(self, db_url: str, tmp_path: Path, *admins: str, **more: Any) -> ServerConfig:
        """A loopback server with authentication required, trusting this
        issuer's JWTs, with `admins` as bootstrap admins."""
        tmp_path.mkdir(parents=True, exist_ok=True)
        return ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "data",
            database_url=db_url,
            auth="required",
            jwt_jwks=str(self.write_jwks(tmp_path / "jwks.json")),
            jwt_issuer=self.issuer,
            jwt_audience=self.audience,
            bootstrap_admins=admins,
            **more,
        )

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def claims(self, subject: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, subject: str, *, kid: str = "rsa-1", **overrides: Any) -> str:
        """A token for `subject`; a claim given as None is left out."""
        claims = self.claims(subject, **overrides)
        if kid == "ec-1":
            return jwt.encode(claims, self.ec, "ES256", {"kid": kid})
        return jwt.encode(claims, self.rsa, "RS256", {"kid": kid})

    def bad_tokens(self, sub: str) -> dict[str, str]:
        """Tokens that must never be accepted, by what is wrong with them."""
        public_pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        claims = self.claims(sub)
        header_none = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
        body = _b64(json.dumps(claims).encode())
        header_hs = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        import hashlib
        import hmac

        hs_sig = hmac.new(public_pem, f"{header_hs}.{body}".encode(), hashlib.sha256).digest()
        now = int(time.time())
        return {
            "alg none": f"{header_none}.{body}.",
            "HS256 signed with the public key": f"{header_hs}.{body}.{_b64(hs_sig)}",
            "unknown kid": jwt.encode(claims, self.stranger, "RS256", {"kid": "rsa-2"}),
            "known kid, another key": jwt.encode(claims, self.stranger, "RS256", {"kid": "rsa-1"}),
            "wrong issuer": self.token(sub, iss="https://evil.example"),
            "wrong audience": self.token(sub, aud="another-service"),
            "expired": self.token(sub, iat=now - 7200, exp=now - 3600),
            "not yet valid": self.token(sub, nbf=now + 3600),
            "issued in the future": self.token(sub, iat=now + 3600, exp=now + 7200),
            "no exp": self.token(sub, exp=None),
            "no sub": self.token(sub, sub=None),
            "malformed": "not.a.jwt",
            "garbage": "x" * 40,
            "huge": self.token(sub, pad="x" * 20_000),
            "tampered payload": _tamper(self.token(sub), self.claims("admin")),
        }


def _tamper(token: str, claims: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
