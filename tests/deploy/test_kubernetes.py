"""deploy/kubernetes: both overlays render with kubectl's kustomize, every
object is valid for the Kubernetes versions we support (offline schemas,
unknown fields rejected), and what the objects say about the server (flags,
ports, probes, drain, migrations, secrets) agrees with the real CLI and with
each other."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from support.cli_help import db_upgrade_flags, flag_value, flags_in, serve_flags
from support.services import require

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests target (gRPC probes are GA from 1.27)
# and the newest the schema package knows.
VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
Obj = dict[str, Any]


def render(overlay: str) -> list[Obj]:
    if shutil.which("kubectl") is None:
        require("kubectl is not installed (it renders the kustomize overlays)")
    shown = subprocess.run(
        ["kubectl", "kustomize", str(KUBE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    return [doc for doc in yaml.safe_load_all(shown.stdout) if doc]


@pytest.fixture(scope="module", params=["dev", "ha"])
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render(request.param)


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in of_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def server(objs: list[Obj]) -> Obj:
    containers = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "modelreg")


def validate_servicemonitor(obj: Obj) -> None:
    """ServiceMonitor is the Prometheus Operator's CRD, not in Kubernetes'
    schemas: check it against models generated from that CRD; a field the
    CRD does not know is dropped in the round trip, so it shows up."""
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    parsed = ServiceMonitor.model_validate(obj)
    assert parsed.model_dump(by_alias=True, exclude_none=True, mode="json") == obj


def test_every_object_is_valid(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    for obj in objs:
        if obj["kind"] == "ServiceMonitor":
            validate_servicemonitor(obj)
            continue
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_validation_would_catch_a_typo(overlay: tuple[str, list[Obj]]) -> None:
    """The check above is not vacuous: a misspelt probe field fails it."""
    _, objs = overlay
    broken = copy.deepcopy(one(objs, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grcp"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)
    monitor = copy.deepcopy(one(objs, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["prot"] = "metrics"
    with pytest.raises(AssertionError):
        validate_servicemonitor(monitor)


def test_overlays_hold_what_they_promise(overlay: tuple[str, list[Obj]]) -> None:
    name, objs = overlay
    kinds = {o["kind"] for o in objs}
    common = {"ServiceAccount", "ConfigMap", "Service", "Deployment", "NetworkPolicy"}
    assert common | {"ServiceMonitor"} <= kinds
    deployment = one(objs, "Deployment")
    args = server(objs)["args"]
    if name == "dev":
        # One replica, SQLite on a volume, migrated by the server itself.
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert not kinds & {"Job", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
        claim = one(objs, "PersistentVolumeClaim")["metadata"]["name"]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": claim}}
        assert flag_value(args, "--data-dir") == "/var/lib/modelreg"
        assert "--database-url" not in args and "--no-migrate" not in args
    else:
        # Replicas on PostgreSQL and S3 with TLS, servers never migrating.
        hpa = one(objs, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2
        assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
        assert "--no-migrate" in args
        assert {"--tls-cert", "--tls-key", "--database-url", "--blob-store"} <= set(args)
        config = one(objs, "ConfigMap")["data"]
        assert config["MODELREG_BLOB_STORE"].startswith("s3://")


def test_flags_exist_and_variables_are_defined(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    for workload in of_kind(objs, "Deployment") + of_kind(objs, "Job"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            args = container.get("args", [])
            known = (
                db_upgrade_flags()
                if container.get("command") == ["modelreg", "db", "upgrade"]
                else serve_flags()
            )
            assert set(flags_in(args)) <= known, set(flags_in(args)) - known
            defined = {e["name"] for e in container.get("env", [])}
            for arg in args:
                for var in re.findall(r"\$\((\w+)\)", arg):
                    assert var in defined, f"$({var}) is not set in {container['name']}"


def test_ports_probes_and_drain_agree(overlay: tuple[str, list[Obj]]) -> None:
    _, objs = overlay
    container = server(objs)
    args = container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(str(flag_value(args, "--listen")).rsplit(":", 1)[1]) == ports["grpc"]
    assert int(str(flag_value(args, "--metrics-listen")).rsplit(":", 1)[1]) == ports["metrics"]
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        target = probe.get("grpc") or probe.get("httpGet")
        assert target is not None
        assert target["port"] in ports or target["port"] in ports.values()
        if "httpGet" in probe:
            assert probe["httpGet"]["path"] in ("/healthz", "/readyz")
    # Liveness must not follow the database (that would restart every pod
    # during a database outage): /healthz, not gRPC health.
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    # The pod is given long enough to sit out the endpoint delay and drain.
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    grace = float(str(flag_value(args, "--shutdown-grace")))
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + grace + 5

    # Services and the ServiceMonitor reach ports the container has.
    labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for service in of_kind(objs, "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    monitor = one(objs, "ServiceMonitor")["spec"]
    scraped = [
        s
        for s in of_kind(objs, "Service")
        if monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert len(scraped) == 1
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in scraped[0]["spec"]["ports"]}
    assert monitor["endpoints"][0]["path"] == "/metrics"
    policy = one(objs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            assert port["port"] in ports


def test_pods_run_as_the_images_user_with_measured_requests(
    overlay: tuple[str, list[Obj]],
) -> None:
    _, objs = overlay
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "deploy/Containerfile").read_text(), re.M)
    assert user is not None
    for workload in of_kind(objs, "Deployment") + of_kind(objs, "Job"):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(user.group(1))
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]
    memory = server(objs)["resources"]["requests"]["memory"]
    assert memory.endswith("Mi") and int(memory[:-2]) >= 165  # the measured RSS


def test_ha_secrets_and_migration_job_line_up() -> None:
    objs = render("ha")
    examples = list(yaml.safe_load_all((KUBE / "overlays/ha/secrets.example.yaml").read_text()))
    for secret in examples:
        kubernetes_validate.validate(secret, VERSIONS[0], strict=True)
    secrets = {s["metadata"]["name"]: set(s["stringData"]) for s in examples}
    configs = {c["metadata"]["name"]: set(c["data"]) for c in of_kind(objs, "ConfigMap")}

    def refs(node: Any) -> list[tuple[str, str, str | None]]:
        found: list[tuple[str, str, str | None]] = []
        if isinstance(node, dict):
            for key, kind in (("secretKeyRef", "secret"), ("configMapKeyRef", "configmap")):
                if key in node:
                    found.append((kind, node[key]["name"], node[key]["key"]))
            if "secretRef" in node:
                found.append(("secret", node["secretRef"]["name"], None))
            if "secretName" in node:
                found.append(("secret", node["secretName"], None))
            for value in node.values():
                found += refs(value)
        elif isinstance(node, list):
            for value in node:
                found += refs(value)
        return found

    for kind, name, key in refs(objs):
        table = secrets if kind == "secret" else configs
        assert name in table, f"{kind} {name} is referred to but not defined"
        assert key is None or key in table[name], f"{kind} {name} has no key {key}"

    # The TLS files the server reads are in the mounted TLS secret.
    container = server(objs)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = one(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    tls = next(v for v in volumes if "secret" in v)
    for flag in ("--tls-cert", "--tls-key"):
        path = Path(str(flag_value(container["args"], flag)))
        assert str(path.parent) == mounts[tls["name"]]
        assert path.name in secrets[tls["secret"]["secretName"]]

    # The Job migrates the database the servers use.
    job = one(objs, "Job")["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["modelreg", "db", "upgrade"]
    server_env = {e["name"]: e for e in container["env"]}
    job_env = {e["name"]: e for e in job["env"]}
    url = flag_value(container["args"], "--database-url")
    assert url == flag_value(job["args"], "--database-url") == "$(MODELREG_DATABASE_URL)"
    assert job_env["MODELREG_DATABASE_URL"] == server_env["MODELREG_DATABASE_URL"]
