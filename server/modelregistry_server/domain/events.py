"""The event log's entries and their hash chain.

Every change writes one event in the transaction that makes it (a
transactional outbox); the log is append-only and each event's hash covers
the previous one, so editing or deleting a row in the database breaks the
chain where it happened.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .names import AliasName, ModelName, VersionName

GENESIS_HASH = "0" * 64

# No event is larger than this, by construction: an event holds one resource
# before and after a change, and every field of a resource is bounded (see
# `validation`). The largest, a version update, is about 2 x 140 KiB of
# JSON: 64 KiB of metadata, a 16 KiB description and a 4096-character
# approval comment that JSON escaping can double or quadruple, a 2048-
# character source_uri and 64 labels. Responses and watch messages are
# bounded in bytes with room for several of these, so a stored event can
# always be sent.
MAX_EVENT_BYTES = 512 * 1024
# The `resource` of CHECKPOINT events.
CHECKPOINT_RESOURCE = "checkpoints"


class EventType(enum.Enum):
    MODEL_CREATED = "MODEL_CREATED"
    MODEL_UPDATED = "MODEL_UPDATED"
    MODEL_DELETED = "MODEL_DELETED"
    VERSION_CREATED = "VERSION_CREATED"
    VERSION_UPDATED = "VERSION_UPDATED"
    VERSION_READY = "VERSION_READY"
    VERSION_DELETED = "VERSION_DELETED"
    VERSION_APPROVED = "VERSION_APPROVED"
    VERSION_REJECTED = "VERSION_REJECTED"
    ALIAS_SET = "ALIAS_SET"
    ALIAS_DELETED = "ALIAS_DELETED"
    ROLLOUT_STARTED = "ROLLOUT_STARTED"
    ROLLOUT_ADVANCED = "ROLLOUT_ADVANCED"
    ROLLOUT_PAUSED = "ROLLOUT_PAUSED"
    ROLLOUT_RESUMED = "ROLLOUT_RESUMED"
    ROLLOUT_COMPLETED = "ROLLOUT_COMPLETED"
    ROLLOUT_ROLLED_BACK = "ROLLOUT_ROLLED_BACK"
    POLICY_SET = "POLICY_SET"
    SERVICE_ACCOUNT_TOKEN_CREATED = "SERVICE_ACCOUNT_TOKEN_CREATED"
    SERVICE_ACCOUNT_TOKEN_REVOKED = "SERVICE_ACCOUNT_TOKEN_REVOKED"
    SIGNATURE_ATTACHED = "SIGNATURE_ATTACHED"
    TRUST_POLICY_UPDATED = "TRUST_POLICY_UPDATED"
    # The server's signed statement of the head before it (see
    # events/checkpoints.py); it belongs to no model.
    CHECKPOINT = "CHECKPOINT"


@dataclass(frozen=True)
class Event:
    revision: int
    type: str
    resource: str
    model: str
    actor: str
    time_us: int
    before_json: str
    after_json: str
    prev_hash: str
    hash: str


def _plain(value: Any) -> Any:
    """Resource values as JSON-ready data: names as strings, enums by value."""
    if isinstance(value, ModelName | VersionName | AliasName):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical_json(resource: Any) -> str:
    """Sorted keys, no spaces: the same resource always hashes the same."""
    if resource is None:
        return ""
    return json.dumps(_plain(resource), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(
    revision: int,
    type_: str,
    resource: str,
    model: str,
    actor: str,
    time_us: int,
    before_json: str,
    after_json: str,
    prev_hash: str,
) -> str:
    text = "\n".join(
        [
            str(revision),
            type_,
            resource,
            model,
            actor,
            str(time_us),
            before_json,
            after_json,
            prev_hash,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def verify_chain(events: list[Event], prev_hash: str | None = None) -> int | None:
    """The revision of the first event that breaks the chain, or None.

    `prev_hash` is the hash before the first event (None: trust the first
    event's own prev_hash, e.g. after compaction)."""
    expected = prev_hash
    for e in events:
        if expected is not None and e.prev_hash != expected:
            return e.revision
        computed = chain_hash(
            e.revision,
            e.type,
            e.resource,
            e.model,
            e.actor,
            e.time_us,
            e.before_json,
            e.after_json,
            e.prev_hash,
        )
        if computed != e.hash:
            return e.revision
        expected = e.hash
    return None
