"""Where the client's bearer token comes from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from modelregistry.credentials import BearerToken, find_token


def test_token_sources_in_order(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    env = {"MODELREG_TOKEN": "from-env", "MODELREG_TOKEN_FILE": str(path)}
    assert find_token("given", environ=env).value() == "given"  # type: ignore[union-attr]
    assert find_token(environ=env).value() == "from-env"  # type: ignore[union-attr]
    only_file = {"MODELREG_TOKEN_FILE": str(path)}
    assert find_token(environ=only_file).value() == "from-file"  # type: ignore[union-attr]
    assert find_token(environ={}) is None
    with pytest.raises(FileNotFoundError):
        find_token(token_file=tmp_path / "missing", environ={})


def test_a_rotated_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one")
    token = BearerToken(path=path)
    assert token.value() == "one"
    path.write_text("second")
    os.utime(path, ns=(1, 2))
    assert token.value() == "second"
    assert "second" not in repr(token)
