"""Fixtures of the process-level tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.processes import running


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`modelreg serve` on the embedded default (SQLite + local blobs), one
    process for a whole test module."""
    with running(tmp_path_factory.mktemp("serve") / "data") as server:
        yield server.address
