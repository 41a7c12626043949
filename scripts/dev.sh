#!/usr/bin/env bash
# One entry point for a fresh machine:
#   scripts/dev.sh setup   create .venv and install modelreg with [server,dev]
#   scripts/dev.sh serve   install only the [server] extra, then `modelreg serve`
#                          on the embedded default
#   scripts/dev.sh test    setup, check services, the Go toolchain and the
#                          deployment tools (Prometheus, buildah...), lint,
#                          type-check, run all tests
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MODELREG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

fresh() { [ -f "$1" ] && ! [ pyproject.toml -nt "$1" ] && ! [ constraints.txt -nt "$1" ]; }

# setup [EXTRA]: the venv with modelreg and EXTRA (dev: everything; server:
# what `modelreg serve` needs). A dev install also counts as a server one.
setup() {
  local extra="${1:-dev}"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.modelreg-installed"
  [ "$extra" = dev ] || stamp="$VENV/.modelreg-installed-$extra"
  if fresh "$VENV/.modelreg-installed" || fresh "$stamp"; then
    return 0
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[$extra]"
  touch "$stamp"
}

# Debian's Go toolchain and stub generators, for the Go stubs and client
# (tests/client/go/test_go_client.py); installed with apt when missing and run as root.
GO_PACKAGES=(golang-go protobuf-compiler libprotobuf-dev protoc-gen-go protoc-gen-go-grpc
  golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev)

# Debian's Prometheus (prometheus, promtool), buildah with debootstrap (the
# image is built from a Debian base the test assembles) and systemd-analyze,
# for tests/deploy and tests/e2e/test_prometheus.py.
DEPLOY_PACKAGES=(prometheus buildah debootstrap systemd)

ensure_debs() {
  command -v dpkg-query >/dev/null || return 0
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing packages for the tests: ${missing[*]}" >&2
  fi
}

# The contract must stay compatible with the previous commit's (buf.yaml's
# breaking rules). A clone without that commit (a shallow one) has nothing
# to compare with and says so.
proto_breaking() {
  if git rev-parse -q --verify HEAD~1 >/dev/null 2>&1; then
    buf breaking --against ".git#ref=HEAD~1"
  else
    echo "buf breaking: no previous commit in this clone, nothing to compare with" >&2
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  setup)
    setup
    ;;
  serve)
    setup server
    exec "$VENV/bin/modelreg" serve "$@"
    ;;
  test)
    setup
    ensure_debs "${GO_PACKAGES[@]}" "${DEPLOY_PACKAGES[@]}"
    bash scripts/services.sh
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    (PATH="$VENV/bin:$PATH" buf lint)
    (PATH="$VENV/bin:$PATH" proto_breaking)
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh {setup|serve|test} [args...]" >&2
    exit 2
    ;;
esac
