"""OpenSSF Model Signing (OMS) signatures, as the registry checks them.

A signature is a Sigstore bundle (v0.3) whose DSSE envelope carries an
in-toto statement listing every file of a model with its sha256, the format
of the `model-signing` package. The registry checks one against a version's
manifest on attach, without the files: the statement's digests are compared
with the manifest's. DSSE and bundle handling are left to `model-signing`.

Checks are split so that callers can map failures precisely: `parse_bundle`
rejects what is not a bundle of the format at all (`BundleError`), then
`verify_bundle` says whether a trusted key or chain signed it and
`compare_files` whether it lists exactly the expected files
(`VerificationError`, with a `Problem`).

`model-signing` and what it brings in (sigstore, pyOpenSSL: some 35 MB of
resident memory) are imported on the first bundle checked, not when the
server starts: most registries never receive one. `cryptography` (some
10 MB) likewise, on the first key, chain or bundle checked.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# Limits on what is parsed at all: a bundle for a large model lists every
# file (about 130 bytes each once base64-encoded).
MAX_BUNDLE_BYTES = 6 * 1024 * 1024
MAX_SIGNED_FILES = 20_000
MAX_NAME = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Problem(enum.StrEnum):
    """Why a well-formed bundle does not verify."""

    UNKNOWN_KEY = "UNKNOWN_KEY"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    UNTRUSTED_CHAIN = "UNTRUSTED_CHAIN"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"
    FILE_MISMATCH = "FILE_MISMATCH"
    UNSUPPORTED = "UNSUPPORTED"


class SignerKind(enum.StrEnum):
    PUBLIC_KEY = "PUBLIC_KEY"
    CERTIFICATE = "CERTIFICATE"


class BundleError(ValueError):
    """Not a bundle of the model-signing format; `field` is where."""

    def __init__(self, message: str, field: str = "bundle") -> None:
        super().__init__(message)
        self.field = field


class VerificationError(ValueError):
    """A well-formed bundle that does not verify."""

    def __init__(self, problem: Problem, message: str, path: str = "") -> None:
        super().__init__(message)
        self.problem = problem
        self.path = path


@dataclass(frozen=True)
class TrustedChain:
    """A certificate authority (root first, then intermediates, PEM) and the
    signer identities (full-match regular expression) it may vouch for."""

    certificates_pem: str
    identity_pattern: str


@dataclass(frozen=True)
class Trust:
    """What a verifier accepts: public keys (PEM) and certificate chains."""

    keys: tuple[str, ...] = ()
    chains: tuple[TrustedChain, ...] = ()


@dataclass(frozen=True)
class Bundle:
    """A parsed bundle, not yet verified."""

    raw: bytes
    kind: SignerKind
    # The key's fingerprint the bundle names (PUBLIC_KEY), or "".
    key_hint: str
    # path -> sha256 hex, as the statement lists them.
    files: Mapping[str, str]
    signature: Any = field(repr=False)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class Verified:
    """Who signed, and which trusted key or chain root vouched for it."""

    kind: SignerKind
    signer: str
    trust_anchor: str
    files: Mapping[str, str]


def key_fingerprint(public_key: Any) -> str:
    """`sha256:<hex>` of the key's PEM SubjectPublicKeyInfo: the `hint` that
    model-signing writes into bundles, so the two can be compared."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return "sha256:" + hashlib.sha256(pem).hexdigest()


