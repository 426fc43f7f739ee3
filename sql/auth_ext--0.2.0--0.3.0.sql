-- auth_ext 0.2.0 → 0.3.0 (ALTER EXTENSION auth_ext UPDATE). Once released, never edit this file
-- (sql/released.sha256 will check it); a later change needs a new upgrade script.
-- What changes, and why (the design is in docs/):
--  * Citus (docs/citus.md): auth.bind(token) binds the identity so that it reaches the workers
--    (and is the one implementation behind auth.authenticate); auth.distribute_trust() makes the
--    trust tables reference tables; auth.revoke_session avoids now() inside COALESCE, which
--    Citus refuses in writes to a reference table;
--  * one-time codes and magic links: auth.one_time_tokens (GoTrue's shape), auth.outbox,
--    users.email_change and phone_confirmed_at, sign_in_with_phone_otp, verify_phone_otp, and
--    sign_in_with_otp, verify_otp, resend, reset_password_for_email, update_user;
--    auth.purge_expired also deletes expired (and voided) one-time codes, and MFA challenges
--    and MFA failure counts over a day old;
--  * TOTP MFA: auth.mfa_factors, mfa_challenges, mfa_amr_claims (GoTrue's shape),
--    mfa_failed_verifications, sessions.aal and factor_id, the mfa_* functions and auth.aal();
--  * anonymous sign-in: users.is_anonymous and auth.sign_in_anonymously();
--  * email confirmation (auth.require_email_confirmation, on by default): accounts made before
--    it existed could sign in, and still can: their email counts as confirmed when created;
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

-- One-time codes and magic links (docs/passwordless.md).
CREATE FUNCTION auth."sign_in_with_otp"(
	"email" TEXT,
	"create_user" bool DEFAULT true
) RETURNS void
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'sign_in_with_otp_wrapper';

CREATE FUNCTION auth."reset_password_for_email"(
	"email" TEXT
) RETURNS void
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'reset_password_for_email_wrapper';

CREATE FUNCTION auth."update_user"(
	"attributes" jsonb
) RETURNS jsonb
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'update_user_wrapper';

CREATE FUNCTION auth."sign_in_with_phone_otp"(
	"phone" TEXT,
	"create_user" bool DEFAULT true
) RETURNS void
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'sign_in_with_phone_otp_wrapper';

CREATE FUNCTION auth."verify_phone_otp"(
	"phone" TEXT,
	"token" TEXT
) RETURNS jsonb
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'verify_phone_otp_wrapper';

-- One-time tokens and the outbox (docs/passwordless.md): email confirmation, passwordless
-- sign-in by code or magic link, password recovery. GoTrue's table and token types; the code
-- or link token itself is never stored, only its keyed hash (auth_core::otp).
CREATE TYPE auth.one_time_token_type AS ENUM (
    'confirmation_token',
    'reauthentication_token',
    'recovery_token',
    'email_change_token_new',
    'email_change_token_current',
    'phone_change_token'
);

-- An email change waiting for both addresses to confirm (auth.update_user, verify_otp type
-- 'email_change'): the new address.
ALTER TABLE auth.users ADD COLUMN email_change text;
-- When the phone was confirmed by an SMS code (auth.verify_phone_otp).
ALTER TABLE auth.users ADD COLUMN phone_confirmed_at timestamptz;

CREATE TABLE auth.one_time_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    token_type  auth.one_time_token_type NOT NULL,
    -- The keyed hash of the code (hex); the link token's is link_hash.
    token_hash  text NOT NULL CHECK (pg_catalog.char_length(token_hash) > 0),
    -- The address the token was sent to (GoTrue: relates_to).
    relates_to  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Beyond GoTrue's shape: the link's hash, the expiry, and the attempts judged so far
    -- (auth.otp_max_attempts voids the token: it expires at once, and is deleted by the first
    -- verification counted within the limit that matches it, or by auth.purge_expired).
    link_hash   text,
    expires_at  timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    -- At most one outstanding token per user and type: a new one replaces it.
    UNIQUE (user_id, token_type)
);
COMMENT ON TABLE auth.one_time_tokens IS 'Outstanding one-time codes and links (auth_ext): hashes only, single use, expiring';

-- What to deliver: one row per message, written in the requesting transaction (a rollback
-- sends nothing) and announced with NOTIFY auth_outbox. A sender claims rows with
-- DELETE … WHERE id IN (SELECT id … FOR UPDATE SKIP LOCKED) … RETURNING, sends, and commits.
-- The code and link token are here in clear until delivered: readable only by the role the DBA
-- grants to the sender.
CREATE TABLE auth.outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- signup (confirm your email), magiclink (sign in), recovery (reset your password)
    kind        text NOT NULL,
    recipient   text NOT NULL,
    user_id     uuid,
    code        text,
    link_token  text,
    expires_at  timestamptz NOT NULL
);
COMMENT ON TABLE auth.outbox IS 'Messages to deliver (auth_ext): grant SELECT, UPDATE, DELETE to the delivery role only';

