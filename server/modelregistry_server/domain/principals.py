"""Principals (who is calling) and policy members (whom a binding names).

A principal is `user:<id>` (from a verified JWT's claim or a client
certificate's common name) or `serviceAccount:<name>` (from a token the
registry issued). A member of a binding is a principal or
`allAuthenticatedUsers`, which matches every authenticated caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorReason

from .errors import InvalidArgument
from .names import ID_PATTERN

USER = "user"
SERVICE_ACCOUNT = "serviceAccount"
ALL_AUTHENTICATED = "allAuthenticatedUsers"
# Printable, no whitespace or control characters: what an IdP's `sub` or a
# certificate's CN looks like, safe in logs and events.
MAX_USER_ID = 256
_USER_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_USER_ID}}}")
_SERVICE_ACCOUNT = re.compile(ID_PATTERN)
MAX_MEMBER = len(SERVICE_ACCOUNT) + 1 + MAX_USER_ID


@dataclass(frozen=True, order=True)
class Principal:
    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


def user(user_id: str) -> Principal:
    """A user principal; raises ValueError for an id that cannot be one."""
    if not _USER_ID.fullmatch(user_id):
        raise ValueError("a user id is 1-256 printable characters without spaces")
    return Principal(USER, user_id)


def service_account(name: str) -> Principal:
    if not _SERVICE_ACCOUNT.fullmatch(name):
        raise ValueError(
            "a service account name is 1-63 lowercase letters, digits or hyphens, "
            "starting with a letter"
        )
    return Principal(SERVICE_ACCOUNT, name)


def parse_principal(value: str, field: str = "principal") -> Principal:
    kind, sep, rest = value.partition(":")
    try:
        if sep and kind == USER:
            return user(rest)
        if sep and kind == SERVICE_ACCOUNT:
            return service_account(rest)
    except ValueError as exc:
        raise InvalidArgument(ErrorReason.INVALID_PRINCIPAL, f"{field}: {exc}", field) from None
    shown = value if len(value) <= 80 else value[:77] + "..."
    raise InvalidArgument(
        ErrorReason.INVALID_PRINCIPAL,
        f"{field}: {shown!r} is not a principal (user:ID or serviceAccount:NAME)",
        field,
    )


def check_member(value: str, field: str) -> str:
    """A binding member: a principal, or `allAuthenticatedUsers`."""
    if value == ALL_AUTHENTICATED:
        return value
    return str(parse_principal(value, field))


def member_keys(principal: Principal) -> tuple[str, ...]:
    """The member strings that name this principal in a binding."""
    return (str(principal), ALL_AUTHENTICATED)
