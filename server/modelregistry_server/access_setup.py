"""Assembles access control for the server: who may start how, and the parts
(the gate every RPC passes, the AccessService, the cache listener).

Refusing to start is deliberate: a registry that anyone on the network may
write to must be asked for by name (`--insecure-allow-anonymous`), and a
registry that requires authentication must have a way to authenticate its
bootstrap admin.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from .api.access import AccessControl
from .api.access_servicer import AccessServicer
from .api.gate import AuthMode, Gate
from .auth import invalidation
from .auth.authenticator import Authenticator
from .auth.authorizer import Authorizer
from .config import ServerConfig
from .domain.errors import DomainError
from .domain.events import Event
from .domain.principals import parse_principal
from .service.access import Access
from .service.page_tokens import PageTokens
from .store.access_store import SqlAccessStore

if TYPE_CHECKING:
    # PyJWT (and with it cryptography) loads only when a JWKS is configured.
    from .auth.jwt_verifier import JwtSettings, JwtVerifier

log = logging.getLogger("modelreg.auth")


class RefusedConfiguration(ValueError):
    """The server will not start like this; the message says why and what to do."""


@dataclass(frozen=True)
class AccessSettings:
    auth: AuthMode
    listen: str
    jwt: JwtSettings | None = None
    bootstrap_admins: tuple[str, ...] = ()
    insecure_allow_anonymous: bool = False
    # Whether clients present certificates (mutual TLS): a way to authenticate.
    client_certificates: bool = False


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost, or a wildcard


def check(settings: AccessSettings) -> None:
    if settings.auth == AuthMode.OFF:
        if not is_loopback(settings.listen) and not settings.insecure_allow_anonymous:
            raise RefusedConfiguration(
                f"refusing to serve {settings.listen} without authentication: anyone who "
                "can reach it could create, approve, promote and delete models. Use "
                "--auth required (with --jwt-jwks and/or --tls-client-ca, and "
                "--bootstrap-admin), listen on loopback, or pass "
                "--insecure-allow-anonymous if the network itself is trusted"
            )
        return
    if settings.jwt is None and not settings.client_certificates:
        raise RefusedConfiguration(
            "--auth required needs a way to know callers: --jwt-jwks (with --jwt-issuer "
            "and --jwt-audience) and/or --tls-client-ca; service-account tokens alone "
            "cannot be issued without a first admin who can sign in"
        )
    if settings.jwt is not None and not (settings.jwt.issuer and settings.jwt.audience):
        raise RefusedConfiguration("--jwt-jwks needs --jwt-issuer and --jwt-audience")
    for admin in settings.bootstrap_admins:
        try:
            parse_principal(admin, "--bootstrap-admin")
        except DomainError as exc:
            raise RefusedConfiguration(exc.message) from None


@dataclass
class AccessParts:
    gate: Gate
    servicer: AccessServicer
    authorizer: Authorizer
    authenticator: Authenticator
    store: SqlAccessStore
    jwt: JwtVerifier | None

    def listener(self) -> Callable[[Sequence[Event] | None], None]:
        """For the watch hub: drop cached decisions and tokens on changes."""
        return invalidation.listener(self.authorizer, self.authenticator)

    async def preload(self) -> None:
        """Load the JWKS at start-up: a wrong path or URL is logged at once
        (and retried on use: the provider may come up after the registry)."""
        if self.jwt is None:
            return
        try:
            log.info("JWKS loaded", extra={"keys": await self.jwt.keys.check()})
        except ValueError as exc:
            log.error(
                "cannot load the JWKS: JWTs are refused until it loads",
                extra={"detail": str(exc)},
            )


def settings_from(config: ServerConfig) -> AccessSettings:
    jwt = None
    if config.jwt_jwks:
        from .auth.jwt_verifier import JwtSettings

        jwt = JwtSettings(
            config.jwt_jwks, config.jwt_issuer, config.jwt_audience, config.jwt_principal_claim
        )
    try:
        auth = AuthMode(config.auth)
    except ValueError:
        raise RefusedConfiguration(f"--auth {config.auth!r}: off or required") from None
    return AccessSettings(
        auth=auth,
        listen=config.listen,
        jwt=jwt,
        bootstrap_admins=tuple(config.bootstrap_admins),
        insecure_allow_anonymous=config.insecure_allow_anonymous,
        client_certificates=config.tls_client_ca is not None,
    )


def build(settings: AccessSettings, engine: AsyncEngine, tokens: PageTokens) -> AccessParts:
    check(settings)
    store = SqlAccessStore(engine)
    authorizer = Authorizer(store, frozenset(settings.bootstrap_admins))
    jwt = None
    if settings.jwt is not None:
        from .auth.jwt_verifier import JwtVerifier

        jwt = JwtVerifier(settings.jwt)
    authenticator = Authenticator(jwt, store)
    gate = Gate(settings.auth, authenticator, AccessControl(authorizer, store))
    servicer = AccessServicer(Access(store, authorizer, tokens))
    return AccessParts(gate, servicer, authorizer, authenticator, store, jwt)
