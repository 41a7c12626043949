"""Pushing a model directory (or file) to a version, and pulling one back.

    version = await push(client, "models/fraud/versions/3", "./model")
    result = await pull(client, "models/fraud/aliases/production", "./serving/fraud")

Both are resumable: run the same call again after a crash, a killed process
or a dropped connection and it continues from what the server (push) or the
local disk (pull) already holds. Both verify every chunk (CRC32C) and every
file (sha256). Failures raise `modelregistry.errors.RegistryError`
subclasses; data that fails verification on the client raises
`DataLossError` (reasons CHECKSUM_MISMATCH, DIGEST_MISMATCH, INVALID_MANIFEST).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from .allocator import transfer_buffers
from .core import Connection, Core, core_of
from .downloads import DEFAULT_DOWNLOAD_CHUNK, BlobDownload, BlobDownloader, data_loss
from .errors import DataLossError, FailedPreconditionError
from .manifest import (
    MEDIA_TYPE,
    Manifest,
    ManifestFile,
    build_manifest,
    digest_of,
    is_digest,
    local_files,
    parse_manifest,
    sha256_file,
    target_path,
)
from .ranged_downloads import MAX_STREAMS, auto_streams, ranged_to_file
from .upload_state import UploadStateStore
from .uploads import DEFAULT_CHUNK_BYTES, BlobUploader
from .v1 import artifact_service_pb2 as apb
from .v1 import registry_service_pb2 as rpc
from .v1 import resources_pb2 as pb
from .v1.error_reasons import ErrorMetadataKey, ErrorReason

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_DOWNLOAD_CHUNK",
    "PARTIAL_DIR",
    "Progress",
    "PullResult",
    "PushResult",
    "pull",
    "push",
    "push_files",
]

Progress = Callable[[int, int, str], None]
"""Called as `progress(bytes_done, bytes_total, current_file)` while data moves."""

PARTIAL_DIR = ".modelreg-partial"


@dataclass(frozen=True)
class PushResult:
    """A finished push: the READY version and what moving it took."""

    version: pb.ModelVersion
    digest: str  # the manifest's, i.e. the version's artifact digest
    files: int
    total_bytes: int  # distinct file content
    bytes_sent: int  # over the wire in this run
    bytes_skipped: int  # blobs the server already had (deduplicated)
    resumed_bytes: int  # committed by an earlier, interrupted run: not sent again
    # What was pushed, path by path (what a signature of the version covers).
    manifest: Manifest | None = None


@dataclass(frozen=True)
class PullResult:
    """A finished pull: where the files are and what fetching them took."""

    digest: str  # the artifact (manifest) digest, or the blob's for a digest target
    version: str  # the resolved version name; empty for a digest target
    paths: tuple[Path, ...]
    total_bytes: int
    bytes_received: int
    bytes_cached: int  # files already in place with the right digest
    resumed_bytes: int  # partial files from an earlier run, not fetched again


async def _get_version(core: Core, name: str) -> pb.ModelVersion:
    request = rpc.GetModelVersionRequest(name=name)
    return await core.call(core.stubs.registry.GetModelVersion, request, None, read=True)


async def _blob_size(core: Core, digest: str) -> int:
    request = apb.GetBlobRequest(digest=digest)
    blob = await core.call(core.stubs.artifacts.GetBlob, request, None, read=True)
    return int(blob.size_bytes)


class _Meter:
    """Turns per-blob offsets into the (done, total, file) the caller's
    callback wants, with several blobs moving at once."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress = total, progress
        self.base = 0  # bytes of the blobs done
        self._moving: dict[str, int] = {}  # offsets of the blobs in flight

    def blob(self, name: str) -> Callable[[int], None]:
        def report(offset: int) -> None:
            self._moving[name] = offset
            if self.progress is not None:
                self.progress(self.base + sum(self._moving.values()), self.total, name)

        return report

    def done(self, size: int, name: str) -> None:
        self._moving.pop(name, None)
        self.base += size
        if self.progress is not None:
            self.progress(self.base + sum(self._moving.values()), self.total, name)


