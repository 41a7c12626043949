"""A one-line progress bar for transfers: bytes, rate and time left.

Plain text redrawn with a carriage return, so it needs no terminal library
and degrades to a readable trail in a log. Redraws are throttled: a multi-GB
transfer calls back thousands of times a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 24
MIB = 1024 * 1024


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - unreachable


def human_duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """The `progress(done, total, file)` callback of push and pull, drawn on `out`."""

    def __init__(
        self,
        out: TextIO,
        label: str,
        *,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out, self.label, self.interval, self.clock = out, label, interval, clock
        self._start = clock()
        self._first_done: int | None = None
        self._last_draw = 0.0
        self._width = 0

    def note(self, text: str) -> None:
        """A status shown until the first redraw (e.g. while files are hashed)."""
        self._draw(f"{self.label}: {text}")

    def __call__(self, done: int, total: int, current: str) -> None:
        now = self.clock()
        if self._first_done is None:
            # Bytes resumed from an earlier run do not count towards the rate.
            self._first_done, self._start = done, now
        if done < total and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        elapsed = max(now - self._start, 1e-6)
        rate = max(done - self._first_done, 0) / elapsed
        fraction = done / total if total else 1.0
        filled = int(WIDTH * fraction)
        bar = "#" * filled + "." * (WIDTH - filled)
        eta = human_duration((total - done) / rate) if rate > 0 and done < total else "--:--"
        name = current if len(current) <= 32 else "..." + current[-29:]
        self._draw(
            f"{self.label} [{bar}] {fraction * 100:3.0f}% "
            f"{human_bytes(done)}/{human_bytes(total)} {rate / 1e6:.1f} MB/s ETA {eta} {name}"
        )

    def _draw(self, line: str) -> None:
        pad = " " * max(self._width - len(line), 0)
        self.out.write("\r" + line + pad)
        self.out.flush()
        self._width = len(line)

    def close(self) -> None:
        """End the line, so what follows starts on a fresh one."""
        if self._width:
            self.out.write("\n")
            self.out.flush()
            self._width = 0
