-- What auth.verify accepts and refuses, with the error code (message) and SQLSTATE of each.
\set VERBOSITY terse
SELECT count(*) AS keys FROM (
  SELECT auth.add_key(fixtures.key(alg), 'https://idp.fixtures.test', ARRAY['authenticated'])
    FROM unnest(ARRAY['HS256','HS384','HS512','RS256','RS384','RS512','PS256','PS384','PS512','ES256','ES384','EdDSA']) AS alg) k;
-- Every algorithm: the valid token verifies, a changed payload or signature does not.
SELECT alg,
       fixtures.try(format('SELECT auth.verify(%L)', fixtures.token(alg || ':valid'))) AS valid,
       fixtures.try(format('SELECT auth.verify(%L)', fixtures.token(alg || ':tampered_payload'))) AS tampered_payload,
       fixtures.try(format('SELECT auth.verify(%L)', fixtures.token(alg || ':tampered_signature'))) AS tampered_signature
  FROM unnest(ARRAY['HS256','HS384','HS512','RS256','RS384','RS512','PS256','PS384','PS512','ES256','ES384','EdDSA']) AS alg;
-- Each valid token's claims are alice's (her sub).
SELECT count(*) AS valid_tokens_of_alice
  FROM unnest(ARRAY['HS256','HS384','HS512','RS256','RS384','RS512','PS256','PS384','PS512','ES256','ES384','EdDSA']) AS alg
 WHERE auth.verify(fixtures.token(alg || ':valid'))->>'sub' = '8d8ac610-566d-4ef0-9c22-186b2a5ed793';
-- Attacks and malformed tokens.
SELECT name, fixtures.try(format('SELECT auth.verify(%L)', fixtures.token(name))) AS result
  FROM unnest(ARRAY['alg_none', 'alg_NoNe', 'rs_public_key_as_hs_secret', 'header_alg_not_key_alg',
                    'unknown_kid', 'embedded_jwk_attacker', 'ignored_jku_x5u', 'crit_unknown', 'oversized',
                    'invalid_base64', 'padded_base64', 'invalid_utf8', 'invalid_json', 'duplicate_claim']) AS name;
-- Claims.
SELECT name, fixtures.try(format('SELECT auth.verify(%L)', fixtures.token(name))) AS result
  FROM unnest(ARRAY['expired', 'not_yet_valid', 'iat_future', 'missing_exp', 'exp_string',
                    'wrong_issuer', 'wrong_audience', 'audience_array', 'no_kid', 'clerk_subject']) AS name;
-- Non-uuid subjects: auth.user_id() works, auth.uid() says why it cannot.
BEGIN;
SELECT set_config('auth.jwt', fixtures.token('clerk_subject'), true) IS NOT NULL AS token_bound;
SELECT auth.user_id();
SELECT fixtures.try('SELECT auth.uid()');
ROLLBACK;
-- Roles.
BEGIN;
SELECT set_config('auth.jwt', fixtures.token('alice'), true) IS NOT NULL AS token_bound;
SELECT fixtures.try($$ SELECT auth.require_role('editor') $$) AS editor,
       fixtures.try($$ SELECT auth.require_role('admin') $$) AS admin;
ROLLBACK;
DELETE FROM auth.key_store;
