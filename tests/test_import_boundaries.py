"""Imports point one way, and no module imports itself back through others.

- The SDK (`modelregistry`) never imports the server: `modelreg serve` and
  `modelreg db` reach the CLI through the `modelreg.commands` entry points.
- The server imports from the SDK only the generated stubs (`modelregistry.v1`).
- No circle of imports among the modules of either package.

Imports are read with `ast`, not by importing: what counts is what a module
imports when it is loaded (module and class level, including blocks under
`if TYPE_CHECKING:`, since a circle there still ties two modules together),
not imports inside functions, which run later and only when called.
Importing `a.b.c` counts as importing that module, not its packages'
`__init__`. The generated stubs are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "modelregistry": ROOT / "client" / "modelregistry",
    "modelregistry_server": ROOT / "server" / "modelregistry_server",
}
GENERATED = "modelregistry.v1"


def _is_generated(module: str) -> bool:
    return module == GENERATED or module.startswith(GENERATED + ".")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, directory in PACKAGES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            if not _is_generated(name):
                found[name] = path
    return found


MODULES = _modules()


def _load_time_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run when the module is imported (not function bodies)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _load_time_statements([child])
            elif isinstance(child, ast.ExceptHandler):
                yield from _load_time_statements(child.body)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) of everything `module` imports at load time."""
    tree = ast.parse(path.read_text(), str(path))
    for node in _load_time_statements(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, path)
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                # `from pkg import name` imports the submodule pkg.name if there is one.
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in MODULES else base), node.lineno


def _internal(name: str) -> str | None:
    """The module of ours that importing `name` loads (None: not ours, or generated)."""
    if _is_generated(name):
        return None
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name, _ in _imported(module, path):
            target = _internal(name)
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _imports_anywhere(package: str, of: str) -> list[tuple[str, str]]:
    """(file:line, name) of every import of package `of` in `package`,
    inside functions too; `from a import b` counts as importing `a.b`."""
    found: list[tuple[str, str]] = []
    for module, path in MODULES.items():
        if module.split(".")[0] != package:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            found.extend((where, name) for name in names if name.split(".")[0] == of)
    return found


def test_the_modules_are_found() -> None:
    assert "modelregistry.client" in MODULES
    assert "modelregistry_server.server" in MODULES
    assert not any(_is_generated(m) for m in MODULES)


def test_the_sdk_never_imports_the_server() -> None:
    # Not even lazily: the server's commands come in through entry points.
    assert _imports_anywhere("modelregistry", "modelregistry_server") == []


def test_the_server_imports_only_the_generated_stubs_of_the_sdk() -> None:
    found = _imports_anywhere("modelregistry_server", "modelregistry")
    assert [(where, name) for where, name in found if not _is_generated(name)] == []
    assert found, "the server uses the generated stubs: the scan is broken"


def test_no_import_circles() -> None:
    circles = _circles(_edges())
    assert circles == [], "modules importing each other:\n" + "\n".join(
        " <-> ".join(c) for c in circles
    )


def test_the_domain_loads_neither_grpc_nor_sqlalchemy() -> None:
    """The domain shares the contract's generated reasons with the SDK; importing
    them must not drag in the SDK, grpc or the database layer."""
    probe = (
        "import sys, pkgutil, importlib, modelregistry_server.domain as d\n"
        "for m in pkgutil.iter_modules(d.__path__):\n"
        "    importlib.import_module(f'modelregistry_server.domain.{m.name}')\n"
        "print(' '.join(sorted(n for n in ('grpc', 'sqlalchemy', 'modelregistry.client')"
        " if n in sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_sdk_exports_resolve() -> None:
    import modelregistry

    for name in modelregistry.__all__:
        assert getattr(modelregistry, name) is not None, name
