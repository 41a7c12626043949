"""Encryption at rest against none: the same push and pull, alternating, in one run.

`bench_artifacts.py --encryption compare` runs this: a server on the embedded
default and one with `--encryption-keyring`, each on its own data directory
on the same disk, pushed and pulled in turns (off, on, off, on...) so drifting
load on a shared machine hits both alike. Prints each round, then the best
round of each (MB/s = 10^6 bytes/s) with the ratio against the target (within
15 %), and the server's CPU seconds per GB (10^9 bytes) pushed and pulled.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass
from pathlib import Path

import common  # noqa: F401  (puts tests/ on the module path, for `support`)
from bench_artifacts import MB, PULL, PUSH, run_client
from modelregistry import SyncRegistryClient
from support.processes import CLI, running
from support.procfs import cpu_seconds

GB = 1_000_000_000
TARGET = 0.85


@dataclass
class Round:
    push_mbs: float
    pull_mbs: float
    push_cpu_s_per_gb: float
    pull_cpu_s_per_gb: float


def one_round(
    work: Path, source: Path, size: int, n: int, args: argparse.Namespace, *extra: str
) -> Round:
    data = work / f"data-{n}"
    with running(data, *extra) as server:
        with SyncRegistryClient(server.address) as registry:
            registry.create_model("bench")
            version = registry.create_model_version("models/bench").name
        before = cpu_seconds(server.pid)
        pushed = run_client(
            PUSH,
            server.address,
            version,
            str(source),
            str(work / f"state-{n}"),
            str(args.chunk_size),
        )
        middle = cpu_seconds(server.pid)
        pulled = run_client(
            PULL, server.address, version, str(work / f"pulled-{n}"), str(args.pull_chunk_size)
        )
        after = cpu_seconds(server.pid)
    if pulled["digest"] != pushed["digest"]:
        raise SystemExit("pulled artifact differs from the pushed one")
    subprocess.run(["rm", "-rf", str(data), str(work / f"pulled-{n}")], check=True)
    return Round(
        size / pushed["upload_s"] / MB,
        size / pulled["total_s"] / MB,
        (middle - before) / (size / GB),
        (after - middle) / (size / GB),
    )


def compare(work: Path, source: Path, size: int, args: argparse.Namespace) -> None:
    keyring = work / "keyring.json"
    subprocess.run([*CLI, "keyring", "create", str(keyring)], check=True, capture_output=True)
    modes = {"off": (), "on": ("--encryption-keyring", str(keyring))}
    results: dict[str, list[Round]] = {"off": [], "on": []}
    n = 0
    for r in range(args.rounds):
        for mode, extra in modes.items():
            n += 1
            got = one_round(work, source, size, n, args, *extra)
            results[mode].append(got)
            print(
                f"round {r + 1} encryption {mode:3}: upload {got.push_mbs:7.1f} MB/s,"
                f" download {got.pull_mbs:7.1f} MB/s; server CPU s/GB up"
                f" {got.push_cpu_s_per_gb:.2f}, down {got.pull_cpu_s_per_gb:.2f}",
                flush=True,
            )
    best = {
        mode: Round(
            max(r.push_mbs for r in rounds),
            max(r.pull_mbs for r in rounds),
            min(r.push_cpu_s_per_gb for r in rounds),
            min(r.pull_cpu_s_per_gb for r in rounds),
        )
        for mode, rounds in results.items()
    }
    off, on = best["off"], best["on"]
    print()
    print("best of rounds      encryption off   encryption on   on/off")
    for label, a, b in (
        ("upload MB/s", off.push_mbs, on.push_mbs),
        ("download MB/s", off.pull_mbs, on.pull_mbs),
    ):
        ratio = b / a
        verdict = "OK" if ratio >= TARGET else "BELOW TARGET"
        print(f"{label:18} {a:15.1f} {b:15.1f}   {ratio * 100:5.1f}%  (target >= 85%: {verdict})")
    for label, a, b in (
        ("server CPU s/GB up", off.push_cpu_s_per_gb, on.push_cpu_s_per_gb),
        ("server CPU s/GB dn", off.pull_cpu_s_per_gb, on.pull_cpu_s_per_gb),
    ):
        print(f"{label:18} {a:15.2f} {b:15.2f}   +{b - a:.2f} s/GB")
