"""OIDC bearer tokens: JWTs verified against the identity provider's JWKS.

Only asymmetric algorithms are accepted, and only the ones that fit the key
the token names: `none` and every HS* algorithm are refused outright, so a
token "signed" with the public key as an HMAC secret never verifies. The
issuer and audience must match exactly; `exp` and `iat` are required and,
like `nbf`, checked with a small clock skew.

The key set comes from a file or an https URL. It is loaded at first use,
refreshed every `refresh_s`, and fetched again when a token names a key id
it does not know (the provider rotated its keys), at most once per
`min_refetch_s`: tokens with made-up key ids must not make the server hammer
the provider.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK

from ..domain.access_errors import credentials_expired, credentials_invalid
from ..domain.principals import Principal, user

log = logging.getLogger("modelreg.auth")

ALGORITHMS_BY_KEY_TYPE: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}
ALLOWED_ALGORITHMS = frozenset().union(*ALGORITHMS_BY_KEY_TYPE.values())
MAX_JWKS_BYTES = 1024 * 1024
MAX_KEY_ID = 256
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class JwtSettings:
    # A JWKS file path, or an http(s) URL serving one.
    jwks: str
    # The `iss` every token must carry.
    issuer: str
    # The `aud` every token must include (this registry's client id).
    audience: str
    # The claim that names the user: the principal is `user:<value>`.
    principal_claim: str = "sub"
    # Clock skew allowed on exp, nbf and iat.
    leeway_s: float = 30.0
    refresh_s: float = 300.0
    min_refetch_s: float = 30.0
    # Longer tokens are refused before any parsing.
    max_token_bytes: int = 8192


@dataclass(frozen=True)
class VerifiedToken:
    principal: Principal
    # Unix seconds after which the token is no longer valid (exp + leeway).
    valid_until: float


def _read_location(location: str) -> bytes:
    if location.startswith(("https://", "http://")):
        with urllib.request.urlopen(location, timeout=FETCH_TIMEOUT_S) as response:
            data: bytes = response.read(MAX_JWKS_BYTES + 1)
    else:
        with Path(location).open("rb") as f:
            data = f.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
    return data


def parse_jwks(data: bytes) -> dict[str, PyJWK]:
    """Signing keys by key id. Symmetric keys, keys without an id and keys
    meant for encryption are left out: none of them can verify a token here."""
    document = json.loads(data)
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("a JWKS is an object with a `keys` list")
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid, kty = entry.get("kid"), entry.get("kty")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KEY_ID:
            continue
        if kty not in ALGORITHMS_BY_KEY_TYPE or entry.get("use", "sig") != "sig":
            continue
        if "d" in entry:  # a private key published by mistake: refuse to use it
            continue
        try:
            keys[kid] = PyJWK(entry)
        except jwt.PyJWTError as exc:
            log.warning("skipping an unusable JWKS key", extra={"kid": kid, "error": str(exc)})
    if not keys:
        raise ValueError("the key set has no usable signing key")
    return keys


class JwksSource:
    """The provider's keys by id, cached and refreshed."""

    def __init__(
        self,
        location: str,
        refresh_s: float = 300.0,
        min_refetch_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[str], bytes] = _read_location,
    ) -> None:
        self._location = location
        self._refresh_s = refresh_s
        self._min_refetch_s = min_refetch_s
        self._clock = clock
        self._read = read
        self._keys: dict[str, PyJWK] | None = None
        self._loaded_at = 0.0
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()
        self.loads = 0

    async def _load(self) -> None:
        async with self._lock:
            now = self._clock()
            if now - self._attempted_at < self._min_refetch_s:
                return  # another caller just tried
            self._attempted_at = now
            try:
                data = await asyncio.to_thread(self._read, self._location)
                self._keys = parse_jwks(data)
                self._loaded_at = now
                self.loads += 1
            except (OSError, ValueError) as exc:
                # Keep the keys we have: a provider hiccup must not log everyone out.
                log.warning(
                    "cannot load the JWKS",
                    extra={"jwks": self._location, "error": type(exc).__name__, "detail": str(exc)},
                )

    async def key(self, kid: str) -> PyJWK | None:
        if self._keys is None or self._clock() - self._loaded_at >= self._refresh_s:
            await self._load()
        keys = self._keys or {}
        found = keys.get(kid)
        if found is None and self._clock() - self._attempted_at >= self._min_refetch_s:
            await self._load()
            found = (self._keys or {}).get(kid)
        return found

    async def check(self) -> int:
        """Load now (at start-up: a wrong path should fail loudly); the key count."""
        await self._load()
        if self._keys is None:
            raise ValueError(f"cannot load a usable JWKS from {self._location}")
        return len(self._keys)


def _header(token: str) -> Mapping[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise credentials_invalid("the bearer token is not a well-formed JWT") from None


class JwtVerifier:
    def __init__(self, settings: JwtSettings, keys: JwksSource | None = None) -> None:
        self._settings = settings
        self.keys = keys or JwksSource(settings.jwks, settings.refresh_s, settings.min_refetch_s)

    async def verify(self, token: str) -> VerifiedToken:
        s = self._settings
        if len(token) > s.max_token_bytes:
            raise credentials_invalid(f"the bearer token is longer than {s.max_token_bytes} bytes")
        header = _header(token)
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise credentials_invalid("the token's signing algorithm is not accepted")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KEY_ID:
            raise credentials_invalid("the token names no signing key (kid)")
        key = await self.keys.key(kid)
        if key is None:
            raise credentials_invalid("the token's signing key is unknown to this registry")
        if alg not in ALGORITHMS_BY_KEY_TYPE.get(key.key_type or "", frozenset()) or (
            key.algorithm_name and key.algorithm_name != alg
        ):
            raise credentials_invalid("the token's algorithm does not match its key")
        claims = self._decode(token, key, alg)
        value = claims.get(s.principal_claim)
        try:
            if not isinstance(value, str):
                raise ValueError
            principal = user(value)
        except ValueError:
            raise credentials_invalid(
                f"the token's {s.principal_claim!r} claim does not name a user"
            ) from None
        return VerifiedToken(principal, float(claims["exp"]) + s.leeway_s)

    def _decode(self, token: str, key: PyJWK, alg: str) -> dict[str, Any]:
        s = self._settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", s.principal_claim]},
            )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            raise credentials_expired() from None
        except jwt.InvalidAudienceError:
            raise credentials_invalid("the token is meant for another audience") from None
        except jwt.InvalidIssuerError:
            raise credentials_invalid("the token comes from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise credentials_invalid(f"the token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise credentials_invalid("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise credentials_invalid("the bearer token is not a valid JWT") from None
        return claims
