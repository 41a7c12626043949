"""`modelreg push` and `modelreg pull` as processes against a `modelreg serve` process."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.processes import modelreg


@dataclass
class Cli:
    address: str
    home: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MODELREG_SERVER": self.address, "XDG_CACHE_HOME": str(self.home)}
        return modelreg(*args, env=env, timeout=120)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--output", "json", *args).stdout)


@pytest.fixture
def cli(address: str, tmp_path: Path) -> Cli:
    return Cli(address, tmp_path / "cache")


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_push_then_pull_round_trip(cli: Cli, tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "config.json").write_bytes(b'{"layers": 3}')
    (model / "weights" / "shard-0.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (model / "weights" / "empty.bin").write_bytes(b"")
    cli.ok("models", "create", "fraud")
    version = cli.json("versions", "create", "fraud")["name"]

    pushed = cli("push", version, str(model), "--progress", "always", "--output", "json")
    assert pushed.returncode == 0, pushed.stderr
    result = json.loads(pushed.stdout)
    assert result["model_version"]["state"] == "READY"
    assert result["digest"].startswith("sha256:")
    assert result["model_version"]["artifact"]["digest"] == result["digest"]
    assert result["bytes_sent"] == result["total_bytes"] > 3 * 1024 * 1024
    # The bar (its carriage returns read as newlines here) ends at 100 % with a rate.
    last = pushed.stderr.splitlines()[-1]
    assert last.startswith("push [" + "#" * 24 + "] 100% ") and " MB/s " in last

    cli.ok("aliases", "set", "models/fraud/aliases/production", version)
    pulled = cli.ok("pull", "fraud/aliases/production", str(tmp_path / "out"))
    assert pulled.stderr == "", "no bar when stderr is not a terminal"
    rows = dict(line.split(None, 1) for line in pulled.stdout.splitlines())
    assert pulled.stdout.splitlines()[-1].split() == ["digest", result["digest"]]
    assert rows["version"] == version
    assert tree(tmp_path / "out") == tree(model)

    # The same tree on a new version: every blob is already there.
    again = cli.json("push", cli.json("versions", "create", "fraud")["name"], str(model))
    assert again["bytes_sent"] == 0 and again["digest"] == result["digest"]

    by_digest = cli.json("pull", result["digest"], str(tmp_path / "manifest"))
    manifest = json.loads((tmp_path / "manifest" / result["digest"][7:]).read_bytes())
    assert by_digest["digest"] == result["digest"]
    assert [f["path"] for f in manifest["files"]] == sorted(tree(model))

    # A person reading a version sees what the model weighs, not its manifest.
    model_bytes = sum(len(data) for data in tree(model).values())
    shown = {
        key: value.strip()
        for key, _, value in (
            line.partition(" ") for line in cli.ok("versions", "get", version).stdout.splitlines()
        )
    }
    assert shown["model_size"] == f"3.0 MiB ({model_bytes} bytes)"
    assert int(shown["artifact.size_bytes"]) < 1024  # the manifest's own size
    header, *listed = cli.ok("versions", "list", "fraud").stdout.splitlines()
    column = header.index("MODEL SIZE")
    assert [row[column:].split("  ")[0] for row in listed] == ["3.0 MiB", "3.0 MiB"]


def test_errors_exit_non_zero_with_the_reason(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"weights")
    cli.ok("models", "create", "churn")
    missing = cli("push", "models/churn/versions/42", str(tmp_path / "model.bin"))
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: NOT_FOUND VERSION_NOT_FOUND: ")
    assert missing.stdout == ""

    no_alias = cli("pull", "churn/aliases/production", str(tmp_path / "out"))
    assert no_alias.returncode == 3
    assert no_alias.stderr.startswith("error: NOT_FOUND ALIAS_NOT_FOUND: ")
    assert not (tmp_path / "out").exists()

    no_file = cli("push", cli.json("versions", "create", "churn")["name"], str(tmp_path / "nope"))
    assert no_file.returncode == 2
    assert "no such file or directory" in no_file.stderr
