"""The README's "Securing a registry" section is true: its commands work as
written against a server with authentication on, and its access tables are
the ones the server enforces."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path

from modelregistry_server.api.access_docs import render
from support.in_process import serving
from support.jwt_issuer import Issuer

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "modelregistry.cli.main"]


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {name}: begin -->\n(.*?)<!-- {name}: end -->", text, re.S)
    assert block, f"README lost its {name} block"
    return block.group(1)


def test_readme_access_tables_match_the_code() -> None:
    assert readme_block("access-tables") == render(), (
        "the README's access tables are stale: paste "
        "modelregistry_server.api.access_docs.render() between the markers"
    )


async def run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_readme_security_commands(sqlite_url: str, tmp_path: Path) -> None:
    commands = [
        line for line in readme_block("security").splitlines() if line.startswith("modelreg ")
    ]
    assert len(commands) >= 8
    issuer = Issuer()
    config = issuer.server_config(sqlite_url, tmp_path, "user:alice@example.com")
    async with serving(config) as running:
        env = {
            **os.environ,
            "MODELREG_SERVER": f"127.0.0.1:{running.port}",
            "MODELREG_TOKEN": issuer.token("alice@example.com"),
        }
        outputs: dict[str, str] = {}
        token_id = ""
        for command in commands:
            argv = shlex.split(command.replace("TOKEN_ID", token_id))
            code, out, err = await run([*CLI, *argv[1:]], env)
            assert code == 0, f"{command}\n{err}"
            outputs[" ".join(argv[1:3])] = out
            if argv[1:3] == ["tokens", "create"]:
                found = re.search(r"token\.token_id\s+([0-9a-f]{16})", out)
                assert found, out
                token_id = found.group(1)
                secret = re.search(r"secret\s+(mrsa_\S+)", out)
                assert secret, "the secret is shown when the token is created"
                assert "shown only now" in err
        assert (
            "roles/approver" in outputs["iam get"] and "user:bob@example.com" in outputs["iam get"]
        )
        assert re.search(r"checks\[0\]\.granted\s+False", outputs["iam test"])
        assert "any of roles/deployer, roles/owner, roles/admin" in outputs["iam test"]
        assert "mrsa_" not in outputs["tokens list"]  # never a secret but at creation
        # Without credentials the same CLI is turned away, with its own exit status.
        anonymous = {k: v for k, v in env.items() if k != "MODELREG_TOKEN"}
        code, _, err = await run([*CLI, "models", "list"], anonymous)
        assert code == 8 and "CREDENTIALS_MISSING" in err
        bob = {**env, "MODELREG_TOKEN": issuer.token("bob@example.com")}
        code, _, err = await run([*CLI, "models", "delete", "fraud", "--force"], bob)
        assert code == 9 and "models.delete" in err
