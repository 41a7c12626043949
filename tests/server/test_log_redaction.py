"""Credentials never reach the log: every URL in a finished line is scrubbed,
and a real server started with secrets in its URLs logs none of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelregistry_server.logging_setup import JsonFormatter, TextFormatter, redact
from support.ports import free_port, port_open
from support.postgres import PG_HOST, PG_PORT, PG_USER, fresh_database
from support.processes import running
from support.services import require

SECRET = "hunter2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nats://user:hunter2@h:4222", "nats://user:***@h:4222"),
        ("nats://user:hun@ter2@h:4222", "nats://user:***@h:4222"),
        ("nats://hunter2@h:4222", "nats://***@h:4222"),
        ("tls://hunter2@h", "tls://***@h"),
        ("postgresql+psycopg://pg:hunter2@db/x", "postgresql+psycopg://pg:***@db/x"),
        (
            "postgresql://pg@db/x?password=hunter2&sslmode=require",
            "postgresql://pg@db/x?password=***&sslmode=require",
        ),
        ("postgresql://pg@db/x", "postgresql://pg@db/x"),
        ("s3://bucket/prefix and file:///data", "s3://bucket/prefix and file:///data"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_formatters_redact_messages_extras_and_tracebacks(formatter: logging.Formatter) -> None:
    try:
        raise ConnectionError("cannot reach nats://relay:hunter2@10.0.0.1:4222")
    except ConnectionError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "modelreg", logging.WARNING, __file__, 1, "url %s", ("nats://a:hunter2@h",), exc_info
    )
    record.database = "postgresql://pg:hunter2@db/x"
    line = formatter.format(record)
    assert SECRET not in line and "***" in line


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database's name."""
    if not port_open(PG_HOST, PG_PORT):
        require(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")
    with fresh_database() as url:
        yield url.rsplit("/", 1)[1]


def test_a_server_logs_no_credential_of_its_urls(tmp_path: Path, pg_database: str) -> None:
    # trust authentication ignores the password, so the server does start.
    database_url = f"postgresql+psycopg://{PG_USER}:{SECRET}@{PG_HOST}:{PG_PORT}/{pg_database}"
    nats_url = f"nats://relay:{SECRET}@127.0.0.1:{free_port()}"  # nobody listens there
    with running(
        tmp_path / "data",
        "--database-url",
        database_url,
        "--events-nats",
        nats_url,
        "--log-level",
        "INFO",
    ) as server:
        deadline = time.monotonic() + 10
        while "nats relay retrying" not in server.log.read_text():  # at once, not after 2 min
            assert time.monotonic() < deadline, "no NATS warning within 10 s"
            time.sleep(0.2)
    log = server.log.read_text()
    assert "relay:***@127.0.0.1" in log  # the URL is there, scrubbed
    assert SECRET not in log
