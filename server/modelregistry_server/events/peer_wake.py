"""Commit wake-ups between the workers of one server.

A worker's own commits wake its watch hub at once (commit hooks); the other
workers would see them only at their next poll of the event log, or through
PostgreSQL NOTIFY. Each worker therefore listens on an abstract Unix
datagram socket and, after each local commit, sends one byte to every
sibling, which wakes its hub: a write through one worker reaches the
watchers and read caches of all of them within milliseconds, on SQLite too.
A lost datagram costs nothing but latency: the poll remains the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence


def _address(name: str) -> str:
    return "\0" + name  # the abstract namespace: no file to clean up


class PeerWake:
    def __init__(self, names: Sequence[str], index: int, on_wake: Callable[[], None]) -> None:
        self._own = names[index]
        self._peers = [_address(n) for i, n in enumerate(names) if i != index]
        self._on_wake = on_wake
        self._sock: socket.socket | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(_address(self._own))
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)
        self._sock = sock

    def notify(self) -> None:
        """Tell every sibling that something committed; never blocks or fails."""
        if self._sock is None:
            return
        for peer in self._peers:
            with contextlib.suppress(OSError):  # not started yet, gone, or full
                self._sock.sendto(b"!", peer)

    def _drain(self) -> None:
        assert self._sock is not None
        with contextlib.suppress(OSError):
            while self._sock.recv(64):
                pass
        self._on_wake()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
