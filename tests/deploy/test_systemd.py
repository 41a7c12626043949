"""deploy/systemd: install.sh lays out a working server install, the unit
passes `systemd-analyze verify` and is hardened, and every command line the
env file can produce is one `modelreg serve` accepts.

systemd is not PID 1 here, so the unit is verified and scored offline, not
started."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli_help import flags_in, serve_flags
from support.services import require

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "modelreg.service"
VENV_BIN = "/opt/modelreg/.venv/bin/modelreg"
DEV_TOOLS = ("pytest", "ruff", "mypy", "locust", "moto")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        require("systemd-analyze is not installed (apt-get install systemd)")
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=120, check=False
    )


def unit_with_binary(tmp: Path, binary: Path) -> Path:
    """The unit as shipped, with ExecStart pointing at `binary` (verify
    insists that the program exists)."""
    assert VENV_BIN in UNIT.read_text()
    copy = tmp / "modelreg.service"
    copy.write_text(UNIT.read_text().replace(VENV_BIN, str(binary)))
    return copy


def exec_start() -> list[str]:
    """ExecStart's words, continuation lines joined."""
    text = UNIT.read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    """systemd's rules: `${VAR}` is one argument (possibly empty), a lone
    `$VAR` splits on whitespace into zero or more arguments."""
    argv: list[str] = []
    for word in words:
        if re.fullmatch(r"\$\w+", word):
            argv += env.get(word[1:], "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def env_file(text: str) -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in text.splitlines() if "=" in ln and ln[:1] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def test_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = unit_with_binary(tmp_path, Path(sys.executable).parent / "modelreg")
    verified = analyze("verify", str(unit))
    # verify reports unknown keys and bad values as warnings with status 0.
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr
    scored = analyze("security", "--offline=true", str(unit))
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", scored.stdout)
    assert match is not None, scored.stdout + scored.stderr
    assert float(match.group(1)) <= 2.0, scored.stdout[-3000:]


@pytest.mark.parametrize("optional", ["all on", "all off"])
def test_env_file_gives_a_valid_command_line(optional: str) -> None:
    env = env_file((SYSTEMD / "modelreg.env.example").read_text())
    if optional == "all off":
        for key in [k for k in env if k.endswith("_ARGS")]:
            env[key] = ""
        env["MODELREG_DATABASE_URL"] = env["MODELREG_BLOB_STORE"] = ""
    argv = expand(exec_start(), env)
    assert argv[:2] == [VENV_BIN, "serve"]
    assert set(flags_in(argv[2:])) <= serve_flags(), set(flags_in(argv)) - serve_flags()
    present = set(argv)
    if optional == "all on":
        assert {"--metrics-listen", "--events-nats", "--tls-cert", "--tls-key"} <= present
    else:
        assert not present & {"--metrics-listen", "--events-nats", "--tls-cert"}
    # The CLI's own parser takes every value (types included) before --help.
    parsed = subprocess.run(
        [sys.executable, "-m", "modelregistry.cli.main", *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert parsed.returncode == 0, parsed.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_install_script_lays_out_a_server(tmp_path: Path) -> None:
    root = tmp_path / "root"
    command = [
        "bash",
        str(SYSTEMD / "install.sh"),
        "--root",
        str(root),
        "--package",
        f"{ROOT}[server]",
        "--constraints",
        str(ROOT / "constraints.txt"),
        "--python",
        sys.executable,
    ]
    installed = subprocess.run(command, capture_output=True, text=True, timeout=850, check=False)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    # A venv with the server extra only, whose modelreg serves.
    venv = root / "opt/modelreg/.venv"
    listed = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "list"], capture_output=True, text=True, check=True
    ).stdout.lower()
    assert "prometheus_client" in listed.replace("-", "_") and "sqlalchemy" in listed
    assert not [tool for tool in DEV_TOOLS if re.search(rf"^{tool}\s", listed, re.M)]
    help_text = subprocess.run(
        [str(venv / "bin/modelreg"), "serve", "--help"], capture_output=True, text=True
    )
    assert "--metrics-listen" in help_text.stdout

    # Directories and files with the modes the service and its secrets need.
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(root / "var/lib/modelreg") == 0o750
    assert mode(root / "etc/modelreg") == 0o750
    assert mode(root / "etc/modelreg/tls") == 0o750
    assert mode(root / "etc/modelreg/env") == 0o640
    unit = root / "etc/systemd/system/modelreg.service"
    assert unit.read_text() == UNIT.read_text()

    # The installed unit verifies against the installed program.
    verified = analyze("verify", str(unit_with_binary(tmp_path, venv / "bin/modelreg")))
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr

    # Running it again upgrades in place and keeps the operator's settings.
    (root / "etc/modelreg/env").write_text("MODELREG_LISTEN=127.0.0.1:6000\n")
    again = subprocess.run(command, capture_output=True, text=True, timeout=850, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (root / "etc/modelreg/env").read_text() == "MODELREG_LISTEN=127.0.0.1:6000\n"
    assert os.access(venv / "bin/modelreg", os.X_OK)
