"""Generate the Python stubs (with .pyi type stubs) from protos/.

The proto package `modelregistry.v1` maps onto the Python package
`modelregistry.v1` under client/, so the generated imports need no rewriting.
Run `python scripts/gen_protos.py` after changing a .proto file and commit
the output; tests/client/test_generated_stubs.py fails when it is stale.

It also writes one descriptor set per proto file, comments included, for
server reflection: the descriptors inside generated Python code carry no
comments, so `grpcurl describe` would show bare messages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = ROOT / "client" / "modelregistry" / "v1"
OUT_DESCRIPTORS = ROOT / "server" / "modelregistry_server" / "api" / "descriptors"


def generate(out_root: Path) -> list[Path]:
    """Run protoc into `out_root` and return the files it wrote."""
    import grpc_tools
    from grpc_tools import protoc

    # protoc-gen-mypy lives next to the interpreter of this (virtual) env.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_root / "modelregistry" / "v1").iterdir() if p.is_file())


def generate_descriptors(out_dir: Path) -> list[Path]:
    """Write `<proto path with dots>.binpb` per proto: that file alone, with comments."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for proto in sorted(PROTO_ROOT.rglob("*.proto")):
        rel = proto.relative_to(PROTO_ROOT)
        out = out_dir / (".".join(rel.with_suffix("").parts) + ".binpb")
        include = str(Path(protoc.__file__).parent / "_proto")
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            str(rel),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written.append(out)
    return written


def sync(generated: list[Path], target_dir: Path, pattern: str, check: bool) -> list[str]:
    """Copy changed files into `target_dir`, drop orphans; return the stale names."""
    stale = []
    for f in generated:
        target = target_dir / f.name
        if not target.exists() or target.read_bytes() != f.read_bytes():
            stale.append(f.name)
            if not check:
                target_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
    names = {f.name for f in generated}
    for existing in target_dir.glob(pattern):
        if existing.name not in names:
            stale.append(existing.name)
            if not check:
                existing.unlink()
    return stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed stubs are stale"
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stubs = generate(Path(tmp))
        descriptors = generate_descriptors(Path(tmp) / "descriptors")
        stale = sync(stubs, OUT_PACKAGE, "*_pb2*.py*", opts.check)
        stale += sync(descriptors, OUT_DESCRIPTORS, "*.binpb", opts.check)
    if opts.check and stale:
        print("stale generated stubs: " + ", ".join(sorted(stale)), file=sys.stderr)
        raise SystemExit(1)
    if not opts.check:
        (OUT_PACKAGE / "__init__.py").touch()


if __name__ == "__main__":
    main()
