-- Citus (docs/citus.md): a DBA manages trust once, on the coordinator, and it holds on every
-- node. auth.distribute_trust() makes the tables the token checks read (keys, account issuers,
-- users, identities, sessions) Citus reference tables, kept identical on every node by Citus
-- (two-phase commit on every write). signing_keys, refresh_tokens, one_time_tokens and the MFA
-- tables follow because of their foreign keys into that group. The rest (lockout, audit, secrets, role-sync sources) stays on
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
                             'refresh_tokens', 'signing_keys', 'one_time_tokens',
                             'mfa_factors', 'mfa_challenges', 'mfa_amr_claims'] LOOP
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
