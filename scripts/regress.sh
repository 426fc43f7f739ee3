#!/usr/bin/env bash
# SQL regression tests (tests/pg_regress/{sql,expected}) with PostgreSQL's pg_regress, in a
# throwaway cluster, against the installed extension (scripts/test.sh installs it first).
#   scripts/regress.sh            run, print diffs on failure
#   scripts/regress.sh --accept   run and copy the actual outputs over expected/ (review the diff!)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_REGRESS=$($PG_BIN/pg_config --pkglibdir)/pgxs/src/test/regress/pg_regress
# setup first (it installs the extension and loads the fixtures), then every other file of
# tests/pg_regress/sql in name order.
tests=(setup)
while read -r t; do
  [ "$t" = setup ] || tests+=("$t")
done < <(cd tests/pg_regress/sql && ls -1 -- *.sql | sed 's/\.sql$//' | LC_ALL=C sort)
# A new file has no expected output yet: --accept starts it from an empty one.
if [ "${1:-}" = "--accept" ]; then
  for t in "${tests[@]}"; do
    [ -e "tests/pg_regress/expected/$t.out" ] || : >"tests/pg_regress/expected/$t.out"
  done
fi
dir=/tmp/auth_ext_regress_$$
out=$dir/out

port=$(scripts/cluster.sh start "$dir")
trap 'scripts/cluster.sh stop "$dir"' EXIT
mkdir -p "$out"
chmod 777 "$out"
status=0
"$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE auth_ext_regress" postgres
"$PG_REGRESS" --use-existing --host=127.0.0.1 --port="$port" --user=postgres \
  --dbname=auth_ext_regress --inputdir=tests/pg_regress --outputdir="$out" \
  --bindir="$PG_BIN" "${tests[@]}" || status=$?
if [ "${1:-}" = "--accept" ]; then
  for t in "${tests[@]}"; do cp "$out/results/$t.out" "tests/pg_regress/expected/$t.out"; done
  echo "copied results to tests/pg_regress/expected/"
  exit 0
fi
if [ $status -ne 0 ]; then
  cat "$out/regression.diffs" 2>/dev/null || true
fi
exit $status
