"""TLS and mutual TLS from the server flags, with certificates made here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running, start
from support.in_process import serving, start_server
from support.pki import Issued, issue, make_ca


@dataclass(frozen=True)
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    # A client certificate from a CA the server does not trust.
    stranger: Issued
    dir: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = make_ca("modelreg test CA")
    _, other_cert, other_key = make_ca("some other CA")
    pki = Pki(
        ca=ca,
        server=issue(ca_cert, ca_key, "modelreg-server", server=True),
        client=issue(ca_cert, ca_key, "pipeline-a", server=False),
        stranger=issue(other_cert, other_key, "intruder", server=False),
        dir=directory,
    )
    pki.ca.write(directory / "ca.pem")
    pki.server.write(directory / "server.pem")
    return pki


def _config(pki: Pki, tmp_path: Path, *, mutual: bool) -> ServerConfig:
    return ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        tls_cert=pki.dir / "server.pem",
        tls_key=pki.dir / "server.key",
        tls_client_ca=pki.dir / "ca.pem" if mutual else None,
    )


@pytest.fixture
async def tls_server(pki: Pki, tmp_path: Path) -> AsyncIterator[Running]:
    async with serving(_config(pki, tmp_path, mutual=False)) as running:
        yield running


@pytest.fixture
async def mtls_server(pki: Pki, tmp_path: Path) -> AsyncIterator[Running]:
    async with serving(_config(pki, tmp_path, mutual=True)) as running:
        yield running


async def _check(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


def _creds(pki: Pki, client: Issued | None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=pki.ca.cert)
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert, private_key=client.key, certificate_chain=client.cert
    )


async def test_tls_client_is_served(tls_server: Running, pki: Pki) -> None:
    target = f"127.0.0.1:{tls_server.port}"
    async with grpc.aio.secure_channel(target, _creds(pki, None)) as channel:
        assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        created = await stub.CreateModel(rpc.CreateModelRequest(model_id="fraud"), timeout=5)
        assert created.name == "models/fraud"


async def test_plaintext_client_is_refused_by_tls_server(tls_server: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await _check(channel)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_clients_without_a_trusted_certificate(
    mtls_server: Running, pki: Pki
) -> None:
    target = f"127.0.0.1:{mtls_server.port}"
    for client in (None, pki.stranger):
        async with grpc.aio.secure_channel(target, _creds(pki, client)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await _check(channel)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_caller_identity_is_the_client_certificate(
    mtls_server: Running, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelreg.rpc")
    target = f"127.0.0.1:{mtls_server.port}"
    async with grpc.aio.secure_channel(target, _creds(pki, pki.client)) as channel:
        assert await _check(channel) == health_pb2.HealthCheckResponse.SERVING
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        await stub.CreateModel(rpc.CreateModelRequest(model_id="fraud"), timeout=5)
    # The server logs a call after its status went out: give it a moment.
    for _ in range(100):
        records = [r for r in caplog.records if r.name == "modelreg.rpc" and r.msg == "rpc"]
        if records:
            break
        await asyncio.sleep(0.02)
    assert len(records) == 1
    caller = str(getattr(records[0], "caller", ""))
    assert "CN=pipeline-a" in caller
    assert "O=modelreg-tests" in caller


async def test_plaintext_server_caller_is_anonymous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelreg.rpc")
    running = await start_server(ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path / "data"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            await stub.CreateModel(rpc.CreateModelRequest(model_id="fraud"), timeout=5)
    finally:
        await running.stop(grace=1)
    (record,) = [r for r in caplog.records if r.name == "modelreg.rpc" and r.msg == "rpc"]
    assert getattr(record, "caller", None) == "anonymous"


@pytest.mark.parametrize(
    "flags",
    [{"tls_client_ca": "ca.pem"}, {"tls_key": "server.key"}, {"tls_cert": "server.pem"}],
)
async def test_incomplete_tls_flags_are_refused(
    pki: Pki, tmp_path: Path, flags: dict[str, str]
) -> None:
    """A client CA without a server certificate must not quietly mean plaintext."""
    paths = {key: pki.dir / value for key, value in flags.items()}
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        tls_cert=paths.get("tls_cert"),
        tls_key=paths.get("tls_key"),
        tls_client_ca=paths.get("tls_client_ca"),
    )
    with pytest.raises(ValueError, match="--tls"):
        await start(config)


async def test_health_probe_speaks_tls_and_mutual_tls(
    tls_server: Running, mtls_server: Running, pki: Pki
) -> None:
    """`python -m modelregistry_server.probe`, the image's health check."""
    from modelregistry_server import probe

    (pki.dir / "client.pem").write_bytes(pki.client.cert)
    (pki.dir / "client.key").write_bytes(pki.client.key)
    ca = ["--tls-ca", str(pki.dir / "ca.pem")]
    client = ["--client-cert", str(pki.dir / "client.pem")]
    client += ["--client-key", str(pki.dir / "client.key")]

    def run(server: Running, *args: str) -> int:
        return probe.main(["--address", f"127.0.0.1:{server.port}", "--timeout", "5", *args])

    assert await asyncio.to_thread(run, tls_server, *ca) == 0
    assert await asyncio.to_thread(run, tls_server) == 1  # plaintext to a TLS port
    assert await asyncio.to_thread(run, mtls_server, *ca, *client) == 0
    assert await asyncio.to_thread(run, mtls_server, *ca) == 1  # no client certificate
