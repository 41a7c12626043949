"""Where a push remembers its unfinished uploads, so a re-run resumes them.

One small JSON file per blob being uploaded, keyed by server target and
digest, written before the first byte is sent. A push killed at any point
finds the upload id on its next run and asks the server how much it already
holds, instead of sending gigabytes again. Files are replaced atomically so
a crash never leaves a torn one; a torn or foreign file is simply ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


def default_state_dir() -> Path:
    """`$XDG_CACHE_HOME/modelreg/uploads`, else `~/.cache/modelreg/uploads`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelreg" / "uploads"


@dataclass(frozen=True)
class UploadState:
    """An upload that was started and may be resumed."""

    target: str
    digest: str
    size_bytes: int
    upload_id: str


class UploadStateStore:
    """The state files of one directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else default_state_dir()

    def path(self, target: str, digest: str) -> Path:
        key = hashlib.sha256(f"{target}\n{digest}".encode()).hexdigest()[:32]
        return self.directory / f"{key}.json"

    def load(self, target: str, digest: str, size_bytes: int) -> UploadState | None:
        """The saved upload for this blob on this server, if any and if it matches."""
        try:
            data = json.loads(self.path(target, digest).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        upload_id = data.get("upload_id")
        if (
            data.get("target") != target
            or data.get("digest") != digest
            or data.get("size_bytes") != size_bytes
            or not isinstance(upload_id, str)
            or not upload_id
        ):
            return None
        return UploadState(target, digest, size_bytes, upload_id)

    def save(self, state: UploadState) -> None:
        """Atomically (temporary file, fsync, rename): the id must survive a crash."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(state.target, state.digest)
        body = json.dumps(
            {
                "target": state.target,
                "digest": state.digest,
                "size_bytes": state.size_bytes,
                "upload_id": state.upload_id,
            }
        ).encode()
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self, target: str, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(target, digest).unlink()
