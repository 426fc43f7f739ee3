-- auth_ext 0.2.0 → 0.3.0 (ALTER EXTENSION auth_ext UPDATE). Once released, never edit this file
-- (sql/released.sha256 will check it); a later change needs a new upgrade script.
-- What changes, and why (the design is in docs/):
--  * Citus (docs/citus.md): auth.bind(token) binds the identity so that it reaches the workers
--    (and is the one implementation behind auth.authenticate); auth.distribute_trust() makes the
--    trust tables reference tables; auth.revoke_session avoids now() inside COALESCE, which
--    Citus refuses in writes to a reference table.
--  * Monitoring (docs/operations.md, "Monitoring"): the view auth.stats over auth._stats(),
--    auth.stats_reset(), and the revocation-counting trigger on auth.sessions.

-- Citus: the bind that reaches the workers.
CREATE FUNCTION auth."bind"(
	"token" TEXT
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'bind_wrapper';

-- Ends a session: its refresh tokens stop working, its access tokens are TOKEN_REVOKED in
-- every backend by the next statement (the sessions table's invalidation trigger).
CREATE OR REPLACE FUNCTION auth.revoke_session(session_id uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner_id uuid;
    -- A variable, not now() inside COALESCE: Citus refuses functions there in writes to a
    -- reference table (auth.distribute_trust).
    revoked_now timestamptz := now();
BEGIN
    UPDATE auth.sessions s
       SET revoked_at = coalesce(s.revoked_at, revoked_now),
           revoked_reason = coalesce(s.revoked_reason, 'revoked')
     WHERE s.id = revoke_session.session_id
    RETURNING s.user_id INTO owner_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'INVALID_PARAMETER: invalid parameter'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'no such session';
    END IF;
    INSERT INTO auth.audit_log (event, user_id, session_id)
    VALUES ('session_revoked', owner_id, revoke_session.session_id);
END $$;

-- Citus (docs/citus.md): a DBA manages trust once, on the coordinator, and it holds on every
-- node. auth.distribute_trust() makes the tables the token checks read (keys, account issuers,
-- users, identities, sessions) Citus reference tables, kept identical on every node by Citus
-- (two-phase commit on every write). signing_keys and refresh_tokens follow because of their
-- foreign keys into that group. The rest (lockout, audit, secrets, role-sync sources) stays on
-- the coordinator, which is the only node that signs in, refreshes and signs out.
CREATE FUNCTION auth.distribute_trust() RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    t text;
    converted text[] := '{}';
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'NOT_CONFIGURED: the database is not set up for this'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Citus is not installed in this database.',
                  HINT = 'CREATE EXTENSION citus first, on the coordinator, with its workers added.';
    END IF;
    -- The tables have triggers (cache invalidation, role sync) and foreign keys among
    -- themselves: Citus converts such a group only with these two settings, referenced tables
    -- first. One transaction: a half-converted group would silently skip ON DELETE CASCADE.
    SET LOCAL citus.enable_unsafe_triggers = on;
    SET LOCAL citus.enable_local_reference_table_foreign_keys = off;
    FOREACH t IN ARRAY ARRAY['key_store', 'account_issuers', 'users', 'sessions', 'identities',
                             'refresh_tokens', 'signing_keys'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition
                       WHERE logicalrelid OPERATOR(pg_catalog.=) pg_catalog.format('auth.%I', t)::pg_catalog.regclass) THEN
            PERFORM pg_catalog.create_reference_table(pg_catalog.format('auth.%I', t)::pg_catalog.regclass);
            converted := converted OPERATOR(pg_catalog.||) t;
        END IF;
    END LOOP;
    -- The coordinator's own tables keep a stale copy of the rows otherwise (nothing reads it);
    -- only possible once no local table references them.
    FOREACH t IN ARRAY converted LOOP
        PERFORM pg_catalog.truncate_local_data_after_distributing_table(pg_catalog.format('auth.%I', t)::pg_catalog.regclass);
    END LOOP;
    IF pg_catalog.cardinality(converted) OPERATOR(pg_catalog.=) 0 THEN
        RETURN 'the trust tables are already reference tables';
    END IF;
    RETURN 'reference tables now: ' OPERATOR(pg_catalog.||) pg_catalog.array_to_string(converted, ', ');
END $$;
COMMENT ON FUNCTION auth.distribute_trust() IS 'Citus: make the trust tables reference tables, so keys, bans and revocations reach every node (once, on the coordinator)';
REVOKE ALL ON FUNCTION auth.distribute_trust() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Monitoring (sql/085_stats.sql): the same objects as a fresh install.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION auth."_stats"() RETURNS TABLE (
	"metric" TEXT,
	"outcome" TEXT,
	"value" bigint,
	"scope" TEXT
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_stats_wrapper';

CREATE FUNCTION auth."stats_reset"() RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'stats_reset_wrapper';

CREATE FUNCTION auth."_stats_revocation"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', '_stats_revocation_wrapper';

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
