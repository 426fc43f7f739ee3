-- RLS helpers (Supabase-compatible names). STABLE and PARALLEL SAFE; callable by PUBLIC.
-- Implemented as C functions in src/rls.rs. Calls with constant arguments are planned as
-- initPlans, evaluated once per execution (src/planner.rs), like `(select auth.uid())`.

CREATE FUNCTION auth._helper_support(internal) RETURNS internal
    LANGUAGE c AS 'MODULE_PATHNAME', 'auth_helper_support';

-- Verifies a token against the key set and returns its claims; binds nothing. A C function
-- like the helpers, so that the same token again costs no parsing or allocation.
CREATE FUNCTION auth.verify(token text) RETURNS jsonb
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'auth_verify';
COMMENT ON FUNCTION auth.verify(text) IS 'claims of the token verified against the key set; binds nothing';

CREATE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE c STABLE PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_uid';
COMMENT ON FUNCTION auth.uid() IS 'sub of the verified token as uuid; NULL when anonymous';

CREATE FUNCTION auth.user_id() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_user_id';
COMMENT ON FUNCTION auth.user_id() IS 'sub of the verified token as text; NULL when anonymous';

CREATE FUNCTION auth.role() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_role';
COMMENT ON FUNCTION auth.role() IS 'role claim of the verified token';

CREATE FUNCTION auth.email() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_email';
COMMENT ON FUNCTION auth.email() IS 'email claim of the verified token';

CREATE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_jwt';
COMMENT ON FUNCTION auth.jwt() IS 'all claims of the verified token; NULL when anonymous';

CREATE FUNCTION auth.claim(path text) RETURNS jsonb
    LANGUAGE c STABLE STRICT PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_claim';
COMMENT ON FUNCTION auth.claim(text) IS 'one claim by dotted path, e.g. app_metadata.tenant_id';

CREATE FUNCTION auth.roles() RETURNS text[]
    LANGUAGE c STABLE PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_roles';
COMMENT ON FUNCTION auth.roles() IS 'application roles (claim path auth.roles_claim); {} when none';

CREATE FUNCTION auth.has_role(role text) RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE SUPPORT auth._helper_support
    AS 'MODULE_PATHNAME', 'auth_has_role';

CREATE FUNCTION auth.require_role(role text) RETURNS void
    LANGUAGE c STABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_require_role';
COMMENT ON FUNCTION auth.require_role(text) IS 'raises INSUFFICIENT_PERMISSIONS (42501) unless auth.has_role(role)';
