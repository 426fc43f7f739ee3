"""Issue 3 end to end: lockout that survives rollbacks and concurrency, imports from pgcrypto,
hashes checked by an independent implementation, just-in-time users, dump/restore."""
import json
import os
import subprocess
import threading
import time
import uuid

import argon2
import psycopg
import pytest

from conftest import ALICE, ISSUER

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")  # as scripts/cluster.sh


@pytest.fixture(scope="module")
def fast_app_user(cluster):
    """Cheap hashing and a known lockout policy for app_user sessions."""
    settings = {"auth.argon2_memory_kib": "1024", "auth.argon2_iterations": "1"}
    with cluster.connect(autocommit=True) as admin:
        for k, v in settings.items():
            admin.execute(f"ALTER ROLE app_user SET {k} = {v}")
    yield
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user RESET ALL")


def new_user(conn, password="long enough pw"):
    email = f"u{uuid.uuid4().hex[:12]}@example.test"
    conn.execute("SELECT auth.sign_up(%s, %s)", (email, password))
    conn.commit()
    return email


def attempt(conn, email, password):
    """One sign-in in its own transaction, rolled back whatever happens. Returns the SQLSTATE
    and code of the error, or 'ok'."""
    try:
        conn.execute("SELECT auth.sign_in(%s, %s)", (email, password)).fetchone()
        return "ok"
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}"
    finally:
        conn.rollback()


def failed_count(cluster, email):
    with cluster.connect(autocommit=True) as admin:
        row = admin.execute(
            "SELECT failed_count FROM auth.failed_sign_ins WHERE email_hash = encode(sha256(convert_to(lower(%s), 'UTF8')), 'hex')",
            (email,)).fetchone()
    return row[0] if row else 0


def test_failures_survive_rollback_and_lock(cluster, fast_app_user):
    with cluster.connect(user="app_user") as conn:
        email = new_user(conn)
        for i in range(5):
            assert attempt(conn, email, "wrong password") == "28P01 INVALID_CREDENTIALS"
            assert failed_count(cluster, email) == i + 1, "the count survived the rollback"
        # Locked now, even with the right password.
        assert attempt(conn, email, "long enough pw") == "28000 ACCOUNT_LOCKED"


def test_lock_expires_and_success_gives_back_only_its_own_attempt(cluster, fast_app_user):
    """At most auth.max_failed_sign_ins passwords are judged per email and run: a success
    gives back its own reservation, not the failures before it; a run ends when its lock
    expires or auth.lockout_seconds pass without an attempt."""
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user SET auth.lockout_seconds = 2")
    try:
        with cluster.connect(user="app_user") as conn:
            email = new_user(conn)
            for _ in range(5):
                attempt(conn, email, "nope")
            assert attempt(conn, email, "long enough pw") == "28000 ACCOUNT_LOCKED"
            time.sleep(2.5)
            assert attempt(conn, email, "long enough pw") == "ok", "the lock expired"
            assert failed_count(cluster, email) == 0, "the success gave its attempt back"
            for _ in range(4):
                attempt(conn, email, "nope")
            assert attempt(conn, email, "long enough pw") == "ok"
            assert failed_count(cluster, email) == 4, "a success does not erase earlier failures"
            assert attempt(conn, email, "nope") == "28P01 INVALID_CREDENTIALS", "the 5th is judged"
            assert attempt(conn, email, "long enough pw") == "28000 ACCOUNT_LOCKED"
            time.sleep(2.5)
            for _ in range(4):
                assert attempt(conn, email, "nope") == "28P01 INVALID_CREDENTIALS"
            time.sleep(2.5)
            assert attempt(conn, email, "nope") == "28P01 INVALID_CREDENTIALS"
            assert failed_count(cluster, email) == 1, "a quiet period ends the run"
    finally:
        with cluster.connect(autocommit=True) as admin:
            admin.execute("ALTER ROLE app_user RESET auth.lockout_seconds")


