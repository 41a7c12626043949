"""A small, strict subset of AIP-160 filters.

    filter := term { "AND" term }
    term   := "labels." KEY ( "=" | "!=" ) VALUE
            | "labels." KEY ":" "*"
            | "state" ( "=" | "!=" ) STATE          (versions only)
    VALUE  := "double-quoted string" | bare-word

Anything else is INVALID_ARGUMENT (INVALID_FILTER): a filter that silently
matched everything would be worse than an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorReason

from .errors import InvalidArgument
from .resources import VersionState
from .validation import LABEL_KEY

MAX_FILTER_LENGTH = 1024

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>!=|=|:)
      | (?P<star>\*)
      | (?P<word>[A-Za-z0-9_.\-]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class LabelEquals:
    key: str
    value: str
    negate: bool = False


@dataclass(frozen=True)
class LabelPresent:
    key: str


@dataclass(frozen=True)
class StateEquals:
    state: VersionState
    negate: bool = False


Term = LabelEquals | LabelPresent | StateEquals


@dataclass(frozen=True)
class Filter:
    terms: tuple[Term, ...] = ()
    text: str = ""


def _error(message: str) -> InvalidArgument:
    return InvalidArgument(ErrorReason.INVALID_FILTER, f"filter: {message}", "filter")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _error(f"unexpected character at position {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def parse_filter(text: str, allow_state: bool) -> Filter:
    if len(text) > MAX_FILTER_LENGTH:
        raise _error(f"at most {MAX_FILTER_LENGTH} characters")
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in text):
        raise _error("control characters not allowed")
    tokens = _tokens(text)
    terms: list[Term] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens):
            raise _error("unexpected end of filter")
        tok = tokens[i]
        i += 1
        return tok

    while i < len(tokens):
        if terms:
            kind, word = take()
            if kind != "word" or word != "AND":
                raise _error(f"expected AND between terms, got {word!r} (only AND is supported)")
        kind, field = take()
        if kind != "word":
            raise _error(f"expected a field name, got {field!r}")
        _, op = take()
        if field.startswith("labels."):
            key = field[len("labels.") :]
            if not LABEL_KEY.fullmatch(key):
                raise _error(f"{key!r} is not a valid label key")
            if op == ":":
                kind, value = take()
                if kind != "star":
                    raise _error("only 'labels.KEY:*' (has label) is supported with ':'")
                terms.append(LabelPresent(key))
                continue
            if op not in ("=", "!="):
                raise _error(f"unsupported operator {op!r} for labels")
            kind, value = take()
            if kind == "string":
                value = _unquote(value)
            elif kind != "word":
                raise _error(f"expected a value after {field} {op}")
            terms.append(LabelEquals(key, value, negate=op == "!="))
        elif field == "state" and allow_state:
            if op not in ("=", "!="):
                raise _error("state supports = and !=")
            kind, value = take()
            value = _unquote(value) if kind == "string" else value
            try:
                state = VersionState[value]
            except KeyError:
                allowed = ", ".join(s.name for s in VersionState)
                raise _error(f"unknown state {value!r} (one of {allowed})") from None
            terms.append(StateEquals(state, negate=op == "!="))
        else:
            allowed = "labels.KEY, state" if allow_state else "labels.KEY"
            raise _error(f"unknown field {field!r} (supported: {allowed})")
    return Filter(tuple(terms), text.strip())