def load_public_key(pem: str | bytes) -> Any:
    """An EC public key (P-256, P-384 or P-521) from PEM; ValueError otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise ValueError("not a PEM public key") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise ValueError("only EC P-256, P-384 and P-521 keys are supported")
    return key


def load_chain(pem: str | bytes) -> list[Any]:
    """The certificates of a chain, root first; ValueError if there are none."""
    from cryptography import x509

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise ValueError("not PEM certificates") from err
    if not certificates:
        raise ValueError("no certificate")
    return certificates


def certificate_fingerprint(certificate: Any) -> str:
    from cryptography.hazmat.primitives import hashes

    return "sha256:" + bytes(certificate.fingerprint(hashes.SHA256())).hex()


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise BundleError(f"{where} must be a base64 string", where)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{where} is not valid base64", where) from None


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(f"{where} must be an object", where)
    return value


def _statement_files(statement: dict[str, Any]) -> dict[str, str]:
    if statement.get("_type") != STATEMENT_TYPE:
        raise BundleError(f"the statement's _type must be {STATEMENT_TYPE}", "statement._type")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(
            Problem.UNSUPPORTED,
            f"predicateType {str(statement.get('predicateType'))[:80]!r} is not supported"
            f" (expected {PREDICATE_TYPE})",
        )
    predicate = _object(statement.get("predicate"), "statement.predicate")
    serialization = _object(predicate.get("serialization"), "predicate.serialization")
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise VerificationError(
            Problem.UNSUPPORTED,
            "only signatures of whole files by sha256 are supported (serialization method"
            f" {str(serialization.get('method'))[:40]!r},"
            f" hash {str(serialization.get('hash_type'))[:40]!r})",
        )
    resources = predicate.get("resources")
    if not isinstance(resources, list):
        raise BundleError("predicate.resources must be a list", "predicate.resources")
    if len(resources) > MAX_SIGNED_FILES:
        raise BundleError(
            f"the statement lists {len(resources)} files; at most {MAX_SIGNED_FILES}",
            "predicate.resources",
        )
    files: dict[str, str] = {}
    for resource in resources:
        if not isinstance(resource, dict):
            raise BundleError("each resource must be an object", "predicate.resources")
        name, digest = resource.get("name"), resource.get("digest")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise BundleError(
                f"each resource name is a string of 1 to {MAX_NAME} characters",
                "predicate.resources",
            )
        if resource.get("algorithm") != "sha256" or not isinstance(digest, str):
            raise BundleError(
                f"resource {name[:80]!r}: algorithm must be sha256", "predicate.resources"
            )
        if not _HEX64.fullmatch(digest):
            raise BundleError(
                f"resource {name[:80]!r}: digest must be 64 lowercase hex digits",
                "predicate.resources",
            )
        if name in files:
            raise BundleError(f"resource {name[:80]!r} is listed twice", "predicate.resources")
        files[name] = digest
    return files


def parse_bundle(data: bytes) -> Bundle:
    """Check the shape of a bundle, before any cryptography. Raises
    `BundleError`, or `VerificationError(UNSUPPORTED)` for a statement of
    another kind."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"a bundle is at most {MAX_BUNDLE_BYTES} bytes, got {len(data)}")
    try:
        body = json.loads(data)
    except RecursionError:
        raise BundleError("nested too deeply") from None
    except ValueError:
        raise BundleError("not valid JSON") from None
    body = _object(body, "bundle")
    if body.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise BundleError(f"mediaType must be {BUNDLE_MEDIA_TYPE}", "mediaType")
    material = _object(body.get("verificationMaterial"), "verificationMaterial")
    envelope = _object(body.get("dsseEnvelope"), "dsseEnvelope")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise BundleError(f"dsseEnvelope.payloadType must be {PAYLOAD_TYPE}", "dsseEnvelope")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise BundleError("dsseEnvelope.signatures must hold one signature", "dsseEnvelope")
    _b64(_object(signatures[0], "dsseEnvelope.signatures[0]").get("sig"), "dsseEnvelope.sig")
    payload = _b64(envelope.get("payload"), "dsseEnvelope.payload")
    try:
        statement = json.loads(payload)
    except (RecursionError, ValueError):
        raise BundleError("the payload is not a JSON statement", "dsseEnvelope.payload") from None
    files = _statement_files(_object(statement, "statement"))
    key_hint = ""
    if "publicKey" in material:
        kind = SignerKind.PUBLIC_KEY
        hint = _object(material["publicKey"], "verificationMaterial.publicKey").get("hint")
        if isinstance(hint, str) and _HEX64.fullmatch(hint):
            key_hint = "sha256:" + hint
    elif "x509CertificateChain" in material:
        kind = SignerKind.CERTIFICATE
        chain = _object(material["x509CertificateChain"], "verificationMaterial")
        certificates = chain.get("certificates")
        if not isinstance(certificates, list) or not certificates:
            raise BundleError("the certificate chain is empty", "verificationMaterial")
        for certificate in certificates:
            _b64(_object(certificate, "certificate").get("rawBytes"), "certificate.rawBytes")
    else:
        raise VerificationError(
            Problem.UNSUPPORTED,
            "only bundles signed with a key or a certificate are supported"
            " (keyless Sigstore bundles need a transparency log)",
        )
    return Bundle(data, kind, key_hint, files, _library_signature(body))


def _library_signature(body: dict[str, Any]) -> Any:
    """The bundle as model-signing's own type (as its `Signature.read` adapts it)."""
    from model_signing._signing import sign_sigstore_pb
    from sigstore_models.bundle import v1 as bundle_pb

    adapted = json.loads(json.dumps(body))
    material = adapted["verificationMaterial"]
    material.setdefault("tlogEntries", [])
    if "publicKey" in material:
        material["publicKey"].setdefault("hint", None)
        for key in ("rawBytes", "keyDetails"):
            material["publicKey"].pop(key, None)
    try:
        return sign_sigstore_pb.Signature(bundle_pb.Bundle.from_dict(adapted))
    except Exception as err:  # the models' validation errors have no common base
        raise BundleError(f"not a Sigstore bundle: {str(err)[:200]}") from None


