"""Channel set-up and the retry rule shared by the async and sync clients.

Only reads are retried: a write that timed out or lost its connection may
have committed, and repeating it blindly could create a second version or
move an alias twice. Reads are safe to repeat, so a restarting server or a
database fail-over costs a serving instance a short delay, not an error.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

DEFAULT_TARGET = "127.0.0.1:50051"
# Matches the server's limit: a full page of versions with large metadata
# must fit in one reply.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

Pem = bytes | str | os.PathLike[str]
"""PEM data as bytes, or the path of a PEM file."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for reads that fail with UNAVAILABLE.

    `max_attempts` counts the first try; 1 disables retries.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based).

        Half fixed, half random, so that a fleet restarting together does not
        retry in lockstep, yet every wait is at least half the nominal one.
        """
        nominal = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return nominal / 2 + random.uniform(0, nominal / 2)


NO_RETRY = RetryPolicy(max_attempts=1)


def _read_pem(value: Pem | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def channel_credentials(
    *,
    tls: bool,
    root_ca: Pem | None,
    client_cert: Pem | None,
    client_key: Pem | None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials, or None for plaintext.

    TLS is on when asked for or when any certificate is given; without
    `root_ca` the system roots are used. Files are read now so that a
    missing file fails at construction, not on the first call.
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("mutual TLS needs both client_cert and client_key")
    if not (tls or root_ca is not None or client_cert is not None):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(root_ca),
        private_key=_read_pem(client_key),
        certificate_chain=_read_pem(client_cert),
    )


# gRPC waits up to two minutes between attempts to reconnect to a server it
# lost; a registry client tries again within a second, so that its first
# call after a server restart finds the server instead of failing (writes
# are never retried on their own).
RECONNECT_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def open_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] = (),
) -> grpc.aio.Channel:
    """An aio channel; must be called with the event loop that will use it running.
    `interceptors`: e.g. the one that sends a bearer token (see credentials)."""
    merged: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        *RECONNECT_OPTIONS,
        *options,
    ]
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=merged, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=merged, interceptors=interceptors)
