#!/usr/bin/env bash
# Make sure the services the tests use are up: PostgreSQL on 127.0.0.1:5432
# (trust auth, user postgres) and nats-server with JetStream on
# 127.0.0.1:4222. Starts each when it is installed but stopped, installs it
# with apt when it is missing. Tests that need an absent service
# skip locally, and fail under MODELREG_TEST_REQUIRE=1.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do
    port_open "$1" && return 0
    sleep 0.5
  done
  return 1
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

ensure_postgres() {
  port_open 5432 && return 0
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql || true
  fi
  if command -v pg_ctlcluster >/dev/null; then
    local v
    v="$(ls /etc/postgresql | sort -V | tail -1)"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  fi
  wait_port 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; return 1; }
}

NATS_STORE=/var/lib/nats-server

ensure_nats() {
  port_open 4222 && return 0
  local bin
  bin="$(command -v nats-server || true)"
  if [ -z "$bin" ]; then
    apt_install nats-server || true
    bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
  fi
  if [ -x "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v start-stop-daemon >/dev/null; then
      mkdir -p "$NATS_STORE"
      start-stop-daemon --start --oknodo --background --exec "$bin" -- \
        -a 127.0.0.1 -p 4222 -js -sd "$NATS_STORE" -l /var/log/nats-server.log || true
    else
      local store="${TMPDIR:-/tmp}/modelreg-nats"
      mkdir -p "$store"
      nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd "$store" >"$store/nats-server.log" 2>&1 &
    fi
  fi
  wait_port 4222 || { echo "nats-server is not reachable on 127.0.0.1:4222" >&2; return 1; }
}

ensure_postgres
ensure_nats
