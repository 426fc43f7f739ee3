#!/usr/bin/env bash
# The whole test suite (README command 2, and what CI runs). Installs its own prerequisites.
#   1. hygiene: cargo fmt --check, cargo clippy -D warnings
#   2. pure core: unit, property and vector tests (cargo test -p auth_core), and a short run of
#      the fuzz harness (scripts/fuzz.sh; the full run is 1,000,000 inputs)
#   3. #[pg_test]s inside a real PostgreSQL (cargo pgrx test)
#   4. the release build packaged (.deb) and installed into the system PostgreSQL 15 with dpkg -i
#   5. SQL regression tests (pg_regress), the in-place upgrade from 0.1.0 (scripts/upgrade_test.sh),
#      end-to-end tests (psycopg, pgbouncer, a real SMTP server, a streaming replica) and the
#      Citus tests (scripts/citus_test.sh: a coordinator and two workers)
#   6. benchmark smoke run (small sizes; figures are not asserted)
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
started=$(date +%s)

step "prerequisites"
scripts/setup.sh

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --all-targets --features pg_test -- -D warnings

step "released upgrade scripts are unchanged"
(cd sql && sha256sum --check --strict released.sha256)

step "core: unit, property and vector tests"
cargo test -p auth_core --release

step "core: fuzz harness, short run (no panic, no accepted forgery)"
scripts/fuzz.sh 50000

step "#[pg_test]: SQL-level tests in a real server"
pgdata=/tmp/auth_ext_pgtest
rm -rf "$pgdata"            # pgrx bug #1671: a reused data directory is not re-initialised
mkdir -p "$pgdata"
chown postgres:postgres "$pgdata" 2>/dev/null || true
cargo pgrx test pg15 --runas postgres --pgdata "$pgdata/data"

step "the release build as a Debian package (scripts/package.sh), installed with dpkg -i"
deb=$(scripts/package.sh 2>target/package.log) || { tail -40 target/package.log; exit 1; }
dpkg -i "$deb" >/dev/null
dpkg -L "$(dpkg-deb -f "$deb" Package)" | grep -q '/extension/auth_ext.control$'

step "SQL regression tests (pg_regress), against the installed package"
scripts/regress.sh

step "in-place upgrade from the released 0.1.0"
scripts/upgrade_test.sh

step "end-to-end tests (psycopg, pgbouncer, SMTP)"
python3 -m pytest -q tests/e2e

step "Citus: a coordinator and two workers (builds Citus 13.2.2 when missing)"
scripts/citus_test.sh

step "benchmark smoke run"
scripts/bench.sh --smoke

echo
echo "all tests passed in $(( $(date +%s) - started )) s"
