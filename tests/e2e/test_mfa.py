"""TOTP MFA end to end (docs/mfa.md): codes made by an independent implementation (pyotp)
raise a session to aal2; a restrictive aal2 policy admits it and refuses aal1; replay,
concurrency, failure limits and the aal2 rules for adding and removing factors."""
import threading
import time
import uuid

import jwt
import psycopg
import pyotp
import pytest

from test_credentials import fast_app_user  # noqa: F401  (fixture)


def err(conn, sql, params=()):
    try:
        with conn.transaction():
            conn.execute(sql, params).fetchall()
        return "ok"
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}"


def claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def as_user(conn, token, sql, params=()):
    """One request bound to `token`."""
    with conn.transaction():
        conn.execute("SELECT auth.bind(%s)", (token,))
        return conn.execute(sql, params).fetchone()[0]


@pytest.fixture(scope="module")
def mfa_table(cluster):
    with cluster.connect(autocommit=True) as admin:
        admin.execute("""
            CREATE TABLE vault (owner uuid NOT NULL, secret text NOT NULL);
            ALTER TABLE vault ENABLE ROW LEVEL SECURITY;
            CREATE POLICY own ON vault USING (owner = auth.uid());
            CREATE POLICY mfa ON vault AS RESTRICTIVE USING (auth.aal() = 'aal2');
            GRANT SELECT ON vault TO app_user;
        """)
    return "vault"


@pytest.fixture()
def user(cluster, fast_app_user, mfa_table):  # noqa: F811
    email = f"m{uuid.uuid4().hex[:12]}@example.test"
    with cluster.connect(user="app_user", autocommit=True) as conn:
        uid = str(conn.execute("SELECT auth.sign_up(%s, 'mfa password 1')", (email,)).fetchone()[0])
        tokens = conn.execute("SELECT auth.sign_in(%s, 'mfa password 1')", (email,)).fetchone()[0]
    with cluster.connect(autocommit=True) as admin:
        admin.execute("INSERT INTO vault VALUES (%s, 'gold'), (%s, 'silver')", (uid, uid))
    return email, uid, tokens


def enroll(conn, token, name=None):
    f = as_user(conn, token, "SELECT auth.mfa_enroll('totp', %s)", (name,))
    return f["id"], pyotp.parse_uri(f["totp"]["uri"]), f


def verify(conn, token, factor_id, code):
    with conn.transaction():
        conn.execute("SELECT auth.bind(%s)", (token,))
        ch = conn.execute("SELECT auth.mfa_challenge(%s)", (factor_id,)).fetchone()[0]
        return conn.execute("SELECT auth.mfa_verify(%s, %s, %s)", (factor_id, ch["id"], code)).fetchone()[0]


def verify_err(conn, token, factor_id, code):
    try:
        verify(conn, token, factor_id, code)
        return "ok"
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}"


def test_enroll_verify_raises_the_session_to_aal2(cluster, user):
    email, uid, t1 = user
    with cluster.connect(user="app_user", autocommit=True) as conn:
        fid, totp, f = enroll(conn, t1["access_token"], "phone")
        assert f["type"] == "totp" and len(totp.secret) >= 32  # ≥ 160 bits in base32
        assert totp.issuer == "auth_ext" and totp.name == email
        assert claims(t1["access_token"])["aal"] == "aal1"
        # aal1: the restrictive policy hides everything, even the user's own rows.
        assert as_user(conn, t1["access_token"], "SELECT count(*) FROM vault") == 0
        t2 = verify(conn, t1["access_token"], fid, totp.now())
        c = claims(t2["access_token"])
        assert c["aal"] == "aal2" and c["sub"] == uid and c["session_id"] == claims(t1["access_token"])["session_id"]
        # amr newest first: totp, then the password that opened the session.
        assert [m["method"] for m in c["amr"]] == ["totp", "password"]
        assert c["amr"][0]["timestamp"] >= c["amr"][1]["timestamp"]
        assert as_user(conn, t2["access_token"], "SELECT count(*) FROM vault") == 2
        assert as_user(conn, t2["access_token"], "SELECT auth.aal()") == "aal2"
        # A refresh keeps the session's level and methods.
        t3 = conn.execute("SELECT auth.refresh(%s)", (t2["refresh_token"],)).fetchone()[0]
        assert claims(t3["access_token"])["aal"] == "aal2"
        assert [m["method"] for m in claims(t3["access_token"])["amr"]] == ["totp", "password"]
        # The factor is verified; the list never shows its secret.
        [lf] = as_user(conn, t3["access_token"], "SELECT auth.mfa_list_factors()")
        assert lf["id"] == fid and lf["status"] == "verified" and lf["friendly_name"] == "phone"
        assert "secret" not in lf
        # A new sign-in starts at aal1 again.
        t4 = conn.execute("SELECT auth.sign_in(%s, 'mfa password 1')", (email,)).fetchone()[0]
        assert claims(t4["access_token"])["aal"] == "aal1"
        assert as_user(conn, t4["access_token"], "SELECT count(*) FROM vault") == 0


