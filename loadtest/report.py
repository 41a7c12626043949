"""The load test's results: Locust's CSVs and latency histograms read back,
and reported as a Markdown summary, JSON and a latency plot, against the
seed's latency targets and ours."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
# The seed's p95 targets (ms), and the tighter ones this registry sets itself.
SEED_READ_P95_MS, SEED_WRITE_P95_MS = 10.0, 50.0
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


def one_line(res: RunResult) -> str:
    """A run's figures on one line, for progress output."""
    s = res.summary()
    return (
        f"{res.total_rps:.0f} req/s; read p95 {fmt(s['read']['p95'])} ms at "
        f"{s['read']['rps']:.0f}/s; write p95 {fmt(s['write']['p95'])} ms at "
        f"{s['write']['rps']:.1f}/s; failures {res.failures}, exceptions {res.exceptions}"
    )


def write_reports(
    out: Path,
    results: list[RunResult],
    meta: dict[str, Any],
    headline: list[str],
    profile: list[str],
    step: bool,
) -> None:
    """summary.md, summary.json and latency.png in `out`."""
    (out / "summary.md").write_text(markdown(results, meta, headline, profile))
    doc = {"meta": meta, "headline": headline, "runs": [r.summary() for r in results]}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(results, out / "latency.png", step)
