"""`modelreg serve --workers N`: N server processes sharing one port.

One Python process serves RPCs on one core. With N > 1, `modelreg serve`
becomes a supervisor that starts N worker processes; each binds the same
address with SO_REUSEPORT (the kernel spreads connections among them) and
runs the whole server with its own event loop, database pool, read cache
and watch hub. What keeps them one server:

- Writes: every guarantee lives in the database (row locks, conditional
  updates, WAL with a busy timeout and BEGIN IMMEDIATE on SQLite), so they
  hold across processes as they do across replicas.
- Read caches and watches: each worker's hub follows the event log; a commit
  in one worker wakes the others at once (events/peer_wake.py).
- Once-per-server duties (relay to NATS, checkpoint signing, compaction,
  upload expiry) run in whichever worker holds the duty lock (duties.py);
  schema upgrades at start take a lock too, so they run one at a time.
- Health: each worker answers gRPC health for itself. With
  --metrics-listen, the supervisor serves /healthz and /readyz for the
  whole server (every worker answering / every worker SERVING) and
  /metrics as every worker's metrics with a `worker` label
  (see observability/workers_http.py).
- Lifecycle: SIGTERM or SIGINT to the supervisor drains every worker; a
  worker that dies is restarted; workers die with the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import socket
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from typing import Any

from .config import ServerConfig
from .worker_role import WorkerRole

log = logging.getLogger("modelreg.server")
START_TIMEOUT_S = 120.0
MAX_RESTART_DELAY_S = 30.0
_PR_SET_PDEATHSIG = 1


def _split(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, not {listen!r}")
    return host.strip("[]"), int(port)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def claim_port(listen: str) -> tuple[str, socket.socket]:
    """The address every worker binds, with a concrete port (for port 0), and
    a socket that keeps the port in the SO_REUSEPORT group meanwhile. A port
    some other process already listens on fails here, as it would without
    workers."""
    host, port = _split(listen)
    bind_host = host or "0.0.0.0"
    with socket.socket(_family(bind_host), socket.SOCK_STREAM) as probe:
        try:
            probe.bind((bind_host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {listen}: {exc.strerror}") from exc
    keeper = socket.socket(_family(bind_host), socket.SOCK_STREAM)
    keeper.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    keeper.bind((bind_host, port))
    bound = keeper.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{bound}", keeper


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """A worker whose supervisor is gone (even SIGKILLed) must not keep serving."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def worker_main(config: ServerConfig, role: WorkerRole, conn: Connection) -> None:
    """A worker process: the whole server, reporting to the supervisor once bound."""
    _die_with_parent()
    from . import cli

    def started() -> None:
        conn.send("started")

    raise SystemExit(cli.run_server(config, role, started))


@dataclass
class _Worker:
    index: int
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    metrics_port: int
    started: bool = False
    restarts: int = 0


class Supervisor:
    def __init__(self, config: ServerConfig, count: int) -> None:
        self.config = config
        self.count = count
        self._ctx = mp.get_context("spawn")
        self._stopping = False
        self.workers: list[_Worker] = []
        tag = f"modelreg-{os.getpid()}-{int(time.time() * 1000) % 1_000_000}"
        self.role_base = WorkerRole(
            index=0,
            count=count,
            duties_lock=config.data_dir / ".duties.lock",
            migrate_lock=config.data_dir / ".migrate.lock",
            peers=tuple(f"{tag}-{i}" for i in range(count)),
        )

    def _spawn(self, index: int, metrics_port: int, restarts: int = 0) -> _Worker:
        config = replace(
            self.config,
            workers=1,
            metrics_listen=f"127.0.0.1:{metrics_port}" if self.config.metrics_listen else "",
        )
        parent, child = self._ctx.Pipe(duplex=False)
        role = replace(self.role_base, index=index)
        process = self._ctx.Process(
            target=worker_main, args=(config, role, child), name=f"modelreg-worker-{index}"
        )
        process.start()
        child.close()
        return _Worker(index, process, parent, metrics_port, restarts=restarts)

    def stop(self, *_: Any) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start_all(self) -> bool:
        """Start every worker and wait until each has bound the port; False
        (and every worker stopped) if one fails to start."""
        for i in range(self.count):
            self.workers.append(self._spawn(i, _free_loopback_port()))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(w.started for w in self.workers):
            if self._stopping or time.monotonic() > deadline:
                return False
            pending = [w for w in self.workers if not w.started]
            for w in pending:
                if w.conn.poll():
                    with contextlib.suppress(EOFError):
                        w.conn.recv()
                        w.started = True
                        continue
                if not w.process.is_alive():
                    log.error("worker failed to start", extra={"worker": w.index})
                    return False
            wait([w.process.sentinel for w in pending] + [w.conn for w in pending], 0.5)
        return True

    def watch(self) -> None:
        """Until stopped: restart any worker that exits, with a growing delay
        for one that keeps dying."""
        while not self._stopping:
            sentinels = {w.process.sentinel: w for w in self.workers}
            for sentinel in wait(list(sentinels), 0.5):
                if self._stopping:
                    break
                dead = sentinels[sentinel]
                dead.process.join(1)
                code = dead.process.exitcode
                delay = min(2.0**dead.restarts - 1, MAX_RESTART_DELAY_S)
                log.error(
                    "worker exited; restarting it",
                    extra={"worker": dead.index, "exit_code": code, "restart_in_s": delay},
                )
                self._sleep(delay)
                if self._stopping:
                    break
                fresh = self._spawn(dead.index, dead.metrics_port, dead.restarts + 1)
                self.workers[dead.index] = fresh

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            time.sleep(min(0.2, end - time.monotonic()))

    def shutdown(self) -> None:
        """SIGTERM to every worker (each drains for --shutdown-grace), then
        SIGKILL to any that outlives the grace by ten seconds."""
        for w in self.workers:
            if w.process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace + 10
        for w in self.workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(5)


def supervise(config: ServerConfig, count: int) -> int:
    """Run `count` workers until SIGTERM or SIGINT; the exit status of
    `modelreg serve`."""
    from . import server
    from .observability import workers_http

    server.check(config)  # refuse what cannot start before taking the port
    listen, keeper = claim_port(config.listen)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    supervisor = Supervisor(replace(config, listen=listen), count)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    http = None
    try:
        if config.metrics_listen:
            http = workers_http.start(config.metrics_listen, supervisor)
        if not supervisor.start_all():
            supervisor.shutdown()
            return 0 if supervisor.stopping else 1
        log.info("listening", extra={"listen": listen, "workers": count})
        supervisor.watch()
        log.info("shutting down", extra={"grace_s": config.shutdown_grace, "workers": count})
        supervisor.shutdown()
        log.info("stopped")
        return 0
    finally:
        keeper.close()
        if http is not None:
            http.close()
