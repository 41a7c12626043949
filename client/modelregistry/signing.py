"""Model signatures on the client: sign what is pushed, verify what is pulled.

Signatures are OpenSSF Model Signing (OMS) bundles, the format of the
`model-signing` package, which does the cryptography here (install the
`signing` extra). Verification is the consumer's own: the files on disk are
hashed again and checked against a signature under keys the consumer holds,
not against the registry's word that a signature verified.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import Connection, core_of
from .downloads import BlobDownloader
from .v1 import signature_service_pb2 as srpc

INSTALL_HINT = "signatures need the signing extra: pip install 'modelreg[signing]'"


class SignatureVerificationError(Exception):
    """No signature of the version verifies the files under the given trust."""


@dataclass(frozen=True)
class Trust:
    """What a consumer accepts: EC public keys (PEM) and certificate chains
    (PEM, root first) with a full-match pattern for the signer's identity
    ("" accepts any identity the chain vouches for)."""

    keys: tuple[bytes, ...] = ()
    chains: tuple[tuple[bytes, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys or self.chains)

    @classmethod
    def from_key_files(cls, *paths: str | Path) -> Trust:
        return cls(keys=tuple(Path(p).read_bytes() for p in paths))

    @classmethod
    def from_file(cls, path: str | Path) -> Trust:
        """A trust file: JSON `{"keys": ["k.pub", ...], "chains": [{"certificates":
        "ca.pem", "identity": "ci@example\\\\.com"}]}`, paths relative to the file."""
        path = Path(path)
        body = json.loads(path.read_text())
        if not isinstance(body, dict):
            raise ValueError(f"{path}: a trust file is a JSON object with keys and chains")
        keys = tuple((path.parent / k).read_bytes() for k in body.get("keys", []))
        chains = tuple(
            ((path.parent / c["certificates"]).read_bytes(), str(c.get("identity", "")))
            for c in body.get("chains", [])
        )
        return cls(keys, chains)

    def __add__(self, other: Trust) -> Trust:
        return Trust(self.keys + other.keys, self.chains + other.chains)


def _library() -> Any:
    try:
        import model_signing
        import OpenSSL  # noqa: F401  (model-signing needs it and does not say so)
    except ImportError as err:
        raise RuntimeError(INSTALL_HINT) from err
    return model_signing


def sign_files(
    files: Sequence[tuple[str, str]],
    private_key: str | Path,
    model_name: str = "model",
    password: str | None = None,
) -> bytes:
    """A bundle over `files` ((path, sha256 hex) pairs) signed with an EC
    private key (PEM): what `model_signing sign key` makes for a directory
    holding exactly those files, without reading them again."""
    _library()
    from model_signing import manifest as ms_manifest
    from model_signing._hashing import hashing
    from model_signing._signing import sign_ec_key, signing

    serialization = ms_manifest._FileSerialization("sha256", allow_symlinks=False)
    items = [
        ms_manifest.FileManifestItem(
            path=Path(path), digest=hashing.Digest("sha256", bytes.fromhex(digest))
        )
        for path, digest in files
    ]
    payload = signing.Payload(ms_manifest.Manifest(model_name, items, serialization))
    signature: Any = sign_ec_key.Signer(Path(private_key), password).sign(payload)
    return str(signature.bundle.to_json()).encode()


def _leaf_identity(bundle: dict[str, Any]) -> str:
    from cryptography import x509

    raw = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"]
    leaf = x509.load_der_x509_certificate(base64.b64decode(raw))
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        found = names.get_values_for_type(kind)
        if found:
            return str(found[0])
    return ""


def _key_hint(pem: bytes) -> str:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(pem)
    canonical = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(canonical).hexdigest()


def verify_dir(
    directory: str | Path, bundle: bytes, trust: Trust, ignore: Sequence[str] = ()
) -> str:
    """Hash the files under `directory` (but `ignore`, relative paths) and
    check them against `bundle` under `trust`; returns who signed. Raises
    SignatureVerificationError."""
    model_signing = _library()

    def configured(config: Any) -> Any:
        if ignore:
            hashing = model_signing.hashing.Config().use_file_serialization(
                hashing_algorithm="sha256"
            )
            hashing.add_ignored_paths(model_path=Path(directory), paths=list(ignore))
            config.set_hashing_config(hashing)
        return config

    try:
        body = json.loads(bundle)
        material = body["verificationMaterial"]
    except (ValueError, KeyError, TypeError):
        raise SignatureVerificationError("not a model-signing bundle") from None
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelreg-verify-") as scratch:
        sig_path = Path(scratch) / "model.sig"
        sig_path.write_bytes(bundle)
        if "publicKey" in material:
            hint = (material.get("publicKey") or {}).get("hint") or ""
            candidates = [k for k in trust.keys if not hint or _key_hint(k) == hint]
            if not candidates:
                raise SignatureVerificationError(f"signed by key sha256:{hint}, not a trusted key")
            for i, pem in enumerate(candidates):
                key_path = Path(scratch) / f"key{i}.pub"
                key_path.write_bytes(pem)
                config = configured(
                    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key_path)
                )
                try:
                    config.verify(Path(directory), sig_path)
                except Exception as err:  # the library raises several kinds
                    problems.append(str(err) or type(err).__name__)
                    continue
                return "sha256:" + _key_hint(pem)
        else:
            identity = _leaf_identity(body)
            for i, (pem, pattern) in enumerate(trust.chains):
                if pattern and not re.fullmatch(pattern, identity):
                    problems.append(f"identity {identity!r} does not match {pattern!r}")
                    continue
                chain_path = Path(scratch) / f"chain{i}.pem"
                chain_path.write_bytes(pem)
                config = configured(
                    model_signing.verifying.Config().use_certificate_verifier(
                        certificate_chain=[chain_path]
                    )
                )
                try:
                    config.verify(Path(directory), sig_path)
                except Exception as err:
                    problems.append(str(err) or type(err).__name__)
                    continue
                return identity
    raise SignatureVerificationError(
        "; ".join(problems)[:600] or "no trusted key or chain for this signature"
    )


async def verify_pulled(
    conn: Connection, version: str, directory: Path, trust: Trust, ignore: Sequence[str] = ()
) -> str:
    """Check the files of `version` pulled into `directory` against each
    signature the registry holds for it until one verifies under `trust`;
    returns who signed. Raises SignatureVerificationError."""
    if not trust:
        raise ValueError("give at least one trusted key or chain")
    core = core_of(conn)
    listed = await core.call(
        core.stubs.signatures.ListSignatures,
        srpc.ListSignaturesRequest(parent=version),
        None,
        read=True,
    )
    if not listed.signatures:
        raise SignatureVerificationError(f"{version} carries no signature")
    downloader = BlobDownloader(core.stubs.artifacts)
    problems = []
    for signature in listed.signatures:
        _, bundle = await downloader.fetch(digest=signature.digest)
        try:
            return await asyncio.to_thread(verify_dir, directory, bundle, trust, ignore)
        except SignatureVerificationError as err:
            problems.append(f"{signature.name}: {err}")
    raise SignatureVerificationError("; ".join(problems)[:1000])
