#!/usr/bin/env bash
# The Citus scale-out tests (docs/citus.md, tests/citus/): a coordinator and two workers on
# loopback, auth_ext as installed in the system PostgreSQL 15.
#   1. builds and installs Citus 13.2.2 into that PostgreSQL with the shared build script
#      (../shared/citus/build.sh beside the repository, else /work/shared/citus/build.sh);
#      the script does nothing when that Citus is already installed. Run as root.
#   2. runs python3 -m pytest -q tests/citus and prints its wall time.
# A missing build script is a failure, never a skip. PG_BIN selects the PostgreSQL binaries
# (default /usr/lib/postgresql/15/bin). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

build=""
for candidate in "$repo/../shared/citus/build.sh" /work/shared/citus/build.sh; do
  if [ -f "$candidate" ]; then build=$candidate; break; fi
done
if [ -z "$build" ]; then
  echo "citus_test.sh: FAILED: the Citus build script was not found" >&2
  echo "  looked for $repo/../shared/citus/build.sh and /work/shared/citus/build.sh" >&2
  echo "  (it builds Citus 13.2.2 from citus-13.2.2.tar.gz; the Citus tests cannot run without it)" >&2
  exit 1
fi

if [ "$(id -u)" != 0 ]; then
  echo "citus_test.sh: FAILED: run as root (the build installs into the system PostgreSQL and the" >&2
  echo "  test clusters run as the OS user postgres)" >&2
  exit 1
fi

echo "citus_test.sh: Citus via $build"
bash "$build" "$PG_BIN/pg_config"

started=$(date +%s.%N)
status=0
python3 -m pytest -q tests/citus "$@" || status=$?
elapsed=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)")
if [ "$status" = 0 ]; then
  echo "citus tests passed in $elapsed s (wall time)"
else
  echo "citus tests FAILED (pytest exit $status) after $elapsed s (wall time)" >&2
fi
exit "$status"
