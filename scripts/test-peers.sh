#!/usr/bin/env bash
# The peers that give the tests full coverage: PostgreSQL at 127.0.0.1:5432 (trust auth), a
# local AWS API (moto's server mode, from PyPI into .venv-moto) on a free local port, and
# headless Chromium with ChromeDriver (Debian's packages) for the console's browser test.
#
#   scripts/test-peers.sh cargo test --workspace   start both, run the command, stop moto
#   . scripts/test-peers.sh                         start both and export the variables into this
#                                                   shell; moto stops when the shell exits
#
# It exports FLOWFAIL_PG_URL, FLOWFAIL_AWS_ENDPOINT, and FLOWFAIL_PG_REQUIRED=1 /
# FLOWFAIL_AWS_REQUIRED=1 / FLOWFAIL_BROWSER_REQUIRED=1 (with the peers up, a test that cannot
# reach one fails instead of skipping). PostgreSQL is started when a local cluster exists and installed with apt-get when
# none does and this runs as root (CI). Schemas left by earlier test runs are dropped. `.ci/run`
# sources this file. Fails loudly when a peer cannot be brought up.

# Sourced into an interactive shell, this file must not change the shell's options: errors are
# handled explicitly and reported by test_peers_up's status.

test_peers_pg_answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -h 127.0.0.1 -p 5432 -q
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

test_peers_postgres() {
  export FLOWFAIL_PG_URL="${FLOWFAIL_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  echo "== PostgreSQL"
  if ! test_peers_pg_answers; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      if [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL does not answer on 127.0.0.1:5432 and is not installed; install it (apt-get install postgresql) or run this as root" >&2
        return 1
      fi
      echo "installing PostgreSQL"
      apt-get update -qq || return 1
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || return 1
      local ver
      ver=$(ls /etc/postgresql | sort -V | tail -n 1)
      # A fresh cluster asks for passwords on TCP; the tests connect as postgres without one.
      sed -i -E 's/(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "/etc/postgresql/$ver/main/pg_hba.conf"
    fi
    local ver
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || pg_ctlcluster "$ver" main start
    for _ in $(seq 1 30); do test_peers_pg_answers && break; sleep 1; done
  fi
  test_peers_pg_answers || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; return 1; }
  if command -v psql >/dev/null 2>&1; then
    # Schemas left by earlier test runs.
    psql "$FLOWFAIL_PG_URL" -qAt -c "select 'drop schema ' || nspname || ' cascade;' from pg_namespace where nspname ~ '^ff_(test|cli|bench)_'" \
      | PGOPTIONS='--client-min-messages=warning' psql "$FLOWFAIL_PG_URL" -q >/dev/null || true
  fi
  export FLOWFAIL_PG_REQUIRED=1
  echo "PostgreSQL answers at 127.0.0.1:5432"
}

test_peers_moto() {
  echo "== local AWS API (moto, from PyPI)"
  # moto is pinned: a new release may answer differently and change what the tests see.
  local moto_version=5.2.5
  if [ ! -x .venv-moto/bin/moto_server ] \
    || [ "$(.venv-moto/bin/python -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" != "$moto_version" ]; then
    python3 -m venv .venv-moto || return 1
    .venv-moto/bin/pip install --quiet --disable-pip-version-check "moto[server]==$moto_version" || return 1
  fi
  local port log
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || return 1
  log="${TMPDIR:-/tmp}/flowfail-moto-$port.log"
  .venv-moto/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  TEST_PEERS_MOTO_PID=$!
  for _ in $(seq 1 60); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.5
  done
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "moto did not start" >&2
    cat "$log" >&2
    return 1
  fi
  export FLOWFAIL_AWS_ENDPOINT="http://127.0.0.1:$port"
  export FLOWFAIL_AWS_REQUIRED=1
  echo "moto answers at $FLOWFAIL_AWS_ENDPOINT (log: $log)"
}

test_peers_browser() {
  echo "== headless Chromium and ChromeDriver (Debian's chromium, chromium-driver)"
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "chromium and chromedriver are not installed; install them (apt-get install chromium chromium-driver) or run this as root" >&2
      return 1
    fi
    echo "installing chromium and chromium-driver"
    apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null || return 1
  fi
  export FLOWFAIL_BROWSER_REQUIRED=1
  echo "$(chromium --version 2>/dev/null | head -n 1); $(chromedriver --version 2>/dev/null | head -n 1)"
}

# Stops the moto server this file started (by its process id), if any.
test_peers_down() {
  if [ -n "${TEST_PEERS_MOTO_PID:-}" ]; then
    kill "$TEST_PEERS_MOTO_PID" 2>/dev/null || true
    wait "$TEST_PEERS_MOTO_PID" 2>/dev/null || true
    TEST_PEERS_MOTO_PID=
  fi
}

test_peers_up() {
  test_peers_postgres && test_peers_moto && test_peers_browser
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: bring the peers up in the caller's shell, from the repository root.
  pushd "$(dirname "${BASH_SOURCE[0]}")/.." >/dev/null || return 1
  if test_peers_up; then
    popd >/dev/null || true
    trap test_peers_down EXIT
  else
    popd >/dev/null || true
    test_peers_down
    return 1
  fi
else
  set -euo pipefail
  cd "$(dirname "$0")/.."
  trap test_peers_down EXIT
  test_peers_up
  if [ "$#" -gt 0 ]; then
    "$@"
  else
    echo "peers are up; pass a command to run with them (e.g. cargo test --workspace)"
  fi
fi