async def push_files(
    conn: Connection,
    version_name: str,
    path: str | os.PathLike[str],
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    state_dir: str | os.PathLike[str] | None = None,
    streams: int | None = None,
) -> PushResult:
    """Like `push`, with the transfer figures (sent, skipped, resumed bytes).

    `streams` files are uploaded at once (None or 0: up to 4, one per two
    cores; a single file always goes over one stream, as the protocol
    appends each upload in order)."""
    if streams is not None and not 0 <= streams <= MAX_STREAMS:
        raise ValueError(f"streams must be 0 to {MAX_STREAMS}")
    core = core_of(conn)
    current = await _get_version(core, version_name)  # fail before hashing GBs
    files = await asyncio.to_thread(local_files, Path(path))
    manifest = await build_manifest(files)
    body = manifest.to_json()
    manifest_digest = digest_of(body)
    if current.state != pb.ModelVersion.PENDING_UPLOAD:
        if current.artifact.digest == manifest_digest:
            # Pushed before (the earlier run ended after publishing): nothing to do.
            return PushResult(current, manifest_digest, len(files), 0, 0, 0, 0, manifest)
        raise FailedPreconditionError(
            grpc.StatusCode.FAILED_PRECONDITION,
            ErrorReason.VERSION_NOT_PENDING,
            f"{version_name} is {pb.ModelVersion.State.Name(current.state)}; "
            "push to a new version (PENDING_UPLOAD)",
            {ErrorMetadataKey.RESOURCE: version_name},
        )
    locals_by_digest: dict[str, tuple[ManifestFile, Path]] = {}
    for entry, (_, local) in zip(manifest.files, files, strict=True):
        locals_by_digest.setdefault(entry.digest, (entry, local))
    meter = _Meter(sum(e.size_bytes for e, _ in locals_by_digest.values()), progress)
    states = UploadStateStore(Path(state_dir) if state_dir is not None else None)
    uploader = BlobUploader(
        core.stubs.artifacts,
        target=core.target,
        states=states,
        chunk_size=chunk_size,
        channel=core.channel(),
    )
    sent = skipped = resumed = 0
    slots = asyncio.Semaphore(streams or auto_streams(1 << 62))

    async def upload(entry: ManifestFile, local: Path) -> None:
        nonlocal sent, skipped, resumed
        async with slots:
            done = await uploader.upload(
                local,
                entry.digest,
                entry.size_bytes,
                on_offset=meter.blob(entry.path),
                model=version_name.split("/versions/")[0],
            )
        sent += done.bytes_sent
        resumed += done.resumed_from
        if done.already_existed:
            skipped += entry.size_bytes
        meter.done(entry.size_bytes, entry.path)

    tasks = [asyncio.ensure_future(upload(e, local)) for e, local in locals_by_digest.values()]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    try:
        published = await uploader.upload(
            body, manifest_digest, len(body), version=version_name, media_type=MEDIA_TYPE
        )
    except FailedPreconditionError as err:
        if err.reason != ErrorReason.VERSION_NOT_PENDING:
            raise
        # A stream that broke after the server published the manifest: the
        # retry finds the version READY. It is this push's if it holds our
        # manifest.
        current = await _get_version(core, version_name)
        if current.artifact.digest != manifest_digest:
            raise
        return PushResult(
            current, manifest_digest, len(files), meter.total, sent, skipped, resumed, manifest
        )
    if published.model_version is None:
        raise data_loss(
            ErrorReason.PROTOCOL_VIOLATION, "the server did not return the published version"
        )
    return PushResult(
        published.model_version,
        manifest_digest,
        len(files),
        meter.total,
        sent,
        skipped,
        resumed,
        manifest,
    )


async def push(
    conn: Connection,
    version_name: str,
    path: str | os.PathLike[str],
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
    state_dir: str | os.PathLike[str] | None = None,
) -> pb.ModelVersion:
    """Upload a file or directory as the artifact of a PENDING_UPLOAD version.

    Every file is hashed, uploaded as a blob unless the server already has
    it, then the manifest is uploaded, which makes the version READY; the
    READY version is returned. Interrupted uploads are remembered under
    `state_dir` (default `~/.cache/modelreg/uploads`) and resumed by the
    next call. Pushing again what a READY version already holds returns it.
    """
    result = await push_files(conn, version_name, path, progress, chunk_size, state_dir)
    return result.version


async def read_manifest(conn: Connection, target: str) -> Manifest:
    """The list of files (paths, sizes, digests) of a version's or an
    alias's artifact, without downloading them: what a model weighs on disk
    (`total_bytes`), where the artifact's own size is only its manifest's."""
    core = core_of(conn)
    _, body = await BlobDownloader(core.stubs.artifacts).fetch(**_target_request(target))
    return parse_manifest(body)


def _target_request(target: str) -> dict[str, str]:
    if "/aliases/" in target:
        return {"alias": target}
    if "/versions/" in target:
        return {"version": target}
    raise ValueError(
        f"{target!r}: expected models/M/versions/N, models/M/aliases/A or sha256:<64 hex>"
    )


