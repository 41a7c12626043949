#!/usr/bin/env bash
# One entry point for a fresh machine:
#   scripts/dev.sh setup   create .venv and install modelreg with [server,dev]
#   scripts/dev.sh serve   setup, then `modelreg serve` on the embedded default
#   scripts/dev.sh test    setup, check services, lint, type-check, run all tests
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MODELREG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.modelreg-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
    touch "$stamp"
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  setup)
    setup
    ;;
  serve)
    setup
    exec "$VENV/bin/modelreg" serve "$@"
    ;;
  test)
    setup
    bash scripts/services.sh
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    (PATH="$VENV/bin:$PATH" buf lint)
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh {setup|serve|test} [args...]" >&2
    exit 2
    ;;
esac
