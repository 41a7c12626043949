"""Keys, signer certificates and the `model_signing` CLI, for signature tests."""

from __future__ import annotations

import datetime
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public_pem: str

    @property
    def public(self) -> Path:
        return self.private.with_suffix(".pub")


def make_key(directory: Path, name: str = "signer") -> KeyPair:
    """An EC P-256 key pair: `name.pem` (private) and `name.pub` beside it."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private.with_suffix(".pub").write_bytes(public)
    return KeyPair(private, public.decode())


def issue_signer(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, email: str, directory: Path
) -> tuple[Path, Path]:
    """A code-signing certificate for `email` from the CA: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / "signer.crt"
    key_path = directory / "signer-cert.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def model_signing(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the `model_signing` CLI of this environment."""
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sign_dir(model: Path, key: Path, signature: Path) -> bytes:
    """`model_signing sign key`: the bundle's bytes."""
    done = model_signing("sign", "key", model, "--private_key", key, "--signature", signature)
    assert done.returncode == 0, done.stderr
    return signature.read_bytes()


def write_model(directory: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
