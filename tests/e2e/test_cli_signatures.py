"""Signed models from the command line, against a `modelreg serve` process:
`modelreg push --sign-key`, `signatures attach|list|policy`, `models update
--trusted-key --require-signature`, `pull --verify-key`, and interoperation
with the `model_signing` CLI both ways."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.processes import modelreg
from support.signing import make_key, model_signing, sign_dir, write_model

FILES = {"config.json": b'{"layers": 3}', "weights/shard-0.bin": os.urandom(200_000)}


@dataclass
class Cli:
    address: str
    home: Path

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MODELREG_SERVER": self.address, "XDG_CACHE_HOME": str(self.home)}
        return modelreg(*map(str, args), env=env, timeout=120)

    def ok(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str | Path) -> Any:
        return json.loads(self.ok("--output", "json", *args).stdout)


@pytest.fixture
def cli(address: str, tmp_path: Path) -> Cli:
    return Cli(address, tmp_path / "cache")


def test_push_sign_policy_gate_and_verified_pull(cli: Cli, tmp_path: Path) -> None:
    key = make_key(tmp_path)
    model = write_model(tmp_path / "model", FILES)
    cli.ok("models", "create", "signed")
    policy = cli.json(
        "models",
        "update",
        "signed",
        "--trusted-key",
        key.public,
        "--require-signature",
        "production",
    )
    assert policy["require_signature_aliases"] == ["production"]
    unsigned = cli.json("versions", "create", "signed")["name"]
    cli.ok("push", unsigned, model)
    refused = cli("aliases", "set", "signed/aliases/production", unsigned)
    assert refused.returncode != 0
    assert "SIGNATURE_REQUIRED" in refused.stderr and "carries no signature" in refused.stderr

    version = cli.json("versions", "create", "signed")["name"]
    pushed = cli.json(
        "push", version, model, "--sign-key", key.private, "--signature-out", tmp_path / "p.sig"
    )
    assert pushed["signature"]["trusted"] is True
    listed = cli.ok("signatures", "list", version).stdout
    assert "trusted" in listed and pushed["signature"]["signer"] in listed
    cli.ok("aliases", "set", "signed/aliases/production", version)

    # What modelreg signed verifies with the model_signing CLI on the pulled files.
    out = tmp_path / "out"
    pulled = cli.json("pull", "signed/aliases/production", out, "--verify-key", key.public)
    assert pulled["verified_by"] == pushed["signature"]["signer"]
    done = model_signing(
        "verify", "key", out, "--public_key", key.public, "--signature", tmp_path / "p.sig"
    )
    assert done.returncode == 0, done.stderr + done.stdout

    # Another key is not trusted by the consumer: the pull says so and fails.
    other = make_key(tmp_path, "other")
    failed = cli("pull", version, tmp_path / "out2", "--verify-key", other.public)
    assert failed.returncode == 1
    assert "signature verification failed" in failed.stderr


def test_a_model_signing_cli_bundle_attaches_from_the_cli(cli: Cli, tmp_path: Path) -> None:
    key = make_key(tmp_path)
    model = write_model(tmp_path / "model", FILES)
    cli.ok("models", "create", "ci-signed")
    cli.ok("signatures", "policy", "ci-signed", "--trusted-key", key.public)
    version = cli.json("versions", "create", "ci-signed")["name"]
    cli.ok("push", version, model)
    sign_dir(model, key.private, tmp_path / "model.sig")
    attached = cli.json("signatures", "attach", version, tmp_path / "model.sig")
    assert attached["trusted"] is True and attached["file_count"] == len(FILES)
    # A bundle for other files is refused with the first differing path.
    (model / "config.json").write_bytes(b'{"layers": 4}')
    sign_dir(model, key.private, tmp_path / "changed.sig")
    refused = cli("signatures", "attach", version, tmp_path / "changed.sig")
    assert refused.returncode != 0
    assert "SIGNATURE_INVALID" in refused.stderr and "config.json" in refused.stderr
    shown = cli.json("signatures", "policy", "ci-signed")
    assert shown["name"] == "models/ci-signed/trustPolicy"
