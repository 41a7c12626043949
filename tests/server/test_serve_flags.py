"""`modelreg serve` and `modelreg db`: flags derived from `ServerConfig`, and
joined to the `modelreg` command through entry points."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from modelregistry.cli import main
from modelregistry_server.cli import config_from_args
from modelregistry_server.config import FLAG, ServerConfig


def parse(*argv: str) -> ServerConfig:
    return config_from_args(main.build_parser().parse_args(list(argv)))


def test_no_flags_give_the_config_defaults() -> None:
    assert parse("serve") == ServerConfig()
    assert parse("db", "upgrade") == ServerConfig()


def test_flags_set_fields_in_the_fields_units() -> None:
    config = parse(
        "serve",
        "--upload-ttl-hours=2",
        "--event-retention-days=1",
        "--no-migrate",
        "--tls-cert=cert.pem",
        "--data-dir=/srv/reg",
        "--watch-poll-interval=0.5",
    )
    assert config.upload_ttl_s == 7200
    assert config.event_retention_s == 86400
    assert config.migrate is False
    assert config.tls_cert == Path("cert.pem")
    assert config.data_dir == Path("/srv/reg")
    assert config.watch_poll_interval == 0.5


def test_serve_help_lists_every_flag_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(ServerConfig):
        if FLAG in f.metadata:
            assert f.metadata[FLAG].name in help_text
    assert "HOST:PORT (default 127.0.0.1:50051)" in help_text
    assert "expires (default 24.0)" in help_text


def test_without_the_server_its_commands_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(main, "entry_points", lambda group: [])
    with pytest.raises(SystemExit) as exit_:
        main.main(["serve", "--listen", "127.0.0.1:0"])
    assert exit_.value.code == 1
    assert "pip install 'modelreg[server]'" in capsys.readouterr().err
    # The client commands are unaffected.
    assert main.build_parser().parse_args(["models", "list"]).command == "models"
