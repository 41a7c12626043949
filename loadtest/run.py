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
import csv
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import DEFAULT_PG, Fleet, Server, fresh_pg_database, serve
from seed import add_fleet_arguments, fleet_from, seed

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
READS = ("ResolveAlias", "ListRollouts")
WRITES = (
    "CreateModelVersion",
    "ApproveModelVersion",
    "SetAlias",
    "StartRollout",
    "AdvanceRollout",
    "PauseRollout",
    "ResumeRollout",
    "RollbackRollout",
)
SEED_READ_P95_MS, SEED_WRITE_P95_MS = 10.0, 50.0
STEP_OTHERS = ["--pipelines", "1", "--engineers", "2", "--watchers", "2", "--downloaders", "1"]
OUR_READ_P95_MS, OUR_WRITE_P95_MS = 2.0, 10.0


def rpc_of(name: str) -> str:
    """ "SetAlias (lost race)" -> "SetAlias": the RPC a request name belongs to."""
    return name.split(" (", 1)[0]


@dataclass
class Hist:
    """A latency histogram in 10 us bins."""

    bins: Counter[int] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return sum(self.bins.values())

    def add(self, other: Hist) -> None:
        self.bins.update(other.bins)

    def pct(self, q: float) -> float:
        """The q-quantile in ms (nearest rank); NaN when empty."""
        total = self.count
        if not total:
            return float("nan")
        rank, seen = max(1, round(q * total + 0.4999)), 0
        for b in sorted(self.bins):
            seen += self.bins[b]
            if seen >= rank:
                return b / 100
        return max(self.bins) / 100


@dataclass
class Row:
    name: str
    hist: Hist
    requests: int
    failures: int
    rps: float


@dataclass
class RunResult:
    users: int
    resolve_every: float
    rows: list[Row]
    exceptions: int
    duration_s: float
    returncode: int

    def group(self, names: tuple[str, ...]) -> tuple[Hist, float]:
        """Merged histogram and req/s of every request name of these RPCs."""
        h, rps = Hist(), 0.0
        for r in self.rows:
            if rpc_of(r.name) in names:
                h.add(r.hist)
                rps += r.rps
        return h, rps

    @property
    def total_rps(self) -> float:
        return sum(r.rps for r in self.rows)

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.rows)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "users": self.users,
            "resolve_every_s": self.resolve_every,
            "total_rps": self.total_rps,
            "failures": self.failures,
            "exceptions": self.exceptions,
        }
        for label, names in (("read", READS), ("write", WRITES)):
            h, rps = self.group(names)
            out[label] = {"rps": rps, "p50": h.pct(0.5), "p95": h.pct(0.95), "p99": h.pct(0.99)}
        out["rpcs"] = {
            r.name: {
                "requests": r.requests,
                "failures": r.failures,
                "rps": r.rps,
                "p50": r.hist.pct(0.5),
                "p95": r.hist.pct(0.95),
                "p99": r.hist.pct(0.99),
            }
            for r in self.rows
        }
        return out


def read_result(prefix: Path, users: int, resolve_every: float, rc: int, secs: float) -> RunResult:
    lat = json.loads(Path(f"{prefix}_latency.json").read_text())
    hists = {n: Hist(Counter({int(k): v for k, v in b.items()})) for n, b in lat["ok"].items()}
    rows = []
    with open(f"{prefix}_stats.csv", newline="") as f:
        for rec in csv.DictReader(f):
            if rec["Name"] == "Aggregated":
                continue
            rows.append(
                Row(
                    rec["Name"],
                    hists.get(rec["Name"], Hist()),
                    int(rec["Request Count"]),
                    int(rec["Failure Count"]),
                    float(rec["Requests/s"]),
                )
            )
    exceptions = 0
    exc_csv = Path(f"{prefix}_exceptions.csv")
    if exc_csv.exists():
        with exc_csv.open(newline="") as f:
            exceptions = sum(int(rec.get("Count", 1) or 1) for rec in csv.DictReader(f))
    rows.sort(key=lambda r: r.name)
    return RunResult(users, resolve_every, rows, exceptions, secs, rc)


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


