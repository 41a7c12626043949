"""`modelreg serve` and `modelreg db upgrade` as operators run them: real
processes, signals, logs on stderr, PostgreSQL where it matters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc
from support.ports import free_port
from support.postgres import libpq_dsn
from support.processes import CLI

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServeProcess:
    """A `modelreg serve` child; its JSON log lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.logs: list[dict[str, Any]] = []
        self._new_line = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str) -> ServeProcess:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            # One process: these tests follow its log and signal it directly
            # (tests/server/test_workers.py covers several).
            *("--workers", "1"),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, port)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                async with self._new_line:
                    self.logs.append(entry)
                    self._new_line.notify_all()
        async with self._new_line:
            self._new_line.notify_all()

    async def log_line(self, message: str, within: float = 20) -> dict[str, Any]:
        """The first log line with this message, waiting for it if need be."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.logs if e.get("message") == message), None)

        async def wait() -> dict[str, Any]:
            async with self._new_line:
                while (entry := found()) is None:
                    if self._reader.done():
                        raise AssertionError(f"server exited before logging {message!r}")
                    await self._new_line.wait()
                return entry

        return await asyncio.wait_for(wait(), within)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._reader


@contextlib.asynccontextmanager
async def serving(*args: str) -> AsyncIterator[ServeProcess]:
    server = await ServeProcess.start(*args)
    try:
        yield server
    finally:
        await server.stop()


async def health_check(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


def port_is_free(port: int) -> bool:
    """Nobody listens and a new server could bind it (connections of the old
    one may linger in TIME_WAIT, which SO_REUSEADDR allows, as gRPC sets it)."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def waiting_on_locks(admin: psycopg.AsyncConnection[Any]) -> int:
    """Server backends of this database blocked on a lock the test holds."""
    cur = await admin.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> pg_backend_pid()"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_sigterm_drains_in_flight_calls(pg_url: str, tmp_path: Path) -> None:
    """In-flight RPCs are held honestly: they wait on a table lock the test
    holds. SIGTERM flips health to NOT_SERVING and refuses new calls; once the
    lock is released every held call completes OK, and the process exits 0
    within the grace period and frees its port."""
    grace = 20.0
    calls = 8
    async with (
        serving(
            "--data-dir",
            str(tmp_path / "data"),
            "--database-url",
            pg_url,
            "--shutdown-grace",
            str(grace),
        ) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        await server.log_line("ready")
        registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        updates = health.Watch(health_pb2.HealthCheckRequest())
        first = await asyncio.wait_for(updates.read(), timeout=5)
        assert isinstance(first, health_pb2.HealthCheckResponse) and first.status == SERVING

        async with await psycopg.AsyncConnection.connect(libpq_dsn(pg_url)) as blocker:
            await blocker.execute("LOCK TABLE models IN ACCESS EXCLUSIVE MODE")
            held = [
                asyncio.ensure_future(
                    registry.CreateModel(rpc.CreateModelRequest(model_id=f"m{i}"), timeout=60)
                )
                for i in range(calls)
            ]
            async with await psycopg.AsyncConnection.connect(
                libpq_dsn(pg_url), autocommit=True
            ) as admin:
                deadline = time.monotonic() + 15
                while await waiting_on_locks(admin) < calls:
                    assert time.monotonic() < deadline, "the calls never reached the database"
                    await asyncio.sleep(0.05)

            server.proc.send_signal(signal.SIGTERM)
            sigterm_at = time.monotonic()
            update = await asyncio.wait_for(updates.read(), timeout=5)
            assert isinstance(update, health_pb2.HealthCheckResponse)
            assert update.status == NOT_SERVING
            updates.cancel()
            await server.log_line("shutting down")
            # Draining: a newcomer is turned away while the held calls wait.
            async with grpc.aio.insecure_channel(server.address) as newcomer:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await health_check(newcomer)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert not any(f.done() for f in held), "held calls finished before the lock was freed"
            await blocker.rollback()  # releases the lock

        created = await asyncio.gather(*held)
        assert sorted(m.name for m in created) == sorted(f"models/m{i}" for i in range(calls))
        returncode = await asyncio.wait_for(server.proc.wait(), timeout=grace + 5)
        elapsed = time.monotonic() - sigterm_at
    assert returncode == 0
    assert elapsed < grace
    await server.log_line("stopped")
    rpc_lines = [e for e in server.logs if e.get("message") == "rpc"]
    assert [e["code"] for e in rpc_lines if e["method"].endswith("/CreateModel")] == ["OK"] * calls
    assert port_is_free(server.port)


async def test_db_upgrade_then_serve_without_migrating(pg_url: str, tmp_path: Path) -> None:
    """The operator story: a server told not to migrate waits, NOT_SERVING and
    saying why, until `modelreg db upgrade` has run."""
    data_dir = str(tmp_path / "data")
    async with (
        serving("--data-dir", data_dir, "--database-url", pg_url, "--no-migrate") as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        complaint = await server.log_line(
            "database schema is out of date: run `modelreg db upgrade`"
        )
        assert complaint["level"] == "ERROR"
        assert complaint["schema_revision"] is None
        assert await health_check(channel) == NOT_SERVING
        registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await registry.GetModel(rpc.GetModelRequest(name="models/x"), timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE

        code, out, err = await run_cli("db", "upgrade", "--database-url", pg_url)
        assert code == 0, err
        assert out.strip() == f"schema at revision {complaint['expected']}"

        await server.log_line("ready")
        assert await health_check(channel) == SERVING
        await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"), timeout=5)
        complaints = [e for e in server.logs if e.get("message") == complaint["message"]]
        assert len(complaints) == 1


async def test_console_telemetry_exports_spans(tmp_path: Path) -> None:
    async with serving("--data-dir", str(tmp_path / "data"), "--telemetry", "console") as server:
        await server.log_line("ready")
        async with grpc.aio.insecure_channel(server.address) as channel:
            registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
            await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"), timeout=5)
            assert (await registry.GetModel(rpc.GetModelRequest(name="models/fraud"))).name
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.stdout is not None
        stdout = (await asyncio.wait_for(server.proc.stdout.read(), timeout=20)).decode()
        assert await asyncio.wait_for(server.proc.wait(), timeout=10) == 0
    assert '"name": "/modelregistry.v1.RegistryService/CreateModel"' in stdout
    assert '"name": "store.create_model"' in stdout
    assert '"db.system": "sqlite"' in stdout


async def test_taken_port_exits_1_with_one_log_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run_cli(
            "serve", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}"
        )
    assert code == 1
    assert "Traceback" not in err
    line = json.loads(err.splitlines()[-1])
    assert line["message"] == "cannot start"
    assert f"cannot listen on 127.0.0.1:{port}" in line["error"]
