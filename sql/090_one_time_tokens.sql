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
