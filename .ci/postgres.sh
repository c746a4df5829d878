#!/usr/bin/env bash
# A private PostgreSQL 15 server for the tests: its own data directory in a temp folder, a free local port, trust
# authentication, no password. Nothing outside the temp folder is touched.
#
#   .ci/postgres.sh start   # initdb + start; prints the URL
#   .ci/postgres.sh url     # prints the URL of the running server
#   .ci/postgres.sh stop    # stops the server and removes its data directory
#
# The state (data directory, URL) lives in $AUTODISCO_PG_STATE, by default a folder under /tmp named after this
# checkout, so that several checkouts on one machine each get their own server. initdb refuses to run as root: as
# root the server runs as the `postgres` user if there is one, else as `nobody`.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
state="${AUTODISCO_PG_STATE:-${TMPDIR:-/tmp}/autodisco-pg.$(printf '%s' "$repo" | cksum | cut -d' ' -f1)}"
bin="${AUTODISCO_PG_BIN:-}"
if [[ -z "$bin" ]]; then
    for candidate in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
        if [[ -x "$candidate/initdb" ]]; then bin="$candidate"; break; fi
    done
fi

die() { echo "postgres.sh: $*" >&2; exit 2; }

as_server_user() {  # run a command as the unprivileged server user when we are root
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u "$server_user" -- "$@"
    else
        "$@"
    fi
}

server_user="$(id -un)"
if [[ "$(id -u)" == 0 ]]; then
    if getent passwd postgres >/dev/null; then server_user=postgres; else server_user=nobody; fi
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    [[ -n "$bin" ]] || die "no PostgreSQL install found (looked for initdb under /usr/lib/postgresql/*/bin); set AUTODISCO_PG_BIN"
    if [[ -f "$state/url" ]] && as_server_user "$bin/pg_ctl" -D "$state/data" status >/dev/null 2>&1; then
        cat "$state/url"
        return
    fi
    rm -rf "$state"
    mkdir -p "$state"
    chmod 700 "$state"
    [[ "$(id -u)" == 0 ]] && chown "$server_user" "$state"
    as_server_user "$bin/initdb" -D "$state/data" -U autodisco --auth=trust --encoding=UTF8 --no-locale \
        >"$state/initdb.log" 2>&1 || { cat "$state/initdb.log" >&2; die "initdb failed"; }
    local port
    port="$(free_port)"
    # Sockets in the state folder (not /var/run/postgresql, which may not exist or not be ours); TCP on 127.0.0.1.
    as_server_user "$bin/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 60 \
        -o "-p $port -k $state -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
        || { cat "$state/server.log" >&2; die "the server did not start"; }
    as_server_user "$bin/createdb" -h 127.0.0.1 -p "$port" -U autodisco autodisco_test
    echo "postgresql+psycopg2://autodisco@127.0.0.1:$port/autodisco_test" >"$state/url"
    cat "$state/url"
}

stop() {
    if [[ -d "$state/data" ]]; then
        as_server_user "$bin/pg_ctl" -D "$state/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$state"
}

url() {
    [[ -f "$state/url" ]] || die "no server started from this checkout; run .ci/postgres.sh start"
    cat "$state/url"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) die "usage: .ci/postgres.sh start|stop|url" ;;
esac
