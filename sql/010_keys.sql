-- Key storage. Verification keys (public JWKs and HMAC secrets) live in
-- auth.key_store, which only its owner (the role that created the extension) can read;
-- auth.keys shows metadata to everyone.

CREATE TABLE auth.key_store (
    kid         text PRIMARY KEY CHECK (kid <> '' AND length(kid) <= 255),
    alg         text NOT NULL,
    kty         text NOT NULL,
    jwk         jsonb NOT NULL,
    thumbprint  text NOT NULL,
    issuer      text CHECK (issuer <> ''),
    -- aud values accepted; '{*}' accepts any (an explicit choice at add_key)
    audience    text[] NOT NULL CHECK (cardinality(audience) > 0),
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_until timestamptz,
    source      text NOT NULL DEFAULT 'add_key' CHECK (source IN ('add_key', 'import_jwks', 'generated')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE auth.key_store IS 'Keys trusted to verify tokens (auth_ext). Contains secrets: owner only.';
REVOKE ALL ON auth.key_store FROM PUBLIC;

-- Every change reaches the key cache of every backend by its next statement.
CREATE TRIGGER key_store_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON auth.key_store
    FOR EACH STATEMENT EXECUTE FUNCTION auth._invalidate_caches();

-- Keys are user data: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('auth.key_store', '');

CREATE VIEW auth.keys AS
    SELECT kid, alg, kty, issuer, audience, valid_from, valid_until
    FROM auth.key_store;
COMMENT ON VIEW auth.keys IS 'Trusted keys without key material.';
GRANT SELECT ON auth.keys TO PUBLIC;
