"""Rendering command results: aligned tables for people, JSON for scripts.

JSON is the proto3 JSON mapping with the proto field names and every field
present (defaults included), so a script sees the same keys whatever the
values; listings are one JSON array holding every page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TextIO

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from ..v1 import access_service_pb2 as acc
from ..v1 import resources_pb2 as pb

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


Result = Message | Listing | Deleted


def render(result: Result, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(_json(result) + "\n")
    else:
        out.write(_table(result))


def _as_dict(message: Message) -> dict[str, Any]:
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
        ordered[fd.name] = value
    return ordered


# Well-known types whose JSON form is not one key per field.
_OPAQUE = frozenset({"google.protobuf.Struct", "google.protobuf.Timestamp"})


def _json(result: Result) -> str:
    if isinstance(result, Listing):
        return json.dumps([_as_dict(m) for m in result.items], indent=2)
    if isinstance(result, Deleted):
        return "{}"
    return json.dumps(_as_dict(result), indent=2)


def format_time(ts: timestamp_pb2.Timestamp) -> str:
    """Seconds precision, UTC: enough to read, short enough for a column."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _model(m: Message) -> pb.Model:
    assert isinstance(m, pb.Model)
    return m


def _version(m: Message) -> pb.ModelVersion:
    assert isinstance(m, pb.ModelVersion)
    return m


def _alias(m: Message) -> pb.Alias:
    assert isinstance(m, pb.Alias)
    return m


def _rollout(m: Message) -> pb.Rollout:
    assert isinstance(m, pb.Rollout)
    return m


def _event(m: Message) -> pb.Event:
    assert isinstance(m, pb.Event)
    return m


def _token(m: Message) -> acc.ServiceAccountToken:
    assert isinstance(m, acc.ServiceAccountToken)
    return m


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
        elif isinstance(value, struct_pb2.Struct):
            rows.append((key, json.dumps(json_format.MessageToDict(value), sort_keys=True)))
        else:
            rows.extend(fields(value, key + "."))
    return rows


def _table(result: Result) -> str:
    if isinstance(result, Deleted):
        return f"deleted {result.name}\n"
    if isinstance(result, Listing):
        columns = COLUMNS[result.kind]
        header = [title for title, _ in columns]
        return align([header, *([cell(m) for _, cell in columns] for m in result.items)])
    return align(fields(result))
