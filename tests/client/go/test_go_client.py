"""The Go stubs and the Go client (client/go/), built with Debian's Go toolchain.

The stubs must match the protos (scripts/gen_go.sh --check). The client
builds in GOPATH mode against /usr/share/gocode, then runs against a real
`modelreg serve` process: it resolves an alias, downloads the artifact
(byte-identical, every chunk and file verified) and prints the event when
the alias moves. Against a fake server that corrupts data it must refuse
to write anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
import pytest
from modelregistry.client import RegistryClient
from modelregistry.v1 import artifact_service_pb2, registry_service_pb2, resources_pb2
from support import gobuild
from support.in_process import serving
from support.jwt_issuer import Issuer
from support.ports import free_port
from support.services import require
from support.signing import make_key, sign_dir, write_model

ROOT = Path(__file__).resolve().parents[3]
MANIFEST_TYPE = "application/vnd.modelreg.manifest.v1+json"
# A cold build compiles grpc-go from /usr/share/gocode: minutes on a small box,
# in whichever test of this module needs the binary first.
pytestmark = pytest.mark.timeout(gobuild.BUILD_TIMEOUT + 120)


def _need(*tools: str) -> None:
    if missing := gobuild.missing_tools(*tools):
        require(gobuild.install_hint(missing))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_go_stubs_are_fresh() -> None:
    _need("protoc", "protoc-gen-go", "protoc-gen-go-grpc")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_go.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def fetch_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """modelreg-fetch, built in GOPATH mode with the stubs at their go_package path."""
    _need("go")
    return gobuild.build_checked(
        "client/go/cmd/modelreg-fetch", tmp_path_factory.mktemp("gopath"), "client/go/cmd"
    )


class Fetch:
    """A running modelreg-fetch whose stdout is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def line(self, seconds: float = 30) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), seconds)
        if not raw:
            assert self.proc.stderr is not None
            err = (await asyncio.wait_for(self.proc.stderr.read(), seconds)).decode()
            raise AssertionError(f"modelreg-fetch ended; output: {self.lines}; stderr: {err}")
        self.lines.append(raw.decode().rstrip("\n"))
        return self.lines[-1]

    async def until(self, prefix: str) -> list[str]:
        """Lines up to and including the first one starting with `prefix`."""
        start = len(self.lines)
        while not (await self.line()).startswith(prefix):
            pass
        return self.lines[start:]

    async def finish(self, seconds: float = 30) -> tuple[int, str]:
        out, err = await asyncio.wait_for(self.proc.communicate(), seconds)
        self.lines += out.decode().splitlines()
        assert self.proc.returncode is not None
        return self.proc.returncode, err.decode()