def fmt(ms: float) -> str:
    return "-" if ms != ms else f"{ms:.2f}"  # NaN: no samples


def verdict(value: float, limit: float) -> str:
    if value != value:
        return "n/a"
    return "PASS" if value < limit else "MISS"


def markdown(
    results: list[RunResult], meta: dict[str, Any], headline: list[str], profile: list[str]
) -> str:
    lines = [f"# Load test, {meta['date']}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "date"]
    lines.append("")
    if headline:
        lines += ["## Step load", "", *headline, ""]
        lines += [
            "| users | offered reads/s | read p50 | read p95 | read p99 | writes/s "
            "| write p50 | write p95 | write p99 | total req/s | failures |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results:
            s = r.summary()
            rd, wr = s["read"], s["write"]
            lines.append(
                f"| {r.users} | {rd['rps']:.0f} | {fmt(rd['p50'])} | {fmt(rd['p95'])} "
                f"| {fmt(rd['p99'])} | {wr['rps']:.1f} | {fmt(wr['p50'])} | {fmt(wr['p95'])} "
                f"| {fmt(wr['p99'])} | {r.total_rps:.0f} | {r.failures + r.exceptions} |"
            )
        lines.append("")
    for r in results:
        s = r.summary()
        rd, wr = s["read"], s["write"]
        lines += [
            f"## {r.users} users (serving instances resolve every {r.resolve_every:g} s)",
            "",
            f"Throughput {r.total_rps:.1f} req/s ({rd['rps']:.1f} reads/s, {wr['rps']:.1f} "
            f"writes/s); unexpected failures {r.failures}, exceptions {r.exceptions}.",
            "",
            f"- read p95 {fmt(rd['p95'])} ms: seed target < {SEED_READ_P95_MS:g} ms "
            f"{verdict(rd['p95'], SEED_READ_P95_MS)}, ours < {OUR_READ_P95_MS:g} ms "
            f"{verdict(rd['p95'], OUR_READ_P95_MS)}",
            f"- write p95 {fmt(wr['p95'])} ms: seed target < {SEED_WRITE_P95_MS:g} ms "
            f"{verdict(wr['p95'], SEED_WRITE_P95_MS)}, ours < {OUR_WRITE_P95_MS:g} ms "
            f"{verdict(wr['p95'], OUR_WRITE_P95_MS)}",
            "",
            "| request | count | req/s | p50 ms | p95 ms | p99 ms | failures |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in r.rows:
            h = row.hist
            lines.append(
                f"| {row.name} | {row.requests} | {row.rps:.2f} | {fmt(h.pct(0.5))} "
                f"| {fmt(h.pct(0.95))} | {fmt(h.pct(0.99))} | {row.failures} |"
            )
        lines.append("")
    lines += [
        "Reads: " + ", ".join(READS) + ". Writes: " + ", ".join(WRITES) + " (with their "
        "expected outcomes, e.g. lost races). Watch (events) is the commit-to-receipt lag; "
        "Watch (progress) counts heartbeats only. Latencies are client-side, measured by "
        "Locust's users on the same machine unless the target is remote.",
        "",
    ]
    if profile:
        lines += ["## Where the server's time goes (py-spy)", "", "```", *profile, "```", ""]
    return "\n".join(lines)


def plot(results: list[RunResult], path: Path, step: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    xs = [r.summary()["read"]["rps"] for r in results]
    styles = {"p50": ":", "p95": "-", "p99": "--"}
    for label, color in (("read", "tab:blue"), ("write", "tab:red")):
        for q, style in styles.items():
            ys = [r.summary()[label][q] for r in results]
            ax.plot(xs, ys, style, marker="o", color=color, label=f"{label} {q}")
    ax.axhline(SEED_READ_P95_MS, color="tab:blue", alpha=0.3, label="seed read p95 target")
    ax.axhline(SEED_WRITE_P95_MS, color="tab:red", alpha=0.3, label="seed write p95 target")
    ax.set_yscale("log")
    ax.set_xlabel("offered load: reads/s (ResolveAlias + ListRollouts)")
    ax.set_ylabel("latency, ms (client-side)")
    ax.set_title("modelreg: latency against load" + (" (step load)" if step else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def step_headline(results: list[RunResult]) -> list[str]:
    ok_reads = [
        r.summary()["read"]["rps"]
        for r in results
        if r.summary()["read"]["p95"] <= SEED_READ_P95_MS
    ]
    first_read_miss = next(
        (r for r in results if r.summary()["read"]["p95"] > SEED_READ_P95_MS), None
    )
    first_write_miss = next(
        (r for r in results if r.summary()["write"]["p95"] > SEED_WRITE_P95_MS), None
    )
    out = []
    if ok_reads:
        out.append(
            f"**Max sustainable reads: {max(ok_reads):.0f} reads/s with read p95 <= "
            f"{SEED_READ_P95_MS:g} ms.**"
        )
    else:
        out.append(f"**Read p95 exceeded {SEED_READ_P95_MS:g} ms at every step.**")
    for label, miss, limit in (
        ("read", first_read_miss, SEED_READ_P95_MS),
        ("write", first_write_miss, SEED_WRITE_P95_MS),
    ):
        if miss is None:
            out.append(f"- {label} p95 stayed within {limit:g} ms up to the last step.")
        else:
            s = miss.summary()
            out.append(
                f"- {label} p95 crossed {limit:g} ms at {miss.users} users: "
                f"{s['read']['rps']:.0f} reads/s, {s['write']['rps']:.1f} writes/s, "
                f"{miss.total_rps:.0f} req/s in all ({label} p95 {fmt(s[label]['p95'])} ms)."
            )
    return out


@contextlib.contextmanager
def py_spy(pid: int | None, path: Path, enabled: bool) -> Iterator[None]:
    """Sample the server with py-spy while the block runs (if asked and possible)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not enabled or pid is None or not os.path.exists(spy):
        yield
        return
    cmd = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
    rec = subprocess.Popen(
        [*cmd, "--nonblocking", "--output", str(path)],
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


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    target = ap.add_argument_group("target")
    target.add_argument("--host", help="test this registry (HOST:PORT); start none, seed nothing")
    target.add_argument("--seed", action="store_true", help="with --host: seed it first")
    target.add_argument("--sqlite", action="store_true", help="start the server on SQLite")
    target.add_argument("--database-url", help="start the server on this existing database")
    target.add_argument(
        "--pg", default=DEFAULT_PG, help="PostgreSQL for the fresh database (%(default)s)"
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
        server: Server | None = None
        if ns.host:
            host, database = ns.host, "remote"
        else:
            if ns.sqlite:
                url, database = None, "SQLite (embedded default)"
            elif ns.database_url:
                url, database = ns.database_url, "PostgreSQL (given)"
            else:
                url = stack.enter_context(fresh_pg_database(ns.pg))
                database = "PostgreSQL (fresh database)"
            server = stack.enter_context(serve(url))
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
            s = res.summary()
            print(
                f"  {res.total_rps:.0f} req/s; read p95 {fmt(s['read']['p95'])} ms at "
                f"{s['read']['rps']:.0f}/s; write p95 {fmt(s['write']['p95'])} ms at "
                f"{s['write']['rps']:.1f}/s; failures {res.failures}, exceptions {res.exceptions}",
                file=sys.stderr,
            )
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
    (out / "summary.md").write_text(markdown(results, meta, headline, profile))
    doc = {"meta": meta, "headline": headline, "runs": [r.summary() for r in results]}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(results, out / "latency.png", ns.step_load)
    for line in headline:
        print(line.replace("**", ""))
    print(f"wrote {out / 'summary.md'}, {out / 'latency.png'} and the CSVs in {out}")
    if any(r.failures or r.exceptions for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
