"""Where a server's time goes: py-spy samples it while a block runs, and the
raw samples are summed into the hottest frames."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def py_spy(
    pid: int | None,
    path: Path,
    enabled: bool = True,
    rate: int = 200,
    native: bool = False,
    subprocesses: bool = False,
) -> Iterator[None]:
    """Sample process `pid` `rate` times a second with py-spy while the block
    runs, raw samples into `path`; nothing if not `enabled`, or without py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not enabled or pid is None or not os.path.exists(spy):
        yield
        return
    cmd = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    # --native: also Cython and C frames (grpc's transport, the event loop);
    # it has to pause the process to unwind, so it costs more.
    cmd += ["--native"] if native else ["--nonblocking"]
    if subprocesses:  # a server with --workers: its workers too
        cmd.append("--subprocesses")
    rec = subprocess.Popen(
        [*cmd, "--output", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        rec.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            rec.wait(30)


def top_frames(path: Path, top: int = 15) -> list[str]:
    """The `top` frames by own time and including callees, as report lines."""
    if not path.exists():
        return []
    own, total, samples = Counter[str](), Counter[str](), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    out = [f"{samples} samples of the server ({path.name})", "own time:"]
    out += [f"  {100 * n / max(samples, 1):5.1f}%  {f}" for f, n in own.most_common(top)]
    out.append("including callees:")
    out += [f"  {100 * n / max(samples, 1):5.1f}%  {f}" for f, n in total.most_common(top)]
    return out
