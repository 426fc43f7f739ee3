-- Users and identities, with Supabase-compatible column names so that data and policies can
-- move between Supabase/GoTrue and auth_ext. Readable by the extension owner only; kept by
-- pg_dump (pg_extension_config_dump).

CREATE TABLE auth.users (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text CHECK (email IS NULL OR (length(email) <= 320 AND position('@' in email) > 1)),
    phone              text UNIQUE,
    encrypted_password text,
    email_confirmed_at timestamptz,
    raw_app_meta_data  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(raw_app_meta_data) = 'object'),
    raw_user_meta_data jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(raw_user_meta_data) = 'object'),
    banned_until       timestamptz,
    last_sign_in_at    timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
) WITH (fillfactor = 80);  -- room for HOT updates: sign-ins and role grants rewrite rows
COMMENT ON TABLE auth.users IS 'Accounts (auth_ext). encrypted_password holds argon2id or imported bcrypt hashes.';
-- Emails are unique case-insensitively; sign-in matches them the same way.
CREATE UNIQUE INDEX users_email_lower_key ON auth.users (lower(email));

-- updated_at is set by auth_ext's own writes (sign-in, role sync, bans), not by a per-row
-- trigger, which would tax every bulk role grant.

-- External identities: (provider, provider_id) = (token issuer, token subject) for IdPs such
-- as Clerk, Auth0, SuperTokens; ('email', user id) for password accounts.
CREATE TABLE auth.identities (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    provider        text NOT NULL,
    provider_id     text NOT NULL,
    identity_data   jsonb NOT NULL DEFAULT '{}',
    last_sign_in_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_id)
);
CREATE INDEX identities_user_id_idx ON auth.identities (user_id);

-- Sign-in attempts per email, keyed by the SHA-256 of the database's lower() of the address
-- (the normalisation of the lookup and of users_email_lower_key), so attempts on unknown
-- addresses count the same without storing them. An attempt is reserved here before its
-- password is judged and given back only when it succeeds: failed_count counts the failed
-- and in-flight attempts of the current run. Reaching auth.max_failed_sign_ins locks the
-- email until locked_until; a run ends when its lock expires or auth.lockout_seconds pass
-- without an attempt. Written only by the bookkeeping worker, so that a failing (or
-- cancelled) transaction cannot roll the count back.
CREATE TABLE auth.failed_sign_ins (
    email_hash     text PRIMARY KEY CHECK (length(email_hash) = 64),
    failed_count   integer NOT NULL,
    last_failed_at timestamptz NOT NULL,      -- the run's latest attempt
    locked_until   timestamptz,
    run_started_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON auth.users, auth.identities, auth.failed_sign_ins FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('auth.users', '');
SELECT pg_catalog.pg_extension_config_dump('auth.identities', '');
