"""Encryption at rest in the blob layer: what reaches the disk, what tampering gets, keys.

The conformance suite runs every store contract on encrypted stores too; these
tests are what only encryption promises. They use the local store, whose files
are easy to damage on purpose; the S3 variants are in the e2e tests.
"""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from modelregistry_server.blobs import open_blob_store
from modelregistry_server.blobs.encryption.encrypted_store import EncryptedBlobStore
from modelregistry_server.blobs.encryption.keyring import (
    FileKeyring,
    create_keyring,
    load_keyring,
    rotate_keyring,
)
from modelregistry_server.blobs.encryption.rewrap import census, rewrap
from modelregistry_server.blobs.encryption.segments import (
    HEADER_SIZE,
    RECORD_OVERHEAD,
    SEGMENT_SIZE,
)
from modelregistry_server.blobs.local_blobs import LocalBlobStore
from modelregistry_server.blobs.s3_blobs import S3BlobStore
from modelregistry_server.blobs.s3_sse import ServerSideEncryption
from modelregistry_server.domain.errors import DomainError, ErrorKind
from support.moto import s3_env

MiB = 1024 * 1024
MARKER = b"MARKER-d41d8cd98f00b204-"
RECORD = SEGMENT_SIZE + RECORD_OVERHEAD


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


async def open_store(root: Path, keys: FileKeyring) -> EncryptedBlobStore:
    store = await open_blob_store(f"file://{root}", keys=keys)
    assert isinstance(store, EncryptedBlobStore)
    return store


@pytest.fixture
def keys(tmp_path: Path) -> FileKeyring:
    return create_keyring(tmp_path / "keyring.json")


@pytest.fixture
async def store(tmp_path: Path, keys: FileKeyring) -> AsyncGenerator[EncryptedBlobStore, None]:
    opened = await open_store(tmp_path / "blobs", keys)
    yield opened
    await opened.close()


def blob_path(store: EncryptedBlobStore, digest: str) -> Path:
    inner = store.inner
    assert isinstance(inner, LocalBlobStore)
    hex_digest = digest.removeprefix("sha256:")
    return inner.root / "blobs" / "sha256" / hex_digest[:2] / hex_digest


def rewrite(path: Path, data: bytes) -> None:
    os.chmod(path, 0o600)
    path.write_bytes(data)


async def push(store: EncryptedBlobStore, upload_id: str, data: bytes) -> str:
    upload = await store.begin_upload(upload_id)
    for i in range(0, len(data), 300_007):
        await upload.write(data[i : i + 300_007])
    return (await upload.commit(sha(data), len(data))).digest


async def read(store: EncryptedBlobStore, digest: str, into: bytearray, **kw: int) -> None:
    async with aclosing(store.open_reader(digest, **kw)) as chunks:
        async for chunk in chunks:
            into += chunk


async def read_error(
    store: EncryptedBlobStore, digest: str, **kw: int
) -> tuple[DomainError, bytes]:
    got = bytearray()
    with pytest.raises(DomainError) as exc:
        await read(store, digest, got, **kw)
    return exc.value, bytes(got)


def everything_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def test_no_plaintext_reaches_the_disk_staging_included(
    tmp_path: Path, store: EncryptedBlobStore
) -> None:
    data = MARKER * (3 * MiB // len(MARKER))
    upload = await store.begin_upload("marked")
    await upload.write(data[: MiB + 5000])
    assert await upload.flush() == MiB + 5000  # a short record: the tail is durable too
    await upload.write(data[MiB + 5000 : 2 * MiB])
    await upload.close()
    assert MARKER not in everything_under(tmp_path / "blobs")
    assert MARKER[:8] not in everything_under(tmp_path / "blobs")

    resumed = await store.resume_upload("marked")
    assert resumed.offset == MiB + 5000
    await resumed.write(data[resumed.offset :])
    info = await resumed.commit(sha(data), len(data))
    assert MARKER[:8] not in everything_under(tmp_path / "blobs")
    got = bytearray()
    await read(store, info.digest, got)
    assert bytes(got) == data
    assert await store.stat(info.digest) == info


@pytest.fixture(params=["local", "s3"])
async def url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str | None]:
    """A local or S3 (moto) store's URL and endpoint, the bucket created."""
    if request.param == "local":
        return f"file://{tmp_path / 'blobs'}", None
    endpoint = request.getfixturevalue("moto_endpoint")
    s3_env(monkeypatch, tmp_path)
    bucket = f"enc-{uuid.uuid4().hex[:12]}"
    setup = S3BlobStore(bucket, endpoint_url=endpoint)
    await (await setup.s3()).create_bucket(Bucket=bucket)
    await setup.close()
    return f"s3://{bucket}/registry", endpoint


async def open_url(url: tuple[str, str | None], keys: FileKeyring, **kw: Any) -> EncryptedBlobStore:
    store = await open_blob_store(url[0], url[1], keys=keys, **kw)
    assert isinstance(store, EncryptedBlobStore)
    return store


