-- auth_ext 0.1.0 → 0.2.0 (ALTER EXTENSION auth_ext UPDATE). Released: never edit this file
-- (sql/released.sha256 checks it); a later change needs a new upgrade script.
-- What changes, and why (the design is in docs/):
--  * identity is (issuer, subject): auth.account_issuers, add_account_issuer/drop_account_issuer,
--    and invalidation of every backend's cache when links (auth.identities) change;
--  * keys carry an explicit audience: a 0.1.0 key without one accepted any aud, and now says so
--    ('{*}'), so nothing that verified before stops verifying;
--  * fail-closed lockout: each failed-sign-in row belongs to a run (run_started_at; rows from
--    0.1.0 start theirs now);
--  * auth.verify(token) is a C function of the library (cached repeats), and jwks,
--    revoke_session, ban_user and purge_expired are SQL a DBA can read (060_session_admin.sql);
--  * the drop event trigger runs as the owner, with its casts schema-qualified;
--  * databases must be UTF8 (e-mail normalisation), as for a new install.

DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'auth_ext needs a UTF8 database; this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the database with ENCODING ''UTF8'' (e.g. CREATE DATABASE … ENCODING ''UTF8'' TEMPLATE template0).';
    END IF;
END $$;

-- Keys: the audience becomes explicit.
UPDATE auth.key_store SET audience = '{*}' WHERE audience IS NULL;
ALTER TABLE auth.key_store ALTER COLUMN audience SET NOT NULL;

-- Lockout runs.
ALTER TABLE auth.failed_sign_ins ADD COLUMN run_started_at timestamptz NOT NULL DEFAULT now();

-- auth.verify(token): the library's C entry point.
CREATE OR REPLACE FUNCTION auth.verify(token text) RETURNS jsonb
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'auth_verify';
COMMENT ON FUNCTION auth.verify(text) IS 'claims of the token verified against the key set; binds nothing';

-- Session administration as readable SQL (was Rust in 0.1.0); grants are kept.
-- The public keys of our active signing keys, as a JWKS to publish (e.g. at
-- /.well-known/jwks.json). HMAC keys are never published. Only reads: works on a standby.
CREATE OR REPLACE FUNCTION auth.jwks() RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('keys', coalesce(jsonb_agg(k.jwk ORDER BY k.created_at), '[]'::pg_catalog.jsonb))
      FROM auth.key_store k
     WHERE k.source = 'generated' AND k.kty <> 'oct'
       AND (k.valid_until IS NULL OR k.valid_until > now())
$$;
COMMENT ON FUNCTION auth.jwks() IS 'public keys of auth_ext''s active signing keys (JWKS); never HMAC secrets';

