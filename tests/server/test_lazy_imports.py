"""A server on the default configuration (embedded SQLite, local blobs, no
NATS, no telemetry, no auth, no encryption keyring, no checkpoint key) does
not load the optional features' packages: each costs megabytes of resident
memory in every server process, whether used or not. Alembic loads only
when the schema must be created or upgraded.

Each start runs in a fresh interpreter, so that nothing this test process
has imported counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Packages that only a configured feature needs: --events-nats (nats-py,
# aiohttp), a postgresql:// database (psycopg), an S3 store (aiobotocore,
# botocore), --telemetry (the OpenTelemetry SDK), a JWT issuer (PyJWT),
# blob encryption, checkpoint signing or a signature check (cryptography);
# Pygments came with Alembic.
OPTIONAL = {
    "nats",
    "aiohttp",
    "psycopg",
    "aiobotocore",
    "botocore",
    "boto3",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "jwt",
    "cryptography",
}
# Alembic brings Mako, and Mako Pygments.
MIGRATION_ONLY = {"alembic", "mako", "pygments"}

START_AND_LIST_MODULES = """
import asyncio, json, sys
from pathlib import Path

import modelregistry_server.server as server
from modelregistry_server import telemetry
from modelregistry_server.config import ServerConfig

async def main() -> None:
    config = ServerConfig(listen="127.0.0.1:0", data_dir=Path(sys.argv[1]))
    telemetry.configure(config.telemetry)
    running = await server.start(config)
    try:
        await asyncio.wait_for(running.ready.wait(), 60)
    finally:
        await running.stop(grace=0)

imported = set(sys.modules)
asyncio.run(main())
print(json.dumps({"imported": sorted(imported), "ready": sorted(sys.modules)}))
"""


def _loaded(modules: list[str], packages: set[str]) -> set[str]:
    """Those of `packages` (or subpackages like `opentelemetry.sdk`) among `modules`."""
    return {p for p in packages for m in modules if m == p or m.startswith(p + ".")}


def _start(data_dir: Path) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", START_AND_LIST_MODULES, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    return modules


def test_default_server_loads_no_optional_package(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = _start(data_dir)
    assert _loaded(first["imported"], OPTIONAL | MIGRATION_ONLY) == set()
    assert _loaded(first["ready"], OPTIONAL) == set()
    assert _loaded(first["ready"], {"alembic"}) == {"alembic"}, "the new schema was created"

    # Restarted on its own data: the schema is current, nothing to migrate.
    again = _start(data_dir)
    assert _loaded(again["ready"], OPTIONAL | MIGRATION_ONLY) == set()


OPEN_S3_STORE_AND_LIST_MODULES = """
import asyncio, json, ssl, sys

from modelregistry_server.blobs import open_blob_store

async def main() -> None:
    store = await open_blob_store("s3://bucket/registry", "http://127.0.0.1:9")
    await store.s3()  # the client, created without reaching the endpoint
    await store.close()

asyncio.run(main())
import botocore.httpsession
loaded = sorted(sys.modules)
import urllib3.contrib.pyopenssl  # hidden from botocore only, not from the process
stdlib_tls = botocore.httpsession.SSLContext is ssl.SSLContext
print(json.dumps({"loaded": loaded, "stdlib_tls": stdlib_tls}))
"""


def test_s3_store_loads_botocore_without_pyopenssl(tmp_path: Path) -> None:
    """botocore would load pyOpenSSL (and the cryptography bindings, about
    9 MB) just to name the standard library's SSLContext; an S3 store's
    server skips that, and TLS stays the standard library's."""
    pytest.importorskip("OpenSSL", reason="pyOpenSSL is not installed: nothing to keep out")
    done = subprocess.run(
        [sys.executable, "-c", OPEN_S3_STORE_AND_LIST_MODULES],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert _loaded(found["loaded"], {"botocore", "aiobotocore"}) == {"botocore", "aiobotocore"}
    assert _loaded(found["loaded"], {"OpenSSL", "cryptography"}) == set()
    assert found["stdlib_tls"]