def test_concurrent_failures_are_all_counted(cluster, fast_app_user):
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user SET auth.max_failed_sign_ins = 1000")
    try:
        with cluster.connect(user="app_user") as conn:
            email = new_user(conn)
        results = []

        def worker():
            with cluster.connect(user="app_user") as c:
                for _ in range(3):
                    results.append(attempt(c, email, "wrong"))

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["28P01 INVALID_CREDENTIALS"] * 18
        assert failed_count(cluster, email) == 18
    finally:
        with cluster.connect(autocommit=True) as admin:
            admin.execute("ALTER ROLE app_user RESET auth.max_failed_sign_ins")


def test_unknown_emails_lock_too_and_say_nothing(cluster, fast_app_user):
    """An unknown email fails, counts and locks exactly like a real one, and no message a
    client can see (at any client_min_messages) tells them apart."""
    ghost = f"ghost{uuid.uuid4().hex[:8]}@example.test"
    heard = {}
    with cluster.connect(user="app_user") as conn:
        real = new_user(conn)
        for email in (ghost, real):
            notices = []
            conn.add_notice_handler(notices.append)
            conn.execute("SET client_min_messages = debug5")
            conn.commit()
            assert attempt(conn, email, "whatever") == "28P01 INVALID_CREDENTIALS"
            heard[email] = [n.message_primary for n in notices if n.message_primary]
            conn.remove_notice_handler(notices.append)
            conn.execute("RESET client_min_messages")
            conn.commit()
        assert heard[ghost] == heard[real], heard
        assert not any("auth_ext" in m or "hash" in m for m in heard[real]), heard
        for _ in range(4):
            attempt(conn, ghost, "whatever")
        assert attempt(conn, ghost, "whatever") == "28000 ACCOUNT_LOCKED"


