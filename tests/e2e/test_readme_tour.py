"""The README's CLI tour and SDK example run as written, in order, against a
fresh `modelreg serve`: a reader who copies them gets what the README says."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from support.processes import CLI, ServeProcess, modelreg

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_SERVER = "127.0.0.1:50051"


def section(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        rf"<!-- {name}: begin -->\n```\w+\n(.*?)```\n<!-- {name}: end -->", text, re.S
    )
    assert block, f"README lost its {name} section"
    return block.group(1)


def tour_commands() -> list[list[str]]:
    """Each command line of the tour as argv, comments and blank lines dropped."""
    commands = []
    for line in section("tour").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            commands.append(argv)
    return commands


def make_model_dir(path: Path, weights: bytes) -> None:
    path.mkdir()
    (path / "weights.bin").write_bytes(weights)
    (path / "config.json").write_text('{"layers": 2}\n')


def test_readme_tour_and_sdk_example(tmp_path: Path) -> None:
    commands = tour_commands()
    assert commands[0] == ["export", f"MODELREG_SERVER={DOCUMENTED_SERVER}"]
    assert all(argv[0] == "modelreg" for argv in commands[1:])
    make_model_dir(tmp_path / "model_dir", os.urandom(64 << 10))
    make_model_dir(tmp_path / "model_dir_v2", os.urandom(64 << 10))

    srv = ServeProcess(tmp_path / "data")
    srv.start()
    try:
        env = {**os.environ, "MODELREG_SERVER": srv.address}
        run_tour(commands[1:], env, tmp_path)
        run_sdk_example(srv.address, env, tmp_path)
    finally:
        srv.stop()


def run_tour(commands: list[list[str]], env: dict[str, str], cwd: Path) -> None:
    filled: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for argv in commands:
        args = [filled_in(arg, filled) for arg in argv[1:]]
        if args[:2] == ["events", "watch"]:
            # Follows the log until interrupted: it must still be following.
            try:
                done = subprocess.run(
                    [*CLI, *args], capture_output=True, text=True, timeout=5, env=env, cwd=cwd
                )
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"{argv} exited {done.returncode}: {done.stderr}")
        done = subprocess.run(
            [*CLI, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
        )
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stderr}"
        outputs[" ".join(args[:2])] = done.stdout
        if args[:2] in (["rollouts", "start"], ["rollouts", "advance"]):
            # What a reader copies from the output: the rollout's name and etag.
            rows = dict(line.split(None, 1) for line in done.stdout.splitlines() if " " in line)
            filled["<id>"] = rows["name"].strip().rsplit("/", 1)[-1]
            filled["<etag>"] = rows["etag"].strip()
            as_json = modelreg("-o", "json", "rollouts", "list", "fraud", env=env)
            listed = json.loads(as_json.stdout)[0]
            assert listed["name"].endswith("/" + filled["<id>"])
            assert listed["etag"] == filled["<etag>"]

    assert (cwd / "out" / "weights.bin").read_bytes() == (
        cwd / "model_dir" / "weights.bin"
    ).read_bytes()
    assert "models/fraud/versions/1" in outputs["resolve fraud/aliases/production"]
    assert "1 -> 2" in outputs["events list"]
    resolved = json.loads(
        modelreg("-o", "json", "resolve", "fraud/aliases/production", env=env).stdout
    )
    assert resolved["model_version"]["name"] == "models/fraud/versions/2"
    rollouts = json.loads(modelreg("-o", "json", "rollouts", "list", "fraud", env=env).stdout)
    assert [r["state"] for r in rollouts] == ["ROLLED_BACK"]


def filled_in(arg: str, filled: dict[str, str]) -> str:
    for placeholder, value in filled.items():
        arg = arg.replace(placeholder, value)
    assert "<" not in arg, f"{arg}: no earlier command printed this"
    return arg


def run_sdk_example(address: str, env: dict[str, str], cwd: Path) -> None:
    """Runs the example until its watch prints an event: promoting the new
    version is refused by nobody, and a later alias move is heard."""
    code = section("sdk")
    assert DOCUMENTED_SERVER in code
    script = cwd / "example.py"
    script.write_text(code.replace(DOCUMENTED_SERVER, address))
    proc = subprocess.Popen(
        [sys.executable, "-u", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        wait_for_version(env, "models/fraud/versions/3")
        mover = threading.Thread(target=keep_moving_staging, args=(env, proc), daemon=True)
        mover.start()
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the watch prints events as they commit
        assert re.fullmatch(r"\d+ ALIAS_SET models/fraud/aliases/\w+\n", line), line
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()


def wait_for_version(env: dict[str, str], version: str, within: float = 30) -> None:
    """Until production points at `version`: the example promoted it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done = modelreg("-o", "json", "resolve", "fraud/aliases/production", env=env)
        if done.returncode == 0 and json.loads(done.stdout)["model_version"]["name"] == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"production never reached {version}")


def keep_moving_staging(env: dict[str, str], proc: subprocess.Popen[str]) -> None:
    """Moves an alias now and then until the example has heard about it (its
    watch starts from the present, at a moment the test cannot see)."""
    while proc.poll() is None:
        modelreg("aliases", "set", "fraud/aliases/staging", "3", env=env)
        time.sleep(0.5)
