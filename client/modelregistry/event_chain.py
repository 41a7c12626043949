"""Checking the event log's hash chain from the client side.

Each event's `hash` is the SHA-256 (lowercase hex) of its fields joined by
newlines, the previous event's hash last (see `Event` in resources.proto),
so a row edited or deleted in the database breaks the chain at that
revision. The client recomputes it independently of the server's code.

Whoever can write the database can also recompute the hashes after an edit,
or cut the tail off; anchors catch that. A CHECKPOINT event carries the
head (revision, hash) as the server saw it, signed with the server's
ed25519 key: given the public key, every checkpoint's signature must hold
and the chain must have that hash at that revision. An expected
`(revision, hash)` learnt elsewhere (a checkpoint from NATS or a watcher,
the head a previous run printed) must be in the chain as well, which is
what catches a truncation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from .v1 import resources_pb2 as pb

GENESIS_HASH = "0" * 64
CHECKPOINT_TYPE = "CHECKPOINT"
# Checkpoints sign a recent head: the hashes of this many latest revisions
# are kept to check them against.
_RECENT_HASHES = 100_000


def checkpoint_text(revision: int, hash_: str, time_us: int) -> bytes:
    """What the server signs (see the server's `events/checkpoints.py`)."""
    return f"modelreg-checkpoint-v1\n{revision}\n{hash_}\n{time_us}".encode()


def load_public_key(pem: bytes) -> Any:
    """An ed25519 public key (PEM); needs the `cryptography` package."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an ed25519 public key")
    return key


def parse_expectation(text: str) -> tuple[int, str]:
    """`REV:HASH` as given to `modelreg events verify --expect`."""
    revision, sep, hash_ = text.partition(":")
    if not sep or not revision.isdigit() or len(hash_) != 64:
        raise ValueError(f"expected REV:HASH (64 hex digits), got {text[:80]!r}")
    return int(revision), hash_.lower()


def event_hash(event: pb.Event, prev_hash: str) -> str:
    time_us = event.time.seconds * 1_000_000 + event.time.nanos // 1000
    text = "\n".join(
        [
            str(event.revision),
            event.type,
            event.resource,
            event.model,
            event.actor,
            str(time_us),
            event.before_json,
            event.after_json,
            prev_hash,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ChainReport:
    checked: int = 0
    first_revision: int = 0
    last_revision: int = 0
    # The first revision whose hash or link does not hold; 0 if none.
    broken_at: int = 0
    reason: str = ""
    # True when older events were compacted away: the first event's link to
    # its predecessor can only be taken on trust.
    starts_after_compaction: bool = False
    # The last event's hash: with last_revision, the head to keep and to
    # pass as --expect next time.
    head_hash: str = ""
    # Signed checkpoints whose signature and hash held.
    checkpoints: int = 0
    # Expectations met (revision found with the expected hash).
    anchors: list[int] = field(default_factory=list)
    # Events sent without their snapshots (too large, stored before events
    # were bounded): linked into the chain, their own hashes not recomputed.
    unverified: list[int] = field(default_factory=list)


async def verify_events(
    events: AsyncIterator[pb.Event],
    public_key: Any = None,
    expect: Iterable[tuple[int, str]] = (),
) -> ChainReport:
    """Recompute the chain; with `public_key`, check every checkpoint too;
    every `(revision, hash)` of `expect` must be in the chain."""
    report = ChainReport()
    wanted = dict(expect)
    recent: OrderedDict[int, str] = OrderedDict()
    expected: str | None = None
    async for event in events:
        if report.checked == 0:
            report.first_revision = event.revision
            if event.revision == 1:
                expected = GENESIS_HASH
            else:
                report.starts_after_compaction = True
        if expected is not None and event.prev_hash != expected:
            report.broken_at, report.reason = event.revision, "prev_hash does not match"
            return report
        if event.snapshots_omitted:
            # Sent without its (oversized, pre-bound) snapshots: its links are
            # checked, its own hash cannot be recomputed here.
            report.unverified.append(event.revision)
        elif event_hash(event, event.prev_hash) != event.hash:
            report.broken_at, report.reason = event.revision, "hash does not match its fields"
            return report
        if event.type == CHECKPOINT_TYPE and public_key is not None:
            problem = _checkpoint_problem(event, public_key, recent, report.first_revision)
            if problem:
                report.broken_at, report.reason = event.revision, problem
                return report
            report.checkpoints += 1
        if event.revision in wanted:
            if wanted[event.revision] != event.hash:
                report.broken_at = event.revision
                report.reason = f"hash differs from the expected {wanted[event.revision]}"
                return report
            report.anchors.append(event.revision)
        recent[event.revision] = event.hash
        if len(recent) > _RECENT_HASHES:
            recent.popitem(last=False)
        expected = event.hash
        report.checked += 1
        report.last_revision = event.revision
        report.head_hash = event.hash
    missing = sorted(r for r in wanted if r not in report.anchors)
    if missing:
        report.broken_at = missing[0]
        report.reason = (
            f"the log ends at revision {report.last_revision} but revision {missing[0]} was "
            "expected: truncated"
            if missing[0] > report.last_revision
            else f"revision {missing[0]} is not in the log (compacted or removed)"
        )
    return report


def _checkpoint_problem(
    event: pb.Event, public_key: Any, recent: dict[int, str], first_revision: int
) -> str:
    from cryptography.exceptions import InvalidSignature

    try:
        body = json.loads(event.after_json)
        revision, hash_, time_us = int(body["revision"]), str(body["hash"]), int(body["time_us"])
        signature = base64.b64decode(body["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return "checkpoint is malformed"
    try:
        public_key.verify(signature, checkpoint_text(revision, hash_, time_us))
    except InvalidSignature:
        return "checkpoint signature does not verify with the public key"
    if revision not in recent:
        if revision < first_revision:
            return ""  # signed before the oldest event still kept: nothing to compare
        return f"checkpoint signs revision {revision}, which is not before it in the log"
    if recent[revision] != hash_:
        return f"checkpoint signs hash {hash_} for revision {revision}; the chain has another"
    return ""
