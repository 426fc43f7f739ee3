-- Monitoring (docs/operations.md, "Monitoring"): auth.stats, the counters a DBA graphs. One row
-- per (metric, outcome), every pair listed whether counted or not, so that graphs have stable
-- series. This regression cluster does not preload auth_ext, so the view shows this session's
-- own counters (scope 'backend'); with shared_preload_libraries = 'auth_ext' it shows the whole
-- cluster's totals (scope 'cluster'; tests/e2e/test_stats.py).
\set VERBOSITY terse
SET auth.argon2_memory_kib = 1024;
SET auth.argon2_iterations = 1;
-- Users sign in right after sign-up here (email confirmation: credentials.sql).
SET auth.require_email_confirmation = off;

-- 1. What there is to graph. A new session starts at zero.
SELECT metric, outcome, value, scope FROM auth.stats;

-- 2. Who may read and reset it: pg_monitor (and the owner) reads; only the owner (or a
-- superuser) resets. PUBLIC can do neither.
SELECT grantee, privilege_type FROM information_schema.role_table_grants
 WHERE table_schema = 'auth' AND table_name = 'stats' AND privilege_type = 'SELECT' ORDER BY 1;
SELECT r AS role,
       has_table_privilege(r, 'auth.stats', 'SELECT') AS can_read,
       has_function_privilege(r, 'auth.stats_reset()', 'EXECUTE') AS can_reset
  FROM unnest(ARRAY['pg_monitor', 'public']) AS r;

-- 3. Sign-ins by outcome: a wrong password (the error rolls the transaction back; the attempt
-- still counts) and a right one.
SELECT auth.generate_signing_key() IS NOT NULL AS signing_key;
SELECT auth.sign_up('stats@example.test', 'long enough pw') IS NOT NULL AS signed_up;
SELECT fixtures.try($$ SELECT auth.sign_in('stats@example.test', 'wrong password') $$) AS wrong_password;
SELECT auth.sign_in('stats@example.test', 'long enough pw') AS session \gset
SELECT :'session'::jsonb->>'access_token' AS access_token, :'session'::jsonb->>'refresh_token' AS refresh_token \gset

-- 4. Verifications and the identity cache: the first helper call of a transaction misses the
-- cache and verifies the token; later calls in the transaction hit.
BEGIN;
SELECT set_config('auth.jwt', :'access_token', true) IS NOT NULL AS bound;
SELECT auth.uid() IS NOT NULL AS uid_1;
SELECT auth.uid() IS NOT NULL AS uid_2;
SELECT auth.uid() IS NOT NULL AS uid_3;
COMMIT;
-- auth.verify has its own repeat cache (the same token again in one transaction).
BEGIN;
SELECT auth.verify(:'access_token') ? 'sub' AS verified_1;
SELECT auth.verify(:'access_token') ? 'sub' AS verified_2;
COMMIT;
-- A refused token counts under its error code.
SELECT fixtures.try(format('SELECT auth.verify(%L)', auth.sign('{"sub": "x", "aud": "authenticated", "exp": 1000000000}'))) AS expired;

-- 5. A refresh, then a sign-out: the session's revocation counts when its transaction commits.
SELECT auth.refresh(:'refresh_token') ? 'access_token' AS refreshed;
BEGIN;
SELECT set_config('auth.jwt', :'access_token', true) IS NOT NULL AS bound;
SELECT auth.sign_out() AS sessions_ended;
SELECT value AS sign_outs_before_commit FROM auth.stats WHERE metric = 'revocations' AND outcome = 'sign_out';
COMMIT;
SELECT value AS sign_outs_after_commit FROM auth.stats WHERE metric = 'revocations' AND outcome = 'sign_out';

-- 6. Everything counted in this session.
SELECT metric, outcome, value FROM auth.stats WHERE value <> 0 ORDER BY metric, outcome;

-- 7. Reset.
SELECT auth.stats_reset();
SELECT sum(value) AS total_after_reset FROM auth.stats;
