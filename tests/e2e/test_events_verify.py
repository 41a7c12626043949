"""`modelreg events verify` recomputes the hash chain client-side: it passes on
an untouched log and points at the first event edited in the database."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from modelregistry import RegistryClient
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.domain.events import chain_hash
from modelregistry_server.events.checkpoints import CheckpointSigner, generate_key_pem
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


def verify_with(address: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return modelreg("--server", address, "events", "verify", *flags)


def rewrite_from(conn: psycopg.Connection[Any], revision: int, actor: str) -> None:
    """What someone who can write the database does to hide an edit: change
    an event, then recompute every hash after it and move the head along."""
    rows = conn.execute(
        "SELECT revision, type, resource, model, actor, time_us, before_json, after_json,"
        " prev_hash FROM events WHERE revision >= %s ORDER BY revision",
        (revision,),
    ).fetchall()
    prev = rows[0][8]
    for rev, type_, resource, model, old_actor, time_us, before, after, _ in rows:
        who = actor if rev == revision else old_actor
        digest = chain_hash(rev, type_, resource, model, who, time_us, before, after, prev)
        conn.execute(
            "UPDATE events SET actor = %s, prev_hash = %s, hash = %s WHERE revision = %s",
            (who, prev, digest, rev),
        )
        last_prev, prev = prev, digest
    conn.execute("UPDATE event_log_head SET hash = %s, prev_hash = %s", (prev, last_prev))


def truncate_after(conn: psycopg.Connection[Any], revision: int) -> None:
    """Delete the tail and move the head back: the rest still chains."""
    kept = conn.execute(
        "SELECT hash, prev_hash FROM events WHERE revision = %s", (revision,)
    ).fetchone()
    assert kept is not None
    conn.execute("DELETE FROM events WHERE revision > %s", (revision,))
    conn.execute(
        "UPDATE event_log_head SET revision = %s, hash = %s, prev_hash = %s",
        (revision, kept[0], kept[1]),
    )


async def events_of(address: str) -> list[pb.Event]:
    async with RegistryClient(address) as client:
        return [e async for e in client.list_events(page_size=1000)]


def test_signed_checkpoints_and_expected_heads_catch_rewrites_and_truncations(
    pg_url: str, tmp_path: Path
) -> None:
    key = tmp_path / "checkpoint-key.pem"
    key.write_bytes(generate_key_pem())
    public = tmp_path / "checkpoint-key.pub"
    public.write_bytes(CheckpointSigner.from_file(key).public_key_pem())
    signing = ServeProcess(
        tmp_path / "data",
        "--database-url",
        pg_url,
        "--checkpoint-key",
        str(key),
        "--checkpoint-interval-seconds",
        "0.2",
    )
    signing.start()
    try:
        asyncio.run(make_history(signing.address))  # revisions 1..7
        deadline = time.monotonic() + 30
        # A checkpoint that covers revision 2, where the rewrite below starts
        # (under load the first one may sign an earlier head).
        while not any(
            e.type == "CHECKPOINT" and json.loads(e.after_json)["revision"] >= 2
            for e in asyncio.run(events_of(signing.address))
        ):
            assert time.monotonic() < deadline, "no checkpoint within 30 s"
            time.sleep(0.1)
        asyncio.run(make_history_more(signing.address))  # one event past the checkpoint
        ok = verify_with(signing.address, "--public-key", str(public))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "signed checkpoints hold" in ok.stdout
        head = next(line for line in ok.stdout.splitlines() if line.startswith("head "))
        # (revision of the checkpoint, revision it signs)
        checkpoints = [
            (e.revision, json.loads(e.after_json)["revision"])
            for e in asyncio.run(events_of(signing.address))
            if e.type == "CHECKPOINT"
        ]
    finally:
        signing.stop()
    head_revision = int(head.split()[1].split(":")[0])
    # The last checkpoint with a change after it: cut the log right there.
    cut_at = max(c for c, _ in checkpoints if c < head_revision)
    # The first checkpoint that covers revision 2, where the rewrite starts.
    first_covering = min(c for c, signed in checkpoints if signed >= 2 and c <= cut_at)
    # From here on a server without the key: the one under attack.
    srv = ServeProcess(tmp_path / "data", "--database-url", pg_url)
    srv.start()
    try:
        with psycopg.connect(libpq_dsn(pg_url), autocommit=True) as conn:
            truncate_after(conn, cut_at)
        assert verify_with(srv.address, "--public-key", str(public)).returncode == 0
        cut = verify_with(srv.address, "--expect", head.split()[1])
        assert cut.returncode == 1 and "truncated" in cut.stdout, cut.stdout
        with psycopg.connect(libpq_dsn(pg_url), autocommit=True) as conn:
            rewrite_from(conn, 2, "someone-else")
        assert verify(srv.address).returncode == 0  # the bare chain is fooled
        caught = verify_with(srv.address, "--public-key", str(public))
        assert caught.returncode == 1, caught.stdout
        assert f"chain broken at revision {first_covering}" in caught.stdout
    finally:
        srv.stop()


async def make_history_more(address: str) -> None:
    async with RegistryClient(address) as client:
        await client.set_alias("models/fraud/aliases/production", 3)
