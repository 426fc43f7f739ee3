#!/usr/bin/env bash
# Backend memory before and after binding N distinct tokens in one transaction (a batch job
# looping set_config + auth.uid()), in a throwaway cluster with the installed extension.
#   benches/sql/bind_memory.sh [N]      (default 100000)
# 0.1.0 kept every replaced identity until commit: 742 MiB after 100,000 binds.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-100000}
dir=/tmp/auth_ext_bind_memory_$$
port=$(scripts/cluster.sh start "$dir")
trap 'scripts/cluster.sh stop "$dir"' EXIT
P="/usr/lib/postgresql/15/bin/psql -h 127.0.0.1 -p $port -U postgres -X -q -d postgres -v ON_ERROR_STOP=1"
$P -c "CREATE EXTENSION auth_ext" -c "CREATE ROLE batch LOGIN IN ROLE pg_read_all_stats"
$P -c "SELECT auth.generate_signing_key('HS256')" >/dev/null
$P -c "CREATE TABLE toks AS SELECT i, auth.sign(jsonb_build_object('sub', gen_random_uuid(), 'aud', 'authenticated')) t
         FROM generate_series(1, $n) i; GRANT SELECT ON toks TO batch"
$P -U batch -At <<'SQL'
SELECT auth.uid();
BEGIN;
SELECT 'backend memory before: ' || pg_size_pretty(sum(total_bytes)) FROM pg_backend_memory_contexts;
DO $$ DECLARE r record; x uuid; BEGIN
  FOR r IN SELECT t FROM toks ORDER BY i LOOP
    PERFORM set_config('auth.jwt', r.t, true); x := auth.uid();
  END LOOP; END $$;
SELECT 'after ' || count(*) || ' binds:  ' || (SELECT pg_size_pretty(sum(total_bytes)) FROM pg_backend_memory_contexts) FROM toks;
COMMIT;
SQL