async def test_resume_after_a_stream_dropped_mid_segment(
    url: tuple[str, str | None], keys: FileKeyring
) -> None:
    """Flushes that end mid-segment leave short records; unflushed bytes are not claimed."""
    data = payload(4 * MiB + 123, seed=2)
    first = await open_url(url, keys)
    upload = await first.begin_upload("dropped")
    await upload.write(data[:700_000])
    assert await upload.flush() == 700_000
    await upload.write(data[700_000 : 2 * MiB + 1])
    # Not flushed: the whole segment may be durable, the tail past it is not.
    await upload.close()
    await first.close()

    restarted = await open_url(url, keys)
    resumed = await restarted.resume_upload("dropped")
    assert resumed.offset in (700_000, 700_000 + SEGMENT_SIZE)
    (listed,) = await restarted.list_uploads()
    assert listed.offset == resumed.offset  # exact, short records and all
    await resumed.write(data[resumed.offset : 3 * MiB])
    assert await resumed.flush() == 3 * MiB
    (listed,) = await restarted.list_uploads()
    assert listed.offset == 3 * MiB  # two short records in the staging now
    await resumed.write(data[3 * MiB :])
    info = await resumed.commit(sha(data), len(data))
    for offset, length in [(0, 10), (699_990, 20), (700_000, SEGMENT_SIZE), (3 * MiB - 1, 2)]:
        got = bytearray()
        await read(restarted, info.digest, got, offset=offset, length=length)
        assert bytes(got) == data[offset : offset + length]
    got = bytearray()
    await read(restarted, info.digest, got, chunk_size=333_333)
    assert bytes(got) == data
    await restarted.close()


