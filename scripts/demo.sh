#!/usr/bin/env bash
# README command 1: install what is needed, build and install auth_ext into the system
# PostgreSQL 15, start a throwaway cluster on loopback, run the demo, tear it down.
set -euo pipefail
cd "$(dirname "$0")/.."
# Another PostgreSQL 15 (e.g. a private copy): PG_BIN=<its bin directory>.
export PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
scripts/setup.sh
echo "[demo] building and installing auth_ext (release)…"
cargo pgrx install --release --pg-config "$PG_BIN/pg_config" >/dev/null
dir=/tmp/auth_ext_demo_$$
port=$(scripts/cluster.sh start "$dir")
trap 'scripts/cluster.sh stop "$dir"' EXIT
echo "[demo] PostgreSQL 15 on 127.0.0.1:$port; tokens signed by PyJWT (demo/sign.py)"
eval "$(python3 demo/sign.py)"
"$PG_BIN/psql" -X -h 127.0.0.1 -p "$port" -U postgres -d postgres \
  -v jwks="$JWKS" -v issuer="$ISSUER" -v alice="$ALICE" -v bob="$BOB" \
  -v expired="$EXPIRED" -v forged="$FORGED" -f demo/demo.sql 2>&1 | grep -v '^SET$\|^RESET$\|^BEGIN$\|^COMMIT$\|^ROLLBACK$'
python3 demo/passwordless.py "$port"
