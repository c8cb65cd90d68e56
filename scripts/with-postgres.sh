#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL server on 127.0.0.1 (and a socket in a temp dir).
#
#   scripts/with-postgres.sh make test
#
# Installs PostgreSQL from Debian's packages when no server binaries are found (needs root or
# sudo), initialises a cluster in a temp dir, starts it on a free port, exports
# STOREMON_TEST_POSTGRES_URL for the tests, runs the command, then stops the server and removes
# the temp dir whatever the command's outcome.
set -euo pipefail

find_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
  command -v pg_ctl >/dev/null 2>&1 && dirname "$(command -v pg_ctl)"
}

PGBIN=$(find_bin || true)
if [ -z "$PGBIN" ]; then
  echo "with-postgres: installing PostgreSQL from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  PGBIN=$(find_bin)
fi

TMP=$(mktemp -d /tmp/storemon-pg.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# PostgreSQL refuses to run as root: use the packaged postgres user then.
AS=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$TMP"
  AS=(runuser -u postgres --)
fi

stop() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap stop EXIT

"${AS[@]}" "$PGBIN/initdb" -D "$TMP/data" -A trust -U storemon -E UTF8 --locale=C --no-sync >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $TMP -c fsync=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null
echo "with-postgres: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2

export STOREMON_TEST_POSTGRES_URL="postgresql+psycopg://storemon@127.0.0.1:$PORT/postgres"
"$@"