async def test_a_ranged_read_fetches_only_the_segments_it_needs(
    store: EncryptedBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(8 * MiB, seed=3)
    digest = await push(store, "ranged", data)
    fetched: list[tuple[int, int | None]] = []
    inner_reader = store.inner.open_reader

    def spy(digest: str, offset: int = 0, length: int | None = None, chunk_size: int = MiB):  # type: ignore[no-untyped-def]
        fetched.append((offset, length))
        return inner_reader(digest, offset, length, chunk_size)

    monkeypatch.setattr(store.inner, "open_reader", spy)
    got = bytearray()
    await read(store, digest, got, offset=5 * MiB + 10, length=100)
    assert bytes(got) == data[5 * MiB + 10 : 5 * MiB + 110]
    content = [length for offset, length in fetched if offset >= HEADER_SIZE and length != 16]
    assert max(c or 0 for c in content[-1:]) == RECORD


@pytest.mark.parametrize("where", [0, 100, RECORD - 1])
async def test_a_flipped_bit_is_data_loss_naming_blob_and_offset(
    store: EncryptedBlobStore, where: int
) -> None:
    data = payload(3 * MiB + 10, seed=4)
    digest = await push(store, "flip", data)
    path = blob_path(store, digest)
    stored = bytearray(path.read_bytes())
    stored[HEADER_SIZE + 2 * RECORD + where] ^= 0x10
    rewrite(path, bytes(stored))

    error, served = await read_error(store, digest)
    assert (error.kind, error.reason) == (ErrorKind.DATA_LOSS, "BLOB_DAMAGED")
    assert error.metadata == {"digest": digest, "offset": str(2 * MiB)}
    assert served == data[: len(served)] and len(served) <= 2 * MiB
    # What lies before the damage is still served, and exactly.
    got = bytearray()
    await read(store, digest, got, offset=0, length=2 * MiB)
    assert bytes(got) == data[: 2 * MiB]


async def test_segments_swapped_between_blobs_or_reordered_are_data_loss(
    store: EncryptedBlobStore,
) -> None:
    a, b = payload(3 * MiB, seed=5), payload(3 * MiB, seed=6)
    da, db = await push(store, "a", a), await push(store, "b", b)
    pa, pb = blob_path(store, da), blob_path(store, db)
    sa, sb = pa.read_bytes(), pb.read_bytes()
    seg = slice(HEADER_SIZE + RECORD, HEADER_SIZE + 2 * RECORD)
    swapped = bytearray(sa)
    swapped[seg] = sb[seg]
    rewrite(pa, bytes(swapped))
    error, served = await read_error(store, da)
    assert (error.reason, error.metadata["offset"]) == ("BLOB_DAMAGED", str(MiB))
    assert served == a[: len(served)]

    reordered = bytearray(sa)
    reordered[HEADER_SIZE : HEADER_SIZE + RECORD] = sa[seg]
    reordered[seg] = sa[HEADER_SIZE : HEADER_SIZE + RECORD]
    rewrite(pa, bytes(reordered))
    error, served = await read_error(store, da)
    assert (error.reason, error.metadata["offset"], served) == ("BLOB_DAMAGED", "0", b"")

    # One blob's whole file under another's digest: refused before any byte.
    rewrite(pa, sb)
    error, served = await read_error(store, da)
    assert (error.kind, error.reason, served) == (ErrorKind.DATA_LOSS, "BLOB_DAMAGED", b"")


@pytest.mark.parametrize("cut", [1, 16, 100, RECORD, 2 * RECORD + 5])
async def test_a_truncated_blob_is_data_loss(store: EncryptedBlobStore, cut: int) -> None:
    data = payload(2 * MiB + 77, seed=7)
    digest = await push(store, "cut", data)
    path = blob_path(store, digest)
    rewrite(path, path.read_bytes()[:-cut])
    error, served = await read_error(store, digest)
    assert (error.kind, error.reason, served) == (ErrorKind.DATA_LOSS, "BLOB_DAMAGED", b"")


async def test_missing_or_wrong_key_is_failed_precondition_naming_it(
    tmp_path: Path, store: EncryptedBlobStore, keys: FileKeyring
) -> None:
    data = payload(MiB, seed=8)
    digest = await push(store, "k", data)
    other = await open_store(tmp_path / "blobs", create_keyring(tmp_path / "other.json"))
    error, served = await read_error(other, digest)
    assert (error.kind, error.reason, served) == (
        ErrorKind.FAILED_PRECONDITION,
        "ENCRYPTION_KEY_MISSING",
        b"",
    )
    assert error.metadata == {"digest": digest, "key_id": keys.primary_id}
    assert keys.primary_id in error.message
    assert await other.stat(digest) == await store.stat(digest)  # sizes need no key

    impostor = FileKeyring({keys.primary_id: os.urandom(32)}, keys.primary_id)
    wrong = await open_store(tmp_path / "blobs", impostor)
    error, served = await read_error(wrong, digest)
    assert (error.kind, error.reason, served) == (
        ErrorKind.FAILED_PRECONDITION,
        "ENCRYPTION_KEY_MISMATCH",
        b"",
    )


def test_keyring_files_are_private_and_rotate_keeps_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    first = create_keyring(path)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        create_keyring(path)
    assert load_keyring(path) == first
    rotated = rotate_keyring(path)
    assert rotated.primary_id != first.primary_id
    assert set(rotated.key_ids) == {first.primary_id, rotated.primary_id}
    assert load_keyring(path) == rotated
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_keyring(path)


async def test_rotate_then_rewrap_moves_every_data_key_to_the_primary(
    tmp_path: Path, url: tuple[str, str | None]
) -> None:
    path = tmp_path / "rotating.json"
    old_keys = create_keyring(path)
    a, b = payload(3 * MiB + 1, seed=9), payload(100_000, seed=10)
    store = await open_url(url, old_keys)
    da = await push(store, "a", a)
    await store.close()

    new_keys = rotate_keyring(path)
    store = await open_url(url, new_keys)
    db = await push(store, "b", b)
    found = await census(store)
    assert found.by_key == {old_keys.primary_id: 1, new_keys.primary_id: 1}
    before = await store.read_stored(da, HEADER_SIZE, 2 * RECORD)

    report = await rewrap(store)
    assert (report.rewrapped, report.already_primary, report.unusable) == (1, 1, {})
    assert (await census(store)).by_key == {new_keys.primary_id: 2}
    assert await store.read_stored(da, HEADER_SIZE, 2 * RECORD) == before  # content untouched
    assert (await rewrap(store)).rewrapped == 0
    await store.close()

    only_new = FileKeyring(
        {new_keys.primary_id: new_keys.keys[new_keys.primary_id]}, new_keys.primary_id
    )
    store = await open_url(url, only_new)
    for digest, data in ((da, a), (db, b)):
        got = bytearray()
        await read(store, digest, got)
        assert bytes(got) == data
    await store.close()


@pytest.mark.parametrize("url", ["s3"], indirect=True)
async def test_s3_objects_carry_the_sse_headers(
    url: tuple[str, str | None], keys: FileKeyring
) -> None:
    """`--s3-sse aws:kms`: staged segments, single-part and composed blobs alike."""
    import boto3

    kms_key = boto3.client("kms", endpoint_url=url[1]).create_key()["KeyMetadata"]["KeyId"]
    store = await open_url(url, keys, sse=ServerSideEncryption("aws:kms", kms_key))
    inner = store.inner
    assert isinstance(inner, S3BlobStore)
    small = await push(store, "small", payload(10_000, seed=11))
    big = payload(7 * MiB, seed=12)
    upload = await store.begin_upload("composed")
    await upload.write(big[: 6 * MiB])
    await upload.flush()
    await upload.write(big[6 * MiB :])
    await upload.flush()
    staged = inner.layout.segment("composed", 0)
    s3 = await inner.s3()
    keys_checked = [staged, inner.layout.marker("composed")]
    for key in keys_checked:
        head = await s3.head_object(Bucket=inner.bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert kms_key in head["SSEKMSKeyId"], key
    composed = (await upload.commit(sha(big), len(big))).digest
    for digest in (small, composed):
        head = await s3.head_object(Bucket=inner.bucket, Key=inner.layout.blob(digest[7:]))
        assert head["ServerSideEncryption"] == "aws:kms", digest
        assert kms_key in head["SSEKMSKeyId"], digest
    got = bytearray()
    await read(store, composed, got)
    assert bytes(got) == big
    await store.close()
