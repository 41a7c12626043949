"""One catalogue of error reasons: `ErrorReason` in error_reason.proto.

The server raises only ErrorReason members, raises every one of them, and
with the status code the proto documents; the proto comments, the README and
the SDK name no reason the enum does not define. The server source is read
with `ast`, so a reason on a path no test reaches still counts.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from modelregistry.v1.error_reasons import STATUS_CODES, ErrorMetadataKey, ErrorReason
from modelregistry_server.api.error_map import CODES
from modelregistry_server.domain import errors as domain_errors
from modelregistry_server.domain.events import EventType

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server" / "modelregistry_server"
SDK = ROOT / "client" / "modelregistry"
PROTOS = ROOT / "protos"
REASON_LIKE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
ENUMS = {
    "ErrorReason": {m.name for m in ErrorReason},
    "ErrorMetadataKey": set(ErrorMetadataKey.__members__),
}

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _parse(paths: Iterator[Path]) -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(paths)]


SERVER_MODULES = _parse(p for p in SERVER.rglob("*.py") if "migrations" not in p.parts)
SDK_MODULES = _parse(p for p in SDK.rglob("*.py") if "v1" not in p.relative_to(SDK).parts)
LOADTEST_MODULES = _parse((ROOT / "loadtest").rglob("*.py"))


def _name(node: ast.expr) -> str:
    """`Foo` for `Foo` and `mod.Foo`; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def _params(function: Function) -> list[str]:
    return [a.arg for a in (*function.args.posonlyargs, *function.args.args)]


