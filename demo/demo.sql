-- auth_ext demo: keys, signed tokens, an RLS-protected table.
\set ON_ERROR_STOP 0
\set VERBOSITY default
\pset footer off
\echo '== 1. The DBA installs the extension and trusts the identity provider''s JWKS'
CREATE EXTENSION auth_ext;
SELECT auth.import_jwks(:'jwks'::jsonb, :'issuer', ARRAY['authenticated']) AS keys_imported;
SELECT kid, alg, issuer FROM auth.keys;

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
