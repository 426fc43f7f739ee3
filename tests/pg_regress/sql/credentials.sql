-- Credentials (README "Credentials"): password hashing, sign-up, sign-in, and the lockout
-- after repeated failures. Errors read 'SQLSTATE CODE: message (detail)'. Values that differ
-- from run to run (ids, hashes, tokens, times) are compared or masked, never printed.
\set VERBOSITY terse
-- Start from an empty audit log, so that the counts below are this file's own.
DELETE FROM auth.audit_log;

-- 1. Password hashes.
-- auth.hash_password makes an argon2id PHC string with the OWASP parameters (m=19456 KiB,
-- t=2, p=1). The salt is random, so only the parameters are shown.
SELECT auth.hash_password('correct horse') AS hash \gset
SELECT regexp_replace(:'hash', '\$[^$]+\$[^$]+$', '$<salt>$<hash>') AS hash;
-- auth.verify_password checks a password against it; NULL in, NULL out.
SELECT auth.verify_password('correct horse', :'hash') AS right_password,
       auth.verify_password('correct horsE', :'hash') AS wrong_password,
       auth.verify_password(NULL, 'x') IS NULL AS null_password_gives_null;
-- Hashes made elsewhere verify as they are: argon2-cffi's argon2id and argon2i, pyca/bcrypt's
-- $2a$, $2b$ and $2y$ (GoTrue/Supabase and pgcrypto's crypt() store these).
SELECT source, auth.verify_password('correct horse battery staple', hash) AS verifies
  FROM (VALUES
    ('argon2-cffi argon2id', '$argon2id$v=19$m=19456,t=2,p=1$2+mb4d5E1B0YUUS1CJTtjQ$kyEFCA/Cpe408ypOSIZKXozcUDOKu9Gb9oQ4UFNetg4'),
    ('argon2-cffi argon2i', '$argon2i$v=19$m=8192,t=2,p=1$yDHldh00Extl+F+XuEYQuw$YdWaourfvwB0ycNElJvymOpBcaSro0QpFBz589Ih1i8'),
    ('pyca bcrypt $2a$', '$2a$06$WIsOgVxFqwWgaP4P0rDWf.lGlOXa1u/nicLYw/xn0GZ6dPdHCFmd6'),
    ('pyca bcrypt $2b$', '$2b$06$fxiCEUqVwQhHxR5xhZNBkeI1rTdUVNW1JLdew50Zeda5pJJ4yv6/q'),
    ('pyca bcrypt $2y$', '$2y$05$vXVZ5o3x7MGFFZahigqsB.roPtlPlH.Pd/ueVQBkz.oGVuinTzUzG')) AS h(source, hash);
-- A hash that is malformed or of an unsupported kind is an error (22023), never "false", and
-- the error does not echo the password: empty, plain text, MD5-crypt, the buggy bcrypt $2x$,
-- an argon2 hash cut by 4 characters, one cut inside its parameters.
SELECT hash, fixtures.try(format('SELECT auth.verify_password(%L, %L)', 'pw', hash)) AS result
  FROM unnest(ARRAY[
    '',
    'plain',
    '$1$salt$hash',
    '$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW',
    '$argon2id$v=19$m=19456,t=2,p=1$2+mb4d5E1B0YUUS1CJTtjQ$kyEFCA/Cpe408ypOSIZKXozcUDOKu9Gb9oQ4UFN',
    '$argon2id$v=19$m=19456,t=']) AS hash;
-- Passwords are at most 1024 bytes.
SELECT fixtures.try(format('SELECT auth.hash_password(%L)', repeat('x', 1025)));
-- auth.password_needs_rehash: a hash made with the current settings does not; one weaker than
-- the settings does (here after raising auth.argon2_iterations); a bcrypt hash always does.
SELECT auth.password_needs_rehash(:'hash') AS current_settings;
SET auth.argon2_iterations = 3;
SELECT auth.password_needs_rehash(:'hash') AS after_raising_iterations;
RESET auth.argon2_iterations;
SELECT auth.password_needs_rehash('$2b$04$2Siw3Nv3Q/gTOIPetAyPr.GNj3aO0lb1E5E9UumYGKjP9BYqlNWJe') AS bcrypt;
-- The argon2 settings have bounds: at most 262144 KiB of memory and 20 iterations.
SELECT fixtures.try($$ SET auth.argon2_memory_kib = 4194304 $$) AS memory_4_gib,
       fixtures.try($$ SET auth.argon2_iterations = 100 $$) AS iterations_100;

-- Cheap hashing for the rest of this file (the default costs about 40 ms a hash). Production
-- keeps the defaults.
SET auth.argon2_memory_kib = 1024;
SET auth.argon2_iterations = 1;

-- 2. Sign-up.
-- Sign-in issues tokens, so it needs an active signing key and never makes one itself:
-- NOT_CONFIGURED (55000) until the owner has generated one, before any password is judged.
SELECT fixtures.try($$ SELECT auth.sign_in('carol@example.test', 'long enough pw') $$);
SELECT auth.generate_signing_key() IS NOT NULL AS signing_key_generated;
-- auth.sign_up creates the user, with an argon2id hash of the password and the user metadata
-- given, and its 'email' identity; it returns the new user's id.
SELECT auth.sign_up('Carol@Example.TEST', 'long enough pw', '{"name": "Carol"}') AS carol \gset
SELECT id = :'carol' AS is_carol, email, raw_user_meta_data, encrypted_password LIKE '$argon2id$%' AS argon2id,
       last_sign_in_at IS NULL AS never_signed_in
  FROM auth.users;
SELECT provider, provider_id = :'carol' AS provider_id_is_user_id, identity_data->>'email' AS email
  FROM auth.identities WHERE user_id = :'carol';
-- auth.require_email_confirmation is on by default: sign-up queues a confirmation (a code and
-- a link) in auth.outbox, and sign-in refuses the account until it is confirmed. Only the
-- right password learns that (EMAIL_NOT_CONFIRMED, 28000); a wrong one is INVALID_CREDENTIALS.
SELECT kind, recipient, code ~ '^[0-9]{6}$' AS six_digit_code FROM auth.outbox;
SELECT fixtures.try($$ SELECT auth.sign_in('carol@example.test', 'long enough pw') $$) AS unconfirmed;
SELECT fixtures.try($$ SELECT auth.sign_in('carol@example.test', 'wrong password') $$) AS wrong_password;
-- The code confirms the email (and signs in): docs/passwordless.md.
SELECT code AS carol_code FROM auth.outbox WHERE recipient = 'Carol@Example.TEST' \gset
SELECT (auth.verify_otp('carol@example.test', :'carol_code', 'signup'))->'user'->>'email_confirmed_at' IS NOT NULL AS confirmed;
-- A taken email (in any letter case) answers like a new sign-up: an id, which names no user,
-- and no error, so nobody learns which emails have accounts. The owner is told instead.
SELECT auth.sign_up('CAROL@example.test', 'another pw 123') = :'carol' AS same_id,
       (SELECT count(*) FROM auth.users) AS users;
SELECT kind, recipient, code IS NULL AS no_code FROM auth.outbox ORDER BY id DESC LIMIT 1;
-- The rest of this file signs users in right after signing them up.
SET auth.require_email_confirmation = off;
-- Refused (22023): an email taken in any letter case (with confirmation off, a taken email
-- says so), a password shorter than auth.min_password_length (8), an email not shaped
-- name@domain, metadata not a JSON object.
SELECT fixtures.try($$ SELECT auth.sign_up('carol@example.test', 'long enough pw') $$) AS taken;
SELECT fixtures.try($$ SELECT auth.sign_up('dave@example.test', 'short') $$) AS short_password;
SELECT fixtures.try($$ SELECT auth.sign_up('not an email', 'long enough pw') $$) AS not_an_email;
SELECT fixtures.try($$ SELECT auth.sign_up('e@x.test', 'long enough pw', '[1]') $$) AS metadata_not_object;

-- 3. Sign-in.
-- The email matches in any letter case. The answer is the token response of a new session
-- (see sessions.sql), with the user as the API shows it: no password hash.
SELECT auth.sign_in('CAROL@example.test', 'long enough pw') AS response \gset
SELECT string_agg(k, ', ' ORDER BY k) AS response_keys FROM jsonb_object_keys(:'response'::jsonb) k;
SELECT u->>'id' = :'carol' AS is_carol, u->>'email' AS email, u->'user_metadata' AS user_metadata,
       u->'app_metadata' AS app_metadata, u->>'last_sign_in_at' IS NOT NULL AS has_last_sign_in_at,
       u ? 'encrypted_password' AS shows_hash
  FROM (SELECT :'response'::jsonb->'user' AS u) r;
-- It records the sign-in on the user and on the identity.
SELECT u.last_sign_in_at IS NOT NULL AS user_signed_in, i.last_sign_in_at IS NOT NULL AS identity_signed_in
  FROM auth.users u JOIN auth.identities i ON i.user_id = u.id WHERE u.id = :'carol';
-- A wrong password and an unknown email give the same error (28P01), word for word: a caller
-- cannot find out which emails have accounts.
SELECT attempt, fixtures.try(q) AS result
  FROM (VALUES ('wrong password', $$ SELECT auth.sign_in('carol@example.test', 'wrong password') $$),
               ('unknown email', $$ SELECT auth.sign_in('nobody@example.test', 'wrong password') $$)) AS t(attempt, q);
-- So does the right password of a banned user, and of a deleted one (deleted_at set).
UPDATE auth.users SET banned_until = now() + interval '1 day' WHERE id = :'carol';
SELECT fixtures.try($$ SELECT auth.sign_in('carol@example.test', 'long enough pw') $$) AS banned;
UPDATE auth.users SET banned_until = NULL, deleted_at = now() WHERE id = :'carol';
SELECT fixtures.try($$ SELECT auth.sign_in('carol@example.test', 'long enough pw') $$) AS deleted;
UPDATE auth.users SET deleted_at = NULL WHERE id = :'carol';
-- A ban that has ended no longer counts.
UPDATE auth.users SET banned_until = now() - interval '1 second' WHERE id = :'carol';
SELECT (auth.sign_in('carol@example.test', 'long enough pw')->'user'->>'id') = :'carol' AS signed_in;
-- Sign-in writes, so a read-only transaction (or a hot standby) is refused first (25006).
BEGIN READ ONLY;
SELECT fixtures.try($$ SELECT auth.sign_in('carol@example.test', 'long enough pw') $$) AS read_only;
ROLLBACK;

-- 4. Imported users.
-- A user copied from GoTrue/Supabase with a bcrypt hash (pyca/bcrypt, password 'short') signs
-- in with the old password, and the hash is replaced by an argon2id one on the way.
INSERT INTO auth.users (email, encrypted_password)
VALUES ('frank@example.test', '$2b$06$QHidhS/2f0aaKb8nPkDSx.8mkwAM29uPT9JxVrobImWbm.bHTTSSa');
SELECT left(encrypted_password, 4) AS before, auth.verify_password('short', encrypted_password) AS verifies
  FROM auth.users WHERE email = 'frank@example.test';
SELECT auth.sign_in('frank@example.test', 'short') IS NOT NULL AS signed_in;
SELECT left(encrypted_password, 10) AS after, auth.verify_password('short', encrypted_password) AS verifies
  FROM auth.users WHERE email = 'frank@example.test';
-- There is no change-password function: the owner stores a new hash. The old password then
-- fails, the new one works.
UPDATE auth.users SET encrypted_password = auth.hash_password('a new password') WHERE email = 'frank@example.test';
SELECT fixtures.try($$ SELECT auth.sign_in('frank@example.test', 'short') $$) AS old_password;
SELECT auth.sign_in('frank@example.test', 'a new password') IS NOT NULL AS new_password;

-- 5. Lockout.
-- Every attempt is counted per email before its password is judged, by a background worker
-- that commits on its own (a failed sign-in's rollback cannot undo it). At
-- auth.max_failed_sign_ins (5; 3 here) failures the email is locked for auth.lockout_seconds.
SET auth.max_failed_sign_ins = 3;
SELECT auth.sign_up('dave@example.test', 'long enough pw') IS NOT NULL AS dave_signed_up;
CREATE VIEW dave_attempts AS
  SELECT failed_count, locked_until IS NOT NULL AS locked
    FROM auth.failed_sign_ins
   WHERE email_hash = encode(sha256(convert_to(lower('dave@example.test'), 'UTF8')), 'hex');
-- Two wrong passwords: two failures counted.
SELECT fixtures.try($$ SELECT auth.sign_in('dave@example.test', 'wrong 1') $$);
SELECT fixtures.try($$ SELECT auth.sign_in('dave@example.test', 'wrong 2') $$);
SELECT * FROM dave_attempts;
-- A success gives back its own attempt only: the two failures stay counted.
SELECT auth.sign_in('dave@example.test', 'long enough pw') IS NOT NULL AS signed_in;
SELECT * FROM dave_attempts;
-- A password longer than 1024 bytes can never match: refused at once, not counted.
SELECT fixtures.try(format('SELECT auth.sign_in(%L, %L)', 'dave@example.test', repeat('x', 1025)));
SELECT * FROM dave_attempts;
-- The third failure is still judged (a wrong password) and locks the email.
SELECT fixtures.try($$ SELECT auth.sign_in('dave@example.test', 'wrong 3') $$);
SELECT * FROM dave_attempts;
-- Locked: ACCOUNT_LOCKED (28000) even with the right password, in any letter case, unjudged.
SELECT regexp_replace(fixtures.try(q), 'locked until [^)]*', 'locked until <time>') AS result
  FROM (VALUES ($$ SELECT auth.sign_in('dave@example.test', 'long enough pw') $$),
               ($$ SELECT auth.sign_in('DAVE@Example.Test', 'long enough pw') $$)) AS t(q);
-- An email without an account locks exactly the same way.
SELECT n, regexp_replace(fixtures.try($$ SELECT auth.sign_in('ghost@example.test', 'guess') $$),
                         'locked until [^)]*', 'locked until <time>') AS result
  FROM generate_series(1, 4) n;
-- The audit log has each failure, each lock and each attempt refused while locked; it keeps
-- the SHA-256 of the lower-cased email, not the email.
SELECT event, count(*) FROM auth.audit_log
 WHERE event IN ('sign_in_failed', 'account_locked', 'sign_in_locked') GROUP BY event ORDER BY event;
SELECT count(*) FILTER (WHERE details::text LIKE '%@%') AS rows_with_an_email,
       count(*) FILTER (WHERE details->>'email_hash' = encode(sha256(convert_to('ghost@example.test', 'UTF8')), 'hex')) AS ghost_rows
  FROM auth.audit_log;
DROP VIEW dave_attempts;

-- 6. Who may do what.
-- Nobody but the owner reads the user tables; everyone may sign up and sign in.
CREATE ROLE regress_visitor;
SET ROLE regress_visitor;
SELECT fixtures.try($$ SELECT count(*) FROM auth.users $$) AS users,
       fixtures.try($$ SELECT count(*) FROM auth.identities $$) AS identities,
       fixtures.try($$ SELECT count(*) FROM auth.failed_sign_ins $$) AS failed_sign_ins;
SELECT auth.sign_up('gina@example.test', 'long enough pw') IS NOT NULL AS signed_up;
SELECT auth.sign_in('gina@example.test', 'long enough pw') IS NOT NULL AS signed_in;
RESET ROLE;
DROP ROLE regress_visitor;

DELETE FROM auth.users;
DELETE FROM auth.failed_sign_ins;
DELETE FROM auth.audit_log;
DELETE FROM auth.key_store;
