-- Privilege story (docs/operations.md, "Privileges"):
--  * PUBLIC may call the RLS helpers, auth.verify and auth.authenticate, and read auth.keys.
--  * Key management is owner/superuser-only by default and can be granted (the functions are
--    SECURITY DEFINER with a pinned search_path).
--  * auth.key_store is readable by its owner only.
REVOKE ALL ON FUNCTION auth.add_key(jsonb, text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.import_jwks(jsonb, text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.retire_key(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth._invalidate_caches() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth._helper_support(internal) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.enable_role_sync(regclass, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.disable_role_sync(regclass, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.resync_role_claims() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth._sync_new_users() FROM PUBLIC;
-- auth.sync_role_claim() stays executable: it runs as a trigger on grant tables written by
-- ordinary roles, and refuses any table the owner did not register.
-- sign_up, sign_in and ensure_user are SECURITY DEFINER (they write auth.users) and callable
-- by PUBLIC: that is their purpose. hash_password/verify_password/password_needs_rehash are
-- plain functions, also callable by PUBLIC.
GRANT USAGE ON SCHEMA auth TO PUBLIC;
-- Tokens and sessions: minting tokens and managing keys, sessions and bans is owner-only
-- (grantable); sign-in, refresh, sign-out and the public JWKS are for everyone.
REVOKE ALL ON FUNCTION auth.generate_signing_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.sign(jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.revoke_session(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.ban_user(uuid, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.purge_expired(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth._role_sync_on_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.add_account_issuer(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth.drop_account_issuer(text) FROM PUBLIC;
