#!/usr/bin/env bash
# A throwaway PostgreSQL for tests and benchmarks (issue 22): Debian's `postgresql` binaries, a cluster initialised into
# a directory of its own, listening on 127.0.0.1 only. PostgreSQL refuses to run as root (and CI runs as root): as
# root, the cluster belongs to the `postgres` user (or `nobody` where that user does not exist).
#
#   scripts/postgres.sh start DIR PORT   # prints the URL: postgres://ecowatt@127.0.0.1:PORT/postgres?sslmode=disable
#   scripts/postgres.sh stop DIR         # immediate shutdown
#
# fsync is off: these clusters hold test data only, and a killed *server instance* (the crash tests) loses nothing
# that PostgreSQL acknowledged either way; only a crash of the machine would.
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
    echo "error: PostgreSQL is not installed (scripts/install-deps.sh postgresql)" >&2
    exit 1
fi
owner=""
if [ "$(id -u)" -eq 0 ]; then
    owner=postgres
    id "$owner" >/dev/null 2>&1 || owner=nobody
fi
as_owner() { if [ -n "$owner" ]; then runuser -u "$owner" -- "$@"; else "$@"; fi; }

case "${1:-}" in
start)
    dir=$2 port=$3
    mkdir -p "$dir"
    chmod 755 "$dir"
    [ -z "$owner" ] || chown "$owner" "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U ecowatt -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null ||
        { cat "$dir/postgres.log" >&2; exit 1; }
    echo "postgres://ecowatt@127.0.0.1:$port/postgres?sslmode=disable"
    ;;
stop)
    as_owner "$bin/pg_ctl" -D "$2/data" -m immediate stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
