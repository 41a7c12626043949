"""`modelreg serve --workers N`: N processes on one port that behave as one
server. Writes keep their guarantees across processes, a write through one
worker is read through every worker, the once-per-server duties run in one
worker, and health, metrics and shutdown cover all of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import event_service_pb2_grpc, registry_service_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.observability.workers_http import merge
from support.grpc_errors import reason
from support.ports import free_port, port_open
from support.postgres import PG_HOST, PG_PORT, fresh_database
from support.processes import ServeProcess
from support.procfs import process_tree
from support.services import require

WORKERS = 3
CONTENDERS = 50
# Connections the tests open: enough that every worker gets some (checked).
CONNECTIONS = 24
ALIAS = "models/{}/aliases/production"


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _wait_for(check: object, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"not true within {within} s")


class Workers:
    """A server with several workers, and where to ask about them."""

    def __init__(self, server: ServeProcess, metrics: int) -> None:
        self.server = server
        self.metrics = f"http://127.0.0.1:{metrics}"

    def worker_pids(self) -> list[int]:
        """The serving processes (not multiprocessing's helper)."""
        pids = []
        for pid in process_tree(self.server.pid)[1:]:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                pids.append(pid)
        return pids

    def ready(self) -> bool:
        return _get(f"{self.metrics}/readyz") == 200


@contextlib.contextmanager
def _serve(data_dir: Path, database_url: str | None) -> Iterator[Workers]:
    metrics = free_port()
    server = ServeProcess(
        data_dir,
        *("--workers", str(WORKERS), "--metrics-listen", f"127.0.0.1:{metrics}"),
        *("--shutdown-grace", "2", "--log-level", "INFO"),
        database_url=database_url,
    )
    server.start(within=120)
    try:
        w = Workers(server, metrics)
        _wait_for(w.ready, 120)
        yield w
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """One server per database for the tests that leave it running; each
    test uses a model of its own."""
    data_dir = tmp_path_factory.mktemp("workers") / "data"
    if request.param == "sqlite":
        with _serve(data_dir, None) as w:
            yield w
        return
    if not port_open(PG_HOST, PG_PORT):
        require(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")
    with fresh_database() as url, _serve(data_dir, url) as w:
        yield w


Stub = Any  # registry_service_pb2_grpc.RegistryServiceStub over grpc.aio


def _stubs(address: str) -> tuple[list[grpc.aio.Channel], list[Stub]]:
    # Distinct channel arguments: a connection of its own each, which the
    # kernel hands to one of the workers.
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.channel_id", i)])
        for i in range(CONNECTIONS)
    ]
    return channels, [registry_service_pb2_grpc.RegistryServiceStub(c) for c in channels]


def _established_per_worker(w: Workers) -> dict[int, int]:
    """Established connections on the server's port, by worker pid."""
    port = f":{w.server.port:04X}"
    by_inode = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[1].endswith(port) and cols[3] == "01":  # local port, ESTABLISHED
                by_inode[cols[9]] = True
    counts = {}
    for pid in w.worker_pids():
        n = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in by_inode:
                n += 1
        counts[pid] = n
    return counts


async def _seed(stub: Stub, model: str, versions: int) -> str:
    await stub.CreateModel(rpc.CreateModelRequest(model_id=model))
    for _ in range(versions):
        await stub.CreateModelVersion(
            rpc.CreateModelVersionRequest(
                parent=f"models/{model}", model_version=pb.ModelVersion(source_uri="s3://b/m")
            )
        )
    alias = await stub.SetAlias(
        rpc.SetAliasRequest(
            alias=pb.Alias(name=ALIAS.format(model), version=f"models/{model}/versions/1")
        )
    )
    return str(alias.etag)


async def test_fifty_promoters_across_workers_one_winner(workers: Workers) -> None:
    channels, stubs = _stubs(workers.server.address)
    alias = ALIAS.format("race")
    try:
        etag = await _seed(stubs[0], "race", CONTENDERS + 1)
        # Every connection warmed up, then checked to be spread over all workers.
        await asyncio.gather(*(s.ResolveAlias(rpc.ResolveAliasRequest(name=alias)) for s in stubs))
        spread = _established_per_worker(workers)
        assert len(spread) == WORKERS and all(spread.values()), spread

        async def promote(i: int) -> str:
            version = f"models/race/versions/{i + 2}"
            try:
                await stubs[i % CONNECTIONS].SetAlias(
                    rpc.SetAliasRequest(alias=pb.Alias(name=alias, version=version), etag=etag)
                )
                return version
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.ABORTED, err.details()
                return reason(err)

        results = await asyncio.gather(*(promote(i) for i in range(CONTENDERS)))
        winners = [r for r in results if r.startswith("models/")]
        assert len(winners) == 1, results
        assert sorted(r for r in results if r not in winners) == ["ETAG_MISMATCH"] * (
            CONTENDERS - 1
        )
        # Every worker resolves the winner (a loser's cached read would not).
        resolved = await asyncio.gather(
            *(s.ResolveAlias(rpc.ResolveAliasRequest(name=alias)) for s in stubs)
        )
        assert {r.alias.version for r in resolved} == set(winners)
    finally:
        for c in channels:
            await c.close(None)


async def test_a_write_through_one_worker_is_read_and_watched_through_all(
    workers: Workers,
) -> None:
    channels, stubs = _stubs(workers.server.address)
    alias = ALIAS.format("coherent")
    try:
        await _seed(stubs[0], "coherent", 2)
        # Every worker caches the alias at version 1 (read caches live 30 s).
        first = await asyncio.gather(
            *(s.ResolveAlias(rpc.ResolveAliasRequest(name=alias)) for s in stubs)
        )
        assert {r.alias.version for r in first} == {"models/coherent/versions/1"}
        spread = _established_per_worker(workers)
        assert len(spread) == WORKERS and all(spread.values()), spread
        watches: list[Any] = [
            event_service_pb2_grpc.EventServiceStub(c).Watch(
                ev.WatchRequest(filter=ev.EventFilter(resource=alias))
            )
            for c in channels
        ]
        for w in watches:
            await w.read()  # the "from now" progress message: the stream is open

        moved = await stubs[0].SetAlias(
            rpc.SetAliasRequest(alias=pb.Alias(name=alias, version="models/coherent/versions/2"))
        )
        written = time.monotonic()
        # The event reaches every watcher, on every worker, well before the
        # hubs' one-second poll would have found it.
        for w in watches:
            response = await asyncio.wait_for(w.read(), 10)
            while not response.events:
                response = await asyncio.wait_for(w.read(), 10)
            assert response.events[0].resource == alias
        assert time.monotonic() - written < 0.9
        # ...and after it, every worker reads the new version.
        after = await asyncio.gather(
            *(s.ResolveAlias(rpc.ResolveAliasRequest(name=alias)) for s in stubs)
        )
        assert {r.alias.etag for r in after} == {moved.etag}
        for w in watches:
            w.cancel()
    finally:
        for c in channels:
            await c.close(None)


def test_duties_health_metrics_and_shutdown_with_workers(tmp_path: Path) -> None:
    with _serve(tmp_path / "data", None) as workers:
        _metrics_cover_every_worker(workers)
        _duties_run_in_one_worker_and_move_when_it_dies(workers)
        _readiness_and_shutdown_cover_every_worker(workers)


def _metrics_cover_every_worker(workers: Workers) -> None:
    with urllib.request.urlopen(f"{workers.metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert f"modelreg_workers {WORKERS}" in text
    assert f"modelreg_workers_up {WORKERS}" in text
    for i in range(WORKERS):
        assert f'worker="{i}"' in text


def _duties_run_in_one_worker_and_move_when_it_dies(workers: Workers) -> None:
    holder_line = b"this worker runs the once-per-server duties"
    _wait_for(lambda: holder_line in workers.server.log.read_bytes(), 30)
    time.sleep(1.5)  # the others keep waiting for the lock
    assert workers.server.log.read_bytes().count(holder_line) == 1
    holder = [p for p in workers.worker_pids() if holder_line in _log_lines_of(workers, p)]
    assert len(holder) == 1
    pids = workers.worker_pids()
    os.kill(holder[0], signal.SIGKILL)
    # Another worker takes the duties over, and the dead one is replaced.
    _wait_for(lambda: workers.server.log.read_bytes().count(holder_line) == 2, 30)
    _wait_for(lambda: sorted(workers.worker_pids()) != sorted(pids))
    _wait_for(lambda: len(workers.worker_pids()) == WORKERS)
    _wait_for(workers.ready, 60)


def _log_lines_of(w: Workers, pid: int) -> bytes:
    mark = f'"pid": {pid}'.encode()
    return b"\n".join(line for line in w.server.log.read_bytes().splitlines() if mark in line)


def _readiness_and_shutdown_cover_every_worker(workers: Workers) -> None:
    pids = workers.worker_pids()
    assert len(pids) == WORKERS
    # A worker that stops answering makes the whole server not ready until
    # it is back: its connections would fail.
    os.kill(pids[0], signal.SIGSTOP)
    try:
        _wait_for(lambda: _get(f"{workers.metrics}/readyz") == 503, 30)
    finally:
        os.kill(pids[0], signal.SIGCONT)
    _wait_for(workers.ready, 30)
    # SIGTERM to the server drains and stops every worker.
    assert workers.server.proc is not None
    workers.server.proc.terminate()
    assert workers.server.proc.wait(30) == 0
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_metrics_of_workers_merge_into_one_exposition() -> None:
    a = '# HELP x_total Things.\n# TYPE x_total counter\nx_total{k="v"} 3.0\n'
    b = '# HELP x_total Things.\n# TYPE x_total counter\nx_total{k="v"} 4.0\n'
    text = merge([(0, a), (1, b)])
    assert text.count("# TYPE x counter") == 1
    assert 'x_total{k="v",worker="0"} 3.0' in text
    assert 'x_total{k="v",worker="1"} 4.0' in text
