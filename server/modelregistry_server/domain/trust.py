"""Signatures on versions and the trust policies that decide which count.

A model trusts its own keys and chains if it lists any, otherwise the
registry-wide default's; the aliases that require a signed version are the
model's and the default's together. Whether a stored signature counts is
decided again at every promotion against the policy as it is then, so
removing a key makes the versions signed only by it ineligible at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorReason

from ..signing.oms import (
    SignerKind,
    Trust,
    TrustedChain,
    certificate_fingerprint,
    key_fingerprint,
    load_chain,
    load_public_key,
)
from .errors import InvalidArgument
from .names import ModelName, VersionName, parse_model_name, validate_id

DEFAULT_POLICY = "trustPolicies/default"
POLICY_SUFFIX = "/trustPolicy"
MAX_TRUSTED_KEYS = 16
MAX_KEY_PEM = 4096
MAX_CHAINS = 8
MAX_CHAIN_PEM = 64 * 1024
MAX_CHAIN_CERTIFICATES = 8
MAX_PATTERN = 256
MAX_REQUIRED_ALIASES = 64
MAX_SIGNATURES_PER_VERSION = 32
POLICY_PATHS = frozenset({"trusted_keys", "trusted_chains", "require_signature_aliases"})


@dataclass(frozen=True)
class TrustedKey:
    pem: str
    fingerprint: str


@dataclass(frozen=True)
class ChainRule:
    pem: str
    identity_pattern: str
    root_fingerprint: str


@dataclass(frozen=True)
class TrustPolicy:
    """A model's policy (`model` set) or the default (`model` None)."""

    model: ModelName | None
    keys: tuple[TrustedKey, ...] = ()
    chains: tuple[ChainRule, ...] = ()
    require_signature_aliases: tuple[str, ...] = ()
    update_time_us: int = 0
    etag: str = ""

    @property
    def name(self) -> str:
        return DEFAULT_POLICY if self.model is None else f"{self.model}{POLICY_SUFFIX}"


@dataclass(frozen=True)
class PolicyFields:
    keys: tuple[TrustedKey, ...]
    chains: tuple[ChainRule, ...]
    require_signature_aliases: tuple[str, ...]


@dataclass(frozen=True)
class SignatureRecord:
    """A signature attached to a version (the bundle is the blob `digest`)."""

    version: VersionName
    digest: str
    size_bytes: int
    kind: SignerKind
    signer: str
    trust_anchor: str
    file_count: int
    create_time_us: int
    creator: str

    @property
    def name(self) -> str:
        return f"{self.version}/signatures/{self.digest.removeprefix('sha256:')[:16]}"


@dataclass(frozen=True)
class EffectivePolicy:
    keys: tuple[TrustedKey, ...]
    chains: tuple[ChainRule, ...]
    required: frozenset[str]

    def trust(self) -> Trust:
        return Trust(
            keys=tuple(k.pem for k in self.keys),
            chains=tuple(TrustedChain(c.pem, c.identity_pattern) for c in self.chains),
        )

    def untrusted_reason(self, record: SignatureRecord) -> str:
        """ "" if the signature counts under this policy, else why not."""
        if record.kind is SignerKind.PUBLIC_KEY:
            if any(k.fingerprint == record.trust_anchor for k in self.keys):
                return ""
            return f"key {record.signer} is no longer trusted"
        rules = [c for c in self.chains if c.root_fingerprint == record.trust_anchor]
        if not rules:
            return f"the certificate chain of {record.signer} is no longer trusted"
        if any(re.fullmatch(c.identity_pattern, record.signer) for c in rules):
            return ""
        return f"identity {record.signer!r} no longer matches the trusted pattern"


def effective(model: TrustPolicy | None, default: TrustPolicy | None) -> EffectivePolicy:
    own = model if model is not None and (model.keys or model.chains) else default
    required = set(model.require_signature_aliases if model else ())
    required |= set(default.require_signature_aliases if default else ())
    return EffectivePolicy(own.keys if own else (), own.chains if own else (), frozenset(required))


def parse_policy_name(value: str, field: str = "name") -> ModelName | None:
    """The model of `models/{model}/trustPolicy`; None for the default."""
    if value == DEFAULT_POLICY:
        return None
    if not value.endswith(POLICY_SUFFIX):
        raise InvalidArgument(
            ErrorReason.INVALID_NAME,
            f"{field}: {value[:80]!r} is not a trust policy name (expected "
            f"models/{{model}}{POLICY_SUFFIX} or {DEFAULT_POLICY})",
            field,
        )
    return parse_model_name(value.removesuffix(POLICY_SUFFIX), field)


def _bad(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(ErrorReason.INVALID_TRUST_POLICY, f"{field}: {message}", field)


def check_keys(values: Sequence[str], field: str = "policy.trusted_keys") -> tuple[TrustedKey, ...]:
    if len(values) > MAX_TRUSTED_KEYS:
        raise _bad(field, f"at most {MAX_TRUSTED_KEYS} keys, got {len(values)}")
    keys: dict[str, TrustedKey] = {}
    for i, pem in enumerate(values):
        if len(pem) > MAX_KEY_PEM:
            raise _bad(f"{field}[{i}]", f"a key is at most {MAX_KEY_PEM} characters of PEM")
        try:
            key = load_public_key(pem)
        except ValueError as err:
            raise _bad(f"{field}[{i}]", str(err)) from None
        fingerprint = key_fingerprint(key)
        keys.setdefault(fingerprint, TrustedKey(pem.strip() + "\n", fingerprint))
    return tuple(sorted(keys.values(), key=lambda k: k.fingerprint))


def check_chains(
    values: Sequence[tuple[str, str]], field: str = "policy.trusted_chains"
) -> tuple[ChainRule, ...]:
    if len(values) > MAX_CHAINS:
        raise _bad(field, f"at most {MAX_CHAINS} chains, got {len(values)}")
    rules: list[ChainRule] = []
    for i, (pem, pattern) in enumerate(values):
        where = f"{field}[{i}]"
        if len(pem) > MAX_CHAIN_PEM:
            raise _bad(f"{where}.certificates_pem", f"at most {MAX_CHAIN_PEM} characters")
        try:
            certificates = load_chain(pem)
        except ValueError as err:
            raise _bad(f"{where}.certificates_pem", str(err)) from None
        if len(certificates) > MAX_CHAIN_CERTIFICATES:
            raise _bad(
                f"{where}.certificates_pem", f"at most {MAX_CHAIN_CERTIFICATES} certificates"
            )
        if not pattern or len(pattern) > MAX_PATTERN:
            raise _bad(f"{where}.identity_pattern", f"1 to {MAX_PATTERN} characters")
        try:
            re.compile(pattern)
        except re.error as err:
            raise _bad(f"{where}.identity_pattern", f"not a regular expression: {err}") from None
        rules.append(
            ChainRule(pem.strip() + "\n", pattern, certificate_fingerprint(certificates[0]))
        )
    return tuple(rules)


def check_required_aliases(
    values: Iterable[str], field: str = "policy.require_signature_aliases"
) -> tuple[str, ...]:
    unique = sorted(set(values))
    if len(unique) > MAX_REQUIRED_ALIASES:
        raise _bad(field, f"at most {MAX_REQUIRED_ALIASES} aliases, got {len(unique)}")
    for alias in unique:
        validate_id(alias, field)
    return tuple(unique)
