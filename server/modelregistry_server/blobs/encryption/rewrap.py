"""Key census and rewrapping: which key-encryption keys the stored blobs need, and
moving every blob's data key to the primary without re-encrypting content.

Rotation is: `modelreg keyring rotate` (new blobs use the new primary at the
next start), then `modelreg admin rewrap` (old blobs' data keys are unwrapped
with their old key and wrapped again under the primary; only the header
changes), after which the census shows no blob needing an old key and it may
leave the keyring. Rewrap can run while servers are serving: each header is
replaced atomically and readers see the same content either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from .encrypted_store import EncryptedBlobStore
from .keyring import KeyMismatch, KeyMissing
from .segments import HEADER_SIZE, FormatError, Header, decode_header
from .stored_form import StoredForm, stored_form

log = logging.getLogger("modelreg.encryption")


@dataclass
class Census:
    """Blobs per key id; `damaged` counts blobs without a readable header."""

    by_key: Counter[str] = field(default_factory=Counter)
    damaged: int = 0


@dataclass
class RewrapReport:
    rewrapped: int = 0
    already_primary: int = 0
    gone: int = 0
    # Blobs left as they were, per key id the keyring lacks (or cannot use).
    unusable: Counter[str] = field(default_factory=Counter)
    damaged: int = 0


async def _headers(store: EncryptedBlobStore, slots: StoredForm) -> list[tuple[str, Header | None]]:
    found: list[tuple[str, Header | None]] = []
    async for digest in slots.digests():
        try:
            head = await store.read_stored(digest, 0, HEADER_SIZE)
            found.append((digest, decode_header(head)))
        except FormatError:
            found.append((digest, None))
    return found


async def census(store: EncryptedBlobStore) -> Census:
    result = Census()
    for _, header in await _headers(store, await stored_form(store.inner)):
        if header is None:
            result.damaged += 1
        else:
            result.by_key[header.key_id] += 1
    return result


async def log_census(store: EncryptedBlobStore) -> None:
    """The start-up line: which key ids the blobs need, which the keyring has."""
    try:
        found = await census(store)
    except Exception:
        log.exception("encryption at rest: could not list the stored blobs' key ids")
        return
    have = set(store.keys.key_ids)
    missing = sorted(set(found.by_key) - have)
    log.log(
        logging.ERROR if missing or found.damaged else logging.INFO,
        "encryption at rest: key ids needed by stored blobs and present in the keyring",
        extra={
            "primary_key_id": store.keys.primary_id,
            "keyring_key_ids": ",".join(store.keys.key_ids),
            "needed_key_ids": ",".join(f"{k}:{n}" for k, n in sorted(found.by_key.items())),
            "missing_key_ids": ",".join(missing),
            "blobs_without_header": found.damaged,
        },
    )


async def rewrap(store: EncryptedBlobStore, *, dry_run: bool = False) -> RewrapReport:
    """Wrap every blob's data key under the keyring's primary key."""
    keys, report = store.keys, RewrapReport()
    slots = await stored_form(store.inner)
    for digest, header in await _headers(store, slots):
        if header is None:
            report.damaged += 1
            continue
        if header.key_id == keys.primary_id:
            report.already_primary += 1
            continue
        try:
            data_key = await asyncio.to_thread(
                keys.unwrap, header.key_id, header.wrapped, header.context
            )
        except (KeyMissing, KeyMismatch):
            report.unusable[header.key_id] += 1
            continue
        if dry_run:
            report.rewrapped += 1
            continue
        key_id, wrapped = await asyncio.to_thread(keys.wrap, data_key, header.blob_id)
        replaced = Header(key_id, wrapped, header.blob_id).encode()
        if await slots.replace_header(digest, replaced):
            report.rewrapped += 1
            store.forget(digest)
        else:
            report.gone += 1
    return report
