"""Use cases of access control: policies, permission tests, service-account tokens.

Who may call each of these is decided before they run (`api.access`);
here the requests are validated and carried out. A policy is replaced as
a whole, conditionally on its etag; every change, and every token issued
or revoked, is an event in the log, which is also how other replicas learn
to drop what they cached.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from modelregistry.v1.error_reasons import ErrorReason

from ..auth import service_tokens
from ..auth.authorizer import Authorizer, PolicyReader
from ..domain import validation as check
from ..domain.errors import InvalidArgument
from ..domain.etags import Etag, parse_etag
from ..domain.permissions import Permission
from ..domain.policies import Binding, Decision, Policy, PolicyResource, check_bindings
from ..domain.policies import parse_policy_resource as parse_resource
from ..domain.principals import Principal, parse_principal, service_account
from ..domain.resources import Page
from ..domain.tokens import ServiceAccountToken
from .page_tokens import PageTokens, coerce_page_size

MAX_PERMISSIONS = 64
MAX_DESCRIPTION = 256
MIN_TTL_S = 60
MAX_TTL_S = 3650 * 24 * 3600
_TOKEN_NAME = re.compile(
    r"serviceAccounts/([a-z](?:[a-z0-9-]{0,61}[a-z0-9])?)/tokens/([0-9a-f]{16})"
)


class AccessStore(PolicyReader, Protocol):
    async def get_policy(self, resource: PolicyResource) -> Policy:
        """The policy (empty, etag `0-0`, if never set); MODEL_NOT_FOUND for
        a model or alias of a model that does not exist."""

    async def set_policy(
        self, resource: PolicyResource, bindings: tuple[Binding, ...], etag: Etag | None
    ) -> Policy:
        """Replace it, conditionally; the change is a POLICY_SET event."""

    async def create_token(self, token: ServiceAccountToken) -> ServiceAccountToken: ...

    async def get_token(self, token_id: str) -> ServiceAccountToken | None: ...

    async def list_tokens(
        self, account: str, active_at_us: int | None, before_id: int | None, limit: int
    ) -> tuple[Page[ServiceAccountToken], int | None]:
        """Newest first; `active_at_us` set: only tokens active then. Also
        the cursor after the page, if more."""

    async def revoke_token(self, account: str, token_id: str) -> ServiceAccountToken:
        """Idempotent; TOKEN_NOT_FOUND if there is no such token."""


@dataclass(frozen=True)
class IssuedToken:
    record: ServiceAccountToken
    # The bearer token: returned once, stored nowhere.
    secret: str


def parse_token_name(value: str, field: str = "name") -> tuple[str, str]:
    m = _TOKEN_NAME.fullmatch(value)
    if not m:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(
            ErrorReason.INVALID_NAME,
            f"{field}: {shown!r} is not a token name "
            "(serviceAccounts/{service_account}/tokens/{token_id})",
            field,
        )
    return m.group(1), m.group(2)


def _check_account(account: str) -> None:
    try:
        service_account(account)
    except ValueError as exc:
        raise InvalidArgument(
            ErrorReason.INVALID_NAME, f"service_account: {exc}", "service_account"
        ) from None


def parse_permissions(values: Sequence[str]) -> list[Permission]:
    if not 0 < len(values) <= MAX_PERMISSIONS:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, f"permissions: 1 to {MAX_PERMISSIONS} of them", "permissions"
        )
    out = []
    for value in values:
        try:
            out.append(Permission(value))
        except ValueError:
            shown = value[:80]
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD,
                f"permissions: unknown permission {shown!r}",
                "permissions",
            ) from None
    return out


class Access:
    def __init__(self, store: AccessStore, authorizer: Authorizer, tokens: PageTokens) -> None:
        self._store = store
        self._authorizer = authorizer
        self._tokens = tokens

    # -- policies -------------------------------------------------------------

    async def get_policy(self, resource: str) -> Policy:
        return await self._store.get_policy(parse_resource(resource))

    async def set_policy(
        self, resource: str, bindings: Iterable[tuple[str, Iterable[str]]], etag: str
    ) -> Policy:
        where = parse_resource(resource)
        checked = check_bindings(where, bindings)
        policy = await self._store.set_policy(where, checked, parse_etag(etag, "policy.etag"))
        self._authorizer.invalidate()
        return policy

    async def test_permissions(
        self, resource: str, permissions: Sequence[str], principal: str, caller: Principal | None
    ) -> tuple[Principal, list[Decision]]:
        where = parse_resource(resource)
        wanted = parse_permissions(permissions)
        if principal:
            who = parse_principal(principal)
        elif caller is not None:
            who = caller
        else:
            raise InvalidArgument(
                ErrorReason.INVALID_PRINCIPAL,
                "principal: the caller is anonymous; name the principal to test",
                "principal",
            )
        return who, [await self._authorizer.decide(who, p, where) for p in wanted]

    # -- service-account tokens -----------------------------------------------

    async def create_token(
        self, account: str, description: str, ttl_s: float, creator: str
    ) -> IssuedToken:
        _check_account(account)
        if len(description) > MAX_DESCRIPTION:
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD,
                f"description: at most {MAX_DESCRIPTION} characters",
                "description",
            )
        check.check_description(description, "description")
        if ttl_s and not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD,
                "ttl: 1 minute to 3650 days, or unset for no expiry",
                "ttl",
            )
        issued = service_tokens.issue()
        now_us = int(time.time() * 1_000_000)
        record = ServiceAccountToken(
            token_id=issued.token_id,
            service_account=account,
            secret_hash=issued.secret_hash,
            description=description,
            creator=creator,
            create_time_us=now_us,
            expire_time_us=now_us + int(ttl_s * 1_000_000) if ttl_s else 0,
            revoke_time_us=0,
        )
        return IssuedToken(await self._store.create_token(record), issued.token)

    async def list_tokens(
        self, account: str, show_inactive: bool, page_size: int, page_token: str
    ) -> tuple[list[ServiceAccountToken], str]:
        if account:
            _check_account(account)
        limit = coerce_page_size(page_size)
        scope = f"ListServiceAccountTokens|{account}|{show_inactive}"
        cursor = self._tokens.decode(scope, page_token)
        if cursor is not None and not isinstance(cursor, int):
            raise InvalidArgument(
                ErrorReason.INVALID_PAGE_TOKEN, "page_token is malformed", "page_token"
            )
        active_at = None if show_inactive else int(time.time() * 1_000_000)
        page, last_id = await self._store.list_tokens(account, active_at, cursor, limit)
        token = self._tokens.encode(scope, last_id) if last_id is not None else ""
        return page.items, token

    async def revoke_token(self, name: str) -> ServiceAccountToken:
        account, token_id = parse_token_name(name)
        return await self._store.revoke_token(account, token_id)
