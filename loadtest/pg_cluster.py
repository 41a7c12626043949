"""A PostgreSQL cluster of one's own: initdb in a temporary directory, on a
free loopback port, restartable at will (the soak restarts it under load).

initdb and the server refuse to run as root; as root the cluster belongs to
the `postgres` user and its commands run as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from support.ports import free_port


def _tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries")
    return found


class PgCluster:
    """`with PgCluster() as pg:` a running cluster; `pg.url` is its database URL."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="modelreg-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            os.chown(self.root, pwd.getpwnam("postgres").pw_uid, -1)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self._as, *args], check=True, capture_output=True, timeout=timeout, cwd=self.root
        )

    def __enter__(self) -> PgCluster:
        self._run(_tool("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust")
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(_tool("pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _options(self) -> str:
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"

    def start(self) -> None:
        self._run(
            _tool("pg_ctl"), "-D", str(self.data), "-o", self._options(),
            "-l", str(self.log), "-w", "start",
        )  # fmt: skip

    def restart(self, mode: str = "fast") -> None:
        """`fast` closes sessions cleanly; `immediate` is a crash (recovery on start)."""
        self._run(
            _tool("pg_ctl"), "-D", str(self.data), "-o", self._options(),
            "-l", str(self.log), "-m", mode, "-w", "restart",
        )  # fmt: skip