def test_codes_outside_the_window_and_replays_are_refused(cluster, user):
    _, _, t1 = user
    with cluster.connect(user="app_user", autocommit=True) as conn:
        fid, totp, _ = enroll(conn, t1["access_token"])
        now = time.time()
        # Two steps away (±1 is accepted).
        assert verify_err(conn, t1["access_token"], fid, totp.at(now - 90)) == "28P01 INVALID_OTP"
        assert verify_err(conn, t1["access_token"], fid, totp.at(now + 90)) == "28P01 INVALID_OTP"
        assert verify_err(conn, t1["access_token"], fid, "12345") == "28P01 INVALID_OTP"
        code = totp.at(now - 30)
        assert verify_err(conn, t1["access_token"], fid, code) == "ok"
        # The same code again, with a new challenge: replay.
        assert verify_err(conn, t1["access_token"], fid, code) == "28P01 INVALID_OTP"
        # An older step than the accepted one, too.
        assert verify_err(conn, t1["access_token"], fid, totp.at(now - 60)) == "28P01 INVALID_OTP"


def test_one_code_is_accepted_once_under_concurrency(cluster, user):
    _, _, t1 = user
    with cluster.connect(user="app_user", autocommit=True) as conn:
        fid, totp, _ = enroll(conn, t1["access_token"])
    code = totp.now()
    results = []
    barrier = threading.Barrier(6)

    def attempt():
        with cluster.connect(user="app_user", autocommit=True) as c:
            with c.transaction():
                c.execute("SELECT auth.bind(%s)", (t1["access_token"],))
                ch = c.execute("SELECT auth.mfa_challenge(%s)", (fid,)).fetchone()[0]
            barrier.wait()
            try:
                with c.transaction():
                    c.execute("SELECT auth.bind(%s)", (t1["access_token"],))
                    c.execute("SELECT auth.mfa_verify(%s, %s, %s)", (fid, ch["id"], code))
                results.append("ok")
            except psycopg.Error as e:
                results.append(f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1, results
    # Every attempt reserves a failure before its code is judged (fail closed), so 6 attempts
    # racing the default limit of 5 may see the 6th refused before the winner clears the
    # count: at most 6 - 5 of them.
    assert results.count("28000 ACCOUNT_LOCKED") <= 1, results
    assert set(results) - {"ok"} <= {"28P01 INVALID_OTP", "28000 ACCOUNT_LOCKED",
                                     "53000 TEMPORARILY_UNAVAILABLE"}, results


def test_failed_verifications_are_limited_and_survive_rollback(cluster, user):
    _, uid, t1 = user
    with cluster.connect(user="app_user", autocommit=True) as conn:
        fid, totp, _ = enroll(conn, t1["access_token"])
        wrong = f"{(int(totp.now()) + 500000) % 1000000:06d}"
        for _ in range(5):
            assert verify_err(conn, t1["access_token"], fid, wrong) == "28P01 INVALID_OTP"
        # The 6th attempt in the window is not judged, even with the right code.
        assert verify_err(conn, t1["access_token"], fid, totp.now()) == "28000 ACCOUNT_LOCKED"
    with cluster.connect(autocommit=True) as admin:
        events = [e for (e,) in admin.execute(
            "SELECT event FROM auth.audit_log WHERE user_id = %s ORDER BY id", (uid,))]
        assert events.count("mfa_verification_failed") == 5
        assert events.count("mfa_verification_locked") == 1


def test_aal2_is_needed_to_add_or_remove_factors_once_one_is_verified(cluster, user):
    email, _, t1 = user
    with cluster.connect(user="app_user", autocommit=True) as conn:
        fid, totp, _ = enroll(conn, t1["access_token"], "first")
        # Unverified factors can be removed and added at aal1.
        fid2, _, _ = enroll(conn, t1["access_token"], "second")
        assert as_user(conn, t1["access_token"], "SELECT auth.mfa_unenroll(%s)", (fid2,))["id"] == fid2
        assert err(conn, "SELECT auth.bind(%s), auth.mfa_enroll('totp', 'first')", (t1["access_token"],)) \
            == "22023 INVALID_PARAMETER"
        t2 = verify(conn, t1["access_token"], fid, totp.now())
        other = conn.execute("SELECT auth.sign_in(%s, 'mfa password 1')", (email,)).fetchone()[0]
        # At aal1 (a password alone) nobody can add a factor or remove the verified one.
        assert err(conn, "SELECT auth.bind(%s), auth.mfa_enroll()", (other["access_token"],)) == "42501 INSUFFICIENT_PERMISSIONS"
        assert err(conn, "SELECT auth.bind(%s), auth.mfa_unenroll(%s)", (other["access_token"], fid)) == "42501 INSUFFICIENT_PERMISSIONS"
        # At aal2 the user can; the session it raised goes back to aal1.
        assert as_user(conn, t2["access_token"], "SELECT auth.mfa_unenroll(%s)", (fid,))["id"] == fid
        t3 = conn.execute("SELECT auth.refresh(%s)", (t2["refresh_token"],)).fetchone()[0]
        assert claims(t3["access_token"])["aal"] == "aal1"
        assert [m["method"] for m in claims(t3["access_token"])["amr"]] == ["password"]
        assert as_user(conn, t3["access_token"], "SELECT auth.mfa_list_factors()") == []


def test_factors_and_their_secrets_are_private(cluster, user):
    _, _, t1 = user
    with cluster.connect(user="app_user", autocommit=True) as conn:
        enroll(conn, t1["access_token"])
        for t in ["mfa_factors", "mfa_challenges", "mfa_amr_claims"]:
            assert err(conn, f"SELECT * FROM auth.{t}") == f"42501 permission denied for table {t}"
        # Anonymous callers have no factors to enroll or list.
        assert err(conn, "SELECT auth.mfa_list_factors()").startswith("28000")
        assert err(conn, "SELECT auth.mfa_enroll()").startswith("28000")


def test_purge_expired_removes_day_old_challenges_and_failure_counts(cluster, user):
    _, uid, t1 = user
    with cluster.connect(user="app_user", autocommit=True) as conn:
        fid, totp, _ = enroll(conn, t1["access_token"])
        wrong = f"{(int(totp.now()) + 500000) % 1000000:06d}"
        # A failed verification rolls its own challenge back; its count survives (the worker).
        assert verify_err(conn, t1["access_token"], fid, wrong) == "28P01 INVALID_OTP"
        old = as_user(conn, t1["access_token"], "SELECT auth.mfa_challenge(%s)", (fid,))["id"]
        as_user(conn, t1["access_token"], "SELECT auth.mfa_challenge(%s)", (fid,))
    with cluster.connect(autocommit=True) as admin:
        def left():
            return admin.execute(
                "SELECT (SELECT count(*) FROM auth.mfa_challenges WHERE factor_id = %(f)s),"
                "       (SELECT count(*) FROM auth.mfa_failed_verifications WHERE factor_id = %(f)s)",
                {"f": fid}).fetchone()
        assert left() == (2, 1)
        # Nothing current is touched.
        admin.execute("SELECT auth.purge_expired()")
        assert left() == (2, 1)
        # One challenge and the failure count two days old.
        admin.execute("UPDATE auth.mfa_challenges SET created_at = now() - interval '2 days' WHERE id = %s", (old,))
        admin.execute("UPDATE auth.mfa_failed_verifications SET window_started_at = now() - interval '2 days' "
                      "WHERE factor_id = %s", (fid,))
        counts = admin.execute("SELECT auth.purge_expired()").fetchone()[0]
        assert counts["mfa_challenges"] >= 1 and counts["mfa_failed_verifications"] >= 1, counts
        assert left() == (1, 0)
    # The factor still verifies, from a count of zero.
    with cluster.connect(user="app_user", autocommit=True) as conn:
        assert claims(verify(conn, t1["access_token"], fid, totp.now())["access_token"])["aal"] == "aal2"
