#!/usr/bin/env python3
"""In-place upgrade from the released version (scripts/upgrade_test.sh builds it and this tree).

1. A throwaway cluster on the private PostgreSQL copy, with the old version installed: users
   (signed up, one with a failed sign-in on record), an external IdP's key without an audience
   (0.1.0 allowed that), our own signing keys, sessions with access and refresh tokens, a
   registered grant table with grants, audit rows. Row counts are taken.
2. The new build's files are installed over the old ones while the server runs (what a package
   upgrade does), and `ALTER EXTENSION auth_ext UPDATE` runs in a new connection.
3. Nothing was lost (the same counts and rows), and every function works on the old data: the
   old access token still verifies and binds, the old refresh token rotates, the old password
   signs in, role sync still follows the grant table, bans and sign-out still revoke.
4. The upgraded schema equals a fresh install's in another database (tests/upgrade/catalog.sql).
"""
import argparse
import json
import os
import pathlib
import shutil
import sys
import time

import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benches" / "sql"))
from benchlib import throwaway_cluster  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
TABLES = ["users", "identities", "sessions", "refresh_tokens", "key_store", "signing_keys",
          "audit_log", "role_sync_sources", "failed_sign_ins", "secrets"]
IDP_JWK = {"kty": "oct", "kid": "legacy-idp", "alg": "HS256",
           "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0"}


def counts(c):
    return {t: c.execute(f"SELECT count(*) FROM auth.{t}").fetchone()[0] for t in TABLES}