def _enum_member(node: ast.expr, enum: str) -> str | None:
    """`X` for `<enum>.X`, else None."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr if node.value.id == enum else None
    return None


@dataclass(frozen=True)
class Sink:
    """A callable that builds an error from a reason."""

    reason_at: int | None  # index of `reason` among the positional arguments
    error_class: str  # the DomainError subclass it returns ("" if not one)


class _Catalogue:
    """DomainError subclasses and reason-forwarding functions of the server."""

    def __init__(self, modules: list[tuple[Path, ast.Module]]) -> None:
        self.classes = {
            node.name: node
            for _, tree in modules
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
        }
        self.errors = {name for name in self.classes if self._is_error(name)}
        self.sinks = {name: Sink(self._reason_at(name), name) for name in self.errors}
        for _, tree in modules:
            for node in ast.walk(tree):
                if isinstance(node, Function) and node.name != "__init__":
                    params = _params(node)
                    if "reason" in params:
                        returns = _name(node.returns) if node.returns else ""
                        error = returns if returns in self.errors else ""
                        self.sinks[node.name] = Sink(params.index("reason"), error)

    def parent(self, name: str) -> str:
        bases = [_name(b) for b in self.classes[name].bases]
        return next((b for b in bases if b in self.classes or b == "Exception"), "")

    def _is_error(self, name: str) -> bool:
        while name in self.classes:
            if name == "DomainError":
                return True
            name = self.parent(name)
        return False

    def _reason_at(self, name: str) -> int | None:
        while name in self.classes:
            init = next(
                (
                    n
                    for n in self.classes[name].body
                    if isinstance(n, Function) and n.name == "__init__"
                ),
                None,
            )
            if init is not None:
                params = _params(init)[1:]
                return params.index("reason") if "reason" in params else None
            name = self.parent(name)
        return None

    def code_of(self, error_class: str) -> str:
        """The gRPC code the API layer maps an error class to."""
        while not hasattr(domain_errors, error_class):
            error_class = self.parent(error_class)
        kind = getattr(domain_errors, error_class).kind
        return CODES[kind].name


@dataclass(frozen=True)
class Raised:
    reason: str
    where: str
    code: str  # the status code it goes out with, "" if unknown


class _Scan(ast.NodeVisitor):
    """Every place the server builds an error, and what is wrong with it."""

    def __init__(self, catalogue: _Catalogue, path: Path) -> None:
        self.catalogue = catalogue
        self.path = path.relative_to(ROOT)
        self.raised: list[Raised] = []
        self.problems: list[str] = []
        self._classes: list[str] = []
        self._functions: list[Function] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._classes.append(node.name)
        self.generic_visit(node)
        self._classes.pop()

    def _visit_function(self, node: Function) -> None:
        self._functions.append(node)
        self.generic_visit(node)
        self._functions.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def _sink(self, call: ast.Call) -> tuple[Sink, str] | None:
        """(sink, class of the error it builds) if `call` builds an error."""
        func = call.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "__init__"
            and isinstance(func.value, ast.Call)
            and _name(func.value.func) == "super"
        ):
            cls = self._classes[-1] if self._classes else ""
            parent = self.catalogue.sinks.get(self.catalogue.parent(cls)) if cls else None
            return (parent, cls) if parent else None
        sink = self.catalogue.sinks.get(_name(func))
        return (sink, sink.error_class) if sink else None

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        found = self._sink(node)
        at = found[0].reason_at if found else None
        if found is None or at is None:
            return
        error_class = found[1]
        where = f"{self.path}:{node.lineno}"
        given = [kw.value for kw in node.keywords if kw.arg == "reason"]
        if len(node.args) > at:
            given.append(node.args[at])
        if not given:
            self.problems.append(f"{where}: an error without a reason")
            return
        reason = given[0]
        member = _enum_member(reason, "ErrorReason")
        # A helper passing on its `reason` parameter, or the error map passing on
        # an error's `reason`: the reason was checked where it was first given.
        forwarded = _name(reason) == "reason" and (
            isinstance(reason, ast.Attribute)
            or (bool(self._functions) and "reason" in _params(self._functions[-1]))
        )
        if member is not None:
            code = self.catalogue.code_of(error_class) if error_class else _status_arg(node)
            self.raised.append(Raised(member, where, code))
        elif not forwarded:
            self.problems.append(f"{where}: reason {ast.unparse(reason)} is not an ErrorReason")
        for arg in node.args:
            if isinstance(arg, ast.Dict) and any(isinstance(k, ast.Constant) for k in arg.keys):
                self.problems.append(f"{where}: metadata keys must be ErrorMetadataKey members")

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.generic_visit(node)
        if _name(node.value) == "metadata" and isinstance(node.slice, ast.Constant):
            where = f"{self.path}:{node.lineno}"
            self.problems.append(f"{where}: metadata key {node.slice.value!r} is a literal")


def _status_arg(call: ast.Call) -> str:
    """X for a `grpc.StatusCode.X` argument (error_map builds INTERNAL that way)."""
    for arg in call.args:
        if isinstance(arg, ast.Attribute) and _name(arg.value) == "StatusCode":
            return arg.attr
    return ""


@functools.cache
def _scan_server() -> tuple[list[Raised], list[str]]:
    catalogue = _Catalogue(SERVER_MODULES)
    raised: list[Raised] = []
    problems: list[str] = []
    for path, tree in SERVER_MODULES:
        scan = _Scan(catalogue, path)
        scan.visit(tree)
        raised += scan.raised
        problems += scan.problems
    return raised, problems


def test_the_scan_sees_the_error_paths() -> None:
    # Guards the scan itself: these are raised through a factory, a helper that
    # forwards its reason, a constructor without one, and the API's error map.
    raised = {r.reason for r in _scan_server()[0]}
    assert {"MODEL_NOT_FOUND", "ROLLOUT_FINISHED", "ETAG_MISMATCH", "INTERNAL"} <= raised
    assert len(_scan_server()[0]) > 100


def test_server_raises_only_enum_members() -> None:
    assert _scan_server()[1] == []


def test_every_reason_is_raised_somewhere() -> None:
    never = sorted(set(ENUMS["ErrorReason"]) - {r.reason for r in _scan_server()[0]})
    assert never == [], "in ErrorReason but raised nowhere in the server: remove or raise them"


def test_reasons_come_with_their_documented_code() -> None:
    raised = _scan_server()[0]
    wrong = [
        f"{r.where}: {r.reason} goes out as {r.code}, error_reason.proto says "
        f"{STATUS_CODES[ErrorReason[r.reason]]}"
        for r in raised
        if r.reason in ErrorReason.__members__ and r.code != STATUS_CODES[ErrorReason[r.reason]]
    ]
    assert wrong == []
    assert [r for r in raised if not r.code] == []


def _uses(modules: list[tuple[Path, ast.Module]]) -> Iterator[tuple[str, ast.AST]]:
    for path, tree in modules:
        for node in ast.walk(tree):
            yield f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}", node


@pytest.mark.parametrize(
    "modules", [SERVER_MODULES, SDK_MODULES, LOADTEST_MODULES], ids=["server", "sdk", "loadtest"]
)
def test_code_names_reasons_only_through_the_enum(modules: list[tuple[Path, ast.Module]]) -> None:
    values = {m.value for m in ErrorReason}
    wrong = []
    for where, node in _uses(modules):
        if isinstance(node, ast.Constant) and node.value in values:
            wrong.append(f"{where}: the literal {node.value!r}; use ErrorReason")
        for enum, members in ENUMS.items():
            name = _enum_member(node, enum) if isinstance(node, ast.expr) else None
            if name is not None and name not in members:
                wrong.append(f"{where}: {enum}.{name} is not a member")
    assert wrong == []


def _allowed_in_comments() -> set[str]:
    """UPPER_SNAKE words that are not reasons: codes, enum values, event types."""
    enum_values = {
        m.group(1)
        for proto in PROTOS.rglob("*.proto")
        for m in re.finditer(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*\d+\s*;", proto.read_text(), re.M)
    }
    codes = {c.name for c in grpc.StatusCode}
    return enum_values | codes | {e.value for e in EventType} | {"UPPER_SNAKE"}


def test_proto_comments_name_only_enum_reasons() -> None:
    allowed = _allowed_in_comments()
    wrong = []
    for proto in sorted(PROTOS.rglob("*.proto")):
        for n, line in enumerate(proto.read_text().splitlines(), 1):
            comment = line.partition("//")[2]
            for word in REASON_LIKE.findall(comment):
                if word not in allowed:
                    wrong.append(f"{proto.relative_to(ROOT)}:{n}: {word}")
    assert wrong == [], "named in a comment but not an ErrorReason (nor a code or enum value)"


def test_reason_comments_name_only_metadata_keys() -> None:
    text = (PROTOS / "modelregistry" / "v1" / "error_reason.proto").read_text()
    reasons = text.partition("enum ErrorReason {")[2].partition("\n}\n")[0]
    comments = re.sub(r"\n\s*//", " ", reasons)  # one line per value comment
    metadata = re.findall(r"Metadata:([^\n]*)", comments)
    named = {key for text in metadata for key in re.findall(r"`([a-z_]+)`", text)}
    assert named, "value comments say which metadata keys they carry"
    assert named <= {k.value for k in ErrorMetadataKey}


def _readme_section(title: str, until: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.partition(f"\n{title}\n")[2].partition(f"\n{until}\n")[0]


def test_readme_error_table_is_the_enum() -> None:
    rows = [
        line.strip("|").split("|")
        for line in _readme_section("### Errors", "## Operations").splitlines()
        if line.startswith("| ") and not line.startswith(("| code ", "| --- "))
    ]
    table = {code.strip(): [r.strip() for r in reasons.split(",")] for code, reasons in rows}
    expected: dict[str, list[str]] = {}
    for reason, code in STATUS_CODES.items():
        expected.setdefault(code, []).append(reason.name)
    assert table == expected


def test_readme_api_section_names_only_enum_reasons() -> None:
    allowed = _allowed_in_comments()
    words = set(REASON_LIKE.findall(_readme_section("## API", "## Operations")))
    assert sorted(words - allowed) == []