REVOKE ALL ON auth.one_time_tokens, auth.outbox FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('auth.one_time_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('auth.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('auth.outbox_id_seq', '');

-- Deletes what has expired: refresh tokens past their expiry, sessions ended more than a day
-- ago (kept a day so that a late refresh still reads TOKEN_REVOKED), failed-sign-in records
-- older than the lockout, expired or voided one-time codes, MFA challenges and MFA failure
-- counts over a day old, and (when given) audit rows older than `audit_older_than`. Safe while
-- traffic flows. Returns the counts.
CREATE OR REPLACE FUNCTION auth.purge_expired(audit_older_than interval DEFAULT NULL) RETURNS jsonb
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

-- The two flows whose argument is named `type` (Supabase's name, a Rust keyword): declared
-- here over the library's functions (src/one_time.rs).
CREATE FUNCTION auth.resend(email text, "type" text) RETURNS void
    STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
    SET search_path TO pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'resend_wrapper';
CREATE FUNCTION auth.verify_otp(email text, token text, "type" text) RETURNS jsonb
    STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
    SET search_path TO pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'verify_otp_wrapper';

-- Multi-factor authentication (docs/mfa.md).
CREATE FUNCTION auth."mfa_enroll"(
	"factor_type" TEXT DEFAULT 'totp',
	"friendly_name" TEXT DEFAULT NULL
) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'mfa_enroll_wrapper';

CREATE FUNCTION auth."mfa_challenge"(
	"factor_id" uuid
) RETURNS jsonb
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'mfa_challenge_wrapper';

CREATE FUNCTION auth."mfa_verify"(
	"factor_id" uuid,
	"challenge_id" uuid,
	"code" TEXT
) RETURNS jsonb
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'mfa_verify_wrapper';

CREATE FUNCTION auth."mfa_unenroll"(
	"factor_id" uuid
) RETURNS jsonb
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'mfa_unenroll_wrapper';

CREATE FUNCTION auth."mfa_list_factors"() RETURNS jsonb
STRICT STABLE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'mfa_list_factors_wrapper';

-- Multi-factor authentication (docs/mfa.md): TOTP factors, challenges, and the assurance level
-- (aal) and methods (amr) of each session, in GoTrue's tables and types so that Supabase
-- clients read the same claims. Beyond GoTrue: a code is accepted at most once per factor
-- (last_accepted_step, compare-and-set) and failed verifications per factor are counted by the
-- bookkeeping worker before a code is judged (auth.mfa_failed_verifications).
CREATE TYPE auth.factor_type AS ENUM ('totp', 'webauthn', 'phone');
CREATE TYPE auth.factor_status AS ENUM ('unverified', 'verified');
CREATE TYPE auth.aal_level AS ENUM ('aal1', 'aal2', 'aal3');

CREATE TABLE auth.mfa_factors (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    friendly_name       text,
    factor_type         auth.factor_type NOT NULL,
    status              auth.factor_status NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- The TOTP secret (base32). Owner only: returned once, to the enrolling user.
    secret              text,
    phone               text,
    last_challenged_at  timestamptz,
    last_accepted_step  bigint
);
COMMENT ON TABLE auth.mfa_factors IS 'MFA factors (auth_ext, GoTrue''s shape). Owner only: holds TOTP secrets.';
CREATE UNIQUE INDEX mfa_factors_user_friendly_name_unique ON auth.mfa_factors (friendly_name, user_id)
    WHERE pg_catalog.btrim(friendly_name) OPERATOR(pg_catalog.<>) '';
CREATE INDEX mfa_factors_user_id_idx ON auth.mfa_factors (user_id);

CREATE TABLE auth.mfa_challenges (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    factor_id   uuid NOT NULL REFERENCES auth.mfa_factors (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    verified_at timestamptz,
    ip_address  inet
);
CREATE INDEX mfa_challenges_factor_id_idx ON auth.mfa_challenges (factor_id);

-- Failed verifications per factor in the current window, written only by the bookkeeping
-- worker (before a code is judged, so no rollback undoes it). No foreign key: the worker must
-- not wait on the caller's locks of a factor it is verifying.
CREATE TABLE auth.mfa_failed_verifications (
    factor_id         uuid PRIMARY KEY,
    user_id           uuid NOT NULL,
    failed_count      integer NOT NULL,
    window_started_at timestamptz NOT NULL
);

-- How each session was authenticated: the `amr` claim of its tokens, newest first.
CREATE TABLE auth.mfa_amr_claims (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id            uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    authentication_method text NOT NULL,
    UNIQUE (session_id, authentication_method)
);

-- The session's assurance level (the `aal` claim of its tokens) and the factor that raised it.
ALTER TABLE auth.sessions ADD COLUMN aal auth.aal_level NOT NULL DEFAULT 'aal1';
ALTER TABLE auth.sessions ADD COLUMN factor_id uuid;

REVOKE ALL ON auth.mfa_factors, auth.mfa_challenges, auth.mfa_amr_claims, auth.mfa_failed_verifications FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('auth.mfa_factors', '');
SELECT pg_catalog.pg_extension_config_dump('auth.mfa_challenges', '');
SELECT pg_catalog.pg_extension_config_dump('auth.mfa_amr_claims', '');
SELECT pg_catalog.pg_extension_config_dump('auth.mfa_failed_verifications', '');

-- auth.aal(): the assurance level of the bound token, planned once per query like the other
-- helpers, so that a restrictive policy USING (auth.aal() = 'aal2') costs nothing per row.
CREATE FUNCTION auth.aal() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_aal';
COMMENT ON FUNCTION auth.aal() IS 'aal claim of the verified token (aal1, aal2); NULL when anonymous';

-- Anonymous sign-in.
-- Anonymous sign-in (docs/passwordless.md, "Anonymous users"): a user without email or
-- password, role authenticated, is_anonymous in the user and the token. auth.update_user
-- turns such a user into an email account, keeping its id and so its rows.
ALTER TABLE auth.users ADD COLUMN is_anonymous boolean NOT NULL DEFAULT false;

CREATE FUNCTION auth."sign_in_anonymously"() RETURNS jsonb
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'sign_in_anonymously_wrapper';

-- Email confirmation is new and on by default: existing email accounts keep signing in.
UPDATE auth.users SET email_confirmed_at = created_at
 WHERE email_confirmed_at IS NULL AND email IS NOT NULL;

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
