"""Issue 12 (operators can see it) end to end: auth.stats with the library preloaded shows
cluster-wide totals, added by every backend at transaction end, commit and abort alike (a
failed sign-in raises and rolls back, and still counts); without preload, scope 'backend'."""
import json
import os
import subprocess

import psycopg
import pytest

from conftest import ROOT, Cluster

SETTINGS = {"auth.argon2_memory_kib": "1024", "auth.argon2_iterations": "1",
            "auth.max_failed_sign_ins": "2", "auth.lockout_seconds": "600",
            "auth.refresh_reuse_interval_seconds": "0",
            # Users sign in right after sign-up (confirmation: test_passwordless.py).
            "auth.require_email_confirmation": "off"}


def _cluster_sh(*args):
    return subprocess.run([str(ROOT / "scripts/cluster.sh"), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def preloaded():
    """A cluster of its own with auth_ext in shared_preload_libraries."""
    directory = f"/tmp/auth_ext_e2e_stats_{os.getpid()}"
    port = int(_cluster_sh("start", directory, "shared_preload_libraries = 'auth_ext'"))
    c = Cluster(directory, port)
    try:
        with c.connect(dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE e2e")
        with c.connect(autocommit=True) as conn:
            conn.execute("CREATE EXTENSION auth_ext")
            conn.execute("SELECT auth.generate_signing_key()")
            conn.execute("CREATE ROLE app_user LOGIN")
            conn.execute("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
            for k, v in SETTINGS.items():
                conn.execute(f"ALTER DATABASE e2e SET {k} = {v}")
        yield c
    finally:
        _cluster_sh("stop", directory)


def stats(cluster, user="watcher"):
    """{(metric, outcome): value} and the scopes, read from a fresh backend."""
    with cluster.connect(user=user, autocommit=True) as conn:
        rows = conn.execute("SELECT metric, outcome, value, scope FROM auth.stats").fetchall()
    return {(m, o): v for m, o, v, _ in rows}, {s for *_, s in rows}


def error_code(conn, sql, params=()):
    try:
        conn.execute(sql, params).fetchall()
        return "ok"
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}"
    finally:
        conn.rollback()


def test_cluster_totals_across_connections(preloaded):
    c = preloaded
    with c.connect(autocommit=True) as admin:
        admin.execute("SELECT auth.stats_reset()")
    before, scopes = stats(c)
    assert scopes == {"cluster"}
    assert len(before) == 48 and set(before.values()) == {0}, before

    with c.connect(user="app_user") as a, c.connect(user="app_user") as b, \
            c.connect(user="app_user") as d:
        a.execute("SELECT auth.sign_up('stats-ok@example.test', 'long enough pw')")
        a.execute("SELECT auth.sign_up('stats-locked@example.test', 'long enough pw')")
        a.commit()
        # A wrong password: the error aborts the transaction; the count survives.
        assert error_code(a, "SELECT auth.sign_in('stats-ok@example.test', 'wrong')") == "28P01 INVALID_CREDENTIALS"
        # Two failures lock (max_failed_sign_ins = 2); the third attempt is ACCOUNT_LOCKED.
        for _ in range(2):
            assert error_code(b, "SELECT auth.sign_in('stats-locked@example.test', 'wrong')") == "28P01 INVALID_CREDENTIALS"
        assert error_code(b, "SELECT auth.sign_in('stats-locked@example.test', 'long enough pw')") == "28000 ACCOUNT_LOCKED"
        # A good sign-in and a refresh, in another backend.
        r = d.execute("SELECT auth.sign_in('stats-ok@example.test', 'long enough pw')").fetchone()[0]
        d.commit()
        r2 = d.execute("SELECT auth.refresh(%s)", (r["refresh_token"],)).fetchone()[0]
        d.commit()
        # The rotated token again: reuse, the session revoked by the worker although this aborts.
        assert error_code(d, "SELECT auth.refresh(%s)", (r["refresh_token"],)) == "28000 TOKEN_REVOKED"
        # A new session, signed out with its own access token (one verification, ok).
        r3 = a.execute("SELECT auth.sign_in('stats-ok@example.test', 'long enough pw')").fetchone()[0]
        a.commit()
        a.execute("SELECT set_config('auth.jwt', %s, true)", (r3["access_token"],))
        assert a.execute("SELECT auth.sign_out('local')").fetchone()[0] == 1
        a.commit()
        # The signed-out token: TOKEN_REVOKED at the next verification.
        assert error_code(b, "SELECT set_config('auth.jwt', %s, true), auth.uid()", (r3["access_token"],)) == "28000 TOKEN_REVOKED"
        # Two more sessions, for the administrative revocations below.
        for _ in range(2):
            r4 = a.execute("SELECT auth.sign_in('stats-ok@example.test', 'long enough pw')").fetchone()[0]
            a.commit()
        # A helper called twice in one transaction: a miss (verification) then a hit.
        b.execute("SELECT set_config('auth.jwt', %s, true)", (r4["access_token"],))
        b.execute("SELECT auth.uid()")
        b.execute("SELECT auth.uid()")
        b.commit()
    with c.connect(autocommit=True) as admin:
        # A revocation rolled back is not counted.
        with admin.transaction():
            admin.execute("UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'sign_out' WHERE revoked_at IS NULL")
            raise psycopg.Rollback()
        live = admin.execute("SELECT count(*) FROM auth.sessions WHERE revoked_at IS NULL").fetchone()[0]
        assert live == 2  # the refreshed-then-reused session is revoked, r3 signed out
        uid = admin.execute("SELECT id FROM auth.users WHERE email = 'stats-ok@example.test'").fetchone()[0]
        sid = admin.execute("SELECT id FROM auth.sessions WHERE revoked_at IS NULL ORDER BY created_at LIMIT 1").fetchone()[0]
        admin.execute("SELECT auth.revoke_session(%s)", (sid,))
        admin.execute("SELECT auth.ban_user(%s, now() + interval '1 hour')", (uid,))
        admin.execute("SELECT auth.ban_user(%s, NULL)", (uid,))

    after, scopes = stats(c)
    assert scopes == {"cluster"}
    nonzero = {f"{m}/{o}": v for (m, o), v in after.items() if v}
    assert nonzero == {
        "sign_ins/INVALID_CREDENTIALS": 3,
        "sign_ins/ACCOUNT_LOCKED": 1,
        "sign_ins/ok": 4,
        "refreshes/ok": 1,
        "refreshes/reuse_detected": 1,
        "revocations/refresh_reuse": 1,
        "revocations/sign_out": 1,
        "revocations/revoke_session": 1,
        "revocations/ban_user": 1,
        # sign_out's own binding, the revoked token, the token of the two uid() calls.
        "verifications/ok": 2,
        "verifications/TOKEN_REVOKED": 1,
        "identity_cache/miss": 3,
        "identity_cache/hit": 1,
    }, nonzero
    # Only names, codes and numbers: nothing of a password or token.
    with c.connect(user="watcher", autocommit=True) as w:
        text = json.dumps(w.execute("SELECT json_agg(s) FROM auth.stats s").fetchone()[0])
    for secret in ["long enough pw", "wrong", r["refresh_token"], r2["access_token"], r3["access_token"]]:
        assert secret not in text

    # Reset: owner only; zeroes the cluster's counters.
    with c.connect(user="watcher", autocommit=True) as w:
        assert error_code(w, "SELECT auth.stats_reset()").startswith("42501")
    with c.connect(user="app_user", autocommit=True) as u:
        assert error_code(u, "SELECT count(*) FROM auth.stats").startswith("42501")
    with c.connect(autocommit=True) as admin:
        admin.execute("SELECT auth.stats_reset()")
    after_reset, _ = stats(c)
    assert set(after_reset.values()) == {0}, after_reset


def test_without_preload_the_view_is_this_backends(cluster, signer):
    token = signer.token()
    with cluster.connect(autocommit=True) as one, cluster.connect(autocommit=True) as other:
        with one.transaction():  # the repeat cache of auth.verify lasts one transaction
            one.execute("SELECT auth.verify(%s)", (token,))
            one.execute("SELECT auth.verify(%s)", (token,))
        mine = dict(((m, o), (v, s)) for m, o, v, s in
                    one.execute("SELECT metric, outcome, value, scope FROM auth.stats").fetchall())
        theirs = other.execute("SELECT scope, sum(value)::int FROM auth.stats GROUP BY scope").fetchall()
    assert {s for _, s in mine.values()} == {"backend"}
    assert mine[("verifications", "ok")][0] >= 1 and mine[("verify_cache", "hit")][0] >= 1, mine
    assert theirs == [("backend", 0)]
