-- Monitoring (docs/operations.md, "Monitoring"): counters a DBA graphs, one row per
-- (metric, outcome), every pair listed (0 when never counted) so that series are stable.
-- Scope 'cluster' (totals of every backend, added at each transaction end) when auth_ext is in
-- shared_preload_libraries, else 'backend' (the counters of the backend reading the view).
-- No secret is counted or shown: only metric names, outcome codes and numbers.
CREATE VIEW auth.stats AS
    SELECT s.metric, s.outcome, s.value, s.scope FROM auth._stats() s;
COMMENT ON VIEW auth.stats IS 'auth_ext counters by metric and outcome (scope cluster when preloaded, else backend); docs/operations.md';

-- Revocations, whichever path ends a session (auth.sign_out, auth.revoke_session,
-- auth.ban_user), counted by the session's revoked_reason when the transaction commits. The
-- function reads the new row only and runs no SQL.
CREATE TRIGGER stats_revocations
    AFTER UPDATE OF revoked_at ON auth.sessions
    FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION auth._stats_revocation();

COMMENT ON FUNCTION auth.stats_reset() IS 'sets every counter of auth.stats to zero (the cluster''s when preloaded, else this backend''s)';

-- Readable by monitoring roles (pg_monitor) and the owner; reset by the owner (or superuser).
REVOKE ALL ON auth.stats FROM PUBLIC;
REVOKE ALL ON FUNCTION auth._stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.stats_reset() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth._stats_revocation() FROM PUBLIC;
GRANT SELECT ON auth.stats TO pg_monitor;
GRANT EXECUTE ON FUNCTION auth._stats() TO pg_monitor;
