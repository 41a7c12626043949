"""Stalled transfers: what streams nobody reads or writes cost the server.

Uploads one blob, then opens `--downloads` Download streams (one connection
each) whose client reads only the header, and `--uploads` Upload streams
that send a few chunks and then go quiet without closing. Prints the
server's RSS before, with them open, and after they are cancelled, and the
speed of a normal download (its own client process) before and beside them:

    stalled streams add      < 100 MB to the server's RSS
    a normal download keeps  >= 80 % of its speed

    .venv/bin/python loadtest/bench_stalled.py [--downloads 200] [--uploads 200] [--blob-mb 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import google_crc32c
import grpc
from common import digest_of
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from support.processes import running
from support.procfs import status_kb

MB = 1_000_000
MIB = 1024 * 1024
RSS_TARGET_MB = 100.0
SPEED_TARGET = 0.80

# Runs in a client process of its own: one plain download, as fast as it goes.
DOWNLOAD = """
import json, sys, time, grpc
from modelregistry.v1 import artifact_service_pb2 as apb, artifact_service_pb2_grpc
address, digest = sys.argv[1:3]
options = [("grpc.max_receive_message_length", 16 << 20)]
with grpc.insecure_channel(address, options=options) as ch:
    stub = artifact_service_pb2_grpc.ArtifactServiceStub(ch)
    start, got = time.perf_counter(), 0
    for msg in stub.Download(apb.DownloadRequest(digest=digest, chunk_bytes=1 << 20)):
        got += len(msg.chunk.data)
    print(json.dumps({"bytes": got, "s": time.perf_counter() - start}))
"""


def rss_mb(pid: int) -> float:
    return status_kb(pid, "VmRSS") * 1024 / MB


def download_speed(address: str, digest: str, runs: int = 3) -> float:
    """MB/s of the best of `runs` downloads (the machine may be shared)."""
    best = 0.0
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", DOWNLOAD, address, digest],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        result = json.loads(out)
        best = max(best, result["bytes"] / result["s"] / MB)
    return best


def _chunk(offset: int, data: bytes) -> apb.UploadRequest:
    crc = google_crc32c.value(data)
    return apb.UploadRequest(chunk=apb.UploadChunk(offset=offset, data=data, crc32c=crc))


async def upload(address: str, data: bytes) -> str:
    digest = digest_of(data)
    options = [("grpc.max_send_message_length", 16 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as ch:
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(ch)

        async def requests() -> Any:
            yield apb.UploadRequest(start=apb.UploadStart(size_bytes=len(data), digest=digest))
            for offset in range(0, len(data), 4 * MIB):
                yield _chunk(offset, data[offset : offset + 4 * MIB])
            yield apb.UploadRequest(finish=apb.UploadFinish(digest=digest))

        async for _ in stub.Upload(requests()):
            pass
    return digest


class Stalled:
    """Streams held open and never served: the attack."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channels: list[grpc.aio.Channel] = []
        self.calls: list[Any] = []
        self.refused: dict[str, int] = {}
        self.upload_chunk = 4 * MIB
        self._gate = asyncio.Event()

    def _channel(self) -> grpc.aio.Channel:
        ch = grpc.aio.insecure_channel(
            self.address,
            options=[
                ("grpc.max_receive_message_length", 16 << 20),
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        self.channels.append(ch)
        return ch

    def _refusal(self, err: grpc.aio.AioRpcError) -> None:
        key = f"{err.code().name} {(err.details() or '')[:60]}"
        self.refused[key] = self.refused.get(key, 0) + 1

    async def download(self, digest: str, chunk_bytes: int) -> None:
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(self._channel())
        call = stub.Download(apb.DownloadRequest(digest=digest, chunk_bytes=chunk_bytes))
        self.calls.append(call)
        try:
            await call.read()  # the header, then nothing
        except grpc.aio.AioRpcError as err:
            self._refusal(err)

    async def upload(self, size: int, sent: int) -> None:
        """As the SDK does it: `start`, wait for `started`, send chunks, then
        go quiet without closing the stream."""
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(self._channel())
        data = os.urandom(min(sent, self.upload_chunk))
        gate, started = self._gate, asyncio.Event()

        async def requests() -> Any:
            yield apb.UploadRequest(start=apb.UploadStart(size_bytes=size))
            await started.wait()
            for offset in range(0, sent, len(data)):
                yield _chunk(offset, data)
            await gate.wait()  # quiet, not closed

        call = stub.Upload(requests())
        self.calls.append(call)
        try:
            await call.read()  # started
            started.set()
        except grpc.aio.AioRpcError as err:
            self._refusal(err)

    async def close(self) -> None:
        for call in self.calls:
            call.cancel()
        for ch in self.channels:
            await ch.close(None)


def _more_descriptors() -> None:
    """Hundreds of channels need more file descriptors than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


async def main() -> None:
    _more_descriptors()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--downloads", type=int, default=200)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--blob-mb", type=int, default=300)
    parser.add_argument("--chunk-kib", type=int, default=4096)
    parser.add_argument("--upload-sent-mib", type=int, default=8)
    parser.add_argument("--upload-chunk-kib", type=int, default=4096)
    parser.add_argument("--settle-s", type=float, default=5.0)
    args = parser.parse_args()

    with running(own_session=True) as server:
        digest = await upload(server.address, os.urandom(args.blob_mb * MB))
        speed_alone = download_speed(server.address, digest)
        base = rss_mb(server.pid)
        stalled = Stalled(server.address)
        stalled.upload_chunk = args.upload_chunk_kib * 1024
        await asyncio.gather(
            *(stalled.download(digest, args.chunk_kib * 1024) for _ in range(args.downloads)),
            *(
                stalled.upload(args.blob_mb * MB, args.upload_sent_mib * MIB)
                for _ in range(args.uploads)
            ),
        )
        await asyncio.sleep(args.settle_s)
        loaded = rss_mb(server.pid)
        speed_beside = await asyncio.to_thread(download_speed, server.address, digest)
        loaded = max(loaded, rss_mb(server.pid))
        await stalled.close()
        await asyncio.sleep(args.settle_s)
        after = rss_mb(server.pid)

    added = loaded - base
    print(
        f"stalled: {args.downloads} downloads (chunk {args.chunk_kib} KiB) of a "
        f"{args.blob_mb} MB blob, {args.uploads} uploads ({args.upload_sent_mib} MiB sent)"
    )
    print(f"refused: {stalled.refused or 'none'}")
    print(
        f"server RSS: {base:.0f} MB before, {loaded:.0f} MB with them open "
        f"(+{added:.0f} MB, target < {RSS_TARGET_MB:.0f}), {after:.0f} MB after cancelling"
    )
    print(
        f"normal download: {speed_alone:.0f} MB/s alone, {speed_beside:.0f} MB/s beside them "
        f"({speed_beside / speed_alone:.0%}, target >= {SPEED_TARGET:.0%})"
    )
    ok = added < RSS_TARGET_MB and speed_beside >= SPEED_TARGET * speed_alone
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    start = time.perf_counter()
    asyncio.run(main())
