-- Which token issuers own this database's accounts (docs/keys.md, "Identity: issuer and subject").
-- A token acts as a local account (auth.uid(), the user row's roles, bans, deletion,
-- sessions, sign_out) only when its issuer owns that account:
--   * this database's own issuer, for tokens signed by its own keys (auth.generate_signing_key):
--     the account whose id is sub;
--   * an issuer declared here, for tokens verified by a key bound to that issuer: the account
--     whose id is sub (e.g. users imported from GoTrue, whose GoTrue-issued tokens keep
--     working until the switch);
--   * any other issuer, for tokens verified by a key bound to it: the account linked to
--     (issuer, sub) in auth.identities (auth.ensure_user() makes the link).
-- Tokens verified by a key bound to no issuer act as no account.

CREATE TABLE auth.account_issuers (
    issuer     text PRIMARY KEY CHECK (issuer <> '' AND issuer NOT IN ('email', 'phone', 'anonymous')),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE auth.account_issuers IS 'Token issuers whose subjects are this database''s user ids (auth_ext).';
REVOKE ALL ON auth.account_issuers FROM PUBLIC;
GRANT SELECT ON auth.account_issuers TO PUBLIC;   -- issuer names only, no secret
SELECT pg_catalog.pg_extension_config_dump('auth.account_issuers', '');

-- A change reaches every backend's key cache (where ownership is decided) by its next statement.
CREATE TRIGGER account_issuers_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON auth.account_issuers
    FOR EACH STATEMENT EXECUTE FUNCTION auth._invalidate_caches();

-- Declares that `issuer`'s subjects are this database's user ids. Only for an issuer you
-- trust with every account: its tokens act as the account whose id is their sub.
CREATE FUNCTION auth.add_account_issuer(issuer text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF issuer IS NULL OR issuer = '' OR issuer IN ('email', 'phone', 'anonymous') THEN
        RAISE EXCEPTION 'INVALID_PARAMETER: invalid parameter'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'issuer must be a token issuer (iss), not empty and not a local sign-in method';
    END IF;
    INSERT INTO auth.account_issuers (issuer) VALUES (add_account_issuer.issuer)
        ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO auth.audit_log (event, details)
        VALUES ('account_issuer_added', jsonb_build_object('issuer', add_account_issuer.issuer));
    END IF;
END $$;

-- Withdraws the declaration: the issuer's tokens act only as accounts linked in auth.identities.
CREATE FUNCTION auth.drop_account_issuer(issuer text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM auth.account_issuers a WHERE a.issuer = drop_account_issuer.issuer;
    IF FOUND THEN
        INSERT INTO auth.audit_log (event, details)
        VALUES ('account_issuer_dropped', jsonb_build_object('issuer', drop_account_issuer.issuer));
    END IF;
END $$;

-- Links are ownership too: a new or removed link reaches every backend by its next statement.
CREATE TRIGGER identities_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON auth.identities
    FOR EACH STATEMENT EXECUTE FUNCTION auth._invalidate_caches();
