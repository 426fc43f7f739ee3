-- Row level security with auth.uid(): a policy written without the (select …) wrapper, two
-- users and an anonymous request, through a real client session (psql).
\set VERBOSITY terse
SELECT auth.add_key(fixtures.key(alg), 'https://idp.fixtures.test', ARRAY['authenticated'])
  FROM unnest(ARRAY['ES256', 'RS256', 'EdDSA', 'HS256']) AS alg;
-- Identity is (issuer, subject). This IdP's subjects are this database's user ids (the uuids
-- in notes.owner): say so, or auth.uid() refuses to turn its tokens into local ids.
SELECT auth.add_account_issuer('https://idp.fixtures.test');
CREATE TABLE notes (id serial PRIMARY KEY, owner uuid NOT NULL, body text NOT NULL);
INSERT INTO notes (owner, body) VALUES
  ('8d8ac610-566d-4ef0-9c22-186b2a5ed793', 'alice: groceries'),
  ('8d8ac610-566d-4ef0-9c22-186b2a5ed793', 'alice: ideas'),
  ('0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', 'bob: todo'),
  ('00000000-0000-4000-8000-000000000000', 'someone else');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes USING (owner = auth.uid());
CREATE ROLE regress_app;
GRANT SELECT, INSERT ON notes TO regress_app;
GRANT USAGE ON SEQUENCE notes_id_seq TO regress_app;
SET ROLE regress_app;
-- Anonymous: no token, no rows.
SELECT auth.uid(), auth.role(), auth.roles(), auth.has_role('editor');
SELECT body FROM notes ORDER BY id;
-- Alice, for one transaction.
BEGIN;
SELECT set_config('auth.jwt', fixtures.token('alice'), true) IS NOT NULL AS token_bound;
SELECT auth.uid(), auth.user_id() = auth.uid()::text AS same, auth.role(), auth.email();
SELECT auth.roles(), auth.has_role('editor') AS editor, auth.has_role('admin') AS admin,
       auth.claim('app_metadata.tenant_id') AS tenant;
SELECT body FROM notes ORDER BY id;
COMMIT;
-- The transaction-local token is gone after COMMIT.
SELECT auth.uid();
SELECT count(*) FROM notes;
-- Bob.
BEGIN;
SELECT set_config('auth.jwt', fixtures.token('bob'), true) IS NOT NULL AS token_bound;
SELECT body FROM notes ORDER BY id;
-- The policy also checks writes.
INSERT INTO notes (owner, body) VALUES ('0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', 'bob: new');
SELECT fixtures.try($$ INSERT INTO notes (owner, body) VALUES ('8d8ac610-566d-4ef0-9c22-186b2a5ed793', 'bob pretending') $$);
ROLLBACK;
-- A session-level token (SET, not SET LOCAL) lasts across transactions until RESET or DISCARD ALL.
SELECT set_config('auth.jwt', fixtures.token('bob'), false) IS NOT NULL AS session_token;
SELECT count(*) FROM notes;
SELECT count(*) FROM notes;
RESET auth.jwt;
SELECT count(*) FROM notes;
SELECT set_config('auth.jwt', fixtures.token('bob'), false) IS NOT NULL AS session_token;
RESET ROLE;
DISCARD ALL;
SET ROLE regress_app;
SELECT auth.uid(), (SELECT count(*) FROM notes) AS visible;
-- A bad token is an error, never a silent anonymous.
BEGIN;
SELECT set_config('auth.jwt', fixtures.token('expired'), true) IS NOT NULL AS token_bound;
SELECT fixtures.try($$ SELECT count(*) FROM notes $$);
ROLLBACK;
-- The planner evaluates auth.uid() once per execution (an initPlan), not once per row.
EXPLAIN (COSTS OFF) SELECT body FROM notes;
RESET ROLE;
-- Roles come from the user row when there is one (so a revoked role is gone at once), at
-- auth.roles_claim inside raw_app_meta_data: an array of strings (others ignored, duplicates
-- dropped, sorted) or one string; a path steps through objects by key and arrays by index.
INSERT INTO auth.users (id, email, raw_app_meta_data) VALUES ('8d8ac610-566d-4ef0-9c22-186b2a5ed793',
  'alice@regress.test', '{"roles": ["writer", "admin", 7, "admin"], "org": {"roles": "owner", "list": [["x"], {"roles": ["deep"]}]}}');
BEGIN;
SELECT set_config('auth.jwt', fixtures.token('alice'), true) IS NOT NULL AS token_bound;
SELECT auth.roles() AS from_user_row, auth.has_role('editor') AS editor_from_token;
SET LOCAL auth.roles_claim = 'app_metadata.org.roles';
SELECT auth.roles() AS one_string;
SET LOCAL auth.roles_claim = 'app_metadata.org.list.-1.roles';
SELECT auth.roles() AS by_array_index;
SET LOCAL auth.roles_claim = 'app_metadata.missing';
SELECT auth.roles() AS missing_path;
ROLLBACK;
-- A revoked role is gone by the next statement.
BEGIN;
SELECT set_config('auth.jwt', fixtures.token('alice'), true) IS NOT NULL AS token_bound;
SELECT auth.has_role('writer') AS writer;
UPDATE auth.users SET raw_app_meta_data = '{"roles": []}' WHERE id = '8d8ac610-566d-4ef0-9c22-186b2a5ed793';
SELECT auth.has_role('writer') AS writer_after_revoke;
ROLLBACK;
DELETE FROM auth.users WHERE id = '8d8ac610-566d-4ef0-9c22-186b2a5ed793';
DROP TABLE notes;
DROP OWNED BY regress_app;
DROP ROLE regress_app;
DELETE FROM auth.key_store;
