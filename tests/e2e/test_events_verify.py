"""`modelreg events verify` recomputes the hash chain client-side: it passes on
an untouched log and points at the first event edited in the database."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import psycopg
from modelregistry import RegistryClient
from support.postgres import libpq_dsn
from support.processes import ServeProcess, modelreg


async def make_history(address: str) -> None:
    async with RegistryClient(address) as client:
        await client.create_model("fraud")
        for _ in range(3):
            await client.create_model_version("models/fraud", source_uri="s3://b/m")
        await client.set_alias("models/fraud/aliases/production", 1)
        await client.set_alias("models/fraud/aliases/production", 2)
        await client.approve_model_version("models/fraud/versions/2", comment="ünïcode ✓")


def verify(address: str) -> subprocess.CompletedProcess[str]:
    return modelreg("--server", address, "events", "verify")


def test_verify_catches_an_edited_event(pg_url: str, tmp_path: Path) -> None:
    srv = ServeProcess(tmp_path / "data", "--database-url", pg_url)
    srv.start()
    try:
        asyncio.run(make_history(srv.address))
        ok = verify(srv.address)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "verified 7 events, revisions 1..7" in ok.stdout
        with psycopg.connect(libpq_dsn(pg_url), autocommit=True) as conn:
            conn.execute("UPDATE events SET actor = 'someone-else' WHERE revision = 5")
        broken = verify(srv.address)
        assert broken.returncode == 1
        assert "chain broken at revision 5" in broken.stdout
    finally:
        srv.stop()
