"""Loopback ports: one nobody listens on, and whether someone does."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port free right now (the OS picks it; closed again at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
