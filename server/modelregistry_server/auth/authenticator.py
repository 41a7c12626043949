"""Who is calling: a bearer token if the call carries one, else its client
certificate, else nobody.

A bearer token is verified once: the answer is cached (by the token itself)
until the token expires, so a serving instance that sends the same JWT
every call pays for one signature check. Service-account tokens are
looked up in the database, cached for at most `service_token_cache_s`, and
dropped from the cache as soon as their revocation shows up in the event
log (`forget`), on every replica.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..domain.access_errors import credentials_expired, credentials_invalid, credentials_revoked
from ..domain.principals import Principal, service_account
from ..domain.tokens import ServiceAccountToken
from . import service_tokens
from .mtls import certificate_principal

if TYPE_CHECKING:
    # Only a server with a JWKS has a verifier, and loads PyJWT.
    from .jwt_verifier import JwtVerifier

AUTHORIZATION_KEY = "authorization"
MAX_HEADER = 16 * 1024


class TokenLookup(Protocol):
    async def get_token(self, token_id: str) -> ServiceAccountToken | None: ...


@dataclass(frozen=True)
class _Cached:
    principal: Principal
    valid_until: float
    token_id: str = ""


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of `authorization: Bearer <token>`, None without the header."""
    for key, value in metadata:
        if key != AUTHORIZATION_KEY:
            continue
        if not isinstance(value, str) or len(value) > MAX_HEADER:
            raise credentials_invalid("the authorization header is malformed")
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise credentials_invalid("the authorization header must be `Bearer <token>`")
        return token
    return None


class Authenticator:
    def __init__(
        self,
        jwt: JwtVerifier | None,
        tokens: TokenLookup | None,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
        service_token_cache_s: float = 60.0,
    ) -> None:
        self._jwt = jwt
        self._tokens = tokens
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_size = cache_size
        self._service_token_cache_s = service_token_cache_s
        self.verifications = 0

    async def authenticate(
        self,
        metadata: Sequence[tuple[str, str | bytes]],
        auth_context: Mapping[str, Iterable[bytes]],
    ) -> Principal | None:
        token = bearer_token(metadata)
        if token is not None:
            return await self._bearer(token)
        return certificate_principal(auth_context)

    async def _bearer(self, token: str) -> Principal:
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.valid_until > now:
                self._cache.move_to_end(token)
                return cached.principal
            del self._cache[token]
        self.verifications += 1
        if service_tokens.looks_like_service_token(token):
            entry = await self._service_token(token, now)
        elif self._jwt is not None:
            verified = await self._jwt.verify(token)
            entry = _Cached(verified.principal, verified.valid_until)
        else:
            raise credentials_invalid("this registry accepts no JWTs (no --jwt-jwks)")
        self._cache[token] = entry
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entry.principal

    async def _service_token(self, token: str, now: float) -> _Cached:
        presented = service_tokens.parse(token)
        if presented is None:
            raise credentials_invalid("the service-account token is malformed")
        record = await self._tokens.get_token(presented.token_id) if self._tokens else None
        if record is None or not service_tokens.matches(presented, record.secret_hash):
            raise credentials_invalid("the service-account token is not known")
        if record.revoke_time_us:
            raise credentials_revoked()
        now_us = int(now * 1_000_000)
        if record.expired(now_us):
            raise credentials_expired()
        until = now + self._service_token_cache_s
        if record.expire_time_us:
            until = min(until, record.expire_time_us / 1_000_000)
        return _Cached(service_account(record.service_account), until, record.token_id)

    def forget(self, token_id: str) -> None:
        """A token was revoked: the next call with it is checked again."""
        for key in [k for k, v in self._cache.items() if v.token_id == token_id]:
            del self._cache[key]

    def clear(self) -> None:
        self._cache.clear()
