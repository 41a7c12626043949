"""Signed checkpoints: the event log's head, anchored outside the database.

The hash chain shows where a row was edited, but whoever can write the
database can also recompute every hash after an edit, or delete the tail
and move the head back, and the chain verifies again. A checkpoint anchors
it: at an interval the server signs the head (revision and hash) with its
ed25519 key and appends the signed statement to the log as a CHECKPOINT
event, so it goes out on every unfiltered Watch stream and to NATS like any
other event. With only the public key, anyone can then check:

- every checkpoint in the log: its signature, and that the chain's hash at
  its revision is the one signed. Rewriting a revision at or before a
  checkpoint changes that hash, and a new signature needs the private key.
- a checkpoint kept outside the database (by a watcher, in the NATS
  stream, or passed as `--expect REV:HASH`): the log must still reach that
  revision with that hash, so a truncation behind it fails too.

The signed text is `modelreg-checkpoint-v1\\n{revision}\\n{hash}\\n{time_us}`
in UTF-8; the event's `after_json` carries it field by field with the key
id (the first 16 hex digits of the raw public key's SHA-256) and the
signature (base64). The SDK verifies it with its own code
(`modelregistry.event_chain`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain import errors
from ..store.base import EventLog
from ..store.transactions import now_us

if TYPE_CHECKING:
    # `cryptography` loads with the first key: a server without
    # --checkpoint-key never needs it.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

log = logging.getLogger("modelreg.checkpoints")


@dataclass(frozen=True)
class Checkpoint:
    revision: int
    hash: str
    time_us: int
    key_id: str
    signature: str  # base64

    def to_json(self) -> str:
        return json.dumps(
            {
                "revision": self.revision,
                "hash": self.hash,
                "time_us": self.time_us,
                "key_id": self.key_id,
                "signature": self.signature,
            },
            sort_keys=True,
            separators=(",", ":"),
        )


def signed_text(revision: int, hash_: str, time_us: int) -> bytes:
    return f"modelreg-checkpoint-v1\n{revision}\n{hash_}\n{time_us}".encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """Signs heads with the server's private key (PEM, PKCS#8, unencrypted)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    @classmethod
    def from_file(cls, path: Path) -> CheckpointSigner:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an ed25519 private key")
        return cls(key)

    def public_key_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, revision: int, hash_: str, time_us: int) -> Checkpoint:
        signature = self._key.sign(signed_text(revision, hash_, time_us))
        return Checkpoint(
            revision, hash_, time_us, self.key_id, base64.b64encode(signature).decode()
        )


def generate_key_pem() -> bytes:
    """A new private key, PEM: what `--checkpoint-key` reads."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


async def checkpoint_forever(
    event_log: EventLog, signer: CheckpointSigner, interval_s: float, ready: asyncio.Event
) -> None:
    """Sign the head every `interval_s` while the log grows (a background task)."""
    await ready.wait()
    failing = False
    while True:
        try:
            revision = await event_log.append_checkpoint(
                lambda rev, hash_: signer.sign(rev, hash_, now_us()).to_json()
            )
            if failing:
                log.info("checkpoints are written again")
            failing = False
            if revision is not None:
                log.debug("checkpoint", extra={"revision": revision, "key_id": signer.key_id})
        except errors.Unavailable:
            if not failing:
                log.warning("cannot write a checkpoint: the database is unavailable; retrying")
            failing = True
        except Exception:
            log.exception("writing a checkpoint failed")
        await asyncio.sleep(interval_s)
