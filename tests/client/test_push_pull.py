"""Push and pull through the SDK against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from modelregistry import (
    AlreadyExistsError,
    DataLossError,
    FailedPreconditionError,
    NotFoundError,
    RegistryClient,
    SyncRegistryClient,
    pull,
    push_files,
)
from modelregistry.artifacts import PARTIAL_DIR
from modelregistry.manifest import digest_of, parse_manifest, target_path
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from support.held_threads import HeldThread, cancel_twice_then_release, fd_state
from support.in_process import start_server
from support.ports import free_port

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upload state goes under the test's directory, never the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
async def client(server: Running) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(f"127.0.0.1:{server.port}") as registry:
        yield registry


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "config.json": b'{"layers": 3}',
        "weights/shard-0.bin": os.urandom(MIB + 123),
        "weights/shard-1.bin": os.urandom(300 * KIB),
        "weights/deep/nested/empty.bin": b"",
        "tokenizer.txt": b"hello\n" * 1000,
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def new_version(client: RegistryClient, model: str = "fraud") -> str:
    with contextlib.suppress(AlreadyExistsError):  # an earlier call of the same test made it
        await client.create_model(model)
    version = await client.create_model_version(f"models/{model}")
    assert version.state == pb.ModelVersion.PENDING_UPLOAD
    return version.name


async def test_push_then_pull_by_version_and_alias(client: RegistryClient, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "model")
    name = await new_version(client)
    seen: list[tuple[int, int, str]] = []
    result = await push_files(
        client,
        name,
        tmp_path / "model",
        progress=lambda done, total, f: seen.append((done, total, f)),
        state_dir=tmp_path / "state",
    )
    assert result.version.state == pb.ModelVersion.READY
    assert result.version.artifact.digest == result.digest
    assert result.files == len(files)
    assert result.bytes_sent == result.total_bytes == sum(len(d) for d in files.values())
    assert seen[-1][0] == seen[-1][1] == result.total_bytes
    assert {f for _, _, f in seen} <= set(files)
    assert list(os.scandir(tmp_path / "state")) == [], "finished uploads leave no state"

    await client.set_alias("models/fraud/aliases/production", name)
    for target, dest in ((name, "by-version"), ("models/fraud/aliases/production", "by-alias")):
        pulled = await pull(client, target, tmp_path / dest)
        assert read_tree(tmp_path / dest) == files
        assert pulled.digest == result.digest and pulled.version == name
        assert pulled.bytes_received == pulled.total_bytes
        assert not (tmp_path / dest / PARTIAL_DIR).exists()

    # Pulling again finds every file in place: nothing is fetched.
    again = await pull(client, name, tmp_path / "by-version")
    assert again.bytes_received == 0 and again.bytes_cached == again.total_bytes

    # A single blob by digest lands under its hex name.
    digest = digest_of(files["weights/shard-1.bin"])
    blob = await pull(client, digest, tmp_path / "blob")
    assert (tmp_path / "blob" / digest.removeprefix("sha256:")).read_bytes() == files[
        "weights/shard-1.bin"
    ]
    assert blob.version == ""


async def test_same_content_twice_sends_no_bytes(client: RegistryClient, tmp_path: Path) -> None:
    make_tree(tmp_path / "model")
    first = await push_files(client, await new_version(client), tmp_path / "model")
    second_name = await new_version(client)
    second = await push_files(client, second_name, tmp_path / "model")
    assert second.bytes_sent == 0
    assert second.bytes_skipped == second.total_bytes
    assert second.version.name == second_name
    assert second.version.artifact.digest == first.digest
    # Re-running a push that already completed returns the version as it is.
    rerun = await push_files(client, second_name, tmp_path / "model")
    assert rerun.bytes_sent == 0 and rerun.version.state == pb.ModelVersion.READY


async def test_single_file_is_a_manifest_of_one(client: RegistryClient, tmp_path: Path) -> None:
    data = os.urandom(200 * KIB)
    (tmp_path / "model.onnx").write_bytes(data)
    name = await new_version(client)
    version = await client.push(name, tmp_path / "model.onnx")
    assert version.state == pb.ModelVersion.READY
    await client.pull(name, tmp_path / "out")
    assert read_tree(tmp_path / "out") == {"model.onnx": data}


async def test_errors_are_typed(client: RegistryClient, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    await client.create_model("fraud")
    with pytest.raises(NotFoundError) as missing:
        await client.push("models/fraud/versions/9", tmp_path / "f")
    assert missing.value.reason == "VERSION_NOT_FOUND"
    pending = await new_version(client)
    with pytest.raises(FailedPreconditionError) as not_ready:
        await client.pull(pending, tmp_path / "out")
    assert not_ready.value.reason == "VERSION_NOT_READY"
    await client.push(pending, tmp_path / "f")
    (tmp_path / "f").write_bytes(b"other content")
    with pytest.raises(FailedPreconditionError) as taken:
        await client.push(pending, tmp_path / "f")
    assert taken.value.reason == "VERSION_NOT_PENDING"


async def test_pull_resumes_a_partial_file(client: RegistryClient, tmp_path: Path) -> None:
    data = os.urandom(2 * MIB + 5)
    (tmp_path / "weights.bin").write_bytes(data)
    name = await new_version(client)
    await client.push(name, tmp_path / "weights.bin")
    partial = tmp_path / "out" / PARTIAL_DIR / hashlib.sha256(data).hexdigest()
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[: 700 * KIB])
    result = await client.pull(name, tmp_path / "out")
    assert result.resumed_bytes == 700 * KIB
    assert result.bytes_received == len(data) - 700 * KIB
    assert read_tree(tmp_path / "out") == {"weights.bin": data}


async def test_corrupt_partial_file_is_fetched_again(
    client: RegistryClient, tmp_path: Path
) -> None:
    data = os.urandom(MIB)
    (tmp_path / "weights.bin").write_bytes(data)
    name = await new_version(client)
    await client.push(name, tmp_path / "weights.bin")
    partial = tmp_path / "out" / PARTIAL_DIR / hashlib.sha256(data).hexdigest()
    partial.parent.mkdir(parents=True)
    partial.write_bytes(os.urandom(300 * KIB))  # right length class, wrong bytes
    result = await client.pull(name, tmp_path / "out")
    assert result.bytes_received == len(data)
    assert read_tree(tmp_path / "out") == {"weights.bin": data}


async def test_sync_client_push_and_pull(server: Running, tmp_path: Path) -> None:
    files = make_tree(tmp_path / "model")

    def script() -> None:
        with SyncRegistryClient(f"127.0.0.1:{server.port}") as registry:
            registry.create_model("sync")
            version = registry.create_model_version("models/sync")
            ready = registry.push(version.name, tmp_path / "model", state_dir=tmp_path / "s")
            assert ready.state == pb.ModelVersion.READY
            registry.pull(version.name, tmp_path / "out")

    # A blocking client in a script's thread, while this loop serves.
    await asyncio.to_thread(script)
    assert read_tree(tmp_path / "out") == files


@pytest.mark.parametrize(
    "path", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\b", "a/\x00", ""]
)
def test_hostile_manifest_paths_are_refused(path: str, tmp_path: Path) -> None:
    entry = {"path": path, "size": 1, "digest": "sha256:" + "0" * 64}
    body = json.dumps({"schemaVersion": 1, "files": [entry]}).encode()
    with pytest.raises(DataLossError) as err:
        parse_manifest(body)
    assert err.value.reason == "INVALID_MANIFEST"
    with pytest.raises(DataLossError):
        target_path(tmp_path, path)


def test_a_symlink_in_the_destination_cannot_lead_outside(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "dest" / "link").symlink_to(tmp_path / "elsewhere")
    assert target_path(tmp_path / "dest", "a/b.bin") == tmp_path / "dest" / "a" / "b.bin"
    with pytest.raises(DataLossError):
        target_path(tmp_path / "dest", "link/b.bin")


PUSH_SLOWLY = """
import asyncio, sys, time
from modelregistry import RegistryClient