class Launcher:
    """Starts modelreg-fetch processes; kills those still running at the end."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.started: list[asyncio.subprocess.Process] = []

    async def start(self, *args: str) -> Fetch:
        proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.started.append(proc)
        return Fetch(proc)

    async def close(self) -> None:
        for proc in self.started:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def run_fetch(fetch_binary: Path) -> AsyncIterator[Launcher]:
    launcher = Launcher(fetch_binary)
    try:
        yield launcher
    finally:
        await launcher.close()


async def test_fetch_verifies_the_artifact_then_prints_alias_moves(
    run_fetch: Launcher, address: str, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "config.json").write_bytes(b'{"layers": 3}')
    # Several 1 MiB download chunks, the last one partial.
    (model / "weights" / "shard-0.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (model / "weights" / "empty.bin").write_bytes(b"")
    alias = "models/fraud/aliases/production"
    async with RegistryClient(address) as client:
        await client.create_model("fraud")
        v1 = await client.create_model_version("models/fraud")
        v1 = await client.push(v1.name, model, state_dir=tmp_path / "state")
        v2 = await client.create_model_version("models/fraud")
        (tmp_path / "next.bin").write_bytes(b"the next model")
        v2 = await client.push(v2.name, tmp_path / "next.bin", state_dir=tmp_path / "state")
        await client.set_alias(alias, v1.name)
        resolved = await client.resolve_alias(alias)

        out = tmp_path / "out"
        fetch = await run_fetch.start(
            "-server", address, "-alias", alias, "-out", str(out), "-watch", "-max-events", "1"
        )
        lines = await fetch.until("done ")
        assert lines[0].split() == [
            "resolved",
            alias,
            v1.name,
            v1.artifact.digest,
            str(resolved.revision),
        ]
        pushed = _tree(model)
        files = sorted(line.split() for line in lines[1:-1])
        assert files == [
            ["file", path, str(len(data)), _digest(data), "downloaded"]
            for path, data in sorted(pushed.items())
        ]
        assert lines[-1].split() == ["done", "3", str(sum(map(len, pushed.values())))]
        assert _tree(out) == pushed, "byte-identical, no partial files left behind"

        # The watch starts at resolved.revision + 1: a move right away is not missed.
        await client.set_alias(alias, v2.name)
        event = (await fetch.line()).split()
        assert event[0] == "event" and int(event[1]) > resolved.revision
        assert event[2:] == ["ALIAS_SET", alias]
        code, err = await fetch.finish()
        assert code == 0, err

        # The alias now points at v2: a second run fetches only its file.
        # A local file that no longer matches its digest is fetched again.
        (out / "config.json").write_bytes(b"tampered")
        again = await run_fetch.start("-server", address, "-alias", alias, "-out", str(out))
        code, err = await again.finish()
        assert code == 0, err
        assert again.lines[0].split()[2:4] == [v2.name, v2.artifact.digest]
        assert again.lines[1].split() == [
            "file",
            "next.bin",
            "14",
            _digest(b"the next model"),
            "downloaded",
        ]
        assert (out / "next.bin").read_bytes() == b"the next model"

        back = await client.set_alias(alias, v1.name)
        assert back.version == v1.name
        third = await run_fetch.start("-server", address, "-alias", alias, "-out", str(out))
        code, err = await third.finish()
        assert code == 0, err
        states = {line.split()[1]: line.split()[-1] for line in third.lines[1:-1]}
        assert states == {
            "config.json": "downloaded",
            "weights/empty.bin": "cached",
            "weights/shard-0.bin": "cached",
        }
        assert (out / "config.json").read_bytes() == pushed["config.json"]


async def test_fetch_reports_a_missing_alias(
    run_fetch: Launcher, address: str, tmp_path: Path
) -> None:
    fetch = await run_fetch.start(
        "-server", address, "-alias", "models/nope/aliases/x", "-out", str(tmp_path / "out")
    )
    code, err = await fetch.finish()
    assert code == 1
    assert "NotFound" in err and "ALIAS_NOT_FOUND" in err
    assert not (tmp_path / "out").exists()


class CorruptingServer:
    """Serves one artifact of one file, and spoils that file's bytes in flight."""

    def __init__(self, spoil: str) -> None:
        self.spoil = spoil
        self.data = os.urandom(300_000)
        self.manifest = json.dumps(
            {
                "schemaVersion": 1,
                "mediaType": MANIFEST_TYPE,
                "files": [
                    {"path": "model.bin", "size": len(self.data), "digest": _digest(self.data)}
                ],
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()

    def handlers(self) -> list[grpc.GenericRpcHandler[Any, Any]]:
        """ResolveAlias and Download: all modelreg-fetch calls without -watch."""
        resolve = grpc.unary_unary_rpc_method_handler(
            self.resolve_alias,
            request_deserializer=registry_service_pb2.ResolveAliasRequest.FromString,
            response_serializer=registry_service_pb2.ResolveAliasResponse.SerializeToString,
        )
        download = grpc.unary_stream_rpc_method_handler(
            self.download,
            request_deserializer=artifact_service_pb2.DownloadRequest.FromString,
            response_serializer=artifact_service_pb2.DownloadResponse.SerializeToString,
        )
        return [
            grpc.method_handlers_generic_handler(
                "modelregistry.v1.RegistryService", {"ResolveAlias": resolve}
            ),
            grpc.method_handlers_generic_handler(
                "modelregistry.v1.ArtifactService", {"Download": download}
            ),
        ]

    async def resolve_alias(
        self, request: registry_service_pb2.ResolveAliasRequest, context: object
    ) -> registry_service_pb2.ResolveAliasResponse:
        artifact = resources_pb2.Artifact(
            digest=_digest(self.manifest), size_bytes=len(self.manifest), media_type=MANIFEST_TYPE
        )
        version = resources_pb2.ModelVersion(
            name="models/m/versions/1",
            state=resources_pb2.ModelVersion.READY,
            artifact=artifact,
        )
        return registry_service_pb2.ResolveAliasResponse(
            alias=resources_pb2.Alias(name=request.name, version=version.name),
            model_version=version,
            revision=7,
        )

    async def download(
        self, request: artifact_service_pb2.DownloadRequest, context: object
    ) -> AsyncIterator[artifact_service_pb2.DownloadResponse]:
        is_file = request.WhichOneof("target") == "digest"
        data = self.data if is_file else self.manifest
        header = artifact_service_pb2.DownloadHeader(
            blob=artifact_service_pb2.Blob(digest=_digest(data), size_bytes=len(data))
        )
        yield artifact_service_pb2.DownloadResponse(header=header)
        step = 65536
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            crc = google_crc32c.value(piece)
            if is_file and offset == 2 * step:
                if self.spoil == "crc":
                    crc ^= 1
                else:  # same length, valid CRC32C, wrong bytes
                    piece = bytes(len(piece))
                    crc = google_crc32c.value(piece)
            chunk = artifact_service_pb2.DownloadChunk(offset=offset, data=piece, crc32c=crc)
            yield artifact_service_pb2.DownloadResponse(chunk=chunk)


@pytest.mark.parametrize(
    ("spoil", "message"), [("crc", "CRC32C mismatch"), ("digest", "digest mismatch")]
)
async def test_fetch_refuses_corrupted_data(
    run_fetch: Launcher, tmp_path: Path, spoil: str, message: str
) -> None:
    fake = CorruptingServer(spoil)
    server = grpc.aio.server(handlers=fake.handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        out = tmp_path / "out"
        fetch = await run_fetch.start(
            "-server", f"127.0.0.1:{port}", "-alias", "models/m/aliases/a", "-out", str(out)
        )
        code, err = await fetch.finish()
    finally:
        await server.stop(grace=None)
    assert code == 1
    assert "model.bin" in err and message in err
    assert [line.split()[0] for line in fetch.lines] == ["resolved"]
    assert list(out.iterdir()) == [], "nothing written, no partial file left"


async def test_fetch_sends_its_token(run_fetch: Launcher, sqlite_url: str, tmp_path: Path) -> None:
    """On a registry with authentication on, modelreg-fetch gets in with
    -token (or -token-file) and is turned away without one."""
    issuer = Issuer()
    config = issuer.server_config(sqlite_url, tmp_path, "user:root")
    (tmp_path / "model.bin").write_bytes(b"weights")
    alias = "models/fraud/aliases/production"
    async with serving(config) as running:
        address = f"127.0.0.1:{running.port}"
        async with RegistryClient(address, token=issuer.token("root")) as root:
            await root.create_model("fraud")
            version = await root.create_model_version("models/fraud")
            await root.push(version.name, tmp_path / "model.bin", state_dir=tmp_path / "state")
            await root.set_alias(alias, version.name)
            await root.grant("models/fraud", "roles/viewer", "serviceAccount:fleet")
            created = await root.create_service_account_token("fleet")
        token_file = tmp_path / "token"
        token_file.write_text(created.secret + "\n")
        args = ("-server", address, "-alias", alias, "-out", str(tmp_path / "out"))
        fetch = await run_fetch.start(*args, "-token-file", str(token_file))
        code, err = await fetch.finish()
        assert code == 0, err
        assert (tmp_path / "out" / "model.bin").read_bytes() == b"weights"
        denied = await run_fetch.start(*args)
        code, err = await denied.finish()
        assert code == 1 and "CREDENTIALS_MISSING" in err


async def test_fetch_falls_back_to_the_next_address(
    run_fetch: Launcher, address: str, tmp_path: Path
) -> None:
    """`-server EDGE,PRIMARY`: nothing answers at the nearest address, the
    next one serves the fetch."""
    (tmp_path / "model.bin").write_bytes(os.urandom(100_000))
    alias = "models/fallback/aliases/production"
    async with RegistryClient(address) as client:
        await client.create_model("fallback")
        v1 = await client.create_model_version("models/fallback")
        await client.push(v1.name, tmp_path / "model.bin", state_dir=tmp_path / "state")
        await client.set_alias(alias, v1.name)
    dead = f"127.0.0.1:{free_port()}"
    out = tmp_path / "out"
    fetch = await run_fetch.start("-server", f"{dead},{address}", "-alias", alias, "-out", str(out))
    code, err = await fetch.finish()
    assert code == 0, err
    assert [p.read_bytes() for p in out.iterdir() if p.is_file()] == [
        (tmp_path / "model.bin").read_bytes()
    ]


async def test_fetch_verifies_the_model_signature_before_writing_a_file(
    run_fetch: Launcher, address: str, tmp_path: Path
) -> None:
    fleet, other = make_key(tmp_path, "fleet"), make_key(tmp_path, "other")
    model = write_model(tmp_path / "model", {"config.json": b"{}", "w/a.bin": os.urandom(5000)})
    alias = "models/signed-go/aliases/production"
    async with RegistryClient(address) as client:
        await client.create_model("signed-go")
        await client.update_trust_policy(
            "signed-go", trusted_keys=[fleet.public_pem, other.public_pem]
        )
        version = await client.create_model_version("models/signed-go")
        await client.push(version.name, model, state_dir=tmp_path / "state")
        bundle = sign_dir(model, fleet.private, tmp_path / "model.sig")
        await client.attach_signature(version.name, bundle)
        await client.set_alias(alias, version.name)
        hint = json.loads(bundle)["verificationMaterial"]["publicKey"]["hint"]

        out = tmp_path / "out"
        fetch = await run_fetch.start(
            "-server", address, "-alias", alias, "-out", str(out), "-verify-key", str(fleet.public)
        )
        code, err = await fetch.finish()
        assert code == 0, err
        assert f"verified {version.name} sha256:{hint}" in fetch.lines
        assert _tree(out) == _tree(model)

        # A key the consumer holds did not sign it: refused, nothing written.
        refused = await run_fetch.start(
            "-server",
            address,
            "-alias",
            alias,
            "-out",
            str(tmp_path / "out2"),
            "-verify-key",
            str(other.public),
        )
        code, err = await refused.finish()
        assert code == 1
        assert "not signed by a trusted key" in err
        assert not (tmp_path / "out2").exists()
