"""Service-account tokens the registry issues itself.

Format: `mrsa_<id>_<secret>`: `id` is 16 hex digits naming the token (safe
to log, list and revoke by), `secret` is 256 random bits in unpadded
base64url. The secret is shown once, when the token is created; the
database keeps only sha256 over the id and the secret, so a copy of the
database lets nobody call the registry, and comparing hashes in constant
time leaks nothing about the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "mrsa_"
ID_HEX = 16
SECRET_BYTES = 32
_TOKEN = re.compile(rf"{PREFIX}([0-9a-f]{{{ID_HEX}}})_([A-Za-z0-9_-]{{43}})")
TOKEN_ID = re.compile(rf"[0-9a-f]{{{ID_HEX}}}")


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    # The whole bearer token. Shown once, never stored.
    token: str
    secret_hash: str


@dataclass(frozen=True)
class PresentedToken:
    token_id: str
    secret: str


def secret_hash(token_id: str, secret: str) -> str:
    return hashlib.sha256(f"{token_id}:{secret}".encode()).hexdigest()


def issue() -> IssuedToken:
    token_id = secrets.token_hex(ID_HEX // 2)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=").decode()
    return IssuedToken(token_id, f"{PREFIX}{token_id}_{secret}", secret_hash(token_id, secret))


def looks_like_service_token(token: str) -> bool:
    """JWTs start with `ey` (a base64url JSON header); these with the prefix."""
    return token.startswith(PREFIX)


def parse(token: str) -> PresentedToken | None:
    m = _TOKEN.fullmatch(token)
    if not m:
        return None
    return PresentedToken(m.group(1), m.group(2))


def matches(presented: PresentedToken, stored_hash: str) -> bool:
    computed = secret_hash(presented.token_id, presented.secret)
    return hmac.compare_digest(computed, stored_hash)
