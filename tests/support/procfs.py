"""What /proc says about a process: its CPU time and memory, for the
benchmarks' figures and the tests' memory bounds (Linux only)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int:
    """A kB figure of /proc/<pid>/status: "VmRSS" now, "VmHWM" the peak so far
    (0 when the line is missing)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    return 0


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM over from the current RSS (Linux 4.0+; needs the right to
    write the process's clear_refs, as its owner or root)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a server with --workers: supervisor and workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # exited meanwhile
                todo += [int(c) for c in task.read_text().split()]
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its live descendants."""
    return sum(cpu_seconds(p) for p in process_tree(pid) if Path(f"/proc/{p}").exists())


def tree_status_kb(pid: int, key: str) -> int:
    """A /proc/<pid>/status kB figure summed over `pid` and its descendants."""
    return sum(status_kb(p, key) for p in process_tree(pid) if Path(f"/proc/{p}").exists())
