-- Role-claim sync: which tables grant which roles (registered by auth.enable_role_sync, owner
-- only), and which of each user's roles came from grants (so that roles set by hand are never
-- removed). Both private; the registry is kept by pg_dump.

CREATE TABLE auth.role_sync_sources (
    grant_table regclass NOT NULL,
    role        text NOT NULL CHECK (role <> '' AND role <> '='),
    user_column text NOT NULL DEFAULT 'user_id',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grant_table, role, user_column)
);
COMMENT ON TABLE auth.role_sync_sources IS 'Grant tables registered by auth.enable_role_sync: role is a fixed role or =column.';

CREATE TABLE auth.role_sync_members (
    user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    synced  text[] NOT NULL,   -- roles present because a grant row gives them
    kept    text[] NOT NULL    -- of those, roles the user already had when a grant first gave them
);
COMMENT ON TABLE auth.role_sync_members IS 'Provenance of synced roles (auth_ext); maintained by the sync triggers.';

REVOKE ALL ON auth.role_sync_sources, auth.role_sync_members FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('auth.role_sync_sources', '');
SELECT pg_catalog.pg_extension_config_dump('auth.role_sync_members', '');

-- New users get the roles that existing grant rows give them.
CREATE TRIGGER users_sync_roles AFTER INSERT ON auth.users
    REFERENCING NEW TABLE AS auth_new_users
    FOR EACH STATEMENT EXECUTE FUNCTION auth._sync_new_users();

-- Changes that alter what the RLS helpers answer (roles, bans, deletion) reach every
-- backend's identity cache by its next statement.
CREATE TRIGGER users_invalidate
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF raw_app_meta_data, banned_until, deleted_at ON auth.users
    FOR EACH STATEMENT EXECUTE FUNCTION auth._invalidate_caches();
