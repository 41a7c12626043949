"""deploy/docker-compose.yml: the stack's services point at each other
consistently, and what it runs is what the CLI accepts.

No container engine that runs compose files works on this machine, so the
file is checked by reading it: flags against `modelreg serve --help`, and
every address one service uses for another against what that other one
listens on and publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from support.cli_help import db_upgrade_flags, flag_value, flags_in, serve_flags

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved
    return dict(loaded["services"])


def published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port."""
    mapping = {}
    for entry in service.get("ports", []):
        host, container = str(entry).rsplit(":", 2)[-2:]
        mapping[int(container)] = int(host)
    return mapping


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_the_stack_has_everything(services: dict[str, Any]) -> None:
    assert {"postgres", "nats", "minio", "migrate", "modelreg", "prometheus"} <= set(services)
    build = services["modelreg"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == (
        DEPLOY / "Containerfile"
    )
    assert services["migrate"]["image"] == services["modelreg"]["image"]


def test_commands_are_ones_the_cli_accepts(services: dict[str, Any]) -> None:
    server = services["modelreg"]["command"]
    assert set(flags_in(server)) <= serve_flags(), set(flags_in(server)) - serve_flags()
    migrate = services["migrate"]
    assert migrate["entrypoint"] == ["modelreg", "db", "upgrade"]
    assert set(flags_in(migrate["command"])) <= db_upgrade_flags()
    # The server does not migrate; the one-shot container does, first, on
    # the same database.
    assert "--no-migrate" in server
    assert flag_value(server, "--database-url") == flag_value(migrate["command"], "--database-url")
    waits = services["modelreg"]["depends_on"]
    assert waits["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_addresses_line_up(services: dict[str, Any]) -> None:
    server = services["modelreg"]["command"]
    ports = published(services["modelreg"])
    grpc_port = port_of(str(flag_value(server, "--listen")))
    metrics_port = port_of(str(flag_value(server, "--metrics-listen")))
    assert grpc_port in ports and metrics_port in ports

    # PostgreSQL: the service, its default port, the credentials it was given.
    db = urlsplit(str(flag_value(server, "--database-url")))
    pg_env = services["postgres"]["environment"]
    assert (db.hostname, db.port or 5432) == ("postgres", 5432)
    assert (db.username, db.password) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"])
    assert db.path.lstrip("/") == pg_env["POSTGRES_DB"]

    # S3: MinIO's address and credentials, and a bucket the init job creates.
    s3 = urlsplit(str(flag_value(server, "--s3-endpoint-url")))
    minio = services["minio"]
    assert s3.hostname == "minio"
    assert s3.port == port_of(flag_value(minio["command"], "--address") or ":9000")
    env = services["modelreg"]["environment"]
    assert env["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    bucket = urlsplit(str(flag_value(server, "--blob-store"))).hostname
    assert f"local/{bucket}" in " ".join(services["minio-init"]["command"])
    assert services["modelreg"]["depends_on"]["minio-init"]["condition"] == (
        "service_completed_successfully"
    )

    # NATS with JetStream, which the relay needs.
    nats = urlsplit(str(flag_value(server, "--events-nats")))
    assert (nats.hostname, nats.port) == ("nats", 4222)
    assert "--jetstream" in services["nats"]["command"]

    # Prometheus scrapes the server's metrics port and loads the shipped rules.
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["prometheus"]["volumes"]}
    config_dir = (COMPOSE.parent / mounts["/etc/prometheus"]).resolve()
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"modelreg:{metrics_port}"]
    assert all((config_dir / rules).exists() for rules in config["rule_files"])

    # The health check asks the port the server listens on.
    check = services["modelreg"]["healthcheck"]["test"]
    assert "modelregistry_server.probe" in check
    assert port_of(str(flag_value(check, "--address"))) == grpc_port
    grace = float(str(flag_value(server, "--shutdown-grace")))
    assert float(services["modelreg"]["stop_grace_period"].rstrip("s")) > grace


def test_host_ports_are_distinct_and_mounts_exist(services: dict[str, Any]) -> None:
    host_ports = [host for svc in services.values() for host in published(svc).values()]
    assert len(host_ports) == len(set(host_ports))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} is missing"
