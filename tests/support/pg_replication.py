"""A PostgreSQL primary and a streaming replica of it, each a cluster of its
own (initdb, pg_basebackup -R) on a free loopback port, torn down afterwards.

As root, the clusters belong to the `postgres` user (initdb and the server
refuse to run as root) and their commands run as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from support.ports import free_port


def tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)),
        None,
    )


def have_tools() -> bool:
    return all(tool(t) for t in ("initdb", "pg_ctl", "pg_basebackup"))


class Node:
    def __init__(self, root: Path, name: str) -> None:
        self.data = root / name
        self.log = root / f"{name}.log"
        self.root = root
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [*self.as_user, *args], check=True, capture_output=True, timeout=timeout, cwd=self.root
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self.run(
            str(tool("pg_ctl")), "-D", str(self.data), "-o", options,
            "-l", str(self.log), "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self.run(str(tool("pg_ctl")), "-D", str(self.data), "stop", "-m", mode)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []


class ReplicatedPair:
    """`primary` and `replica` (hot standby, streaming from the primary)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="modelreg-pgpair-"))
        if os.geteuid() == 0:
            os.chown(self.root, pwd.getpwnam("postgres").pw_uid, -1)
        self.primary = Node(self.root, "primary")
        self.replica = Node(self.root, "replica")

    def create(self, database: str) -> None:
        """A database on the primary, waited for until the replica has it."""
        self.primary.execute(f'CREATE DATABASE "{database}"')
        deadline = time.monotonic() + 30
        while not self.replica.execute(f"SELECT 1 FROM pg_database WHERE datname = '{database}'"):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not receive the new database")
            time.sleep(0.05)

    def pause_replay(self) -> None:
        self.replica.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.replica.execute("SELECT pg_wal_replay_resume()")


@contextlib.contextmanager
def replicated_pair() -> Iterator[ReplicatedPair]:
    pair = ReplicatedPair()
    p = pair.primary
    try:
        p.run(str(tool("initdb")), "-D", str(p.data), "-U", "postgres", "--auth=trust")
        p.start()
        pair.replica.run(
            str(tool("pg_basebackup")), "-h", "127.0.0.1", "-p", str(p.port), "-U", "postgres",
            "-D", str(pair.replica.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        pair.replica.start()
        yield pair
    finally:
        for node in (pair.replica, pair.primary):
            with contextlib.suppress(subprocess.CalledProcessError):
                node.stop("immediate")
        shutil.rmtree(pair.root, ignore_errors=True)
