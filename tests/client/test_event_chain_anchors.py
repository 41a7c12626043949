"""Anchoring the hash chain: signed checkpoints and expected heads catch what
recomputing hashes cannot (a rewrite with fresh hashes, a cut tail)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import timestamp_pb2
from modelregistry.event_chain import (
    GENESIS_HASH,
    ChainReport,
    event_hash,
    load_public_key,
    verify_events,
)
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.events.checkpoints import CheckpointSigner

SIGNER = CheckpointSigner(Ed25519PrivateKey.generate())
PUBLIC = load_public_key(SIGNER.public_key_pem())


def chain(bodies: Sequence[tuple[str, str]]) -> list[pb.Event]:
    """Events with these (type, after_json), hashed as the server hashes them."""
    out: list[pb.Event] = []
    prev = GENESIS_HASH
    for i, (type_, after) in enumerate(bodies, start=1):
        event = pb.Event(
            revision=i,
            type=type_,
            resource="models/m",
            model="models/m",
            actor="a",
            time=timestamp_pb2.Timestamp(seconds=i),
            after_json=after,
            prev_hash=prev,
        )
        event.hash = event_hash(event, prev)
        prev = event.hash
        out.append(event)
    return out


def rehash(events: list[pb.Event]) -> list[pb.Event]:
    """What someone with write access to the database does after an edit."""
    return chain([(e.type, e.after_json) for e in events])


def with_checkpoint(count: int, signer: CheckpointSigner = SIGNER) -> list[pb.Event]:
    """`count` events, a checkpoint of them, two more."""
    events = chain([("MODEL_UPDATED", f'{{"n":{i}}}') for i in range(count)])
    head = events[-1]
    checkpoint = signer.sign(head.revision, head.hash, 1_000_000).to_json()
    later = [("MODEL_UPDATED", '{"n":"later"}')] * 2
    return chain([*((e.type, e.after_json) for e in events), ("CHECKPOINT", checkpoint), *later])


async def run(
    events: list[pb.Event], key: object = PUBLIC, expect: Sequence[tuple[int, str]] = ()
) -> ChainReport:
    async def stream() -> AsyncIterator[pb.Event]:
        for e in events:
            yield e

    return await verify_events(stream(), key, expect)


async def test_an_untouched_log_verifies_with_its_checkpoints_and_head() -> None:
    events = with_checkpoint(5)
    report = await run(events, expect=[(5, events[4].hash)])
    assert not report.broken_at, report.reason
    assert report.checkpoints == 1 and report.anchors == [5]
    assert (report.last_revision, report.head_hash) == (8, events[-1].hash)


async def test_a_rewrite_with_recomputed_hashes_breaks_at_the_checkpoint() -> None:
    events = with_checkpoint(5)
    events[1].after_json = '{"n":"edited"}'
    forged = rehash(events)
    assert not (await run(forged, key=None)).broken_at  # the bare chain is fooled
    report = await run(forged)
    assert report.broken_at == 6 and "the chain has another" in report.reason


async def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    forged = with_checkpoint(5, CheckpointSigner(Ed25519PrivateKey.generate()))
    report = await run(forged)
    assert report.broken_at == 6 and "signature" in report.reason


async def test_a_truncation_behind_an_expected_head_is_caught() -> None:
    events = with_checkpoint(5)
    published = (events[-1].revision, events[-1].hash)  # e.g. the last head printed
    cut = events[:6]  # tail deleted, head moved back: the rest still chains and signs
    assert not (await run(cut)).broken_at
    report = await run(cut, expect=[published])
    assert report.broken_at == published[0] and "truncated" in report.reason