async def main() -> None:
    target, version, path, state_dir = sys.argv[1:5]
    async with RegistryClient(target) as client:
        await client.push(
            version, path, chunk_size=256 * 1024, state_dir=state_dir,
            progress=lambda done, total, name: time.sleep(0.02),
        )

asyncio.run(main())
"""


async def test_push_resumes_after_the_client_is_killed(
    client: RegistryClient, server: Running, tmp_path: Path
) -> None:
    data = os.urandom(32 * MIB)
    (tmp_path / "big.bin").write_bytes(data)
    state_dir = tmp_path / "state"
    name = await new_version(client)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PUSH_SLOWLY,
        f"127.0.0.1:{server.port}",
        name,
        str(tmp_path / "big.bin"),
        str(state_dir),
    )
    artifacts = artifact_service_pb2_grpc.ArtifactServiceStub(client.channel())
    committed = 0
    try:
        async with asyncio.timeout(60):
            while committed == 0:
                assert proc.returncode is None, "the push ended before it could be killed"
                await asyncio.sleep(0.05)
                states = list(state_dir.glob("*.json")) if state_dir.exists() else []
                if not states:
                    continue
                upload_id = states[0].read_text().split('"upload_id": "')[1].split('"')[0]
                status = await artifacts.GetUpload(apb.GetUploadRequest(upload_id=upload_id))
                committed = status.committed_offset
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert 0 < committed < len(data)

    result = await push_files(client, name, tmp_path / "big.bin", state_dir=state_dir)
    assert result.resumed_bytes >= committed
    assert result.bytes_sent == len(data) - result.resumed_bytes
    assert result.version.state == pb.ModelVersion.READY
    pulled = await client.pull(name, tmp_path / "out")
    assert pulled.digest == result.digest
    assert (tmp_path / "out" / "big.bin").read_bytes() == data


async def test_a_failing_partial_is_never_published(tmp_path: Path) -> None:
    """A server that keeps sending wrong bytes (valid CRCs) gets one retry, then DataLossError."""
    from modelregistry import artifacts
    from modelregistry.downloads import BlobDownloader
    from modelregistry.manifest import ManifestFile

    good = b"the real weights"
    digest = digest_of(good)
    offsets: list[int] = []

    class LyingStub:
        async def _serve(self, request: apb.DownloadRequest) -> AsyncIterator[apb.DownloadResponse]:
            offsets.append(request.offset)
            yield apb.DownloadResponse(
                header=apb.DownloadHeader(blob=apb.Blob(digest=digest, size_bytes=len(good)))
            )
            bad = b"x" * (len(good) - request.offset)
            import google_crc32c

            yield apb.DownloadResponse(
                chunk=apb.DownloadChunk(
                    offset=request.offset, data=bad, crc32c=google_crc32c.value(bad)
                )
            )

        def Download(self, request: apb.DownloadRequest) -> AsyncIterator[apb.DownloadResponse]:
            return self._serve(request)

    partial = tmp_path / PARTIAL_DIR / digest.removeprefix("sha256:")
    partial.parent.mkdir()
    partial.write_bytes(b"the")
    entry = ManifestFile("weights.bin", len(good), digest)
    downloader = BlobDownloader(LyingStub())  # type: ignore[arg-type]
    with pytest.raises(DataLossError) as err:
        await artifacts._fetch_file(
            downloader, tmp_path, tmp_path / "weights.bin", entry, lambda _: None
        )
    assert err.value.reason == "DIGEST_MISMATCH"
    assert offsets == [3, 0], "resumed from the partial file, then once from the start"
    assert not (tmp_path / "weights.bin").exists()
    assert not partial.exists()


async def test_bad_chunk_checksum_is_data_loss(tmp_path: Path) -> None:
    from modelregistry.downloads import BlobDownloader

    data = b"some bytes"
    digest = digest_of(data)

    async def serve(_: apb.DownloadRequest) -> AsyncIterator[apb.DownloadResponse]:
        yield apb.DownloadResponse(
            header=apb.DownloadHeader(blob=apb.Blob(digest=digest, size_bytes=len(data)))
        )
        yield apb.DownloadResponse(chunk=apb.DownloadChunk(offset=0, data=data, crc32c=12345))

    class Stub:
        Download = staticmethod(serve)

    with pytest.raises(DataLossError) as err:
        await BlobDownloader(Stub()).to_file(  # type: ignore[arg-type]
            digest, len(data), tmp_path / "partial"
        )
    assert err.value.reason == "CHECKSUM_MISMATCH"
    assert "offset 0" in err.value.message


async def test_a_bad_chunk_leaves_only_verified_bytes_and_the_next_run_resumes(
    tmp_path: Path,
) -> None:
    """A chunk failing its CRC32C past the first written batch: the partial
    file keeps the batches written before it, none of the chunks received
    after them, and the next run resumes there to the right file."""
    import google_crc32c
    from modelregistry.downloads import BATCH_BYTES, BlobDownloader

    chunk = 1 << 20
    data = os.urandom(BATCH_BYTES + 4 * chunk)
    digest = digest_of(data)
    bad_at = BATCH_BYTES + 2 * chunk
    requests: list[int] = []

    def stub(corrupt: bool) -> Any:
        async def serve(request: apb.DownloadRequest) -> AsyncIterator[apb.DownloadResponse]:
            requests.append(request.offset)
            yield apb.DownloadResponse(
                header=apb.DownloadHeader(blob=apb.Blob(digest=digest, size_bytes=len(data)))
            )
            for offset in range(request.offset, len(data), chunk):
                piece = data[offset : offset + chunk]
                crc = google_crc32c.value(piece) ^ (corrupt and offset == bad_at)
                yield apb.DownloadResponse(
                    chunk=apb.DownloadChunk(offset=offset, data=piece, crc32c=crc)
                )

        class Stub:
            Download = staticmethod(serve)

        return Stub()

    partial = tmp_path / "partial"
    with pytest.raises(DataLossError) as err:
        await BlobDownloader(stub(corrupt=True)).to_file(digest, len(data), partial)
    assert err.value.reason == "CHECKSUM_MISMATCH"
    assert f"offset {bad_at}" in err.value.message
    assert partial.read_bytes() == data[:BATCH_BYTES]

    done = await BlobDownloader(stub(corrupt=False)).to_file(digest, len(data), partial)
    assert requests == [0, BATCH_BYTES]
    assert done.resumed_from == BATCH_BYTES
    assert partial.read_bytes() == data


async def test_a_cancelled_download_keeps_its_file_open_until_the_write_in_flight_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled (twice) while a batch is being written: the download waits
    for the writing thread before it closes the file, so the thread never
    writes to a closed descriptor, or to another file that reused it."""
    import google_crc32c
    from modelregistry import downloads

    chunk = 1 << 20
    data = os.urandom(3 * downloads.BATCH_BYTES)
    digest = digest_of(data)
    held = HeldThread()
    seen: list[str] = []
    write = downloads._FileSink._write

    def held_write(sink: Any, batch: Any) -> None:
        held.hold()
        seen.append(fd_state(sink.fd))
        write(sink, batch)

    monkeypatch.setattr(downloads._FileSink, "_write", held_write)

    async def serve(_: apb.DownloadRequest) -> AsyncIterator[apb.DownloadResponse]:
        yield apb.DownloadResponse(
            header=apb.DownloadHeader(blob=apb.Blob(digest=digest, size_bytes=len(data)))
        )
        for offset in range(0, len(data), chunk):
            piece = data[offset : offset + chunk]
            yield apb.DownloadResponse(
                chunk=apb.DownloadChunk(
                    offset=offset, data=piece, crc32c=google_crc32c.value(piece)
                )
            )

    class Stub:
        Download = staticmethod(serve)

    download = asyncio.create_task(
        downloads.BlobDownloader(Stub()).to_file(  # type: ignore[arg-type]
            digest, len(data), tmp_path / "partial"
        )
    )
    await held.reached()
    await asyncio.sleep(0.2)  # the next batch is in; the stream waits for this one
    await cancel_twice_then_release(download, held)
    assert seen == ["open"]


