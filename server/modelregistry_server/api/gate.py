"""The door every RPC passes: who is calling, and may they do this?

With `--auth off` nothing is enforced: the caller is recorded as today (the
client certificate's subject under mutual TLS, else `anonymous`). With
`--auth required` every RPC but health and reflection needs a principal
(UNAUTHENTICATED otherwise) and must pass the access table
(PERMISSION_DENIED otherwise); both kinds of refusal are audited.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..auth.authenticator import Authenticator
from ..domain.access_errors import credentials_missing
from ..domain.errors import Unauthenticated
from ..domain.principals import Principal
from ..domain.request_context import ANONYMOUS, Visible
from .access import AccessControl

audit = logging.getLogger("modelreg.audit")


class AuthMode(enum.StrEnum):
    OFF = "off"
    REQUIRED = "required"


@dataclass(frozen=True)
class Admitted:
    caller: str
    principal: Principal | None = None
    visibility: Visible | None = None


def certificate_subject(auth_context: Mapping[str, Iterable[bytes]]) -> str:
    for key in ("x509_subject", "x509_common_name"):
        values = list(auth_context.get(key) or ())
        if values:
            return bytes(values[0]).decode(errors="replace")
    return ANONYMOUS


def audit_unauthenticated(exc: Unauthenticated, method: str, request_id: str) -> None:
    audit.warning(
        "unauthenticated",
        extra={
            "principal": "",
            "method": method,
            "reason": exc.reason,
            "request_id": request_id,
            "decision": "UNAUTHENTICATED",
        },
    )


class Gate:
    def __init__(
        self,
        mode: AuthMode,
        authenticator: Authenticator | None = None,
        access: AccessControl | None = None,
    ) -> None:
        if mode == AuthMode.REQUIRED and (authenticator is None or access is None):
            raise ValueError("--auth required needs an authenticator and the access table")
        self.mode = mode
        self._authenticator = authenticator
        self._access = access

    async def admit(
        self,
        method: str,
        request: Any,
        metadata: Sequence[tuple[str, str | bytes]],
        auth_context: Mapping[str, Iterable[bytes]],
        request_id: str,
    ) -> Admitted:
        if self.mode == AuthMode.OFF or self._authenticator is None or self._access is None:
            return Admitted(certificate_subject(auth_context))
        try:
            principal = await self._authenticator.authenticate(metadata, auth_context)
            if principal is None:
                raise credentials_missing()
        except Unauthenticated as exc:
            audit_unauthenticated(exc, method, request_id)
            raise
        visibility = await self._access.authorize(method, request, principal, request_id)
        return Admitted(str(principal), principal, visibility)


async def peek(requests: AsyncIterator[Any]) -> tuple[Any, AsyncIterator[Any]]:
    """The first message of a client stream (None if it ends at once) and
    the stream as the servicer should see it: unchanged, first message
    included. Authorizing an upload needs its `start`."""
    iterator = aiter(requests)
    first = await anext(iterator, None)

    async def replay() -> AsyncIterator[Any]:
        if first is None:
            return
        yield first
        async for request in iterator:
            yield request

    return first, replay()
