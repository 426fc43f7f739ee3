-- auth_ext demo: keys, signed tokens, an RLS-protected table, then auth_ext issuing tokens itself.
\set ON_ERROR_STOP 0
\set VERBOSITY default
\pset footer off
\echo '== 1. The DBA installs the extension and trusts the identity provider''s JWKS'
CREATE EXTENSION auth_ext;
SELECT auth.import_jwks(:'jwks'::jsonb, :'issuer', ARRAY['authenticated']) AS keys_imported;
-- Identity is (issuer, subject): this provider's subjects are this database's user ids.
SELECT auth.add_account_issuer(:'issuer');
SELECT kid, alg, issuer, audience FROM auth.keys;

\echo '== 2. A table protected by row level security: each user sees only their own notes'
CREATE TABLE notes (id serial PRIMARY KEY, owner uuid NOT NULL, body text NOT NULL);
INSERT INTO notes (owner, body) VALUES
  ('8d8ac610-566d-4ef0-9c22-186b2a5ed793', 'alice: buy oat milk'),
  ('8d8ac610-566d-4ef0-9c22-186b2a5ed793', 'alice: call the plumber'),
  ('0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', 'bob: renew passport');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes USING (owner = auth.uid());
CREATE ROLE app_user;
GRANT SELECT ON notes TO app_user;
SET ROLE app_user;

\echo '== 3. The backend passes Alice''s token for one transaction'
BEGIN;
SELECT set_config('auth.jwt', :'alice', true) IS NOT NULL AS token_set;
SELECT auth.uid(), auth.email(), auth.roles(), auth.has_role('editor') AS is_editor;
SELECT body FROM notes;
COMMIT;

\echo '== 4. Bob''s token: Bob''s notes only'
BEGIN;
SELECT set_config('auth.jwt', :'bob', true) IS NOT NULL AS token_set;
SELECT body FROM notes;
COMMIT;

\echo '== 5. No token: anonymous, no rows'
SELECT auth.uid() AS uid, count(*) AS visible_notes FROM notes;

\echo '== 6. An expired token is refused (SQLSTATE 28000, code TOKEN_EXPIRED)'
BEGIN;
SELECT set_config('auth.jwt', :'expired', true) IS NOT NULL AS token_set;
SELECT body FROM notes;
\echo 'SQLSTATE' :LAST_ERROR_SQLSTATE
ROLLBACK;

\echo '== 7. A forged token (Bob''s claims under Alice''s signature) is refused (INVALID_TOKEN)'
BEGIN;
SELECT set_config('auth.jwt', :'forged', true) IS NOT NULL AS token_set;
SELECT body FROM notes;
\echo 'SQLSTATE' :LAST_ERROR_SQLSTATE
ROLLBACK;

\echo '== 8. Or auth_ext is the auth server: the owner makes a signing key, then sign up, sign in, and the access token works like any other'
RESET ROLE;
SELECT auth.generate_signing_key('ES256') IS NOT NULL AS signing_key_made;
SET ROLE app_user;
SELECT auth.sign_up('carol@example.test', 'correct horse battery staple') AS carol \gset
RESET ROLE;
INSERT INTO notes (owner, body) VALUES (:'carol', 'carol: water the plants');
SET ROLE app_user;
\echo 'Sign-in waits for the email to be confirmed (auth.require_email_confirmation, on by default):'
SELECT auth.sign_in('carol@example.test', 'correct horse battery staple');
\echo 'The confirmation code is in auth.outbox (a mailer delivers it: part 11 shows one); Carol types it:'
RESET ROLE;
SELECT code AS carol_code FROM auth.outbox WHERE recipient = 'carol@example.test' \gset
SET ROLE app_user;
SELECT (auth.verify_otp('carol@example.test', :'carol_code', 'signup')) -> 'user' ->> 'email_confirmed_at' IS NOT NULL AS email_confirmed;
SELECT auth.sign_in('carol@example.test', 'correct horse battery staple') AS tokens \gset
SELECT r ->> 'token_type' AS token_type, r ->> 'expires_in' AS expires_in, r -> 'user' ->> 'email' AS email,
       length(r ->> 'access_token') AS access_token_length, length(r ->> 'refresh_token') AS refresh_token_length,
       r ->> 'access_token' AS access, r ->> 'refresh_token' AS refresh
  FROM (SELECT :'tokens'::jsonb AS r) t \gset
\echo 'token_type' :token_type 'expires_in' :expires_in 'user' :email 'access_token' :access_token_length 'chars, refresh_token' :refresh_token_length 'chars'
BEGIN;
SELECT set_config('auth.jwt', :'access', true) IS NOT NULL AS token_set;
SELECT auth.email(), auth.role(), body FROM notes;
COMMIT;

\echo '== 9. Refresh rotates the refresh token; the spent one, presented again later, would revoke the session'
SELECT auth.refresh(:'refresh') ->> 'refresh_token' <> :'refresh' AS rotated;

\echo '== 10. Sign-out: the unexpired access token is refused at once (TOKEN_REVOKED)'
BEGIN;
SELECT set_config('auth.jwt', :'access', true) IS NOT NULL AS token_set;
SELECT auth.sign_out('global') AS sessions_ended;
COMMIT;
BEGIN;
SELECT set_config('auth.jwt', :'access', true) IS NOT NULL AS token_set;
SELECT body FROM notes;
\echo 'SQLSTATE' :LAST_ERROR_SQLSTATE
ROLLBACK;