async def test_a_download_cancelled_while_it_trims_the_partial_file_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled (twice) while a worker thread finds and trims the partial
    file's verified prefix: the download waits for that call before it
    closes the file, so a truncate never lands on a descriptor that another
    file has taken."""
    from modelregistry import downloads

    held = HeldThread()
    seen: list[str] = []
    resume_point = downloads.resume_point

    def held_resume_point(fd: int, partial: Path, size: int) -> int:
        held.hold()
        seen.append(fd_state(fd))
        return resume_point(fd, partial, size)

    monkeypatch.setattr(downloads, "resume_point", held_resume_point)
    partial = tmp_path / "partial"
    partial.write_bytes(b"x" * 64)

    class Unused:
        Download = None  # cancelled before any stream opens

    download = asyncio.create_task(
        downloads.BlobDownloader(Unused()).to_file(  # type: ignore[arg-type]
            digest_of(b"y" * 32), 32, partial
        )
    )
    await held.reached()
    await cancel_twice_then_release(download, held)
    assert seen == ["open"]


async def test_push_rides_out_a_server_restart(sqlite_url: str, tmp_path: Path) -> None:
    """A stream broken mid-upload is reopened with the same upload id once the server is back."""
    port = free_port()
    config = ServerConfig(
        listen=f"127.0.0.1:{port}", data_dir=tmp_path / "data", database_url=sqlite_url
    )
    running = [await start_server(config)]
    data = os.urandom(8 * MIB)
    (tmp_path / "weights.bin").write_bytes(data)
    restarts: list[asyncio.Task[None]] = []

    async def restart() -> None:
        await running[0].stop(grace=0)
        running[0] = await start_server(config)

    def progress(done: int, total: int, name: str) -> None:
        if done >= 2 * MIB and not restarts:
            restarts.append(asyncio.get_running_loop().create_task(restart()))
        time.sleep(0.002)  # slow enough for the restart to land mid-upload

    try:
        async with RegistryClient(f"127.0.0.1:{port}") as client:
            name = await new_version(client)
            result = await push_files(
                client,
                name,
                tmp_path / "weights.bin",
                progress=progress,
                chunk_size=64 * KIB,
                state_dir=tmp_path / "state",
            )
            assert restarts and restarts[0].done()
            assert result.version.state == pb.ModelVersion.READY
            assert result.bytes_sent + result.resumed_bytes > len(data), "a stream was reopened"
            await client.pull(name, tmp_path / "out")
        assert (tmp_path / "out" / "weights.bin").read_bytes() == data
    finally:
        await running[0].stop(grace=0)


async def test_a_push_whose_manifest_was_published_unseen_succeeds(
    client: RegistryClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream broke after the server published the manifest: the retry
    finds the version READY, with this push's manifest, and that is success."""
    from modelregistry.errors import FailedPreconditionError
    from modelregistry.uploads import BlobUploader
    from modelregistry.v1.error_reasons import ErrorReason

    real_upload = BlobUploader.upload

    async def published_then_lost(self: BlobUploader, *args: Any, **kwargs: Any) -> Any:
        done = await real_upload(self, *args, **kwargs)
        if kwargs.get("version"):
            raise FailedPreconditionError(
                grpc.StatusCode.FAILED_PRECONDITION, ErrorReason.VERSION_NOT_PENDING, "lost", {}
            )
        return done

    monkeypatch.setattr(BlobUploader, "upload", published_then_lost)
    src = tmp_path / "src"
    make_tree(src)
    name = await new_version(client)
    version = await client.push(name, src)
    assert version.state == pb.ModelVersion.READY