-- Ends a session: its refresh tokens stop working, its access tokens are TOKEN_REVOKED in
-- every backend by the next statement (the sessions table's invalidation trigger).
CREATE OR REPLACE FUNCTION auth.revoke_session(session_id uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner_id uuid;
BEGIN
    UPDATE auth.sessions s
       SET revoked_at = coalesce(s.revoked_at, now()),
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

-- Bans a user until `until` (NULL or a past time lifts the ban): sign-in, refresh and every
-- access token of the user are refused meanwhile, and the user's sessions end.
CREATE OR REPLACE FUNCTION auth.ban_user(user_id uuid, until timestamptz) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    banned boolean := coalesce(until > now(), false);
BEGIN
    UPDATE auth.users u SET banned_until = until, updated_at = now() WHERE u.id = ban_user.user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'INVALID_PARAMETER: invalid parameter'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = 'no such user';
    END IF;
    IF banned THEN
        UPDATE auth.sessions s SET revoked_at = now(), revoked_reason = 'banned'
         WHERE s.user_id = ban_user.user_id AND s.revoked_at IS NULL;
    END IF;
    INSERT INTO auth.audit_log (event, user_id, details)
    VALUES (CASE WHEN banned THEN 'user_banned' ELSE 'user_unbanned' END, ban_user.user_id,
            jsonb_build_object('until', until::pg_catalog.text));
END $$;

-- Deletes what has expired: refresh tokens past their expiry, sessions ended more than a day
-- ago (kept a day so that a late refresh still reads TOKEN_REVOKED), failed-sign-in records
-- older than the lockout, and (when given) audit rows older than `audit_older_than`. Safe
-- while traffic flows. Returns the counts.
CREATE OR REPLACE FUNCTION auth.purge_expired(audit_older_than interval DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lockout pg_catalog.float8 :=
        coalesce(nullif(current_setting('auth.lockout_seconds', true), ''), '900')::pg_catalog.float8;
    n_sessions bigint;
    n_tokens bigint;
    n_failures bigint;
    n_audit bigint := 0;
BEGIN
    DELETE FROM auth.sessions s
     WHERE coalesce(s.revoked_at, s.not_after) < now() - interval '1 day'
        OR (s.created_at < now() - interval '1 day'
            AND NOT EXISTS (SELECT 1 FROM auth.refresh_tokens rt
                             WHERE rt.session_id = s.id AND rt.expires_at > now() - interval '1 day'));
    GET DIAGNOSTICS n_sessions = ROW_COUNT;
    DELETE FROM auth.refresh_tokens rt WHERE rt.expires_at < now();
    GET DIAGNOSTICS n_tokens = ROW_COUNT;
    DELETE FROM auth.failed_sign_ins f
     WHERE coalesce(f.locked_until, f.last_failed_at) < now() - make_interval(secs => lockout);
    GET DIAGNOSTICS n_failures = ROW_COUNT;
    IF audit_older_than IS NOT NULL THEN
        DELETE FROM auth.audit_log a WHERE a.created_at < now() - audit_older_than;
        GET DIAGNOSTICS n_audit = ROW_COUNT;
    END IF;
    RETURN jsonb_build_object('refresh_tokens', n_tokens, 'sessions', n_sessions,
                              'failed_sign_ins', n_failures, 'audit_log', n_audit);
END $$;

-- The drop event trigger's function runs as the owner.
CREATE OR REPLACE FUNCTION auth._role_sync_on_drop() RETURNS event_trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM auth.role_sync_sources s
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.objid = s.grant_table::pg_catalog.oid AND d.objsubid = 0;
    IF FOUND THEN
        PERFORM auth.resync_role_claims();
    END IF;
END $$;
REVOKE ALL ON FUNCTION auth._role_sync_on_drop() FROM PUBLIC;

-- Account issuers (new in 0.2.0): sql/070_account_issuers.sql as released.
-- Which token issuers own this database's accounts (docs/keys.md, "Identity: issuer and subject").
-- A token acts as a local account (auth.uid(), the user row's roles, bans, deletion,
-- sessions, sign_out) only when its issuer owns that account:
--   * this database's own issuer, for tokens signed by its own keys (auth.generate_signing_key):
--     the account whose id is sub;
--   * an issuer declared here, for tokens verified by a key bound to that issuer: the account
--     whose id is sub (e.g. users imported from GoTrue, whose GoTrue-issued tokens keep
--     working until the switch);
--   * any other issuer, for tokens verified by a key bound to it: the account linked to
--     (issuer, sub) in auth.identities (auth.ensure_user() makes the link).
-- Tokens verified by a key bound to no issuer act as no account.

CREATE TABLE auth.account_issuers (
    issuer     text PRIMARY KEY CHECK (issuer <> '' AND issuer NOT IN ('email', 'phone', 'anonymous')),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE auth.account_issuers IS 'Token issuers whose subjects are this database''s user ids (auth_ext).';
REVOKE ALL ON auth.account_issuers FROM PUBLIC;
GRANT SELECT ON auth.account_issuers TO PUBLIC;   -- issuer names only, no secret
SELECT pg_catalog.pg_extension_config_dump('auth.account_issuers', '');

-- A change reaches every backend's key cache (where ownership is decided) by its next statement.
CREATE TRIGGER account_issuers_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON auth.account_issuers
    FOR EACH STATEMENT EXECUTE FUNCTION auth._invalidate_caches();

-- Declares that `issuer`'s subjects are this database's user ids. Only for an issuer you
-- trust with every account: its tokens act as the account whose id is their sub.
CREATE FUNCTION auth.add_account_issuer(issuer text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF issuer IS NULL OR issuer = '' OR issuer IN ('email', 'phone', 'anonymous') THEN
        RAISE EXCEPTION 'INVALID_PARAMETER: invalid parameter'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'issuer must be a token issuer (iss), not empty and not a local sign-in method';
    END IF;
    INSERT INTO auth.account_issuers (issuer) VALUES (add_account_issuer.issuer)
        ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO auth.audit_log (event, details)
        VALUES ('account_issuer_added', jsonb_build_object('issuer', add_account_issuer.issuer));
    END IF;
END $$;

-- Withdraws the declaration: the issuer's tokens act only as accounts linked in auth.identities.
CREATE FUNCTION auth.drop_account_issuer(issuer text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM auth.account_issuers a WHERE a.issuer = drop_account_issuer.issuer;
    IF FOUND THEN
        INSERT INTO auth.audit_log (event, details)
        VALUES ('account_issuer_dropped', jsonb_build_object('issuer', drop_account_issuer.issuer));
    END IF;
END $$;

-- Links are ownership too: a new or removed link reaches every backend by its next statement.
CREATE TRIGGER identities_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON auth.identities
    FOR EACH STATEMENT EXECUTE FUNCTION auth._invalidate_caches();
REVOKE ALL ON FUNCTION auth.add_account_issuer(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.drop_account_issuer(text) FROM PUBLIC;
