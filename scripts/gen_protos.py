"""Generate the Python stubs (with .pyi type stubs) from protos/.

The proto package `modelregistry.v1` maps onto the Python package
`modelregistry.v1` under client/, so the generated imports need no rewriting.
Run `python scripts/gen_protos.py` after changing a .proto file and commit
the output; tests/test_generated_stubs.py fails when it is stale.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed stubs are stale"
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        stale = []
        for f in files:
            target = OUT_PACKAGE / f.name
            if not target.exists() or target.read_bytes() != f.read_bytes():
                stale.append(f.name)
                if not opts.check:
                    shutil.copyfile(f, target)
        generated = {f.name for f in files}
        for existing in OUT_PACKAGE.glob("*_pb2*.py*"):
            if existing.name not in generated:
                stale.append(existing.name)
                if not opts.check:
                    existing.unlink()
    if opts.check and stale:
        print("stale generated stubs: " + ", ".join(sorted(stale)), file=sys.stderr)
        raise SystemExit(1)
    if not opts.check:
        (OUT_PACKAGE / "__init__.py").touch()


if __name__ == "__main__":
    main()
