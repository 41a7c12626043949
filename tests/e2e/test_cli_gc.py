"""`modelreg admin gc` against a `modelreg serve` process: deleting a version
frees its own blobs, a shared one stays for the version that still uses it,
and the dry run deletes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from support.processes import modelreg, running


def test_gc_frees_a_deleted_versions_blobs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    blob_dir = data_dir / "blobs" / "blobs" / "sha256"
    with running(data_dir) as server:
        env = {**os.environ, "MODELREG_SERVER": server.address, "XDG_CACHE_HOME": str(tmp_path)}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            done = modelreg(*args, env=env, timeout=120)
            assert done.returncode == 0, done.stderr
            return done

        def as_json(*args: str) -> Any:
            return json.loads(cli("--output", "json", *args).stdout)

        def stored() -> set[str]:
            return {p.name for p in blob_dir.rglob("*") if p.is_file()}

        cli("models", "create", "fraud")
        versions: list[str] = []
        for own in (b"one" * 100_000, b"two" * 100_000):
            tree = tmp_path / f"tree-{len(versions)}"
            tree.mkdir()
            (tree / "tokenizer.json").write_bytes(b"shared" * 1000)
            (tree / "weights.bin").write_bytes(own)
            name = as_json("versions", "create", "fraud")["name"]
            cli("push", name, str(tree))
            versions.append(name)
        assert len(stored()) == 5  # two manifests, two weights, one shared tokenizer
        cli("versions", "delete", versions[0])
        # Older than the grace period asked for below.
        then = time.time() - 600
        for path in blob_dir.rglob("*"):
            if path.is_file():
                os.utime(path, (then, then))

        dry = as_json("admin", "gc", "--dry-run", "--grace", "5m")
        assert dry["dry_run"] is True
        assert (int(dry["blobs_scanned"]), int(dry["blobs_deleted"])) == (5, 2)
        # The weights plus a manifest of a few hundred bytes.
        assert 300_000 < int(dry["bytes_deleted"]) < 301_000
        assert len(stored()) == 5

        done = as_json("admin", "gc", "--grace", "5m")
        assert (int(done["blobs_deleted"]), done["bytes_deleted"]) == (2, dry["bytes_deleted"])
        assert len(stored()) == 3
        pulled = cli("pull", versions[1], str(tmp_path / "out"))
        assert pulled.returncode == 0
        assert (tmp_path / "out" / "tokenizer.json").read_bytes() == b"shared" * 1000
        assert (tmp_path / "out" / "weights.bin").read_bytes() == b"two" * 100_000

        shown = cli("models", "get", "fraud").stdout.splitlines()
        storage = [line.split(None, 1)[1] for line in shown if line.startswith("storage ")]
        # The tokenizer, the second version's weights and its manifest: 299.x KiB.
        assert len(storage) == 1 and storage[0].startswith("299."), shown
        assert storage[0].endswith("(no quota)")

        refused = modelreg("admin", "gc", "--grace", "10s", env=env, timeout=60)
        assert refused.returncode != 0 and "INVALID_FIELD" in refused.stderr
