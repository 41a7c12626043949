#!/usr/bin/env bash
# Install modelreg as a systemd service on this host (as root):
#
#   deploy/systemd/install.sh                       # modelreg[server] from the package index
#   deploy/systemd/install.sh --package ./dist/modelreg-0.1.0-py3-none-any.whl
#   deploy/systemd/install.sh --package '.[server]' --constraints constraints.txt
#
# It creates the modelreg system user, a virtualenv in /opt/modelreg/.venv
# with the server extra, /var/lib/modelreg (0750, modelreg), /etc/modelreg and
# /etc/modelreg/tls (0750, root:modelreg), /etc/modelreg/env from
# modelreg.env.example unless it exists, and the unit in /etc/systemd/system.
# It starts nothing: edit /etc/modelreg/env, put TLS files in
# /etc/modelreg/tls, then `systemctl enable --now modelreg`. Running it again
# upgrades the package and the unit and keeps /etc/modelreg/env.
#
# --root DIR installs into DIR instead of / (to inspect or package the result):
# no user is created, no owner is set and systemd is not told.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT=""
PACKAGE="modelreg[server]"
PYTHON="python3"
CONSTRAINTS=""

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  echo "usage: $0 [--package SPEC] [--constraints FILE] [--python PYTHON] [--root DIR]" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --package) PACKAGE="$2"; shift 2 ;;
    --constraints) CONSTRAINTS="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --root) ROOT="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  echo "run as root (or with --root DIR)" >&2
  exit 1
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  { echo "$PYTHON is older than Python 3.11" >&2; exit 1; }

VENV="$ROOT/opt/modelreg/.venv"
STATE="$ROOT/var/lib/modelreg"
CONF="$ROOT/etc/modelreg"
UNITS="$ROOT/etc/systemd/system"

# owner USER:GROUP: install(1)'s -o/-g options, none under --root.
owner() { [ -n "$ROOT" ] || echo "-o ${1%%:*} -g ${1##*:}"; }

if [ -z "$ROOT" ] && ! getent passwd modelreg >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/modelreg --shell /usr/sbin/nologin modelreg
  echo "created user modelreg"
fi

install -d -m 0755 "$ROOT/opt/modelreg"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --upgrade ${CONSTRAINTS:+-c "$CONSTRAINTS"} "$PACKAGE"
"$VENV/bin/modelreg" serve --help >/dev/null
echo "installed $("$VENV/bin/python" -m pip show modelreg | sed -n 's/^Version: /modelreg /p') in $VENV"

# shellcheck disable=SC2046  # owner prints separate options, or nothing
install -d -m 0750 $(owner modelreg:modelreg) "$STATE"
# shellcheck disable=SC2046
install -d -m 0750 $(owner root:modelreg) "$CONF" "$CONF/tls"
if [ ! -e "$CONF/env" ]; then
  # shellcheck disable=SC2046
  install -m 0640 $(owner root:modelreg) "$HERE/modelreg.env.example" "$CONF/env"
  echo "wrote $CONF/env: edit it before starting"
fi
install -d -m 0755 "$UNITS"
install -m 0644 "$HERE/modelreg.service" "$UNITS/modelreg.service"

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
cat <<EOF
next:
  1. edit $CONF/env (database, blob store, optional metrics, NATS and TLS flags)
  2. TLS: put server.crt and server.key in $CONF/tls (0640 root:modelreg)
  3. systemctl enable --now modelreg && journalctl -u modelreg -f
EOF
