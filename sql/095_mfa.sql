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
