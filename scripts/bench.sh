#!/usr/bin/env bash
# Benchmarks; each prints ratios against a baseline measured in the same run.
#   scripts/bench.sh           full: criterion (core) + 1M-row RLS + pgbench + credentials,
#                              roles, sessions and first bind (≈ 17 minutes)
#   scripts/bench.sh --smoke   tiny sizes, for CI: checks the benchmarks run, asserts no figure
# Expects the release build installed (scripts/test.sh or scripts/demo.sh do that).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--smoke" ]; then
  export AUTH_BENCH_SMOKE=1
  cargo bench -p auth_core --bench verify 2>/dev/null | sed -n '/first verification/,$p'
  cargo bench -p auth_core --bench password 2>/dev/null | sed -n '/verify an argon2id/,$p'
  python3 benches/sql/rls_bench.py --rows 20000 --runs 3 --pgbench-seconds 1
  python3 benches/sql/credentials_bench.py --runs 3
  python3 benches/sql/roles_bench.py --rows 5000 --scan-rows 20000 --runs 1
  python3 benches/sql/sessions_bench.py --rows 20000 --runs 3 --seconds 1
  python3 benches/sql/first_bind_bench.py --smoke
  python3 benches/sql/mfa_otp_bench.py --rows 20000 --runs 3 --codes 3
else
  cargo bench -p auth_core --bench verify 2>/dev/null | sed -n '/first verification/,$p'
  cargo bench -p auth_core --bench password 2>/dev/null | sed -n '/verify an argon2id/,$p'
  python3 benches/sql/rls_bench.py --rows 1000000 --runs 9 --pgbench-seconds 10
  python3 benches/sql/credentials_bench.py --runs 21
  python3 benches/sql/roles_bench.py --rows 100000 --scan-rows 1000000 --runs 3
  python3 benches/sql/sessions_bench.py --rows 1000000 --runs 9 --seconds 10
  python3 benches/sql/first_bind_bench.py
  python3 benches/sql/mfa_otp_bench.py
fi
