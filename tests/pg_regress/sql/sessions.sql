-- Sessions (README "Sessions"): the tokens this database issues. Signing keys, the token
-- response of a sign-in, refresh-token rotation and reuse detection, sign-out, bans, and the
-- owner's session functions. Errors read 'SQLSTATE CODE: message (detail)'. Tokens, ids and
-- times differ from run to run: they are kept in psql variables (\gset) and compared, never
-- printed.
\set VERBOSITY terse
-- Cheap hashing for the test (the default argon2id costs about 40 ms a hash), and users signed
-- in right after sign-up (email confirmation: credentials.sql and docs/passwordless.md).
SET auth.require_email_confirmation = off;
SET auth.argon2_memory_kib = 1024;
SET auth.argon2_iterations = 1;
-- jwt_header(token): the decoded JOSE header of a token, to see which key signed it.
CREATE FUNCTION pg_temp.jwt_header(token text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT convert_from(decode(rpad(translate(h, '-_', '+/'), (length(h) + 3) / 4 * 4, '='), 'base64'), 'UTF8')::jsonb
    FROM split_part(token, '.', 1) AS h $$;
-- Start from an empty audit log, so that the counts below are this file's own.
DELETE FROM auth.audit_log;

-- 1. Signing keys.
-- The owner generates the keys that sign our tokens: ES256 (the default), EdDSA, RS256 and
-- HS256. Each returns its kid; the newest key signs from now on.
SELECT auth.generate_signing_key() AS es256 \gset
SELECT auth.generate_signing_key('EdDSA') AS eddsa \gset
SELECT auth.generate_signing_key('RS256') AS rs256 \gset
SELECT auth.generate_signing_key('HS256') AS hs256 \gset
SELECT fixtures.try($$ SELECT auth.generate_signing_key('PS256') $$) AS ps256;
-- Verified claims come back as jsonb holding exactly what was signed: escapes and non-ASCII
-- text, integers beyond 2^53, fractions, nesting, empty containers, null and booleans.
SELECT auth.sign($${"sub": "x", "aud": "authenticated", "s": "a\"b\\c\u00e9\n", "big": 9007199254740993,
                   "neg": -5, "f": 0.125, "nested": {"a": [1, {"b": null}], "t": true, "e": {}, "ea": []}}$$) AS varied \gset
SELECT auth.verify(:'varied') - 'iat' - 'exp' - 'iss'
       = $${"sub": "x", "aud": "authenticated", "s": "a\"b\\c\u00e9\n", "big": 9007199254740993,
            "neg": -5, "f": 0.125, "nested": {"a": [1, {"b": null}], "t": true, "e": {}, "ea": []}}$$::jsonb AS as_signed;
BEGIN;
SELECT set_config('auth.jwt', :'varied', true) IS NOT NULL AS bound;
SELECT auth.jwt() = auth.verify(:'varied') AS jwt_same, auth.claim('nested.a') AS nested_a,
       auth.claim('s') AS s, auth.claim('big') AS big, auth.claim('f') AS f, auth.claim('nested.e') AS e;
COMMIT;
-- They are trusted for our own issuer (auth.issuer, 'auth_ext') and audience 'authenticated'.
SELECT alg, kty, issuer, audience FROM auth.keys ORDER BY alg;
-- auth.jwks() is the document to publish at /.well-known/jwks.json: public keys only, never
-- an HMAC secret, never a private part.
SELECT jsonb_path_query_array(auth.jwks(), '$.keys[*].alg') AS published,
       jsonb_path_exists(auth.jwks(), '$.keys[*].d') AS has_private_parts,
       jsonb_path_exists(auth.jwks(), '$.keys[*].k') AS has_secrets;
-- auth.sign(claims, kid) signs any claims (owner only: it can mint any identity) and fills
-- iss, iat and exp. Tokens of each key verify.
SELECT alg, c->>'iss' AS iss, c->>'sub' AS sub, (c->>'exp')::bigint > (c->>'iat')::bigint AS exp_after_iat
  FROM (SELECT alg, auth.verify(auth.sign('{"sub": "x", "aud": "authenticated"}', kid)) AS c
          FROM (VALUES ('ES256', :'es256'), ('EdDSA', :'eddsa'), ('RS256', :'rs256'), ('HS256', :'hs256')) AS k(alg, kid)) s;
-- Our keys refuse a token for another audience, or claiming another issuer.
SELECT fixtures.try(format('SELECT auth.verify(%L)', auth.sign('{"sub": "x", "aud": "other"}'))) AS other_audience;
SELECT fixtures.try(format('SELECT auth.verify(%L)', auth.sign('{"sub": "x", "aud": "authenticated", "iss": "evil"}'))) AS other_issuer;
-- Without a kid, the newest key (HS256) signs. Retired, its tokens no longer verify.
SELECT auth.sign('{"sub": "x", "aud": "authenticated"}') AS hs_token \gset
SELECT pg_temp.jwt_header(:'hs_token')->>'kid' = :'hs256' AS signed_by_newest;
SELECT auth.retire_key(:'hs256');
SELECT regexp_replace(fixtures.try(format('SELECT auth.verify(%L)', :'hs_token')), 'key "[^"]*"', 'key "<kid>"') AS after_retiring;
-- A key keeps the issuer it was made with: auth.issuer applies to keys generated later.
SET auth.issuer = 'https://db.example.test/auth';
SELECT auth.verify(auth.sign('{"sub": "x", "aud": "authenticated"}', :'es256'))->>'iss' AS older_key;
SELECT auth.generate_signing_key() AS fresh \gset
SELECT auth.sign('{"sub": "x", "aud": "authenticated"}') AS fresh_token \gset
SELECT auth.verify(:'fresh_token')->>'iss' AS newer_key, pg_temp.jwt_header(:'fresh_token')->>'kid' = :'fresh' AS signed_by_it;
SELECT auth.retire_key(:'fresh');
RESET auth.issuer;
-- Key events are audited with the kid, never with key material (here an HS256 secret added
-- by hand, and the private parts of the generated keys).
SELECT auth.add_key('{"kty": "oct", "alg": "HS256", "kid": "audit-test", "k": "YW4gaG1hYyBzZWNyZXQgZm9yIHRoZSBhdWRpdCB0ZXN0"}', NULL, ARRAY['*']);
SELECT event, count(*) FROM auth.audit_log GROUP BY event ORDER BY event;
SELECT bool_or(details::text LIKE '%' || :'hs256' || '%') AS names_the_retired_kid,
       bool_or(details::text LIKE '%audit-test%') AS names_the_added_kid,
       bool_or(details::text LIKE '%YW4gaG1hYyBzZWNyZXQ%') AS holds_the_secret,
       bool_or(details::text LIKE '%"d"%') AS holds_a_private_part
  FROM auth.audit_log;

-- 2. Sign-in: the token response.
SELECT auth.sign_up('hank@example.test', 'long enough pw', '{"name": "Hank"}') AS hank \gset
SELECT auth.sign_in('hank@example.test', 'long enough pw') AS response \gset
SELECT :'response'::jsonb->>'access_token' AS access, :'response'::jsonb->>'refresh_token' AS refresh \gset
-- GoTrue/Supabase's shape: a bearer token for an hour, a 43-character refresh token, the user.
SELECT r->>'token_type' AS token_type, r->'expires_in' AS expires_in,
       length(r->>'refresh_token') AS refresh_token_length, r->'user'->>'id' = :'hank' AS user_is_hank
  FROM (SELECT :'response'::jsonb AS r) s;
-- The access token verifies with our keys and carries Supabase's claims.
SELECT string_agg(k, ', ' ORDER BY k) AS claims FROM jsonb_object_keys(auth.verify(:'access')) k;
SELECT c->>'aud' AS aud, c->>'role' AS role, c->>'sub' = :'hank' AS sub_is_hank, c->>'email' AS email,
       c->'user_metadata' AS user_metadata, c->>'aal' AS aal, c->'amr'->0->>'method' AS amr,
       (c->>'exp')::bigint = (:'response'::jsonb->>'expires_at')::bigint AS exp_is_expires_at
  FROM (SELECT auth.verify(:'access') AS c) s;
-- Its session_id names the new row of auth.sessions.
SELECT auth.verify(:'access')->>'session_id' AS session \gset
SELECT user_id = :'hank' AS hanks, revoked_at IS NULL AS active FROM auth.sessions WHERE id = :'session';
-- A backend binds it for a transaction; the helpers answer from it.
BEGIN;
SELECT set_config('auth.jwt', :'access', true) IS NOT NULL AS token_bound;
SELECT auth.uid() = :'hank' AS uid_is_hank, auth.email(), auth.role();
COMMIT;
SELECT event FROM auth.audit_log WHERE user_id = :'hank' ORDER BY id;

-- 3. Refresh: rotation.
-- auth.refresh spends the refresh token and returns a new response in the same session.
SELECT auth.refresh(:'refresh') AS response2 \gset
SELECT :'response2'::jsonb->>'refresh_token' AS refresh2, :'response2'::jsonb->>'access_token' AS access2 \gset
SELECT :'refresh2' <> :'refresh' AS new_refresh_token, length(:'refresh2') AS length,
       auth.verify(:'access2')->>'session_id' = :'session' AS same_session;
-- A client that retries (lost response) within auth.refresh_reuse_interval_seconds (10) gets
-- the same successor, and nothing rotates again.
SELECT auth.refresh(:'refresh')->>'refresh_token' = :'refresh2' AS same_successor;
SELECT count(*) AS refresh_tokens, count(rotated_at) AS rotated FROM auth.refresh_tokens WHERE session_id = :'session';
-- The successor rotates on; a late retry of the first token, still within the interval, gets
-- the chain's live token.
SELECT auth.refresh(:'refresh2')->>'refresh_token' AS refresh3 \gset
SELECT :'refresh3' <> :'refresh2' AS rotated_again,
       auth.refresh(:'refresh')->>'refresh_token' = :'refresh3' AS first_token_gets_live_token;
-- An unknown token is INVALID_TOKEN; one past auth.refresh_token_seconds is TOKEN_EXPIRED.
SELECT fixtures.try($$ SELECT auth.refresh('not-a-token') $$) AS unknown;
UPDATE auth.refresh_tokens SET expires_at = now() - interval '1 second'
 WHERE session_id = :'session' AND rotated_at IS NULL;
SELECT fixtures.try(format('SELECT auth.refresh(%L)', :'refresh3')) AS expired;

-- A token is good at once, even within the statement that signed in: its session is seen.
SELECT auth.verify(r->>'access_token')->>'role' AS role_in_same_statement
  FROM auth.sign_in('hank@example.test', 'long enough pw') AS r;

-- 4. Refresh: reuse detection.
-- A rotated token presented after the reuse interval (0 here, to show it at once) means
-- someone else may hold the chain: the whole session is revoked.
SELECT auth.sign_in('hank@example.test', 'long enough pw') AS response \gset
SELECT :'response'::jsonb->>'access_token' AS access, :'response'::jsonb->>'refresh_token' AS refresh,
       auth.verify(:'response'::jsonb->>'access_token')->>'session_id' AS session \gset
SELECT auth.refresh(:'refresh')->>'refresh_token' AS refresh2 \gset
SET auth.refresh_reuse_interval_seconds = 0;
SELECT fixtures.try(format('SELECT auth.refresh(%L)', :'refresh')) AS reused;
RESET auth.refresh_reuse_interval_seconds;
-- The revocation stuck although the call failed (the bookkeeping worker committed it): the
-- live refresh token and the session's access token are refused too.
SELECT revoked_reason FROM auth.sessions WHERE id = :'session';
SELECT fixtures.try(format('SELECT auth.refresh(%L)', :'refresh2')) AS live_refresh_token;
SELECT fixtures.try(format('SELECT auth.verify(%L)', :'access')) AS access_token;
SELECT count(*) AS reuse_events FROM auth.audit_log WHERE event = 'refresh_token_reused' AND session_id = :'session';

-- 5. Sign-out.
-- With its access token bound, a user ends this session ('local', the default), all of
-- theirs ('global'), or all but this one ('others'). Jack signs in on two devices.
SELECT auth.sign_up('jack@example.test', 'long enough pw') AS jack \gset
SELECT r->>'access_token' AS access_a FROM auth.sign_in('jack@example.test', 'long enough pw') AS r \gset
SELECT r->>'access_token' AS access_b, r->>'refresh_token' AS refresh_b
  FROM auth.sign_in('jack@example.test', 'long enough pw') AS r \gset
-- Device A signs the others out: one session ended, A's lives on.
BEGIN;
SELECT set_config('auth.jwt', :'access_a', true) IS NOT NULL AS token_bound;
SELECT auth.uid() = :'jack' AS is_jack;
SELECT auth.sign_out('others') AS sessions_ended;
SELECT auth.uid() = :'jack' AS this_session_lives_on;
COMMIT;
-- Device B's access token and refresh token are refused: TOKEN_REVOKED.
SELECT fixtures.try(format('SELECT auth.verify(%L)', :'access_b')) AS access_b;
SELECT fixtures.try(format('SELECT auth.refresh(%L)', :'refresh_b')) AS refresh_b;
-- Device A signs out; its token is refused from the next statement on.
BEGIN;
SELECT set_config('auth.jwt', :'access_a', true) IS NOT NULL AS token_bound;
SELECT auth.sign_out() AS sessions_ended;
SELECT fixtures.try('SELECT auth.uid()') AS after_sign_out;
COMMIT;
-- 'global' ends every session of the user; an unknown scope is refused; without a token
-- there is nothing to sign out.
SELECT auth.sign_in('jack@example.test', 'long enough pw') IS NOT NULL AS signed_in;
SELECT r->>'access_token' AS access_c FROM auth.sign_in('jack@example.test', 'long enough pw') AS r \gset
BEGIN;
SELECT set_config('auth.jwt', :'access_c', true) IS NOT NULL AS token_bound;
SELECT fixtures.try($$ SELECT auth.sign_out('everywhere') $$) AS unknown_scope;
SELECT auth.sign_out('global') AS sessions_ended;
COMMIT;
SELECT fixtures.try($$ SELECT auth.sign_out() $$) AS no_token;

-- 6. Bans.
-- auth.ban_user(user, until) refuses sign-in, refresh and every access token of the user until
-- then, and ends their sessions. A token in use is refused from the next statement on.
SELECT r->>'access_token' AS access, r->>'refresh_token' AS refresh
  FROM auth.sign_in('jack@example.test', 'long enough pw') AS r \gset
BEGIN;
SELECT set_config('auth.jwt', :'access', true) IS NOT NULL AS token_bound;
SELECT auth.uid() = :'jack' AS is_jack;
SELECT auth.ban_user(:'jack', now() + interval '1 hour');
SELECT fixtures.try('SELECT auth.uid()') AS access_token;
COMMIT;
SELECT fixtures.try(format('SELECT auth.refresh(%L)', :'refresh')) AS refresh_token;
SELECT fixtures.try($$ SELECT auth.sign_in('jack@example.test', 'long enough pw') $$) AS sign_in;
-- With auth.revocation_checks off, only the signature and the claims count.
SET auth.revocation_checks = off;
BEGIN;
SELECT set_config('auth.jwt', :'access', true) IS NOT NULL AS token_bound;
SELECT auth.uid() = :'jack' AS accepted;
COMMIT;
RESET auth.revocation_checks;
-- NULL (or a past time) lifts the ban. The sessions it ended stay ended; sign-in works again.
SELECT auth.ban_user(:'jack', NULL);
BEGIN;
SELECT set_config('auth.jwt', :'access', true) IS NOT NULL AS token_bound;
SELECT fixtures.try('SELECT auth.uid()') AS old_access_token;
COMMIT;
SELECT auth.sign_in('jack@example.test', 'long enough pw') IS NOT NULL AS signed_in;
SELECT fixtures.try($$ SELECT auth.ban_user('00000000-0000-4000-8000-000000000000', NULL) $$) AS unknown_user;
-- Jack's audit trail so far.
SELECT event, count(*) FROM auth.audit_log WHERE user_id = :'jack' GROUP BY event ORDER BY event;

-- 7. The owner's session functions.
-- auth.revoke_session ends one session: its access and refresh tokens are refused.
SELECT r->>'access_token' AS access, r->>'refresh_token' AS refresh
  FROM auth.sign_in('jack@example.test', 'long enough pw') AS r \gset
SELECT auth.verify(:'access')->>'session_id' AS session \gset
SELECT auth.revoke_session(:'session');
SELECT fixtures.try(format('SELECT auth.verify(%L)', :'access')) AS access_token,
       fixtures.try(format('SELECT auth.refresh(%L)', :'refresh')) AS refresh_token;
SELECT revoked_reason FROM auth.sessions WHERE id = :'session';
SELECT fixtures.try($$ SELECT auth.revoke_session('00000000-0000-4000-8000-000000000000') $$) AS unknown_session;
-- A session can be time-boxed: once auth.sessions.not_after has passed, its tokens are refused.
SELECT r->>'access_token' AS access FROM auth.sign_in('jack@example.test', 'long enough pw') AS r \gset
SELECT auth.verify(:'access')->>'session_id' AS session \gset
UPDATE auth.sessions SET not_after = now() WHERE id = :'session';
SELECT fixtures.try(format('SELECT auth.verify(%L)', :'access')) AS after_not_after;
-- Deleting the user revokes their tokens, from the next statement on: soft (deleted_at, as
-- GoTrue does) and hard (DELETE, which takes the sessions with it).
SELECT r->>'access_token' AS access FROM auth.sign_in('jack@example.test', 'long enough pw') AS r \gset
BEGIN;
SELECT set_config('auth.jwt', :'access', true) IS NOT NULL AS token_bound;
SELECT auth.uid() = :'jack' AS is_jack;
UPDATE auth.users SET deleted_at = now() WHERE id = :'jack';
SELECT fixtures.try('SELECT auth.uid()') AS soft_deleted;
DELETE FROM auth.users WHERE id = :'jack';
SELECT fixtures.try('SELECT auth.uid()') AS deleted;
COMMIT;
-- auth.purge_expired(audit_older_than) deletes expired refresh tokens, long-ended sessions,
-- stale failed-sign-in records, expired or voided one-time codes, MFA challenges and MFA failure
-- counts over a day old and, when given an age, older audit rows; it returns the counts.
SELECT auth.sign_up('kim@example.test', 'long enough pw') AS kim \gset
SELECT r->>'refresh_token' AS refresh FROM auth.sign_in('kim@example.test', 'long enough pw') AS r \gset
UPDATE auth.refresh_tokens SET expires_at = now() - interval '1 second'
 WHERE session_id IN (SELECT id FROM auth.sessions WHERE user_id = :'kim');
INSERT INTO auth.audit_log (created_at, event) VALUES (now() - interval '100 days', 'old_event');
SELECT count(*) AS expired_refresh_tokens FROM auth.refresh_tokens WHERE expires_at < now();
SELECT auth.purge_expired(interval '90 days');
-- The purged token is gone for good; recent audit rows stay.
SELECT fixtures.try(format('SELECT auth.refresh(%L)', :'refresh')) AS purged_token;
SELECT count(*) FILTER (WHERE event = 'old_event') AS old_rows,
       count(*) FILTER (WHERE event = 'signed_in' AND user_id = :'kim') AS kims_sign_ins
  FROM auth.audit_log;

-- 8. Who may do what.
-- Any role may publish the JWKS, refresh and sign out; only the owner signs tokens, manages
-- signing keys and sessions, and reads the session tables.
CREATE ROLE regress_client;
SET ROLE regress_client;
SELECT q, fixtures.try(q) AS result FROM unnest(ARRAY[
  $$ SELECT auth.sign('{}') $$,
  $$ SELECT auth.generate_signing_key() $$,
  $$ SELECT auth.revoke_session(gen_random_uuid()) $$,
  $$ SELECT auth.ban_user(gen_random_uuid(), now()) $$,
  $$ SELECT auth.purge_expired() $$,
  $$ SELECT count(*) FROM auth.signing_keys $$,
  $$ SELECT count(*) FROM auth.sessions $$,
  $$ SELECT count(*) FROM auth.refresh_tokens $$,
  $$ SELECT count(*) FROM auth.audit_log $$,
  $$ SELECT auth.jwks() $$,
  $$ SELECT auth.refresh('x') $$,
  $$ SELECT auth.sign_out() $$]) AS q;
RESET ROLE;
DROP ROLE regress_client;

DELETE FROM auth.users;
DELETE FROM auth.failed_sign_ins;
DELETE FROM auth.audit_log;
DELETE FROM auth.key_store;
DELETE FROM auth.secrets;
