"""Field limits and manifest rules: what the server refuses before storage."""

from __future__ import annotations

import json

import pytest
from modelregistry_server.domain import manifest, validation
from modelregistry_server.domain.errors import InvalidArgument

DIGEST = "sha256:" + "a" * 64


def _manifest(*paths: str) -> bytes:
    files = [{"path": p, "size": 1, "digest": DIGEST} for p in paths]
    return json.dumps({"schemaVersion": 1, "files": files}).encode()


@pytest.mark.parametrize(
    "paths",
    [
        (".modelreg-partial/x",),
        (".MODELREG-PARTIAL/x",),
        ("a/" + "x" * 256,),
        ("é" * 128,),  # 256 bytes of UTF-8
        ("Model.bin", "model.bin"),
        ("caf\u00e9", "cafe\u0301"),  # NFC and NFD spellings of one name
        ("Dir/a", "dir"),  # a file and a directory that fold to one name
        ("a:b",),
        ("what?",),
        ("trailing.",),
        ("trailing ",),
        ("CON",),
        ("sub/nul.txt",),
        ("lpt1.bin",),
    ],
)
def test_manifests_no_client_can_materialise_are_refused(paths: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgument) as exc:
        manifest.parse_manifest(_manifest(*paths))
    assert exc.value.reason == "INVALID_MANIFEST"


def test_portable_manifests_are_accepted() -> None:
    paths = ("config.json", "weights/part-0001.bin", "é" * 127, "console.log", "a" * 255)
    parsed = manifest.parse_manifest(_manifest(*paths))
    assert {f.path for f in parsed.files} == set(paths)


@pytest.mark.parametrize(
    "body",
    [
        b'{"schemaVersion":1,"files":[{"path":"a","size":' + b"9" * 5000 + b"}]}",
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe",
    ],
)
def test_hostile_manifest_bytes_are_invalid(body: bytes) -> None:
    with pytest.raises(InvalidArgument) as exc:
        manifest.parse_manifest(body)
    assert exc.value.reason == "INVALID_MANIFEST"


def test_protected_aliases_are_bounded_sorted_and_unique() -> None:
    assert validation.check_protected_aliases(["prod", "canary", "prod"], "f") == (
        "canary",
        "prod",
    )
    limit = validation.MAX_PROTECTED_ALIASES
    validation.check_protected_aliases([f"a{i}" for i in range(limit)], "f")
    with pytest.raises(InvalidArgument):
        validation.check_protected_aliases([f"a{i}" for i in range(limit + 1)], "f")


@pytest.mark.parametrize(
    "value",
    [
        {"x": float("nan")},
        {"x": [1, float("-inf")]},
        {"a\x00": 1},
        {"x": "a\x00"},
        {"x": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]},
    ],
)
def test_metadata_only_takes_what_json_and_both_databases_store(value: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        validation.check_metadata(value, "metadata")
