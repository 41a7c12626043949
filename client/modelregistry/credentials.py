"""Bearer tokens for a registry with authentication on.

A token is a JWT from the identity provider or a service-account token
from `modelreg tokens create`. It comes from (first match wins) the
`token` argument, `$MODELREG_TOKEN`, the `token_file` argument or
`$MODELREG_TOKEN_FILE`. A file is read again whenever it changes, so a
token rotated on disk (a mounted secret, a sidecar refreshing an OIDC
token) is picked up without restarting the client.

The token rides in `authorization: Bearer <token>` metadata on every call,
streams included, added by a channel interceptor: gRPC's own call
credentials refuse plaintext channels, and a registry on loopback may well
be one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

TOKEN_ENV = "MODELREG_TOKEN"
TOKEN_FILE_ENV = "MODELREG_TOKEN_FILE"
AUTHORIZATION_KEY = "authorization"


class BearerToken:
    """A token given as a value, or read from a file when the file changes."""

    def __init__(self, token: str | None = None, path: Path | None = None) -> None:
        if (token is None) == (path is None):
            raise ValueError("give a token or a token file, not both")
        self._token = token.strip() if token is not None else ""
        self._path = path
        self._stamp: tuple[int, int] | None = None
        if path is not None:
            self.value()  # a missing file fails now, not on the first call

    def value(self) -> str:
        if self._path is None:
            return self._token
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._token = self._path.read_text().strip()
            self._stamp = stamp
        return self._token

    def __repr__(self) -> str:  # never show the secret
        return f"BearerToken(path={self._path})" if self._path else "BearerToken(<value>)"


def find_token(
    token: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> BearerToken | None:
    if token:
        return BearerToken(token)
    if environ.get(TOKEN_ENV):
        return BearerToken(environ[TOKEN_ENV])
    path = token_file or environ.get(TOKEN_FILE_ENV)
    if path:
        return BearerToken(path=Path(path))
    return None


def _with_token(details: Any, token: BearerToken) -> Any:
    metadata = [(k, v) for k, v in (details.metadata or ()) if k != AUTHORIZATION_KEY]
    metadata.append((AUTHORIZATION_KEY, f"Bearer {token.value()}"))
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


Continuation = Callable[[Any, Any], Any]


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, token: BearerToken) -> None:
        self._token = token

    async def intercept_unary_unary(
        self, continuation: Continuation, client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, token: BearerToken) -> None:
        self._token = token

    async def intercept_unary_stream(
        self, continuation: Continuation, client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, token: BearerToken) -> None:
        self._token = token

    async def intercept_stream_unary(
        self, continuation: Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, token: BearerToken) -> None:
        self._token = token

    async def intercept_stream_stream(
        self, continuation: Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request_iterator)


def token_interceptors(token: BearerToken | None) -> list[Any]:
    if token is None:
        return []
    return [_UnaryUnary(token), _UnaryStream(token), _StreamUnary(token), _StreamStream(token)]
