"""Signed models over a real server on SQLite and PostgreSQL: bundles made by
the `model_signing` CLI attach and verify against the version's manifest,
anything else is refused precisely and leaves nothing behind."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from modelregistry.client import RegistryClient
from modelregistry.errors import RegistryError
from modelregistry.signing import sign_files
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import signature_service_pb2 as srpc
from modelregistry.v1.error_reasons import ErrorMetadataKey
from modelregistry_server.server import Running
from support.pki import make_ca
from support.signing import (
    KeyPair,
    digests,
    issue_signer,
    make_key,
    model_signing,
    sign_dir,
    write_model,
)

FILES = {"weights.bin": b"w" * 5000, "config.json": b'{"layers": 3}', "tok/vocab.txt": b"a b c"}
VERSION = "models/fraud/versions/1"


@pytest.fixture
async def client(server: Running) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(f"127.0.0.1:{server.port}") as c:
        yield c


async def pushed(client: RegistryClient, tmp_path: Path, files: dict[str, bytes] = FILES) -> str:
    """A READY version holding `files`."""
    try:
        await client.create_model("fraud")
    except RegistryError as err:
        assert err.code == grpc.StatusCode.ALREADY_EXISTS
    version = await client.create_model_version("models/fraud")
    model = write_model(tmp_path / f"model-{version.version}", files)
    await client.push(version.name, model)
    return version.name


async def get_blob(client: RegistryClient, digest: str) -> apb.Blob:
    request = apb.GetBlobRequest(digest=digest)
    return await client.core.call(client.core.stubs.artifacts.GetBlob, request, None, read=True)


async def refused(call: object, code: grpc.StatusCode, reason: str) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        await call  # type: ignore[misc]
    assert (caught.value.code, caught.value.reason) == (code, reason), caught.value
    return caught.value


@pytest.fixture
def key(tmp_path: Path) -> KeyPair:
    return make_key(tmp_path)


async def test_a_bundle_made_by_the_model_signing_cli_attaches_and_lists(
    client: RegistryClient, tmp_path: Path, key: KeyPair
) -> None:
    version = await pushed(client, tmp_path)
    await client.update_trust_policy("fraud", trusted_keys=[key.public_pem])
    bundle = sign_dir(tmp_path / "model-1", key.private, tmp_path / "model.sig")
    attached = await client.attach_signature(version, bundle)
    fingerprint = "sha256:" + json.loads(bundle)["verificationMaterial"]["publicKey"]["hint"]
    assert attached.signer == fingerprint
    assert attached.signer_kind == srpc.Signature.PUBLIC_KEY
    assert attached.trusted and attached.file_count == len(FILES)
    assert attached.digest == "sha256:" + hashlib.sha256(bundle).hexdigest()
    # Attaching the same bundle again returns the stored signature.
    again = await client.attach_signature(version, bundle)
    assert again.name == attached.name
    listed = await client.list_signatures(version)
    assert [s.name for s in listed] == [attached.name]
    assert listed[0].create_time.seconds > 0
    events = [e async for e in client.list_events(model="models/fraud")]
    assert [e.type for e in events].count("SIGNATURE_ATTACHED") == 1
    # The bundle is a blob: whoever may download the version may fetch it.
    assert (await get_blob(client, attached.digest)).size_bytes == len(bundle)


def _tampered_payload(bundle: bytes) -> bytes:
    body = json.loads(bundle)
    statement = json.loads(base64.b64decode(body["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    body["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(body).encode()


def _tampered_signature(bundle: bytes) -> bytes:
    body = json.loads(bundle)
    sig = bytearray(base64.b64decode(body["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 1
    body["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return json.dumps(body).encode()


async def test_bundles_that_do_not_verify_are_refused_precisely_and_not_stored(
    client: RegistryClient, tmp_path: Path, key: KeyPair
) -> None:
    version = await pushed(client, tmp_path)
    await client.update_trust_policy("fraud", trusted_keys=[key.public_pem])
    good = sign_dir(tmp_path / "model-1", key.private, tmp_path / "good.sig")
    other = make_key(tmp_path, "other")
    wrong_key = sign_dir(tmp_path / "model-1", other.private, tmp_path / "other.sig")
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    async def problem(bundle: bytes) -> tuple[str, str]:
        err = await refused(client.attach_signature(version, bundle), invalid, "SIGNATURE_INVALID")
        return (
            err.metadata[ErrorMetadataKey.SIGNATURE_PROBLEM],
            err.metadata.get(ErrorMetadataKey.PATH, ""),
        )

    assert await problem(wrong_key) == ("UNKNOWN_KEY", "")
    assert await problem(_tampered_payload(good)) == ("BAD_SIGNATURE", "")
    assert await problem(_tampered_signature(good)) == ("BAD_SIGNATURE", "")
    variants = {
        "one file more": ({**FILES, "extra.bin": b"x"}, "extra.bin"),
        "one file less": ({k: v for k, v in FILES.items() if k != "config.json"}, "config.json"),
        "one byte changed": ({**FILES, "weights.bin": b"w" * 4999 + b"v"}, "weights.bin"),
    }
    for label, (files, path) in variants.items():
        signed = sign_files(sorted(digests(files).items()), key.private)
        assert await problem(signed) == ("FILE_MISMATCH", path), label
    assert await client.list_signatures(version) == []
    refused_digest = "sha256:" + hashlib.sha256(wrong_key).hexdigest()
    await refused(get_blob(client, refused_digest), grpc.StatusCode.NOT_FOUND, "BLOB_NOT_FOUND")


async def test_malformed_huge_and_oversized_bundles_are_invalid_arguments(
    client: RegistryClient, tmp_path: Path, key: KeyPair
) -> None:
    version = await pushed(client, tmp_path)
    await client.update_trust_policy("fraud", trusted_keys=[key.public_pem])
    many = [(f"f{i:05d}", "ab" * 32) for i in range(25_000)]
    thousands = sign_files(many, key.private)
    assert len(thousands) < 6 * 1024 * 1024
    for bundle in (b"not json", b"{}", b"[1, 2]", b" " * (7 * 1024 * 1024), thousands):
        err = await refused(
            client.attach_signature(version, bundle),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SIGNATURE_BUNDLE",
        )
        assert err.message.startswith("bundle")
    assert await client.list_signatures(version) == []
    events = [e.type async for e in client.list_events(model="models/fraud")]
    assert "SIGNATURE_ATTACHED" not in events


async def test_certificate_bundles_verify_against_a_trusted_chain_and_identity(
    client: RegistryClient, tmp_path: Path
) -> None:
    version = await pushed(client, tmp_path)
    ca, ca_cert, ca_key = make_ca("model signers")
    ca_path = ca.write(tmp_path / "ca.crt")
    cert, cert_key = issue_signer(ca_cert, ca_key, "ci@example.com", tmp_path)
    done = model_signing(
        "sign",
        "certificate",
        tmp_path / "model-1",
        "--private_key",
        cert_key,
        "--signing_certificate",
        cert,
        "--certificate_chain",
        ca_path,
        "--signature",
        tmp_path / "cert.sig",
    )
    assert done.returncode == 0, done.stderr
    bundle = (tmp_path / "cert.sig").read_bytes()
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    other_ca, _, _ = make_ca("someone else")
    await client.update_trust_policy(
        "fraud", trusted_chains=[(other_ca.cert.decode(), r".*@example\.com")]
    )
    err = await refused(client.attach_signature(version, bundle), invalid, "SIGNATURE_INVALID")
    assert err.metadata[ErrorMetadataKey.SIGNATURE_PROBLEM] == "UNTRUSTED_CHAIN"
    await client.update_trust_policy(
        "fraud", trusted_chains=[(ca.cert.decode(), r"release@example\.com")]
    )
    err = await refused(client.attach_signature(version, bundle), invalid, "SIGNATURE_INVALID")
    assert err.metadata[ErrorMetadataKey.SIGNATURE_PROBLEM] == "IDENTITY_MISMATCH"
    assert "ci@example.com" in err.message
    await client.update_trust_policy(
        "fraud", trusted_chains=[(ca.cert.decode(), r"ci@example\.com")]
    )
    attached = await client.attach_signature(version, bundle)
    assert attached.signer_kind == srpc.Signature.CERTIFICATE
    assert attached.signer == "ci@example.com"
    root = x509.load_pem_x509_certificate(ca.cert)
    assert attached.trust_anchor == "sha256:" + root.fingerprint(hashes.SHA256()).hex()
    assert attached.trusted


async def test_trust_policies_are_validated(client: RegistryClient) -> None:
    await client.create_model("fraud")
    for bad in (["not a key"], ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"]):
        await refused(
            client.update_trust_policy("fraud", trusted_keys=bad),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_TRUST_POLICY",
        )
    ca, _, _ = make_ca("ca")
    await refused(
        client.update_trust_policy("fraud", trusted_chains=[(ca.cert.decode(), "(")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TRUST_POLICY",
    )
    await refused(client.get_trust_policy("nosuch"), grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND")
    policy = await client.get_trust_policy("fraud")
    assert policy.name == "models/fraud/trustPolicy" and not policy.etag
