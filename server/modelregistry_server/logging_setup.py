"""Structured logs: one JSON object per line (or plain text for people).

Every line passes through `redact`: URLs carry credentials (a database URL,
`nats://user:password@host`, a password query parameter) and turn up in
log lines, in settings and in exception texts alike, so they are scrubbed
from the finished line rather than at each place that logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
# scheme://user:password@ -> scheme://user:***@ ; for NATS a bare
# userinfo is a token, so nats://token@ -> nats://***@ .
# The password part may itself hold an unescaped @: it runs to the last one.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#@\s\"':]*)(:[^/?#\s\"']*)?@")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;\s](?:password|passwd|pwd|token|secret|sslpassword|access_key|secret_key)=)"
    r"[^&;\s\"']*"
)
REDACTED = "***"


def _userinfo(match: re.Match[str]) -> str:
    scheme, user, password = match.group(1), match.group(2), match.group(3)
    if password is not None:
        return f"{scheme}{user}:{REDACTED}@"
    if scheme.lower().startswith(("nats", "tls")):
        return f"{scheme}{REDACTED}@"
    return match.group(0)


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by ***."""
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_PARAM.sub(rf"\1{REDACTED}", _USERINFO.sub(_userinfo, text))


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed as `extra=`: the RPC log line's request id,
    method, code... which both formats must keep."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message key=value...`: for a person at a terminal,
    with the same fields as the JSON lines (values with spaces are quoted)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in extra_fields(record).items())
        if not pairs:
            return redact(line)
        head, newline, trace = line.partition("\n")
        return redact(f"{head} {pairs}{newline}{trace}")


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


def configure(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
