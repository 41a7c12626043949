"""Key-encryption keys: the small interface a key service implements, and the file keyring.

Each blob has its own random 256-bit data key; only the data key, wrapped by a
key-encryption key (KEK), is stored with the blob. A `KeyWrapper` is all the
blob layer knows about KEKs, so a KMS (AWS KMS `Encrypt`/`Decrypt`, Vault
transit, Tink's KMS envelope AEAD) can stand behind it later:

- `primary_id` names the KEK that wraps new data keys;
- `key_ids` are the KEKs it can unwrap with;
- `wrap(data_key, context)` returns `(key_id, wrapped)`: an opaque byte string
  of at most `MAX_WRAPPED` bytes, bound to `context` (the blob's identity: a
  wrapped key moved to another blob does not unwrap);
- `unwrap(key_id, wrapped, context)` returns the data key, raises
  `KeyMissing` when it has no key `key_id` and `KeyMismatch` when the key
  exists but does not open `wrapped` (a different key under the same id, or
  a damaged header).

Both calls may block (a KMS is a network call); the blob layer runs them on a
worker thread.

The file keyring is a JSON file of named keys, one of them primary, readable
by its owner only (0600; a keyring that group or others can read is refused).
`create` writes one with a single key; `rotate` adds a key and makes it
primary, keeping the old ones for the blobs still wrapped under them
(`modelreg admin rewrap` moves those over; only then may an old key go).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
MAX_WRAPPED = 512
_NONCE = 12
_WRAP_LABEL = b"modelreg data key v1\x00"


class KeyMissing(Exception):
    """The keyring has no key under this id."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


class KeyMismatch(Exception):
    """A key with this id exists but does not unwrap the data key."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


class KeyWrapper(Protocol):
    """Wraps and unwraps data keys; see the module docstring."""

    @property
    def primary_id(self) -> str: ...

    @property
    def key_ids(self) -> tuple[str, ...]: ...

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]: ...

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes: ...


@dataclass(frozen=True)
class FileKeyring:
    """KEKs from a keyring file: AES-256-GCM key wrapping with a random nonce."""

    keys: dict[str, bytes]
    primary: str

    @property
    def primary_id(self) -> str:
        return self.primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self.keys))

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(_NONCE)
        aad = _WRAP_LABEL + self.primary.encode() + b"\x00" + context
        sealed = AESGCM(self.keys[self.primary]).encrypt(nonce, data_key, aad)
        return self.primary, nonce + sealed

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        kek = self.keys.get(key_id)
        if kek is None:
            raise KeyMissing(key_id)
        aad = _WRAP_LABEL + key_id.encode() + b"\x00" + context
        try:
            return AESGCM(kek).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
        except (InvalidTag, ValueError):
            raise KeyMismatch(key_id) from None


def _new_key_id() -> str:
    return time.strftime("k%Y%m%dT%H%M%SZ-", time.gmtime()) + secrets.token_hex(3)


def load_keyring(path: Path) -> FileKeyring:
    """The keyring at `path`; ValueError when it is unreadable, malformed or not private."""
    try:
        st = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"keyring {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise ValueError(
            f"keyring {path} is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it"
        )
    try:
        doc = json.loads(text)
        keys = {str(k["id"]): base64.b64decode(k["key"], validate=True) for k in doc["keys"]}
        primary = str(doc["primary"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"keyring {path} is malformed ({type(exc).__name__})") from None
    if primary not in keys:
        raise ValueError(f"keyring {path}: primary key {primary!r} is not in it")
    for key_id, key in keys.items():
        if len(key) != KEY_BYTES or not key_id or len(key_id) > 64:
            raise ValueError(f"keyring {path}: key {key_id!r} is not a named 256-bit key")
    return FileKeyring(keys, primary)


def _write(path: Path, keyring: FileKeyring, *, replace: bool) -> None:
    doc = {
        "primary": keyring.primary,
        "keys": [
            {"id": key_id, "key": base64.b64encode(key).decode()}
            for key_id, key in keyring.keys.items()
        ],
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(doc, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails if `path` exists: never overwrite a keyring
        finally:
            tmp.unlink()


def create_keyring(path: Path) -> FileKeyring:
    """A new keyring file with one primary key; FileExistsError if `path` exists."""
    key_id = _new_key_id()
    keyring = FileKeyring({key_id: secrets.token_bytes(KEY_BYTES)}, key_id)
    _write(path, keyring, replace=False)
    return keyring


def rotate_keyring(path: Path) -> FileKeyring:
    """Add a new key to the keyring at `path` and make it primary; the old keys stay."""
    old = load_keyring(path)
    key_id = _new_key_id()
    while key_id in old.keys:
        key_id = _new_key_id()
    keyring = FileKeyring({**old.keys, key_id: secrets.token_bytes(KEY_BYTES)}, key_id)
    _write(path, keyring, replace=True)
    return keyring
