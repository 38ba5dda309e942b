#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL 15 server: initialised in a temporary
# folder, listening on loopback only, and stopped and deleted when the command ends,
# whether it passed or failed. Usage: tests/with-postgres.sh pytest [args...]
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
data=$(mktemp -d /tmp/cancerfax-pg.XXXXXX)

# PostgreSQL refuses to run as root: on CI and these machines we are root, so the server
# runs as the postgres user.
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$data"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

stop() {
    as_pg "$PG_BIN/pg_ctl" -D "$data/db" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$data"
}
trap stop EXIT

as_pg "$PG_BIN/initdb" -D "$data/db" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $data -c fsync=off -c full_page_writes=off" start >/dev/null
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') is running on 127.0.0.1:$PG_PORT for the tests"

export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/cancerfax"
"$@"
