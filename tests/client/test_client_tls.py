"""The SDK over mutual TLS against a real server that requires client certificates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from modelregistry import NO_RETRY, RegistryClient, UnavailableError
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from support.in_process import serving
from support.pki import issue, make_ca


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, ca_cert, ca_key = make_ca("modelreg test CA")
    server = issue(ca_cert, ca_key, "registry", server=True)
    client = issue(ca_cert, ca_key, "release-ci", server=False)
    return Pki(
        ca=ca.write(tmp_path / "ca.pem"),
        server_cert=server.write(tmp_path / "server.pem"),
        server_key=tmp_path / "server.key",
        client_cert=client.write(tmp_path / "client.pem"),
        client_key=tmp_path / "client.key",
    )


@pytest.fixture
async def tls_server(pki: Pki, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca,
    )
    async with serving(config) as running:
        yield running


async def test_mutual_tls(tls_server: Running, pki: Pki) -> None:
    target = f"127.0.0.1:{tls_server.port}"
    async with RegistryClient(
        target, root_ca=pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
    ) as client:
        created = await client.create_model("fraud")
        assert (await client.get_model(created.name)).uid == created.uid

    # PEM bytes work as well as paths; without a client certificate the
    # server refuses the handshake.
    async with RegistryClient(target, root_ca=pki.ca.read_bytes(), retry=NO_RETRY) as anonymous:
        with pytest.raises(UnavailableError):
            await anonymous.get_model(created.name)

    with pytest.raises(ValueError, match="both"):
        RegistryClient(target, root_ca=pki.ca, client_cert=pki.client_cert)