def catalog(dsn):
    with psycopg.connect(dsn) as c:
        return [r[0] for r in c.execute((HERE / "catalog.sql").read_text()).fetchall()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-version", required=True)
    ap.add_argument("--new-files", required=True, help="the new build's extension files")
    ap.add_argument("--extension-dir", required=True)
    ap.add_argument("--lib-dir", required=True)
    a = ap.parse_args()
    with throwaway_cluster("upgrade") as (port, _):
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE EXTENSION auth_ext")
            assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'auth_ext'").fetchone()[0] == a.old_version
            c.execute("SELECT auth.generate_signing_key('ES256'), auth.generate_signing_key('HS256')")
            c.execute("SELECT auth.add_key(%s::jsonb, 'https://legacy.idp')", (json.dumps(IDP_JWK),))
            users = {}
            for i in range(20):
                users[f"u{i}@upgrade.test"] = c.execute(
                    "SELECT auth.sign_up(%s, 'correct horse battery', jsonb_build_object('n', %s))",
                    (f"u{i}@upgrade.test", i)).fetchone()[0]
            sessions = {}
            for email in list(users)[:10]:
                sessions[email] = c.execute("SELECT auth.sign_in(%s, 'correct horse battery')",
                                            (email,)).fetchone()[0]
            try:
                c.execute("SELECT auth.sign_in('u19@upgrade.test', 'wrong password')")
            except psycopg.errors.Error:
                pass
            c.execute("CREATE TABLE public.editors (user_id uuid NOT NULL, note text)")
            c.execute("SELECT auth.enable_role_sync('public.editors', 'editor')")
            c.execute("INSERT INTO public.editors SELECT id, 'granted' FROM auth.users ORDER BY email LIMIT 5")
            before = counts(c)
            editors_before = c.execute(
                "SELECT count(*) FROM auth.users WHERE raw_app_meta_data -> 'roles' ? 'editor'").fetchone()[0]
            users_before = c.execute(
                "SELECT id, email, encrypted_password, raw_app_meta_data, raw_user_meta_data, created_at "
                "FROM auth.users ORDER BY id").fetchall()
        print(f"before the upgrade ({a.old_version}): {json.dumps(before)}; editors {editors_before}")

        # The package upgrade: new library and scripts while the server runs, each file put in
        # place by rename as dpkg and `cargo pgrx install` do (a new inode: processes that have
        # the old library mapped keep it; overwriting it in place would crash them).
        for f in pathlib.Path(a.new_files).iterdir():
            dest = pathlib.Path(a.lib_dir if f.suffix == ".so" else a.extension_dir) / f.name
            shutil.copy(f, dest.with_name(dest.name + ".new"))
            os.replace(dest.with_name(dest.name + ".new"), dest)

        # Between the new library and ALTER EXTENSION UPDATE the old schema cannot serve a token
        # (docs/operations.md says so); the error says what to do, anonymous requests still work.
        with psycopg.connect(dsn, autocommit=True) as c:
            assert c.execute("SELECT auth.uid()").fetchone()[0] is None
            try:
                with c.transaction():
                    c.execute("SELECT set_config('auth.jwt', %s, true)",
                              (next(iter(sessions.values()))["access_token"],))
                    c.execute("SELECT auth.uid()")
                raise AssertionError("a token was served by the new library on the old schema")
            except psycopg.errors.ObjectNotInPrerequisiteState as e:
                assert "ALTER EXTENSION auth_ext UPDATE" in e.diag.message_detail, e
        with psycopg.connect(dsn, autocommit=True) as c:
            started = time.monotonic()
            c.execute("ALTER EXTENSION auth_ext UPDATE")
            update_ms = (time.monotonic() - started) * 1000
            version = c.execute("SELECT extversion FROM pg_extension WHERE extname = 'auth_ext'").fetchone()[0]
            after = counts(c)
            assert after == before, (before, after)
            assert c.execute("SELECT id, email, encrypted_password, raw_app_meta_data, raw_user_meta_data, "
                             "created_at FROM auth.users ORDER BY id").fetchall() == users_before
            # The old key without an audience accepts any aud, as it did (now said explicitly).
            assert c.execute("SELECT audience FROM auth.key_store WHERE kid = 'legacy-idp'").fetchone()[0] == ["*"]
            print(f"after ALTER EXTENSION UPDATE ({version}, {update_ms:.0f} ms): {json.dumps(after)}")

            # Old tokens and sessions keep working.
            email = next(iter(sessions))
            assert email == "u0@upgrade.test"
            old = sessions[email]
            claims = c.execute("SELECT auth.verify(%s)", (old["access_token"],)).fetchone()[0]
            assert claims["sub"] == str(users[email]), claims
            with c.transaction():
                c.execute("SELECT set_config('auth.jwt', %s, true)", (old["access_token"],))
                assert str(c.execute("SELECT auth.uid()").fetchone()[0]) == str(users[email])
                # u0 is among the first five users by email, granted 'editor' under the old version.
                assert c.execute("SELECT auth.has_role('editor')").fetchone()[0] is True
            rotated = c.execute("SELECT auth.refresh(%s)", (old["refresh_token"],)).fetchone()[0]
            assert rotated["user"]["id"] == str(users[email])
            fresh = c.execute("SELECT auth.sign_in(%s, 'correct horse battery')", (email,)).fetchone()[0]
            assert c.execute("SELECT auth.verify(%s) ->> 'sub'", (fresh["access_token"],)).fetchone()[0] == str(users[email])
            # Role sync still follows the grant table registered under the old version.
            c.execute("DELETE FROM public.editors")
            assert c.execute("SELECT count(*) FROM auth.users WHERE raw_app_meta_data -> 'roles' ? 'editor'").fetchone()[0] == 0
            c.execute("INSERT INTO public.editors SELECT id, 'again' FROM auth.users ORDER BY email LIMIT 3")
            assert c.execute("SELECT count(*) FROM auth.users WHERE raw_app_meta_data -> 'roles' ? 'editor'").fetchone()[0] == 3
            # Bans revoke old tokens; sign-out works on them.
            c.execute("SELECT auth.ban_user(%s, now() + interval '1 hour')", (users[email],))
            try:
                c.execute("SELECT auth.verify(%s)", (fresh["access_token"],))
                raise AssertionError("a banned user's token verified")
            except psycopg.errors.InvalidAuthorizationSpecification as e:
                assert "TOKEN_REVOKED" in str(e)
            other = list(sessions)[1]
            with c.transaction():
                c.execute("SELECT set_config('auth.jwt', %s, true)", (sessions[other]["access_token"],))
                assert c.execute("SELECT auth.sign_out('global')").fetchone()[0] >= 1
            assert c.execute("SELECT jsonb_array_length(auth.jwks() -> 'keys')").fetchone()[0] >= 1
            c.execute("SELECT auth.add_key(%s::jsonb, 'https://new.idp', ARRAY['authenticated'])",
                      (json.dumps(IDP_JWK | {"kid": "new-idp"}),))
            c.execute("SELECT auth.retire_key('legacy-idp')")
            c.execute("CREATE DATABASE fresh")
        with psycopg.connect(dsn.replace("dbname=postgres", "dbname=fresh"), autocommit=True) as f:
            f.execute("CREATE EXTENSION auth_ext")
        upgraded, fresh_install = set(catalog(dsn)), set(catalog(dsn.replace("dbname=postgres", "dbname=fresh")))
        only_upgraded, only_fresh = sorted(upgraded - fresh_install), sorted(fresh_install - upgraded)
        for line in only_upgraded:
            print(f"  only after the upgrade: {line}")
        for line in only_fresh:
            print(f"  only in a fresh install: {line}")
        assert not only_upgraded and not only_fresh, "the upgraded schema differs from a fresh install"
        print(f"schema: {len(upgraded)} catalog facts, identical to a fresh {version} install")


if __name__ == "__main__":
    main()
