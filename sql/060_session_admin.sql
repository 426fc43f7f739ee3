-- Privileged operations on sessions, users and keys that need no Rust: readable here by a DBA.
-- Every function is SECURITY DEFINER with search_path pinned to pg_catalog, pg_temp and
-- schema-qualifies the extension's tables (docs/security.md). Errors use the extension's
-- codes (README "Errors"). Who may call them is set in 900_privileges.sql: jwks() is public,
-- the rest owner-only by default (grantable).

-- The public keys of our active signing keys, as a JWKS to publish (e.g. at
-- /.well-known/jwks.json). HMAC keys are never published. Only reads: works on a standby.
CREATE FUNCTION auth.jwks() RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object('keys', coalesce(jsonb_agg(k.jwk ORDER BY k.created_at), '[]'::pg_catalog.jsonb))
      FROM auth.key_store k
     WHERE k.source = 'generated' AND k.kty <> 'oct'
       AND (k.valid_until IS NULL OR k.valid_until > now())
$$;
COMMENT ON FUNCTION auth.jwks() IS 'public keys of auth_ext''s active signing keys (JWKS); never HMAC secrets';

-- Ends a session: its refresh tokens stop working, its access tokens are TOKEN_REVOKED in
-- every backend by the next statement (the sessions table's invalidation trigger).
CREATE FUNCTION auth.revoke_session(session_id uuid) RETURNS void
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

-- Bans a user until `until` (NULL or a past time lifts the ban): sign-in, refresh and every
-- access token of the user are refused meanwhile, and the user's sessions end.
CREATE FUNCTION auth.ban_user(user_id uuid, until timestamptz) RETURNS void
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
-- older than the lockout, expired or voided one-time codes, MFA challenges and MFA failure
-- counts over a day old, and (when given) audit rows older than `audit_older_than`. Safe while
-- traffic flows. Returns the counts.
CREATE FUNCTION auth.purge_expired(audit_older_than interval DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    lockout pg_catalog.float8 :=
        coalesce(nullif(current_setting('auth.lockout_seconds', true), ''), '900')::pg_catalog.float8;
    n_sessions bigint;
    n_tokens bigint;
    n_failures bigint;
    n_codes bigint;
    n_challenges bigint;
    n_mfa_failures bigint;
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
    -- A voided code is expired (not deleted) when voided; see auth.one_time_tokens.
    DELETE FROM auth.one_time_tokens o WHERE o.expires_at < now();
    GET DIAGNOSTICS n_codes = ROW_COUNT;
    -- A challenge is usable for five minutes (src/mfa.rs); a day later it matters to nobody.
    DELETE FROM auth.mfa_challenges c WHERE c.created_at < now() - interval '1 day';
    GET DIAGNOSTICS n_challenges = ROW_COUNT;
    -- A failure window lasts at most a day (auth.mfa_failure_window_seconds); the next
    -- verification counts an ended one from zero anyway.
    DELETE FROM auth.mfa_failed_verifications m WHERE m.window_started_at < now() - interval '1 day';
    GET DIAGNOSTICS n_mfa_failures = ROW_COUNT;
    IF audit_older_than IS NOT NULL THEN
        DELETE FROM auth.audit_log a WHERE a.created_at < now() - audit_older_than;
        GET DIAGNOSTICS n_audit = ROW_COUNT;
    END IF;
    RETURN jsonb_build_object('refresh_tokens', n_tokens, 'sessions', n_sessions,
                              'failed_sign_ins', n_failures, 'one_time_tokens', n_codes,
                              'mfa_challenges', n_challenges, 'mfa_failed_verifications', n_mfa_failures,
                              'audit_log', n_audit);
END $$;