async def pull(
    conn: Connection,
    target: str,
    dest_dir: str | os.PathLike[str],
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_DOWNLOAD_CHUNK,
    shared_files: Path | None = None,
    streams: int | None = None,
) -> PullResult:
    """Download an artifact's files into `dest_dir`, verified, resumably.

    `target` is a version (`models/M/versions/N`), an alias
    (`models/M/aliases/A`) or a blob digest (`sha256:<hex>`, written to
    `dest_dir/<hex>`). Files are received under `dest_dir/.modelreg-partial/`
    and renamed into place only once their sha256 matches, so a reader never
    sees a half-written file under its final name. Files already in place
    with the right content are kept, not fetched again.

    `shared_files` is a content-addressed directory (`<hex>` per file digest)
    that several pulls share: a file found there is hard-linked into place
    (and verified) instead of downloaded, and each downloaded file is linked
    into it, so two artifacts with a file in common hold its bytes once on
    disk. The files are then shared: a reader must not modify them in place.

    `streams` is how many ranged Download streams fetch each file at once
    (None or 0: chosen by its size and the cores, see `auto_streams`).
    """
    if streams is not None and not 0 <= streams <= MAX_STREAMS:
        raise ValueError(f"streams must be 0 to {MAX_STREAMS}")
    core = core_of(conn)
    dest = Path(dest_dir)
    downloader = BlobDownloader(core.stubs.artifacts, chunk_size=chunk_size, channel=core.channel())
    if is_digest(target):
        size = await _blob_size(core, target)
        manifest = Manifest((ManifestFile(target.removeprefix("sha256:"), size, target),))
        digest, version = target, ""
    else:
        header, body = await downloader.fetch(**_target_request(target))
        manifest = parse_manifest(body)
        digest, version = header.blob.digest, header.version
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    meter = _Meter(manifest.total_bytes, progress)
    received = cached = resumed = 0
    paths: list[Path] = []
    # One pull is one transfer for the allocator, however many files it has.
    async with transfer_buffers():
        for entry in manifest.files:
            if entry.path.split("/", 1)[0] == PARTIAL_DIR:
                raise data_loss(
                    ErrorReason.INVALID_MANIFEST, f"manifest: {entry.path[:80]!r} is reserved"
                )
            final = target_path(dest, entry.path)
            paths.append(final)
            if shared_files is not None:
                await asyncio.to_thread(_link_shared, shared_files / entry.hex, final)
            if await asyncio.to_thread(_in_place, final, entry):
                cached += entry.size_bytes
            else:
                n = streams or auto_streams(entry.size_bytes)
                got, had = await _fetch_file(
                    downloader, dest, final, entry, meter.blob(entry.path), streams=n
                )
                received += got
                resumed += had
            if shared_files is not None:
                await asyncio.to_thread(_share, final, shared_files / entry.hex)
            meter.done(entry.size_bytes, entry.path)
    await asyncio.to_thread(_remove_if_empty, dest / PARTIAL_DIR)
    return PullResult(
        digest, version, tuple(paths), manifest.total_bytes, received, cached, resumed
    )


def _in_place(final: Path, entry: ManifestFile) -> bool:
    """True if `final` already holds exactly this file (a cache hit)."""
    try:
        if not final.is_file() or final.stat().st_size != entry.size_bytes:
            return False
    except OSError:
        return False
    return sha256_file(final)[0] == entry.digest


async def _fetch_file(
    downloader: BlobDownloader,
    dest: Path,
    final: Path,
    entry: ManifestFile,
    on_offset: Callable[[int], None],
    streams: int = 1,
) -> tuple[int, int]:
    """Download one file (over `streams` ranged streams) and rename it into
    place; (bytes received, bytes resumed)."""
    partial = dest / PARTIAL_DIR / entry.hex

    async def fetch() -> BlobDownload:
        if streams > 1:
            return await ranged_to_file(
                downloader, entry.digest, entry.size_bytes, partial, streams, on_offset
            )
        return await downloader.to_file(entry.digest, entry.size_bytes, partial, on_offset)

    try:
        done = await fetch()
    except DataLossError as err:
        if err.reason != ErrorReason.DIGEST_MISMATCH:
            raise
        # A partial file left by an earlier run held wrong bytes (it was
        # deleted): fetch the whole file once more; a second mismatch is real.
        done = await fetch()
    await asyncio.to_thread(_publish, partial, final)
    return done.bytes_received, done.resumed_from


def _publish(partial: Path, final: Path) -> None:
    """Rename a verified file into place and make the name durable."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_shared(shared: Path, final: Path) -> None:
    """Hard-link a shared file to `final` unless something is there already
    (`_in_place` then checks the content either way)."""
    if final.exists() or not shared.is_file():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.link(shared, final)


def _share(final: Path, shared: Path) -> None:
    """Offer a verified file to the shared directory. A shared copy that is
    another file (one that failed verification) is replaced."""
    shared.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(final, shared)
    except FileExistsError:
        if not os.path.samefile(final, shared):
            staged = shared.with_name(shared.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
            os.link(final, staged)
            os.replace(staged, shared)


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()
