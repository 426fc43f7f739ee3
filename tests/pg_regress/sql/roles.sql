-- Role-claim sync: grant tables keep raw_app_meta_data.roles in step, and auth.has_role()
-- answers from the user row, so a revoked role is gone without waiting for a new token.
\set VERBOSITY terse
INSERT INTO auth.users (id, email, raw_app_meta_data) VALUES
  ('8d8ac610-566d-4ef0-9c22-186b2a5ed793', 'alice@example.test', '{"plan": "pro", "roles": ["beta-tester"]}'),
  ('0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', 'bob@example.test', '{}');
CREATE VIEW roles_now AS
  SELECT email, raw_app_meta_data->'roles' AS roles, raw_app_meta_data->>'plan' AS plan FROM auth.users ORDER BY email;

-- A fixed role per row, and a role taken from a column (user id column "member_id").
CREATE TABLE creators (user_id uuid PRIMARY KEY, since date NOT NULL DEFAULT current_date);
CREATE TABLE org_members (org_id int, member_id uuid, role text, PRIMARY KEY (org_id, member_id));
SELECT auth.enable_role_sync('creators', 'creator');
SELECT auth.enable_role_sync('org_members', '=role', 'member_id');

INSERT INTO creators (user_id) VALUES ('8d8ac610-566d-4ef0-9c22-186b2a5ed793');
INSERT INTO org_members VALUES
  (1, '8d8ac610-566d-4ef0-9c22-186b2a5ed793', 'admin'),
  (2, '8d8ac610-566d-4ef0-9c22-186b2a5ed793', 'admin'),
  (1, '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', 'viewer');
-- Sorted and duplicate-free; the hand-set "beta-tester" and the "plan" key are untouched.
SELECT * FROM roles_now;

-- Two rows grant alice "admin": deleting one keeps it, deleting both removes it.
DELETE FROM org_members WHERE org_id = 1 AND member_id = '8d8ac610-566d-4ef0-9c22-186b2a5ed793';
SELECT * FROM roles_now;
-- UPDATE moves roles: a new role for bob, then org 2 changes hands from alice to bob.
UPDATE org_members SET role = 'editor' WHERE member_id = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9';
UPDATE org_members SET member_id = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', role = 'owner' WHERE org_id = 2;
SELECT * FROM roles_now;
-- TRUNCATE removes what the table granted, and only that.
TRUNCATE org_members;
SELECT * FROM roles_now;

-- A role also set by hand survives the end of its grant.
UPDATE auth.users SET raw_app_meta_data = jsonb_set(raw_app_meta_data, '{roles}', '["reviewer"]')
 WHERE email = 'bob@example.test';
INSERT INTO org_members VALUES (3, '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', 'reviewer');
DELETE FROM org_members WHERE org_id = 3;
SELECT * FROM roles_now;

-- Bulk loads with triggers disabled, then one resync; a second resync changes nothing.
ALTER TABLE org_members DISABLE TRIGGER USER;
INSERT INTO org_members SELECT g, '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', 'member' FROM generate_series(10, 20) g;
ALTER TABLE org_members ENABLE TRIGGER USER;
SELECT * FROM roles_now;
SELECT auth.resync_role_claims() AS users_changed;
SELECT auth.resync_role_claims() AS users_changed_again;
SELECT * FROM roles_now;

-- A user created later gets the roles existing rows grant.
INSERT INTO creators (user_id) VALUES ('11111111-2222-4333-8444-555555555555');
INSERT INTO auth.users (id, email) VALUES ('11111111-2222-4333-8444-555555555555', 'carol@example.test');
SELECT * FROM roles_now WHERE email = 'carol@example.test';

