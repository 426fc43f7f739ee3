-- Role-claim sync: which tables grant which roles (registered by auth.enable_role_sync, owner
-- only; private; kept by pg_dump), and which of each user's roles came from grants (so that
-- roles set by hand are never removed).

CREATE TABLE auth.role_sync_sources (
    grant_table regclass NOT NULL,
    role        text NOT NULL CHECK (role <> '' AND role <> '='),
    user_column text NOT NULL DEFAULT 'user_id',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grant_table, role, user_column)
);
COMMENT ON TABLE auth.role_sync_sources IS 'Grant tables registered by auth.enable_role_sync: role is a fixed role or =column.';

-- Per user: {"synced": roles present because a grant row gives them, "kept": those of them
-- the user already had when a grant first gave them}. NULL when no grant gives the user a role.
-- Kept on the user row itself so that a grant costs one row write, not two.
ALTER TABLE auth.users ADD COLUMN role_sync jsonb;

REVOKE ALL ON auth.role_sync_sources FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('auth.role_sync_sources', '');

-- New users get the roles that existing grant rows give them.
CREATE TRIGGER users_sync_roles AFTER INSERT ON auth.users
    REFERENCING NEW TABLE AS auth_new_users
    FOR EACH STATEMENT EXECUTE FUNCTION auth._sync_new_users();

-- Changes that alter what the RLS helpers answer (roles, bans, deletion) reach every
-- backend's identity cache by its next statement.
CREATE TRIGGER users_invalidate
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF raw_app_meta_data, banned_until, deleted_at ON auth.users
    FOR EACH STATEMENT EXECUTE FUNCTION auth._invalidate_caches();

-- Dropping a registered grant table drops its grants: unregister it and recompute. The
-- trigger fires for every DROP by anyone, so it runs as the owner (the dropping role may not
-- read auth.role_sync_sources) with the path pinned, and touches only registered tables.
CREATE FUNCTION auth._role_sync_on_drop() RETURNS event_trigger LANGUAGE plpgsql
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
CREATE EVENT TRIGGER auth_role_sync_drop ON sql_drop EXECUTE FUNCTION auth._role_sync_on_drop();
