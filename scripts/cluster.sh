#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for the demo and the end-to-end tests: owned by the postgres
# OS user (the server refuses to run as root), listening on loopback only, on a free port.
#   scripts/cluster.sh start <dir> [extra postgresql.conf lines…]   → prints the port
#   scripts/cluster.sh stop <dir>                                  → stops it and deletes <dir>
#                                                                    (KEEP_CLUSTER=1 keeps it)
set -euo pipefail
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

as_pg() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

cmd=${1:?usage: cluster.sh start|stop <dir>}
dir=${2:?usage: cluster.sh start|stop <dir>}
shift 2
case "$cmd" in
  start)
    rm -rf "$dir"
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1
    port=$(free_port)
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$dir'"
      echo "fsync = off"
      echo "max_connections = 100"
      for line in "$@"; do echo "$line"; done
    } >>"$dir/data/postgresql.conf"
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
    echo "$port" >"$dir/port"
    echo "$port"
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      # A server still in crash recovery may not answer a fast shutdown: then immediate, so
      # that the directory is never removed under a running server.
      as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -t 20 -w stop >/dev/null 2>&1 \
        || as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    # Torn down, unless someone wants to read the server log (KEEP_CLUSTER=1).
    if [ "${KEEP_CLUSTER:-0}" != 1 ]; then rm -rf "$dir"; fi
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
