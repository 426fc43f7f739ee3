-- Tokens and sessions: our signing keys (private halves; the public halves are in
-- auth.key_store), sessions, rotating refresh tokens, the audit log, and a secret for the
-- refresh-token chain. All private to the extension owner; kept by pg_dump.

CREATE TABLE auth.signing_keys (
    kid         text PRIMARY KEY REFERENCES auth.key_store (kid) ON DELETE CASCADE,
    alg         text NOT NULL,
    private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE auth.signing_keys IS 'Private halves of auth_ext''s own signing keys. Owner only.';

CREATE TABLE auth.sessions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    refreshed_at   timestamptz,
    not_after      timestamptz,          -- optional timebox; NULL: lives while its refresh tokens do
    revoked_at     timestamptz,
    revoked_reason text
);
CREATE INDEX sessions_user_id_idx ON auth.sessions (user_id);

CREATE TABLE auth.refresh_tokens (
    id          bigserial PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,     -- SHA-256 of the token; the token itself is never stored
    parent_id   bigint,                   -- the token it replaced (lineage; no FK, so that
                                          -- pg_dump's row order cannot break a restore)
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz               -- set when exchanged for its successor
);
CREATE INDEX refresh_tokens_session_id_idx ON auth.refresh_tokens (session_id);

CREATE TABLE auth.audit_log (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    event      text NOT NULL,
    user_id    uuid,
    session_id uuid,
    details    jsonb NOT NULL DEFAULT '{}'   -- never tokens, hashes or passwords
);
CREATE INDEX audit_log_created_at_idx ON auth.audit_log (created_at);
CREATE INDEX audit_log_user_id_idx ON auth.audit_log (user_id);

CREATE TABLE auth.secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

REVOKE ALL ON auth.signing_keys, auth.sessions, auth.refresh_tokens, auth.audit_log, auth.secrets FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('auth.signing_keys', '');
SELECT pg_catalog.pg_extension_config_dump('auth.sessions', '');
SELECT pg_catalog.pg_extension_config_dump('auth.refresh_tokens', '');
SELECT pg_catalog.pg_extension_config_dump('auth.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('auth.secrets', '');
-- The sequences too, or a restored database would hand out ids that are taken.
SELECT pg_catalog.pg_extension_config_dump('auth.refresh_tokens_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('auth.audit_log_id_seq', '');

-- A revoked or deleted session rejects its access tokens in every backend by the next statement.
CREATE TRIGGER sessions_invalidate
    AFTER DELETE OR TRUNCATE OR UPDATE OF revoked_at, not_after ON auth.sessions
    FOR EACH STATEMENT EXECUTE FUNCTION auth._invalidate_caches();
