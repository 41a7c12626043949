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


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


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
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
