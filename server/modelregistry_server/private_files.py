"""Owner-only files: what the server keeps on local disk is nobody else's.

The data directory holds the database, whose settings table keeps the key
that signs page tokens, and every artifact. Directories are 0700 and files
0600 (published blobs 0400: they never change), set explicitly rather than
left to the umask, and tightened on start-up when an older install left
them open.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
READ_ONLY_FILE = 0o400


def private_dir(path: Path) -> Path:
    """`path` created if needed and made owner-only; parents it had to create
    are owner-only too (existing ones are not the server's to change)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """`path` created empty if missing, and made owner-only (read and write)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return path