-- RLS with auth.has_role(): the user row decides, at the next statement.
SELECT auth.add_key(fixtures.key('ES256'), 'https://idp.fixtures.test', ARRAY['authenticated']);
CREATE TABLE drafts (id int, body text);
INSERT INTO drafts VALUES (1, 'creator-only draft');
ALTER TABLE drafts ENABLE ROW LEVEL SECURITY;
CREATE POLICY creators_read ON drafts USING (auth.has_role('creator'));
CREATE ROLE regress_roles_app;
GRANT SELECT ON drafts TO regress_roles_app;
BEGIN;
SET LOCAL ROLE regress_roles_app;
SELECT set_config('auth.jwt', fixtures.token('alice'), true) IS NOT NULL AS token_bound;
SELECT auth.roles(), auth.has_role('creator') AS creator;
SELECT * FROM drafts;
RESET ROLE;
DELETE FROM creators WHERE user_id = '8d8ac610-566d-4ef0-9c22-186b2a5ed793';
SET LOCAL ROLE regress_roles_app;
-- Same token, next statement: the role is gone.
SELECT auth.roles(), auth.has_role('creator') AS creator;
SELECT * FROM drafts;
COMMIT;

-- Only the owner registers grant tables: a table owner attaching the trigger to an
-- unregistered table of their own does not get a role, but an error.
CREATE ROLE regress_table_owner;
GRANT USAGE, CREATE ON SCHEMA public TO regress_table_owner;
SET ROLE regress_table_owner;
CREATE TABLE my_admins (user_id uuid);
CREATE TRIGGER grant_me AFTER INSERT ON my_admins FOR EACH ROW EXECUTE FUNCTION auth.sync_role_claim('admin');
SELECT fixtures.try($$ INSERT INTO my_admins VALUES ('0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9') $$);
SELECT fixtures.try($$ SELECT auth.enable_role_sync('my_admins', 'admin') $$);
SELECT fixtures.try($$ SELECT auth.resync_role_claims() $$);
RESET ROLE;
SELECT * FROM roles_now WHERE email = 'bob@example.test';
-- A trigger with other arguments than the registration is refused too.
CREATE TRIGGER sneaky AFTER INSERT ON creators FOR EACH ROW EXECUTE FUNCTION auth.sync_role_claim('admin');
SELECT fixtures.try($$ INSERT INTO creators VALUES ('0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9') $$);
DROP TRIGGER sneaky ON creators;

-- Misconfiguration is reported when registering.
SELECT fixtures.try($$ SELECT auth.enable_role_sync('creators', 'x', 'nope') $$);
SELECT fixtures.try($$ SELECT auth.enable_role_sync('creators', 'x', 'since') $$);
SELECT fixtures.try($$ SELECT auth.enable_role_sync('org_members', '=org_id', 'member_id') $$);
SELECT fixtures.try($$ SELECT auth.enable_role_sync('roles_now', 'x') $$);

-- Disabling removes what the table granted.
INSERT INTO creators VALUES ('0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9');
SELECT * FROM roles_now WHERE email = 'bob@example.test';
SELECT auth.disable_role_sync('creators', 'creator') AS users_changed;
SELECT * FROM roles_now WHERE email = 'bob@example.test';
SELECT tgname FROM pg_trigger WHERE tgrelid = 'creators'::regclass AND NOT tgisinternal;

DROP TABLE my_admins;
DROP OWNED BY regress_table_owner;
DROP ROLE regress_table_owner;
DROP TABLE drafts;
DROP OWNED BY regress_roles_app;
DROP ROLE regress_roles_app;
SELECT auth.disable_role_sync('org_members', '=role', 'member_id');
DROP VIEW roles_now;
DROP TABLE creators, org_members;
DELETE FROM auth.users;
DELETE FROM auth.key_store;

-- Dropping a registered grant table removes the roles it granted.
INSERT INTO auth.users (id, email) VALUES ('11111111-2222-4333-8444-555555555555', 'carol@example.test');
CREATE TABLE testers (user_id uuid);
SELECT auth.enable_role_sync('testers', 'tester');
INSERT INTO testers VALUES ('11111111-2222-4333-8444-555555555555');
SELECT email, raw_app_meta_data->'roles' AS roles FROM auth.users WHERE email = 'carol@example.test';
DROP TABLE testers;
SELECT email, raw_app_meta_data->'roles' AS roles FROM auth.users WHERE email = 'carol@example.test';
SELECT count(*) AS registered FROM auth.role_sync_sources;
DELETE FROM auth.users;
