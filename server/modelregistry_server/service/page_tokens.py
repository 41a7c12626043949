"""Opaque page tokens: signed keyset cursors (AIP-158).

A token carries the last key of the page and is bound to the request that
produced it (method, parent, filter), so it cannot be forged, edited or
replayed against another listing. The signing key is shared by replicas
through the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from modelregistry.v1.error_reasons import ErrorReason

from ..domain.errors import InvalidArgument, Unavailable

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_MAC_BYTES = 16


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def coerce_page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument(
            ErrorReason.INVALID_PAGE_SIZE, "page_size must not be negative", "page_size"
        )
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret

    def set_secret(self, secret: bytes) -> None:
        """Set once the shared key has been read from the database."""
        self._secret = secret

    def _mac(self, scope: str, payload: bytes) -> bytes:
        if self._secret is None:
            raise Unavailable(ErrorReason.NOT_READY, "the server is starting; retry shortly")
        msg = scope.encode() + b"\x00" + payload
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, scope: str, cursor: str | int) -> str:
        payload = json.dumps({"c": cursor}, separators=(",", ":")).encode()
        return _b64(payload) + "." + _b64(self._mac(scope, payload))

    def decode(self, scope: str, token: str) -> str | int | None:
        """The cursor, or None for an empty token (the first page)."""
        if not token:
            return None
        invalid = InvalidArgument(
            ErrorReason.INVALID_PAGE_TOKEN,
            "page_token was not issued for this request (same method, parent and filter)",
            "page_token",
        )
        if len(token) > 1024 or token.count(".") != 1:
            raise invalid
        body, mac = token.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except ValueError:
            raise invalid from None
        if not hmac.compare_digest(given, self._mac(scope, payload)):
            raise invalid
        cursor = json.loads(payload)["c"]
        if not isinstance(cursor, str | int):
            raise invalid
        return cursor


@dataclass(frozen=True)
class Listing(Generic[T]):
    """A page as storage returned it, and how to continue after any prefix of it.

    The transport may send only the first items (a response is bounded in
    bytes as well as in count) and continues after the last one it sent.
    """

    items: list[T]
    more: bool
    resume_after: Callable[[T], str]

    def token_after(self, count: int) -> str:
        """The page token for what follows the first `count` items."""
        if 0 < count < len(self.items):
            return self.resume_after(self.items[count - 1])
        if self.more and self.items:
            return self.resume_after(self.items[-1])
        return ""

    @property
    def next_page_token(self) -> str:
        return self.token_after(len(self.items))
