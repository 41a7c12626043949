"""Run the Locust load test and report it: CSVs, a Markdown summary, a plot.

By default it starts `modelreg serve` on a fresh PostgreSQL database (dropped
afterwards), seeds the fleet (loadtest/seed.py), then runs Locust headless
once per user count in --users for --time each. With --host it tests that
registry instead and neither starts nor seeds anything (add --seed to seed
it first).

--step-load runs increasing user counts (--steps) with serving instances
resolving every --step-resolve-every seconds, and finds the load at which
read p95 crosses 10 ms and write p95 crosses 50 ms (the seed's targets);
the headline is the highest read throughput whose read p95 stayed within
10 ms.

Outputs in --out (default ./loadtest-out): per run `u<N>_stats.csv` (and
Locust's other CSVs), `u<N>_latency.json` (10 us histograms), `u<N>.log`;
then `summary.md`, `summary.json` and `latency.png`.

    .venv/bin/python loadtest/run.py                       # deploy window, PostgreSQL
    .venv/bin/python loadtest/run.py --sqlite --users 100,1000 --time 60
    .venv/bin/python loadtest/run.py --step-load
    .venv/bin/python loadtest/run.py --host registry.staging:50051 --users 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import Fleet
from profiling import py_spy, top_frames
from report import (
    SEED_READ_P95_MS,
    SEED_WRITE_P95_MS,
    RunResult,
    one_line,
    read_result,
    step_headline,
    write_reports,
)
from seed import add_fleet_arguments, fleet_from, seed
from support.postgres import PG_SERVER, fresh_database
from support.processes import ServeProcess, running

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
STEP_OTHERS = ["--pipelines", "1", "--engineers", "2", "--watchers", "2", "--downloaders", "1"]


def run_locust(
    host: str,
    out: Path,
    users: int,
    seconds: int,
    spawn_rate: float,
    resolve_every: float,
    fleet: Fleet,
    extra: list[str],
) -> RunResult:
    prefix = out / f"u{users}"
    ramp = math.ceil(users / spawn_rate)
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        f"{seconds + ramp}s",
        "--reset-stats",
        "--stop-timeout",
        "5",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--latency-json",
        f"{prefix}_latency.json",
        "--resolve-every",
        str(resolve_every),
        "--fleet-models",
        str(fleet.models),
        "--fleet-versions",
        str(fleet.versions),
        "--fleet-prefix",
        fleet.prefix,
        "--fleet-hot",
        str(fleet.hot),
        "--exit-code-on-error",
        "0",
        *extra,
    ]
    started = time.monotonic()
    with open(f"{prefix}.log", "wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    secs = time.monotonic() - started
    if not Path(f"{prefix}_latency.json").exists():
        tail = Path(f"{prefix}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"locust failed (exit {proc.returncode}):\n{tail}")
    return read_result(prefix, users, resolve_every, proc.returncode, secs)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    target = ap.add_argument_group("target")
    target.add_argument("--host", help="test this registry (HOST:PORT); start none, seed nothing")
    target.add_argument("--seed", action="store_true", help="with --host: seed it first")
    target.add_argument("--sqlite", action="store_true", help="start the server on SQLite")
    target.add_argument("--database-url", help="start the server on this existing database")
    target.add_argument(
        "--pg", default=PG_SERVER, help="PostgreSQL for the fresh database (%(default)s)"
    )
    add_fleet_arguments(ap)
    ap.add_argument("--seed-concurrency", type=int, default=16, help="(%(default)s)")
    load = ap.add_argument_group("load")
    load.add_argument(
        "--users", default="1000", help="comma-separated user counts, one run each (%(default)s)"
    )
    load.add_argument(
        "--time",
        type=int,
        default=60,
        help="seconds measured per run, after the ramp-up (%(default)s)",
    )
    load.add_argument(
        "--spawn-rate", type=float, default=0, help="users/s (default: all within 20 s)"
    )
    load.add_argument(
        "--resolve-every",
        type=float,
        default=20.0,
        help="serving instances' TTL in s; 20 = the seed's 3 reads/min each (%(default)s)",
    )
    load.add_argument("--step-load", action="store_true", help="find the latency knee")
    load.add_argument(
        "--steps", default="10,20,40,80,160,320", help="step-load user counts (%(default)s)"
    )
    load.add_argument("--step-time", type=int, default=30, help="seconds per step (%(default)s)")
    load.add_argument(
        "--step-resolve-every",
        type=float,
        default=0.1,
        help="step load: serving instances resolve this often, in s (%(default)s)",
    )
    ap.add_argument("--profile", action="store_true", help="sample the server with py-spy")
    ap.add_argument("--out", default="loadtest-out", help="output directory (%(default)s)")
    ap.add_argument(
        "locust_args", nargs="*", help="after --: more Locust options, e.g. --engineers 5"
    )
    return ap.parse_args()


def main() -> None:
    ns = parse_args()
    fleet = fleet_from(ns)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    if ns.step_load:
        counts = [int(u) for u in ns.steps.split(",")]
        seconds, resolve_every = ns.step_time, ns.step_resolve_every
        # A few of each other user; every step adds serving instances.
        ns.locust_args = [*STEP_OTHERS, *ns.locust_args]
    else:
        counts = [int(u) for u in ns.users.split(",")]
        seconds, resolve_every = ns.time, ns.resolve_every

    with contextlib.ExitStack() as stack:
        server: ServeProcess | None = None
        if ns.host:
            host, database = ns.host, "remote"
        else:
            if ns.sqlite:
                url, database = None, "SQLite (embedded default)"
            elif ns.database_url:
                url, database = ns.database_url, "PostgreSQL (given)"
            else:
                url = stack.enter_context(fresh_database(ns.pg, prefix="modelreg_load"))
                database = "PostgreSQL (fresh database)"
            server = stack.enter_context(running(database_url=url, own_session=True))
            host = server.address
            print(f"server pid {server.pid} on {host}, {database}", file=sys.stderr)
        seed_s = None
        if not ns.host or ns.seed:
            t0 = time.perf_counter()
            tally = asyncio.run(seed(host, fleet, ns.seed_concurrency))
            seed_s = time.perf_counter() - t0
            print(f"seeded in {seed_s:.1f} s: {tally}", file=sys.stderr)

        results: list[RunResult] = []
        for users in counts:
            rate = ns.spawn_rate or max(1.0, users / 20)
            print(f"running {users} users for {seconds} s ...", file=sys.stderr)
            prof = out / f"u{users}_py-spy.txt"
            with py_spy(server.pid if server else None, prof, ns.profile):
                res = run_locust(
                    host, out, users, seconds, rate, resolve_every, fleet, ns.locust_args
                )
            results.append(res)
            print(f"  {one_line(res)}", file=sys.stderr)
            s = res.summary()
            if (
                ns.step_load
                and s["read"]["rps"] > 0
                and s["read"]["p95"] > SEED_READ_P95_MS
                and s["write"]["p95"] > SEED_WRITE_P95_MS
            ):
                break  # both knees found: more load only measures a saturated server

    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "target": ns.host or f"local `modelreg serve`, {database}",
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "fleet": f"{fleet.models} models x {fleet.versions} versions, {fleet.hot} hot",
        "seeding": f"{seed_s:.1f} s" if seed_s is not None else "skipped",
        "run": f"{seconds} s per user count, measured after the ramp-up; serving instances "
        f"resolve every {resolve_every:g} s",
    }
    if ns.locust_args:
        meta["locust options"] = " ".join(ns.locust_args)
    headline = step_headline(results) if ns.step_load else []
    profile: list[str] = []
    if ns.profile:
        for r in results:
            profile += [f"-- {r.users} users --", *top_frames(out / f"u{r.users}_py-spy.txt")]
    write_reports(out, results, meta, headline, profile, ns.step_load)
    for line in headline:
        print(line.replace("**", ""))
    print(f"wrote {out / 'summary.md'}, {out / 'latency.png'} and the CSVs in {out}")
    if any(r.failures or r.exceptions for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
