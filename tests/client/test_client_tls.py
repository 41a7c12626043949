"""The SDK over mutual TLS against a real server that requires client certificates."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from modelregistry import NO_RETRY, RegistryClient, UnavailableError
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running, start


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, signing_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("modelreg test CA", ca_key, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    _write(tmp_path / "ca.pem", ca, ca_key)
    _write(
        tmp_path / "server.pem",
        _issue("registry", server_key, ("modelreg test CA", ca_key), server=True),
        server_key,
    )
    _write(
        tmp_path / "client.pem",
        _issue("release-ci", client_key, ("modelreg test CA", ca_key)),
        client_key,
    )
    return Pki(
        ca=tmp_path / "ca.pem",
        server_cert=tmp_path / "server.pem",
        server_key=tmp_path / "server.key",
        client_cert=tmp_path / "client.pem",
        client_key=tmp_path / "client.key",
    )


@pytest.fixture
async def tls_server(pki: Pki, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    running = await start(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "data",
            database_url=sqlite_url,
            tls_cert=pki.server_cert,
            tls_key=pki.server_key,
            tls_client_ca=pki.ca,
        )
    )
    try:
        await asyncio.wait_for(running.ready.wait(), timeout=30)
        yield running
    finally:
        await running.stop(grace=1)


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