def test_pgcrypto_bcrypt_hashes_import_and_upgrade(cluster, fast_app_user):
    with cluster.connect(autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        for salt in ["gen_salt('bf')", "gen_salt('bf', 4)", "gen_salt('bf', 10)"]:
            h = admin.execute(f"SELECT crypt('imported pw', {salt})").fetchone()[0]
            assert h.startswith("$2a$")
            assert admin.execute("SELECT auth.verify_password('imported pw', %s)", (h,)).fetchone()[0] is True
            assert admin.execute("SELECT auth.verify_password('imported pX', %s)", (h,)).fetchone()[0] is False
        # pgcrypto uses 72 bytes of a password, and so do we for bcrypt.
        long_pw = "y" * 80
        h = admin.execute("SELECT crypt(%s, gen_salt('bf', 4))", (long_pw,)).fetchone()[0]
        assert admin.execute("SELECT auth.verify_password(%s, %s)", (long_pw[:72] + "zzz", h)).fetchone()[0] is True
        email = f"imp{uuid.uuid4().hex[:8]}@example.test"
        admin.execute("INSERT INTO auth.users (email, encrypted_password) VALUES (%s, crypt('imported pw', gen_salt('bf', 6)))", (email,))
    with cluster.connect(user="app_user") as conn:
        assert attempt(conn, email, "imported pw") == "ok"
        conn.execute("SELECT auth.sign_in(%s, 'imported pw')", (email,))
        conn.commit()
    with cluster.connect(autocommit=True) as admin:
        stored = admin.execute("SELECT encrypted_password FROM auth.users WHERE email = %s", (email,)).fetchone()[0]
        assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$"), "upgraded to argon2id with the current parameters"


def test_our_hashes_verify_with_argon2_cffi(cluster):
    with cluster.connect(autocommit=True) as conn:
        for pw in ["correct horse battery staple", "pässwörd ✓", "x" * 500]:
            h = conn.execute("SELECT auth.hash_password(%s)", (pw,)).fetchone()[0]
            assert h.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
            assert argon2.PasswordHasher().verify(h, pw)
            with pytest.raises(argon2.exceptions.VerifyMismatchError):
                argon2.PasswordHasher().verify(h, pw + "!")
            # Within GoTrue's import bounds (v=19, m <= 1 GiB, t <= 20, p <= 16).
            params = argon2.extract_parameters(h)
            assert params.version == 19 and params.memory_cost <= 1 << 20 and params.time_cost <= 20 and params.parallelism <= 16


def test_ensure_user_once_under_concurrency(cluster, signer):
    # A Clerk-like IdP: its own key bound to its issuer, which owns no accounts by id here.
    clerk = signer.__class__()
    clerk.kids = {alg: f"e2e-clerk-{alg.lower()}" for alg in clerk.kids}
    clerk_issuer = "https://clerk.e2e.test"
    with cluster.connect(autocommit=True) as admin:
        admin.execute("SELECT auth.add_key(%s::jsonb, %s, ARRAY['*'])",
                      (json.dumps(clerk.public_jwk("ES256")), clerk_issuer))
    sub = f"user_{uuid.uuid4().hex[:10]}"  # a Clerk-style id, first seen now
    token = clerk.token(sub=sub, email=f"{sub}@clerk.example", iss=clerk_issuer)
    barrier = threading.Barrier(8)
    ids = []

    def first_request():
        with cluster.connect(user="app_user") as conn:
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
            barrier.wait()
            ids.append(conn.execute("SELECT auth.ensure_user()").fetchone()[0])
            conn.commit()

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1, ids
    with cluster.connect(autocommit=True) as admin:
        n = admin.execute("SELECT count(*) FROM auth.identities WHERE provider = %s AND provider_id = %s", (clerk_issuer, sub)).fetchone()[0]
        assert n == 1
        admin.execute("DELETE FROM auth.key_store WHERE kid LIKE 'e2e-clerk-%'")


def test_dump_and_restore_keep_users_identities_and_keys(cluster, signer, fast_app_user):
    with cluster.connect(user="app_user") as conn:
        email = new_user(conn)
        issued = conn.execute("SELECT auth.sign_in(%s, 'long enough pw')", (email,)).fetchone()[0]
        conn.commit()
    tables = ["auth.users", "auth.identities", "auth.key_store", "auth.signing_keys", "auth.sessions",
              "auth.refresh_tokens", "auth.audit_log", "auth.secrets"]
    with cluster.connect(autocommit=True) as admin:
        admin.execute("UPDATE auth.users SET raw_app_meta_data = '{\"plan\": \"pro\"}' WHERE email = %s", (email,))
        before = {t: admin.execute(f"SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x").fetchone()
                  for t in tables}
        admin.execute("DROP DATABASE IF EXISTS restored")
        admin.execute("CREATE DATABASE restored")
        # As on the e2e database (conftest.py): the user signed up with confirmation off.
        # Database settings are not part of a dump.
        admin.execute("ALTER DATABASE restored SET auth.require_email_confirmation = off")
    dump = f"{cluster.dir}/e2e.dump"
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(cluster.port), PGUSER="postgres")
    subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "-f", dump, "e2e"], check=True, env=env)
    subprocess.run([f"{PG_BIN}/pg_restore", "-d", "restored", dump], check=True, env=env)
    with cluster.connect(dbname="restored", autocommit=True) as r:
        after = {t: r.execute(f"SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x").fetchone()
                 for t in tables}
        assert after == before
        assert before["auth.users"][0] > 0 and before["auth.key_store"][0] > 0
        assert r.execute("SELECT raw_app_meta_data->>'plan' FROM auth.users WHERE email = %s", (email,)).fetchone()[0] == "pro"
        # The restored database works: keys verify tokens, passwords still sign in.
        assert r.execute("SELECT auth.verify(%s)->>'sub'", (signer.token(),)).fetchone()[0] == ALICE
        r.execute("SET auth.argon2_memory_kib = 1024")
        assert r.execute("SELECT auth.sign_in(%s, 'long enough pw')->'user'->>'id'", (email,)).fetchone()[0] == issued["user"]["id"]
        # Sessions survive: the access token verifies, the refresh token rotates, and new ids
        # (audit rows, refresh tokens) do not collide with restored ones.
        assert r.execute("SELECT auth.verify(%s)->>'sub'", (issued["access_token"],)).fetchone()[0] == issued["user"]["id"]
        successor = r.execute("SELECT auth.refresh(%s)->>'refresh_token'", (issued["refresh_token"],)).fetchone()[0]
        assert len(successor) == 43 and successor != issued["refresh_token"]
