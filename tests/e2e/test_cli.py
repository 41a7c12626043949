"""The `modelreg` command as people and scripts use it: a real `modelreg serve`
process, and every CLI call its own process."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
from support.processes import modelreg


@dataclass
class Cli:
    """Runs `modelreg` against the server, with MODELREG_SERVER pointing at it."""

    address: str

    def __call__(self, *args: str, env_server: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "MODELREG_SERVER"}
        if env_server:
            env["MODELREG_SERVER"] = self.address
        return modelreg(*args, env=env)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--output", "json", *args))


@pytest.fixture
def cli(address: str) -> Cli:
    return Cli(address)


def test_models_and_versions(cli: Cli) -> None:
    created = cli.json(
        "models", "create", "fraud", "--display-name", "Fraud", "--label", "team=risk"
    )
    assert created["name"] == "models/fraud"
    assert created["labels"] == {"team": "risk"}
    assert "models/churn" in cli.ok("models", "create", "churn")

    listed = cli.json("models", "list", "--page-size", "1")
    assert [m["name"] for m in listed] == ["models/churn", "models/fraud"]
    assert set(listed[0]) == set(created), "every field is present, set or not"

    updated = cli.json(
        "models", "update", "fraud", "--description", "scores payments", "--etag", created["etag"]
    )
    assert updated["description"] == "scores payments"
    assert updated["display_name"] == "Fraud"
    # The etag of the first read is stale now: compare-and-set refuses.
    stale = cli("models", "update", "fraud", "--description", "lost", "--etag", created["etag"])
    assert stale.returncode == 5
    assert stale.stderr.startswith("error: ABORTED ETAG_MISMATCH: ")
    assert stale.stdout == ""

    v1 = cli.json(
        "versions",
        "create",
        "models/fraud",
        "--source-uri",
        "s3://bucket/run-1/model",
        "--label",
        "framework=xgboost",
        "--metadata",
        '{"auc": 0.91, "params": {"depth": 6}}',
    )
    assert v1["name"] == "models/fraud/versions/1"
    assert v1["state"] == "READY"
    assert v1["metadata"] == {"auc": 0.91, "params": {"depth": 6}}
    cli.ok("versions", "create", "fraud", "--source-uri", "s3://bucket/run-2/model")
    archived = cli.json("versions", "update", "fraud/versions/1", "--state", "ARCHIVED")
    assert archived["state"] == "ARCHIVED"

    # The table is for people: a header and one aligned row per version, newest first.
    header, *rows = cli.ok("versions", "list", "fraud").splitlines()
    assert header.split()[:2] == ["NAME", "STATE"]
    assert [row.split()[0] for row in rows] == [
        "models/fraud/versions/2",
        "models/fraud/versions/1",
    ]
    state_column = header.index("STATE")
    assert [row[state_column:].split()[0] for row in rows] == ["READY", "ARCHIVED"]


def test_alias_compare_and_set_and_resolve(cli: Cli) -> None:
    cli.ok("models", "create", "ranker")
    for run in ("1", "2"):
        cli.ok("versions", "create", "ranker", "--source-uri", f"s3://bucket/ranker-{run}")
    alias = cli.json("aliases", "set", "models/ranker/aliases/production", "1")
    assert alias["version"] == "models/ranker/versions/1"

    moved = cli.json("aliases", "set", "ranker/aliases/production", "2", "--etag", alias["etag"])
    assert moved["etag"] != alias["etag"]
    lost = cli("aliases", "set", "ranker/aliases/production", "1", "--etag", alias["etag"])
    assert lost.returncode == 5
    assert lost.stderr.startswith("error: ABORTED ETAG_MISMATCH: ")

    resolved = cli.json("resolve", "models/ranker/aliases/production")
    assert resolved["alias"]["etag"] == moved["etag"]
    assert resolved["model_version"]["name"] == "models/ranker/versions/2"
    assert resolved["model_version"]["source_uri"] == "s3://bucket/ranker-2"
    assert "models/ranker/versions/2" in cli.ok("resolve", "models/ranker/aliases/production")


def test_output_shows_numbers_changes_and_approval(cli: Cli) -> None:
    """What a reader checks first: how an alias moved, whether a version is
    approved; and JSON a script can use without a second parse."""
    cli.ok("models", "create", "scorer")
    for run in ("1", "2"):
        cli.ok("versions", "create", "scorer", "--source-uri", f"s3://bucket/scorer-{run}")
    cli.ok("versions", "approve", "scorer/versions/2", "--comment", "eval ok")
    cli.ok("aliases", "set", "scorer/aliases/production", "1")
    cli.ok("aliases", "set", "scorer/aliases/production", "2")

    header, *rows = cli.ok("versions", "list", "scorer").splitlines()
    approval = header.index("APPROVAL")
    assert [row[approval:].split()[0] for row in rows] == ["APPROVED", "PENDING"]

    events = cli.json("events", "list", "--model", "scorer", "--type", "ALIAS_SET")
    assert all(isinstance(e["revision"], int) for e in events)
    first, second = events
    assert first["before_json"] is None
    assert first["after_json"]["version"] == "models/scorer/versions/1"
    assert second["before_json"]["version"] == "models/scorer/versions/1"
    assert second["after_json"]["version"] == "models/scorer/versions/2"

    header, *rows = cli.ok(
        "events", "list", "--model", "scorer", "--type", "ALIAS_SET"
    ).splitlines()
    change = header.index("CHANGE")
    assert [row[change:].split("  ")[0] for row in rows] == ["- -> 1", "1 -> 2"]

    assert cli.json("models", "get", "scorer")["latest_version"] == 2


def test_errors_exit_non_zero_with_the_reason(cli: Cli) -> None:
    # --server after the subcommand, and no MODELREG_SERVER to fall back on.
    missing = cli("models", "get", "absent", "--server", cli.address, env_server=False)
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: NOT_FOUND MODEL_NOT_FOUND: ")
    assert missing.stdout == ""

    invalid = cli("models", "create", "Not_Valid")
    assert invalid.returncode == 2
    assert invalid.stderr.startswith("error: INVALID_ARGUMENT INVALID_NAME: ")


def test_help_documents_exit_status() -> None:
    done = modelreg("--help")
    assert done.returncode == 0, done.stderr
    for command in ("serve", "models", "versions", "aliases", "resolve"):
        assert command in done.stdout
    assert "5  ABORTED" in done.stdout
