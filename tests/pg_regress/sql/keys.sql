-- Key management as a DBA does it: add keys, import a provider's JWKS, rotate, retire.
\set VERBOSITY terse
-- A public key with an explicit kid, bound to an issuer and an audience.
SELECT auth.add_key(fixtures.key('ES256'), 'https://idp.fixtures.test', ARRAY['authenticated']);
-- The audience is an explicit choice: the aud values the key's tokens must carry, or '*'.
SELECT fixtures.try($$ SELECT auth.add_key('{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}') $$);
-- A key without kid gets its RFC 7638 thumbprint (RFC 8037 A.3 example key). Bound to no
-- issuer, accepting any aud: its tokens verify, but name no account of this database.
SELECT auth.add_key('{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}', NULL, ARRAY['*']);
-- A key cannot be bound to this database's own issuer or to a local sign-in method.
SELECT fixtures.try($$ SELECT auth.add_key(fixtures.key('ES384'), 'auth_ext', ARRAY['authenticated']) $$);
SELECT fixtures.try($$ SELECT auth.add_key(fixtures.key('ES384'), 'email', ARRAY['authenticated']) $$);
-- A JWKS document as published at /.well-known/jwks.json.
SELECT auth.import_jwks(jsonb_build_object('keys', jsonb_build_array(fixtures.key('RS256'), fixtures.key('EdDSA'))),
                        'https://idp.fixtures.test', ARRAY['authenticated']);
-- Importing it again refreshes, it does not duplicate.
SELECT auth.import_jwks(jsonb_build_object('keys', jsonb_build_array(fixtures.key('RS256'), fixtures.key('EdDSA'))),
                        'https://idp.fixtures.test', ARRAY['authenticated']);
-- The keys view: metadata only, never key material.
SELECT kid, alg, kty, issuer, audience, valid_until IS NULL AS active FROM auth.keys ORDER BY kid;
-- Tokens verify against the key named by their kid.
SELECT auth.verify(fixtures.token('alice'))->>'sub' AS alice;
SELECT auth.verify(fixtures.token('RS256:valid'))->>'sub' AS rs256;
-- Rotation with overlap: retire a key one hour from now, it still verifies until then.
SELECT auth.retire_key('fx-es256', now() + interval '1 hour');
SELECT auth.verify(fixtures.token('alice'))->>'sub' AS still_valid;
-- Retire it now: refused.
SELECT auth.retire_key('fx-es256');
SELECT fixtures.try($$ SELECT auth.verify(fixtures.token('alice')) $$);
-- Keys that are weak, ambiguous or unusable are refused when added (SQLSTATE 22023).
SELECT fixtures.try($$ SELECT auth.add_key('{"kty":"oct","alg":"HS256","k":"c2hvcnQ"}') $$);
SELECT fixtures.try($$ SELECT auth.add_key('{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}') $$);
SELECT fixtures.try($$ SELECT auth.add_key('{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}') $$);
SELECT fixtures.try($$ SELECT auth.add_key('{"kty":"EC","crv":"P-256","x":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","y":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"}') $$);
SELECT fixtures.try($$ SELECT auth.add_key('{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}') $$);
SELECT fixtures.try($$ SELECT auth.add_key('{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}') $$);
SELECT fixtures.try($$ SELECT auth.import_jwks(jsonb_build_object('keys', jsonb_build_array(fixtures.key('ES384'), fixtures.key('HS256')))) $$);
SELECT fixtures.try($$ SELECT auth.retire_key('no-such-kid') $$);
-- Only the owner may manage keys or read key material; everyone may read auth.keys.
CREATE ROLE regress_key_reader;
SET ROLE regress_key_reader;
SELECT count(*) > 0 AS sees_metadata FROM auth.keys;
SELECT fixtures.try($$ SELECT * FROM auth.key_store $$);
SELECT fixtures.try($$ SELECT auth.add_key(fixtures.key('ES384')) $$);
SELECT fixtures.try($$ SELECT auth.retire_key('fx-rs256') $$);
RESET ROLE;
-- A DBA may delegate key management.
GRANT EXECUTE ON FUNCTION auth.add_key(jsonb, text, text[]) TO regress_key_reader;
SET ROLE regress_key_reader;
SELECT auth.add_key(fixtures.key('ES384'), 'https://idp.fixtures.test', ARRAY['authenticated']);
RESET ROLE;
DROP OWNED BY regress_key_reader;
DROP ROLE regress_key_reader;
DELETE FROM auth.key_store;
