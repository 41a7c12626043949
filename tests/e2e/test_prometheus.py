"""A real Prometheus scraping a real `modelreg serve` process, with the
shipped alert rules loaded: after some traffic, the figures an operator
queries through Prometheus' HTTP API are the ones that happened, the rules
evaluate without error, and every dashboard query runs."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from modelregistry.sync import SyncRegistryClient
from modelregistry.v1.event_service_pb2 import ListEventsRequest
from modelregistry.v1.event_service_pb2_grpc import EventServiceStub
from support.ports import free_port, port_open
from support.processes import ServeProcess as Server
from support.services import require

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "modelreg-dashboard.json"
CREATE_MODEL = "/modelregistry.v1.RegistryService/CreateModel"


class Prometheus:
    def __init__(self, tmp: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            require("prometheus is not installed (apt-get install prometheus)")
        self.port = free_port()
        shutil.copy(ROOT / "deploy" / "prometheus" / "alerts.yml", tmp / "alerts.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": "modelreg", "static_configs": [{"targets": [target]}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = tmp / "prometheus.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self._ready():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def _ready(self) -> bool:
        if not port_open("127.0.0.1", self.port):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5):
                return True
        except OSError:  # 503 while the TSDB opens
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]

    def scalar(self, query: str) -> float | None:
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, query: str, expected: float, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while (got := self.scalar(query)) != expected:
            assert time.monotonic() < deadline, f"{query} = {got}, expected {expected}"
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Server, Prometheus]]:
    metrics_port = free_port()
    server = Server(tmp_path / "data", "--metrics-listen", f"127.0.0.1:{metrics_port}")
    server.start()
    try:
        prometheus = Prometheus(tmp_path, f"127.0.0.1:{metrics_port}")
        try:
            yield server, prometheus
        finally:
            prometheus.stop()
    finally:
        server.stop()


def test_prometheus_sees_the_traffic(stack: tuple[Server, Prometheus], tmp_path: Path) -> None:
    server, prometheus = stack
    prometheus.wait_for('up{job="modelreg"}', 1)
    prometheus.wait_for('modelreg_serving{job="modelreg"}', 1)

    data = b"weights" * 50_000
    (tmp_path / "model.bin").write_bytes(data)
    with SyncRegistryClient(server.address) as client:
        for i in range(5):
            client.create_model(f"model-{i}")
        version = client.create_model_version("models/model-0")
        client.push(version.name, tmp_path / "model.bin")
        for _ in range(10):
            client.get_model("models/model-0")
    with grpc.insecure_channel(server.address) as channel:
        events = EventServiceStub(channel).ListEvents(ListEventsRequest(page_size=1000))
    head = max(e.revision for e in events.events)

    prometheus.wait_for(f'sum(modelreg_rpc_handled_total{{method="{CREATE_MODEL}", code="OK"}})', 5)
    prometheus.wait_for("modelreg_event_log_head_revision", head)
    uploaded = prometheus.scalar("modelreg_artifact_uploaded_bytes_total")
    assert uploaded is not None and uploaded > len(data)
    hits = prometheus.scalar("modelreg_read_cache_hits_total")
    assert hits is not None and hits >= 5
    buckets = f'modelreg_rpc_duration_seconds_bucket{{method="{CREATE_MODEL}"}}'
    latency = prometheus.scalar(f"histogram_quantile(0.5, sum by (le) ({buckets}))")
    assert latency is not None and 0 < latency < 1

    # The shipped rules loaded and evaluate cleanly against real series; none
    # of the alerts fires on a healthy server.
    deadline = time.monotonic() + 30
    while True:
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules):
            break
        assert time.monotonic() < deadline, "rules were not evaluated"
        time.sleep(0.5)
    assert {g["name"] for g in groups} == {"modelreg.recording", "modelreg.alerts"}
    assert all(rule["health"] == "ok" for rule in rules), [
        (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"
    ]
    assert prometheus.api("alerts")["alerts"] == []

    # Every dashboard query runs (Grafana's variables substituted).
    for expr in _dashboard_exprs():
        query = expr.replace("$__rate_interval", "1m").replace("$job", "modelreg")
        result = prometheus.api("query", query=query)["result"]
        for sample in result:
            assert not math.isinf(float(sample["value"][1])), query


def _dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]
