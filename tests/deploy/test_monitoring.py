"""deploy/prometheus and deploy/grafana: the rules load and fire as meant,
and every series the rules and the dashboard query is one the server
exports, with labels it really has (a misspelt name or label would leave a
panel empty and an alert silent, with no error anywhere)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelregistry_server.observability import live, metrics
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from support.services import require

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "modelreg-dashboard.json"
# Added by Prometheus to every scraped series, or by the histogram.
SCRAPE_LABELS = {"job", "instance", "le"}
_SERIES = re.compile(r"\b((?:modelreg|process)_[a-z0-9_]+|up)\b(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        require("promtool is not installed (apt-get install prometheus)")
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=120, check=False
    )


def exported() -> dict[str, set[str]]:
    """Every series name the server exports, with its label names."""
    series: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "info": ("_info",),
        }.get(str(value._type), ("",))
        for suffix in suffixes:
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        if value._type == "info":
            series[name + "_info"] = {"version"}
    snapshot = live.Snapshot(True, 1, 0, 1, 1, 1, 1, 1, 10, relay_revision=1)
    families = [*live.families(snapshot), *REGISTRY.collect()]
    for family in families:
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    series["up"] = set()
    return series


def rule_exprs() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    def walk(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["expr"]] if isinstance(node.get("expr"), str) else []
            return found + [e for v in node.values() for e in walk(v)]
        if isinstance(node, list):
            return [e for v in node for e in walk(v)]
        return []

    return walk(json.loads(DASHBOARD.read_text()))


def as_promql(expr: str) -> str:
    """Grafana's variables replaced as Grafana would."""
    return expr.replace("$__rate_interval", "1m").replace("$job", "modelreg")


def test_rules_are_valid_and_fire_as_meant() -> None:
    checked = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses each panel query, as a recording rule of a scratch file."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    rules = [{"record": f"dashboard:query_{i}", "expr": as_promql(e)} for i, e in enumerate(exprs)]
    scratch = tmp_path / "dashboard-rules.yml"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(scratch))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_queried_series_are_exported(source: str) -> None:
    known = exported()
    exprs = rule_exprs() if source == "alerts" else [as_promql(e) for e in dashboard_exprs()]
    queried: set[str] = set()
    for expr in exprs:
        for name, matchers in _SERIES.findall(expr):
            queried.add(name)
            assert name in known, f"{name} is queried but the server does not export it"
            for label in _MATCHER.findall(matchers):
                assert label in known[name] | SCRAPE_LABELS, f"{name} has no label {label!r}"
    # The figures an operator was promised are all on view.
    promised = {
        "modelreg_rpc_handled_total",
        "modelreg_rpc_duration_seconds_bucket",
        "modelreg_watch_delivery_seconds_bucket",
        "modelreg_watch_lag_events",
        "modelreg_event_log_head_revision",
        "modelreg_relay_lag_events",
        "modelreg_read_cache_hits_total",
        "modelreg_db_pool_connections",
        "modelreg_upload_staging_bytes",
    }
    if source == "dashboard":
        promised |= {
            "modelreg_artifact_uploaded_bytes_total",
            "modelreg_artifact_downloaded_bytes_total",
            "modelreg_artifact_transfers_in_flight",
            "modelreg_watch_streams",
        }
    assert promised <= queried, promised - queried
