"""Rendering command results: aligned tables for people, JSON for scripts.

JSON is the proto3 JSON mapping with the proto field names and every field
present (defaults included), so a script sees the same keys whatever the
values; listings are one JSON array holding every page. Two departures make
it easier to script against: 64-bit integers are JSON numbers (the mapping
writes them as strings), and an event's `before_json`/`after_json` are the
parsed objects (null when empty) rather than JSON inside a string.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TextIO

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ..v1 import access_service_pb2 as acc
from ..v1 import resources_pb2 as pb
from ..v1 import signature_service_pb2 as srpc

Column = tuple[str, Callable[[Message], str]]


@dataclass(frozen=True)
class Listing:
    """Every item of a listing, and their type (which picks the table's columns)."""

    kind: type[Message]
    items: Sequence[Message] = field(default_factory=list)


@dataclass(frozen=True)
class Deleted:
    """The outcome of a delete: nothing comes back but the name that is gone."""

    name: str


@dataclass(frozen=True)
class Sized:
    """Versions with what their models weigh: the sum of the files each
    manifest lists, by version name. The artifact's `size_bytes` is the
    manifest's own size, which tells a person nothing about the model; the
    tables show this instead (JSON stays the API's message)."""

    result: Message | Listing
    model_bytes: Mapping[str, int]


Result = Message | Listing | Deleted | Sized


def render(result: Result, fmt: str, out: TextIO) -> None:
    if isinstance(result, Sized):
        if fmt == "json":
            result = result.result
        else:
            out.write(_sized_table(result))
            return
    if fmt == "json":
        out.write(_json(result) + "\n")
    else:
        out.write(_table(result))


def as_dict(message: Message) -> dict[str, Any]:
    """The message as the JSON object `-o json` prints (see the module docstring)."""
    return _in_field_order(
        message,
        json_format.MessageToDict(
            message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
        ),
    )


def _in_field_order(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    """Keys in the order of the .proto, whatever is set: diffs of two outputs stay readable."""
    ordered: dict[str, Any] = {}
    for fd in message.DESCRIPTOR.fields:
        if fd.name not in data:
            continue
        value = data[fd.name]
        sub = fd.message_type
        if sub is not None and not sub.GetOptions().map_entry and isinstance(value, dict):
            nested = getattr(message, fd.name)
            if sub.full_name not in _OPAQUE:
                value = _in_field_order(nested, value)
        elif fd.type in _INT64_TYPES:
            value = [int(v) for v in value] if isinstance(value, list) else int(value)
        elif fd.full_name in _EMBEDDED_JSON:
            value = json.loads(value) if value else None
        ordered[fd.name] = value
    return ordered


_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
# String fields that carry JSON: printed as the JSON they hold.
_EMBEDDED_JSON = frozenset(
    {"modelregistry.v1.Event.before_json", "modelregistry.v1.Event.after_json"}
)


# Well-known types whose JSON form is not one key per field.
_OPAQUE = frozenset({"google.protobuf.Struct", "google.protobuf.Timestamp"})


def _json(result: Message | Listing | Deleted) -> str:
    if isinstance(result, Listing):
        return json.dumps([as_dict(m) for m in result.items], indent=2)
    if isinstance(result, Deleted):
        return "{}"
    return json.dumps(as_dict(result), indent=2)


def format_time(ts: timestamp_pb2.Timestamp) -> str:
    """Seconds precision, UTC: enough to read, short enough for a column."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def format_size(n: int) -> str:
    """Bytes for a person: 1023 B, 48.0 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def alias_change(event: pb.Event) -> str:
    """`1 -> 2` for an alias event (`- -> 1` when created, `1 -> -` when
    deleted): where the alias moved, which the resource name alone does not say."""
    if not event.type.startswith("ALIAS_"):
        return ""

    def version(snapshot: str) -> str:
        if not snapshot:
            return "-"
        name = str(json.loads(snapshot).get("version", ""))
        return name.rsplit("/", 1)[-1] or "-"

    return f"{version(event.before_json)} -> {version(event.after_json)}"


def _model(m: Message) -> pb.Model:
    assert isinstance(m, pb.Model)
    return m


def _version(m: Message) -> pb.ModelVersion:
    assert isinstance(m, pb.ModelVersion)
    return m


def _alias(m: Message) -> pb.Alias:
    assert isinstance(m, pb.Alias)
    return m


def _approval(v: pb.ModelVersion) -> str:
    if not v.HasField("approval") or not v.approval.state:
        return "PENDING"
    return pb.Approval.State.Name(v.approval.state)


def _rollout(m: Message) -> pb.Rollout:
    assert isinstance(m, pb.Rollout)
    return m


def _event(m: Message) -> pb.Event:
    assert isinstance(m, pb.Event)
    return m


def _token(m: Message) -> acc.ServiceAccountToken:
    assert isinstance(m, acc.ServiceAccountToken)
    return m


def _signature(m: Message) -> srpc.Signature:
    assert isinstance(m, srpc.Signature)
    return m


def _signature_status(s: srpc.Signature) -> str:
    return "trusted" if s.trusted else f"untrusted: {s.untrusted_reason}"


COLUMNS: dict[type[Message], list[Column]] = {
    pb.Model: [
        ("NAME", lambda m: _model(m).name),
        ("DISPLAY NAME", lambda m: _model(m).display_name),
        ("LATEST", lambda m: str(_model(m).latest_version)),
        ("LABELS", lambda m: format_labels(_model(m).labels)),
        ("UPDATED", lambda m: format_time(_model(m).update_time)),
    ],
    pb.ModelVersion: [
        ("NAME", lambda m: _version(m).name),
        ("STATE", lambda m: pb.ModelVersion.State.Name(_version(m).state)),
        ("APPROVAL", lambda m: _approval(_version(m))),
        ("SOURCE URI", lambda m: _version(m).source_uri),
        ("DIGEST", lambda m: _version(m).artifact.digest),
        ("LABELS", lambda m: format_labels(_version(m).labels)),
        ("CREATED", lambda m: format_time(_version(m).create_time)),
    ],
    pb.Alias: [
        ("NAME", lambda m: _alias(m).name),
        ("VERSION", lambda m: _alias(m).version),
        ("UPDATED", lambda m: format_time(_alias(m).update_time)),
        ("ETAG", lambda m: _alias(m).etag),
    ],
    pb.Rollout: [
        ("NAME", lambda m: _rollout(m).name),
        ("ALIAS", lambda m: _rollout(m).alias),
        ("STABLE", lambda m: _rollout(m).stable_version),
        ("CANDIDATE", lambda m: _rollout(m).candidate_version),
        ("PERCENT", lambda m: str(_rollout(m).percent)),
        ("STATE", lambda m: pb.Rollout.State.Name(_rollout(m).state)),
        ("ETAG", lambda m: _rollout(m).etag),
    ],
    pb.Event: [
        ("REVISION", lambda m: str(_event(m).revision)),
        ("TIME", lambda m: format_time(_event(m).time)),
        ("TYPE", lambda m: _event(m).type),
        ("RESOURCE", lambda m: _event(m).resource),
        ("CHANGE", lambda m: alias_change(_event(m))),
        ("ACTOR", lambda m: _event(m).actor),
    ],
    acc.ServiceAccountToken: [
        ("NAME", lambda m: _token(m).name),
        ("DESCRIPTION", lambda m: _token(m).description),
        ("CREATED", lambda m: format_time(_token(m).create_time)),
        ("EXPIRES", lambda m: format_time(_token(m).expire_time)),
        ("REVOKED", lambda m: format_time(_token(m).revoke_time)),
        ("CREATOR", lambda m: _token(m).creator),
    ],
    srpc.Signature: [
        ("NAME", lambda m: _signature(m).name),
        ("SIGNER", lambda m: _signature(m).signer),
        ("KIND", lambda m: srpc.Signature.SignerKind.Name(_signature(m).signer_kind)),
        ("FILES", lambda m: str(_signature(m).file_count)),
        ("ATTACHED", lambda m: format_time(_signature(m).create_time)),
        ("BY", lambda m: _signature(m).creator),
        ("STATUS", lambda m: _signature_status(_signature(m))),
    ],
}


def align(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def fields(message: Message, prefix: str = "") -> list[tuple[str, str]]:
    """(field path, shown value) for every field, nested messages flattened with dots."""
    rows: list[tuple[str, str]] = []
    for fd in message.DESCRIPTOR.fields:
        key = prefix + fd.name
        value = getattr(message, fd.name)
        sub = fd.message_type
        if sub is not None and sub.GetOptions().map_entry:
            rows.append((key, format_labels(value)))
        elif fd.is_repeated and sub is not None:
            for i, item in enumerate(value):
                rows.extend(fields(item, f"{key}[{i}]."))
        elif fd.is_repeated:
            rows.append((key, ",".join(str(v) for v in value)))
        elif fd.enum_type is not None:
            rows.append((key, fd.enum_type.values_by_number[value].name))
        elif sub is None:
            rows.append((key, str(value)))
        elif not message.HasField(fd.name):
            rows.append((key, ""))
        elif isinstance(value, timestamp_pb2.Timestamp):
            rows.append((key, format_time(value)))
        elif isinstance(value, duration_pb2.Duration):
            rows.append((key, f"{value.ToTimedelta().total_seconds():.3f}s"))
        elif isinstance(value, struct_pb2.Struct):
            rows.append((key, json.dumps(json_format.MessageToDict(value), sort_keys=True)))
        else:
            rows.extend(fields(value, key + "."))
    return rows


def _sized_table(sized: Sized) -> str:
    def size_of(m: Message) -> str:
        total = sized.model_bytes.get(_version(m).name)
        return "" if total is None else format_size(total)

    if isinstance(sized.result, Listing):
        columns = list(COLUMNS[pb.ModelVersion])
        columns.insert(3, ("MODEL SIZE", size_of))
        header = [title for title, _ in columns]
        return align([header, *([cell(m) for _, cell in columns] for m in sized.result.items)])
    rows = fields(sized.result)
    total = sized.model_bytes.get(_version(sized.result).name)
    if total is not None:
        after = max(i for i, (key, _) in enumerate(rows) if key.startswith("artifact."))
        rows.insert(after + 1, ("model_size", f"{format_size(total)} ({total} bytes)"))
    return align(rows)


def _table(result: Message | Listing | Deleted) -> str:
    if isinstance(result, Deleted):
        return f"deleted {result.name}\n"
    if isinstance(result, Listing):
        columns = COLUMNS[result.kind]
        header = [title for title, _ in columns]
        return align([header, *([cell(m) for _, cell in columns] for m in result.items)])
    rows = fields(result)
    if isinstance(result, pb.Model):
        rows.append(("storage", storage_use(result)))
    return align(rows)


def storage_use(m: pb.Model) -> str:
    """`1.2 GiB of 10.0 GiB (12%)`, or `1.2 GiB (no quota)`."""
    used = format_size(m.storage_used_bytes)
    if not m.storage_limit_bytes:
        return f"{used} (no quota)"
    share = 100 * m.storage_used_bytes / m.storage_limit_bytes
    return f"{used} of {format_size(m.storage_limit_bytes)} ({share:.0f}%)"
