"""One contract, every blob store: each test runs on a local directory and on S3.

S3 is a real `moto` server in its own process on a free loopback port.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import resource
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from modelregistry_server.blobs import BlobStore, Upload, open_blob_store
from modelregistry_server.blobs.encryption.encrypted_store import EncryptedBlobStore
from modelregistry_server.blobs.encryption.keyring import create_keyring
from modelregistry_server.blobs.local_blobs import LocalBlobStore
from modelregistry_server.blobs.s3_blobs import S3BlobStore
from modelregistry_server.blobs.s3_client import crc32c_b64
from modelregistry_server.blobs.s3_layout import (
    DEFAULT_SEGMENT_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    PLANNED_SEGMENTS,
    segment_size_for,
)
from modelregistry_server.domain.errors import DomainError, ErrorKind
from modelregistry_server.service.artifacts import MAX_BLOB_BYTES
from support.moto import s3_env

MiB = 1024 * 1024


@dataclass
class Backend:
    """A store, and a way to open the same storage again as a restarted process would."""

    store: BlobStore
    reopen: Callable[[], Awaitable[BlobStore]]
    published: Callable[[], Awaitable[list[str]]]
    encrypted: bool = False


def backing(store: BlobStore) -> BlobStore:
    """The local or S3 store itself, below encryption at rest if any."""
    return store.inner if isinstance(store, EncryptedBlobStore) else store


@pytest.fixture(params=["local", "s3", "local+encrypted", "s3+encrypted"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Backend]:
    opened: list[BlobStore] = []
    kind, _, encrypted = request.param.partition("+")
    if kind == "local":
        url, endpoint = f"file://{tmp_path / 'blobs'}", None
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        s3_env(monkeypatch, tmp_path)
        url = f"s3://blobs-{uuid.uuid4().hex[:12]}/registry"
    keys = create_keyring(tmp_path / "keyring.json") if encrypted else None

    async def reopen() -> BlobStore:
        store = await open_blob_store(url, endpoint, keys=keys)
        opened.append(store)
        return store

    store = backing(await reopen())
    if isinstance(store, S3BlobStore):
        await (await store.s3()).create_bucket(Bucket=store.bucket)

    async def published() -> list[str]:
        """Keys or paths of published blobs, straight from storage."""
        if isinstance(store, LocalBlobStore):
            return sorted(str(p) for p in (store.root / "blobs").rglob("*") if p.is_file())
        assert isinstance(store, S3BlobStore)
        s3 = await store.s3()
        page = await s3.list_objects_v2(Bucket=store.bucket, Prefix=store.layout.blobs)
        return sorted(obj["Key"] for obj in page.get("Contents", []))

    try:
        yield Backend(opened[0], reopen, published, bool(encrypted))
    finally:
        for each in opened:
            await each.close()


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def write_all(upload: Upload, data: bytes, chunk: int = 100_003) -> None:
    for i in range(0, len(data), chunk):
        await upload.write(data[i : i + chunk])


async def read_all(store: BlobStore, digest: str, **kwargs: int | None) -> bytes:
    out = bytearray()
    async with aclosing(store.open_reader(digest, **kwargs)) as reader:  # type: ignore[arg-type]
        async for chunk in reader:
            out += chunk
    return bytes(out)


def expect(exc: pytest.ExceptionInfo[DomainError], kind: ErrorKind, reason: str) -> None:
    assert (exc.value.kind, exc.value.reason) == (kind, reason), repr(exc.value)


async def test_round_trip_byte_for_byte(backend: Backend) -> None:
    store = backend.store
    data = payload(3 * MiB + 7)
    upload = await store.begin_upload("u-1")
    await write_all(upload, data)
    assert upload.written == len(data)
    info = await upload.commit(sha(data), len(data))
    assert (info.digest, info.size) == (sha(data), len(data))
    assert await store.stat(info.digest) == info
    assert await read_all(store, info.digest) == data
    assert await store.list_uploads() == []


async def test_flushes_at_odd_places_still_compose_one_blob(backend: Backend) -> None:
    """Small durable tails between large runs (the S3 part-size rules' hard case)."""
    store = backend.store
    sizes = [6 * MiB, 1 * MiB, 7 * MiB + 3, 2 * MiB]
    data = payload(sum(sizes), seed=2)
    upload = await store.begin_upload("odd")
    pos = 0
    for size in sizes:
        await write_all(upload, data[pos : pos + size], chunk=1 * MiB)
        pos += size
        assert await upload.flush() == pos
        assert upload.offset == pos
    info = await upload.commit(sha(data), len(data))
    assert await read_all(store, info.digest) == data


async def test_resume_after_restart_continues_from_durable_offset(backend: Backend) -> None:
    data = payload(5 * MiB + 11, seed=3)
    upload = await backend.store.begin_upload("resumable")
    await write_all(upload, data[: 2 * MiB + 5])
    flushed = await upload.flush()
    await write_all(upload, data[flushed : flushed + 300_000])  # never flushed
    await upload.close()
    del upload

    restarted = await backend.reopen()
    resumed = await restarted.resume_upload("resumable")
    assert flushed <= resumed.offset <= flushed + 300_000
    assert resumed.written == resumed.offset
    await write_all(resumed, data[resumed.offset :])
    info = await resumed.commit(sha(data), len(data))
    assert await read_all(restarted, info.digest) == data


async def flip_staged_byte(store: BlobStore, upload_id: str, offset: int) -> None:
    """Change one staged byte behind the store's back, as a torn write or a bad disk would."""
    store = backing(store)
    if isinstance(store, LocalBlobStore):
        path = store.root / "uploads" / upload_id
        staged = bytearray(path.read_bytes())
        staged[offset] ^= 1
        path.write_bytes(staged)
        return
    assert isinstance(store, S3BlobStore)
    s3 = await store.s3()
    key = store.layout.segment(upload_id, 0)  # one flush: one segment
    got = await s3.get_object(Bucket=store.bucket, Key=key)
    async with got["Body"] as body:
        data = bytearray(await body.read())
    data[offset] ^= 1
    await s3.put_object(Bucket=store.bucket, Key=key, Body=bytes(data))


async def test_resume_rehashes_staged_bytes_so_a_changed_one_fails_the_commit(
    backend: Backend,
) -> None:
    data = payload(MiB + 3, seed=12)
    upload = await backend.store.begin_upload("torn")
    await write_all(upload, data[:MiB])
    assert await upload.flush() == MiB
    await upload.close()
    await flip_staged_byte(backend.store, "torn", 1000)

    restarted = await backend.reopen()
    if backend.encrypted:  # authenticated staging: refused (and dropped) at once
        with pytest.raises(DomainError) as damaged:
            await restarted.resume_upload("torn")
        expect(damaged, ErrorKind.DATA_LOSS, "BLOB_DAMAGED")
        assert await restarted.list_uploads() == []
        return
    resumed = await restarted.resume_upload("torn")
    assert resumed.offset == MiB
    await write_all(resumed, data[MiB:])
    with pytest.raises(DomainError) as exc:
        await resumed.commit(sha(data), len(data))
    expect(exc, ErrorKind.INVALID_ARGUMENT, "DIGEST_MISMATCH")
    assert await backend.published() == []
    assert await restarted.list_uploads() == []


@pytest.mark.parametrize("wrong", ["digest", "size"])
async def test_wrong_digest_or_size_publishes_nothing(backend: Backend, wrong: str) -> None:
    store = backend.store
    data = payload(1 * MiB, seed=4)
    upload = await store.begin_upload("bad")
    await write_all(upload, data)
    with pytest.raises(DomainError) as exc:
        if wrong == "digest":
            await upload.commit(sha(b"something else"), len(data))
        else:
            await upload.commit(sha(data), len(data) + 1)
    expect(exc, ErrorKind.INVALID_ARGUMENT, f"{wrong.upper()}_MISMATCH")
    assert await store.stat(sha(data)) is None
    assert await backend.published() == []
    assert await store.list_uploads() == []
    with pytest.raises(DomainError) as gone:
        await store.resume_upload("bad")
    expect(gone, ErrorKind.NOT_FOUND, "UPLOAD_NOT_FOUND")


async def test_identical_content_twice_is_one_blob(backend: Backend) -> None:
    store = backend.store
    data = payload(2 * MiB, seed=5)
    infos = []
    for upload_id in ("first", "second"):
        upload = await store.begin_upload(upload_id)
        await write_all(upload, data)
        infos.append(await upload.commit(sha(data)))
    assert infos[0] == infos[1]
    assert len(await backend.published()) == 1
    assert await store.list_uploads() == []


async def test_concurrent_uploads_of_same_content_are_one_blob(backend: Backend) -> None:
    store = backend.store
    data = payload(3 * MiB, seed=6)

    async def push(upload_id: str) -> str:
        upload = await store.begin_upload(upload_id)
        await write_all(upload, data, chunk=256 * 1024)
        return (await upload.commit(sha(data), len(data))).digest

    digests = await asyncio.gather(*(push(f"c{i}") for i in range(4)))
    assert set(digests) == {sha(data)}
    assert len(await backend.published()) == 1
    assert await store.list_uploads() == []
    assert await read_all(store, sha(data)) == data


async def test_reader_ranges(backend: Backend) -> None:
    store = backend.store
    data = payload(2 * MiB + 100, seed=7)
    upload = await store.begin_upload("ranges")
    await write_all(upload, data)
    digest = (await upload.commit()).digest

    assert await read_all(store, digest, offset=1000, length=5000) == data[1000:6000]
    assert await read_all(store, digest, offset=MiB) == data[MiB:]
    assert await read_all(store, digest, offset=len(data) - 10, length=100) == data[-10:]
    assert await read_all(store, digest, offset=len(data)) == b""
    chunks = [c async for c in store.open_reader(digest, chunk_size=300_000)]
    assert max(len(c) for c in chunks) <= 300_000
    assert b"".join(chunks) == data

    with pytest.raises(DomainError) as exc:
        await read_all(store, digest, offset=len(data) + 1)
    expect(exc, ErrorKind.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE")
    missing = sha(b"missing")
    with pytest.raises(DomainError) as exc:
        await read_all(store, missing)
    expect(exc, ErrorKind.NOT_FOUND, "BLOB_NOT_FOUND")
    assert await store.stat(missing) is None


async def test_empty_blob_and_delete(backend: Backend) -> None:
    store = backend.store
    info = await (await store.begin_upload("empty")).commit(sha(b""), 0)
    assert info.size == 0
    assert await read_all(store, info.digest) == b""
    assert await store.delete(info.digest) is True
    assert await store.stat(info.digest) is None
    assert await store.delete(info.digest) is False


async def test_cancel_removes_staging(backend: Backend) -> None:
    store = backend.store
    upload = await store.begin_upload("cancelled")
    await write_all(upload, payload(MiB, seed=8))
    await upload.flush()
    await upload.cancel()
    assert await store.list_uploads() == []
    assert await backend.published() == []
    with pytest.raises(DomainError) as exc:
        await upload.write(b"more")
    expect(exc, ErrorKind.FAILED_PRECONDITION, "UPLOAD_FINISHED")


async def test_reclaim_removes_abandoned_staging_only(backend: Backend) -> None:
    store = backend.store
    abandoned = await store.begin_upload("abandoned")
    await write_all(abandoned, payload(MiB, seed=9))
    await abandoned.flush()
    await abandoned.close()
    active = await store.begin_upload("active")
    await active.flush()

    assert await store.reclaim_uploads(older_than=3600) == []
    assert [u.upload_id for u in await store.list_uploads()] == ["abandoned", "active"]
    reclaimed = await store.reclaim_uploads(older_than=0)
    assert [(u.upload_id, u.offset) for u in reclaimed] == [("abandoned", MiB)]
    assert [u.upload_id for u in await store.list_uploads()] == ["active"]
    with pytest.raises(DomainError) as exc:
        await store.resume_upload("abandoned")
    expect(exc, ErrorKind.NOT_FOUND, "UPLOAD_NOT_FOUND")
    await active.cancel()


async def test_upload_ids_are_checked(backend: Backend) -> None:
    store = backend.store
    upload = await store.begin_upload("taken")
    with pytest.raises(DomainError) as exc:
        await store.begin_upload("taken")
    assert exc.value.reason in ("UPLOAD_EXISTS", "UPLOAD_BUSY")
    await upload.close()
    with pytest.raises(DomainError) as exc:
        await backend.store.begin_upload("taken")
    expect(exc, ErrorKind.ALREADY_EXISTS, "UPLOAD_EXISTS")
    with pytest.raises(DomainError) as exc:
        await store.begin_upload("../escape")
    expect(exc, ErrorKind.INVALID_ARGUMENT, "INVALID_UPLOAD_ID")
    with pytest.raises(DomainError) as exc:
        await store.stat("sha256:nothex")
    expect(exc, ErrorKind.INVALID_ARGUMENT, "INVALID_DIGEST")


@pytest.mark.slow
async def test_large_round_trip_keeps_memory_flat(backend: Backend) -> None:
    """A large blob through the store; the process's peak RSS must not follow its size.

    Uploads hold two 16 MiB buffers at most and readers two chunks, so the peak
    grows by a fixed amount. (S3 gets less data: the moto server is slow.)
    """
    store = backend.store
    size = (200 if isinstance(backing(store), LocalBlobStore) else 128) * MiB
    block = payload(MiB, seed=10)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    expected = hashlib.sha256()
    upload = await store.begin_upload("large")
    started = time.monotonic()
    for i in range(size // MiB):
        chunk = i.to_bytes(8, "big") + block[8:]
        expected.update(chunk)
        await upload.write(chunk)
        if i % 64 == 63:
            await upload.flush()
    info = await upload.commit("sha256:" + expected.hexdigest(), size)
    uploaded = time.monotonic()
    got, n = hashlib.sha256(), 0
    async with aclosing(store.open_reader(info.digest)) as reader:
        async for chunk in reader:
            got.update(chunk)
            n += len(chunk)
    assert (n, "sha256:" + got.hexdigest()) == (size, info.digest)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    assert grown < 80 * MiB, f"peak RSS grew by {grown // MiB} MiB for {size // MiB} MiB"
    print(
        f"\n{type(store).__name__}: up {size / MiB / (uploaded - started):.0f} MiB/s,"
        f" down {size / MiB / (time.monotonic() - uploaded):.0f} MiB/s,"
        f" peak RSS +{grown // MiB} MiB"
    )


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_local_upload_is_locked_against_other_processes(backend: Backend) -> None:
    """Two servers sharing a directory never write, or reclaim, the same upload."""
    upload = await backend.store.begin_upload("held")
    await upload.write(b"x" * 1000)
    await upload.flush()
    other = await backend.reopen()
    with pytest.raises(DomainError) as exc:
        await other.resume_upload("held")
    expect(exc, ErrorKind.ABORTED, "UPLOAD_BUSY")
    assert await other.reclaim_uploads(older_than=0) == []
    await upload.close()
    resumed = await other.resume_upload("held")
    assert resumed.offset == 1000
    await resumed.cancel()


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
async def test_s3_segments_carry_crc32c(backend: Backend) -> None:
    """S3 checks each staged segment against the CRC32C we computed before sending it."""
    store = backend.store
    assert isinstance(store, S3BlobStore)  # encryption: see test_encrypted_blobs
    data = payload(100_000, seed=11)
    upload = await store.begin_upload("crc")
    await upload.write(data)
    await upload.flush()
    s3 = await store.s3()
    head = await s3.head_object(
        Bucket=store.bucket, Key=store.layout.segment("crc", 0), ChecksumMode="ENABLED"
    )
    assert head["ChecksumCRC32C"] == crc32c_b64(data)
    await upload.cancel()


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
async def test_s3_reclaim_leaves_a_compose_in_flight_alone(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reclaiming aborts multipart uploads a dead commit left, never one being composed here
    (moto, like some S3-compatible servers, reports every one as started in 2010)."""
    store = backend.store
    assert isinstance(store, S3BlobStore)  # encryption: see test_encrypted_blobs
    data = payload(7 * MiB, seed=13)
    upload = await store.begin_upload("composing")
    await write_all(upload, data[: 6 * MiB], chunk=MiB)
    await upload.flush()
    await write_all(upload, data[6 * MiB :], chunk=MiB)  # a second segment: a compose
    s3 = await store.s3()
    copying, go_on = asyncio.Event(), asyncio.Event()
    copy_part = s3.upload_part_copy

    async def gated_copy(**kwargs: object) -> object:
        copying.set()
        await go_on.wait()
        return await copy_part(**kwargs)

    monkeypatch.setattr(s3, "upload_part_copy", gated_copy)
    commit = asyncio.create_task(upload.commit(sha(data), len(data)))
    await asyncio.wait_for(copying.wait(), 30)
    await store.reclaim_uploads(older_than=0)
    go_on.set()
    info = await commit
    assert await read_all(store, info.digest) == data


async def s3_segment_sizes(store: S3BlobStore, upload_id: str) -> list[int]:
    s3 = await store.s3()
    page = await s3.list_objects_v2(Bucket=store.bucket, Prefix=store.layout.upload(upload_id))
    keyed = [(obj["Key"], int(obj["Size"])) for obj in page.get("Contents", [])]
    return [size for key, size in sorted(keyed) if key != store.layout.marker(upload_id)]


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
async def test_s3_segments_fit_the_declared_size_and_keep_it_across_a_restart(
    backend: Backend,
) -> None:
    """A blob too large for 10,000 default segments gets larger ones, and a resume
    (after a restart) keeps staging with the size its upload began with."""
    store = backend.store
    assert isinstance(store, S3BlobStore)
    chunk = 100_003
    huge = 100 * 10**9
    wide = segment_size_for(huge)
    assert wide > DEFAULT_SEGMENT_SIZE and -(-huge // wide) <= PLANNED_SEGMENTS < MAX_PARTS
    assert -(-MAX_BLOB_BYTES // segment_size_for(MAX_BLOB_BYTES)) <= PLANNED_SEGMENTS

    default = await store.begin_upload("unsized")
    await write_all(default, payload(DEFAULT_SEGMENT_SIZE + MiB), chunk=chunk)
    await default.flush()
    sizes = await s3_segment_sizes(store, "unsized")
    assert DEFAULT_SEGMENT_SIZE <= sizes[0] < DEFAULT_SEGMENT_SIZE + chunk
    await default.cancel()

    upload = await store.begin_upload("huge", size_hint=huge)
    await write_all(upload, payload(wide + MiB), chunk=chunk)
    await upload.close()
    restarted = backing(await backend.reopen())
    resumed = await restarted.resume_upload("huge")
    await write_all(resumed, payload(wide + MiB, seed=2), chunk=chunk)
    await resumed.flush()
    sizes = await s3_segment_sizes(store, "huge")
    assert len(sizes) >= 2
    assert all(wide <= size < wide + chunk for size in sizes[:2]), sizes
    await resumed.cancel()


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
async def test_s3_short_segments_grow_so_a_commit_reads_nothing_back(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush seals what is buffered, often less than S3's smallest part; the
    next append rewrites that segment longer, so the commit composes by
    server-side copies alone instead of downloading short segments again."""
    store = backend.store
    assert isinstance(store, S3BlobStore)
    data = payload(3 * DEFAULT_SEGMENT_SIZE, seed=17)
    upload = await store.begin_upload("short")
    pos = 0
    for step in (MiB, 3 * MiB, DEFAULT_SEGMENT_SIZE + 2 * MiB):
        await write_all(upload, data[pos : pos + step])
        pos += step
        await upload.flush()
    await write_all(upload, data[pos:])
    await upload.flush()
    sizes = await s3_segment_sizes(store, "short")
    assert sum(sizes) == len(data)
    assert all(size >= MIN_PART_SIZE for size in sizes[:-1]), sizes

    s3 = await store.s3()
    read_back: list[str] = []
    get_object = s3.get_object

    async def counted(**kwargs: Any) -> Any:
        read_back.append(kwargs["Key"])
        return await get_object(**kwargs)

    monkeypatch.setattr(s3, "get_object", counted)
    info = await upload.commit(sha(data), len(data))
    assert read_back == []
    monkeypatch.undo()
    assert await read_all(store, info.digest) == data


async def test_unreachable_s3_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s3_env(monkeypatch, tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens
    store = S3BlobStore("bucket", "p", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    try:
        with pytest.raises(DomainError) as exc:
            await store.stat(sha(b"x"))
        expect(exc, ErrorKind.UNAVAILABLE, "BLOB_STORE_UNAVAILABLE")
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url", ["ftp://x/y", "file://relative/dir", "s3:///no-bucket", "file:///d?x=1"]
)
async def test_bad_store_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        await open_blob_store(url)


async def test_list_blobs_then_delete(backend: Backend) -> None:
    """The collector's view: every published blob with its size and age; a
    delete unpublishes exactly one."""
    store = backend.store
    first, second = payload(3000, seed=21), payload(MiB + 1, seed=22)
    for upload_id, data in (("list-1", first), ("list-2", second)):
        upload = await store.begin_upload(upload_id)
        await write_all(upload, data)
        await upload.commit(sha(data), len(data))
    staged = await store.begin_upload("list-staged")  # not a blob yet
    await write_all(staged, payload(100, seed=23))
    await staged.flush()
    listed = {b.digest: b async for b in store.list_blobs()}
    sizes = {d: b.size for d, b in listed.items()}
    if backend.encrypted:
        # Bytes as stored (what a sweep frees): the content plus its envelope.
        assert sizes.keys() == {sha(first), sha(second)}
        assert 3000 < sizes[sha(first)] < 3000 + 4096
        assert MiB + 1 < sizes[sha(second)] < MiB + 1 + 4096
    else:
        assert sizes == {sha(first): 3000, sha(second): MiB + 1}
    assert all(abs(b.modified_at - time.time()) < 300 for b in listed.values())
    assert await store.delete(sha(first)) is True
    assert [b.digest async for b in store.list_blobs()] == [sha(second)]
    assert await read_all(store, sha(second)) == second
    await staged.cancel()
