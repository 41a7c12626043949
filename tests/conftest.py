"""Shared fixtures: real databases, a real server on loopback, its stubs.

A test that needs an absent service is skipped with a reason; with
MODELREG_TEST_REQUIRE=1 (as in CI) it fails instead. The helpers these
fixtures use, and that test modules call directly, live in `support`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from modelregistry.v1 import registry_service_pb2_grpc
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from support.in_process import serving
from support.moto import moto_server
from support.ports import port_open
from support.postgres import PG_HOST, PG_PORT, PG_USER, fresh_database
from support.processes import running
from support.services import require

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    if not port_open(PG_HOST, PG_PORT):
        require(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")
    with fresh_database(f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def server(db_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    """A real grpc.aio server on a free loopback port, on SQLite and PostgreSQL."""
    config = ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path / "data", database_url=db_url)
    async with serving(config) as running:
        yield running


@pytest.fixture
async def channel(server: Running) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def registry(channel: grpc.aio.Channel) -> RegistryServiceAsyncStub:
    return registry_service_pb2_grpc.RegistryServiceStub(channel)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server process on a free loopback port, for the whole session."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`modelreg serve` on the embedded default (SQLite + local blobs), one
    process for a whole test module."""
    with running(tmp_path_factory.mktemp("serve") / "data") as server:
        yield server.address