def _key_verifier(public_key: Any) -> Any:
    from model_signing._signing import sign_ec_key

    class KeyVerifier(sign_ec_key.Verifier):
        def __init__(self, key: Any) -> None:
            self._public_key = key

    return KeyVerifier(public_key)


def _chain_verifier(certificates: list[Any]) -> Any:
    from model_signing._signing import sign_certificate
    from OpenSSL import crypto

    class ChainVerifier(sign_certificate.Verifier):
        def __init__(self, trusted: list[Any]) -> None:
            self._log_fingerprints = False
            self._store = crypto.X509Store()
            for certificate in trusted:
                self._store.add_cert(crypto.X509.from_cryptography(certificate))

    return ChainVerifier(certificates)


def _signed_files(manifest: Any) -> dict[str, str]:
    return {rd.identifier: rd.digest.digest_hex for rd in manifest.resource_descriptors()}


def certificate_identity(certificate: Any) -> str:
    """The signer's identity: the certificate's SAN e-mail, else its URI,
    else its DNS name; "" if it has none."""
    from cryptography import x509

    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        found = names.get_values_for_type(kind)
        if found:
            return str(found[0])
    return ""


def _verify_with_key(bundle: Bundle, keys: Sequence[str]) -> Verified:
    from cryptography.exceptions import InvalidSignature

    loaded = [load_public_key(pem) for pem in keys]
    candidates = [k for k in loaded if not bundle.key_hint or key_fingerprint(k) == bundle.key_hint]
    if not candidates:
        named = f" by key {bundle.key_hint}" if bundle.key_hint else ""
        raise VerificationError(
            Problem.UNKNOWN_KEY, f"signed{named}, which is not among the trusted keys"
        )
    for key in candidates:
        try:
            manifest = _key_verifier(key).verify(bundle.signature)
        except InvalidSignature:
            continue
        except ValueError as err:
            raise VerificationError(Problem.BAD_SIGNATURE, str(err)[:300]) from None
        fingerprint = key_fingerprint(key)
        return Verified(SignerKind.PUBLIC_KEY, fingerprint, fingerprint, _signed_files(manifest))
    named = bundle.key_hint or key_fingerprint(candidates[0])
    raise VerificationError(
        Problem.BAD_SIGNATURE,
        f"the signature does not verify under key {named}: the statement or the signature"
        " was altered",
    )


def _verify_with_chains(bundle: Bundle, chains: Sequence[TrustedChain]) -> Verified:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from OpenSSL import crypto

    leaf = x509.load_der_x509_certificate(
        bundle.signature.bundle.verification_material.x509_certificate_chain.certificates[
            0
        ].raw_bytes
    )
    identity = certificate_identity(leaf)
    mismatch = ""
    for chain in chains:
        certificates = load_chain(chain.certificates_pem)
        try:
            manifest = _chain_verifier(certificates).verify(bundle.signature)
        except crypto.X509StoreContextError:
            continue
        except InvalidSignature:
            raise VerificationError(
                Problem.BAD_SIGNATURE,
                f"the signature does not verify under the certificate of {identity or '?'}:"
                " the statement or the signature was altered",
            ) from None
        except ValueError as err:
            raise VerificationError(Problem.BAD_SIGNATURE, str(err)[:300]) from None
        if not identity or not re.fullmatch(chain.identity_pattern, identity):
            mismatch = chain.identity_pattern
            continue
        anchor = certificate_fingerprint(certificates[0])
        return Verified(SignerKind.CERTIFICATE, identity, anchor, _signed_files(manifest))
    if mismatch:
        raise VerificationError(
            Problem.IDENTITY_MISMATCH,
            f"the certificate's identity {identity or '(none)'!r} does not match the trusted"
            f" pattern {mismatch!r}",
        )
    raise VerificationError(
        Problem.UNTRUSTED_CHAIN,
        f"the certificate of {identity or '?'} does not chain to a trusted certificate",
    )


def verify_bundle(bundle: Bundle, trust: Trust) -> Verified:
    """Whether a trusted key or chain signed the bundle; `VerificationError` if not."""
    if bundle.kind is SignerKind.PUBLIC_KEY:
        return _verify_with_key(bundle, trust.keys)
    return _verify_with_chains(bundle, trust.chains)


def compare_files(signed: Mapping[str, str], expected: Mapping[str, str]) -> None:
    """The signed files must be exactly the expected ones (path -> sha256
    hex); the message names the first path, in sorted order, that differs."""
    if signed == expected:
        return
    for path in sorted(set(signed) | set(expected)):
        if path not in signed:
            message = f"{path!r} is in the model but the signature does not list it"
        elif path not in expected:
            message = f"the signature lists {path!r}, which the model does not have"
        elif signed[path] != expected[path]:
            message = (
                f"{path!r} differs: signed sha256:{signed[path]}, model sha256:{expected[path]}"
            )
        else:
            continue
        raise VerificationError(Problem.FILE_MISMATCH, message[:600], path)
