"""Issue 5 end to end: sign-in, refresh with rotation and reuse detection, revocation and
bans across backends, tokens checked by an independent library against auth.jwks()."""
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from test_credentials import fast_app_user  # noqa: F401  (fixture)


def error_code(conn, sql, params=()):
    try:
        conn.execute(sql, params).fetchall()
        return "ok"
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}"
    finally:
        conn.rollback()


def bound(conn, token, sql="SELECT auth.uid()::text"):
    """One request: bind the token for a transaction and run `sql`."""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
            return conn.execute(sql).fetchone()[0]
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}"


@pytest.fixture(scope="module")
def account(cluster, fast_app_user):  # noqa: F811
    with cluster.connect(autocommit=True) as admin:
        admin.execute("SELECT auth.generate_signing_key('ES256')")
    email = f"s{uuid.uuid4().hex[:10]}@example.test"
    with cluster.connect(user="app_user") as conn:
        uid = conn.execute("SELECT auth.sign_up(%s, 'long enough pw')", (email,)).fetchone()[0]
        conn.commit()
    return email, str(uid)


def sign_in(conn, email):
    r = conn.execute("SELECT auth.sign_in(%s, 'long enough pw')", (email,)).fetchone()[0]
    conn.commit()
    return r


def test_full_flow_with_reuse_detection(cluster, account):
    email, uid = account
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user SET auth.refresh_reuse_interval_seconds = 0")
    try:
        with cluster.connect(user="app_user") as api, cluster.connect(user="app_user") as other:
            r = sign_in(api, email)
            assert set(r) >= {"access_token", "token_type", "expires_in", "expires_at", "refresh_token", "user"}
            assert r["token_type"] == "bearer" and r["user"]["id"] == uid
            # The access token works in another connection.
            assert bound(other, r["access_token"]) == uid
            r2 = api.execute("SELECT auth.refresh(%s)", (r["refresh_token"],)).fetchone()[0]
            api.commit()
            assert r2["refresh_token"] != r["refresh_token"]
            assert bound(other, r2["access_token"]) == uid
            # The old refresh token, presented again: reuse. The session ends although the call fails.
            assert error_code(api, "SELECT auth.refresh(%s)", (r["refresh_token"],)) == "28000 TOKEN_REVOKED"
            assert bound(other, r2["access_token"]) == "28000 TOKEN_REVOKED"
            assert bound(other, r["access_token"]) == "28000 TOKEN_REVOKED"
            assert error_code(api, "SELECT auth.refresh(%s)", (r2["refresh_token"],)) == "28000 TOKEN_REVOKED"
        with cluster.connect(autocommit=True) as admin:
            events = [e for (e,) in admin.execute(
                "SELECT event FROM auth.audit_log WHERE user_id = %s ORDER BY id", (uid,))]
            assert "refresh_token_reused" in events and "token_refreshed" in events and "signed_in" in events
    finally:
        with cluster.connect(autocommit=True) as admin:
            admin.execute("ALTER ROLE app_user RESET auth.refresh_reuse_interval_seconds")


def test_concurrent_refresh_rotates_once(cluster, account):
    email, uid = account
    with cluster.connect(user="app_user") as conn:
        r = sign_in(conn, email)
    barrier = threading.Barrier(8)
    out = []

    def refresher():
        with cluster.connect(user="app_user") as c:
            barrier.wait()
            try:
                out.append(c.execute("SELECT auth.refresh(%s)", (r["refresh_token"],)).fetchone()[0]["refresh_token"])
                c.commit()
            except psycopg.Error as e:
                out.append(e.sqlstate)

    threads = [threading.Thread(target=refresher) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every caller succeeded, with one and the same successor (not eight failures alike).
    assert len(out) == 8 and len(set(out)) == 1 and len(out[0]) == 43 and out[0] != r["refresh_token"], out
    session = jwt.decode(r["access_token"], options={"verify_signature": False})["session_id"]
    with cluster.connect(autocommit=True) as admin:
        n = admin.execute("SELECT count(*) FROM auth.refresh_tokens WHERE session_id = %s", (session,)).fetchone()[0]
        assert n == 2, "exactly one rotation"


def test_ban_rejects_issued_tokens_everywhere(cluster, account):
    email, uid = account
    with cluster.connect(user="app_user") as api, cluster.connect(user="app_user") as other:
        r = sign_in(api, email)
        other.execute("SELECT set_config('auth.jwt', %s, false)", (r["access_token"],))
        other.commit()
        assert other.execute("SELECT auth.uid()::text").fetchone()[0] == uid
        other.commit()
        with cluster.connect(autocommit=True) as admin:
            admin.execute("SELECT auth.ban_user(%s, now() + interval '1 hour')", (uid,))
        # The other backend, same session token, next statement.
        assert error_code(other, "SELECT auth.uid()") == "28000 TOKEN_REVOKED"
        assert error_code(api, "SELECT auth.refresh(%s)", (r["refresh_token"],)) == "28000 TOKEN_REVOKED"
        assert error_code(api, "SELECT auth.sign_in(%s, 'long enough pw')", (email,)) == "28P01 INVALID_CREDENTIALS"
        with cluster.connect(autocommit=True) as admin:
            admin.execute("SELECT auth.ban_user(%s, NULL)", (uid,))
            admin.execute("DELETE FROM auth.failed_sign_ins")
        r2 = sign_in(api, email)
        assert bound(api, r2["access_token"]) == uid


def test_global_sign_out(cluster, account):
    email, uid = account
    with cluster.connect(user="app_user") as api, cluster.connect(user="app_user", autocommit=True) as held:
        a, b = sign_in(api, email), sign_in(api, email)
        # Another backend holds b's token for its whole session, its identity cached.
        held.execute("SELECT set_config('auth.jwt', %s, false)", (b["access_token"],))
        assert held.execute("SELECT auth.uid()::text").fetchone()[0] == uid
        assert bound(api, a["access_token"], "SELECT auth.sign_out('global')") >= 2
        assert error_code(held, "SELECT auth.uid()") == "28000 TOKEN_REVOKED"
        with cluster.connect(autocommit=True) as admin:
            live = admin.execute("SELECT count(*) FROM auth.sessions WHERE user_id = %s AND revoked_at IS NULL", (uid,)).fetchone()[0]
            assert live == 0
        for t in (a, b):
            assert bound(api, t["access_token"]) == "28000 TOKEN_REVOKED"
            assert error_code(api, "SELECT auth.refresh(%s)", (t["refresh_token"],)) == "28000 TOKEN_REVOKED"


def test_independent_library_and_forgeries(cluster, account):
    email, uid = account
    with cluster.connect(user="app_user") as api:
        r = sign_in(api, email)
        jwks = api.execute("SELECT auth.jwks()").fetchone()[0]
        issuer = api.execute("SELECT current_setting('auth.issuer')").fetchone()[0]
    kid = jwt.get_unverified_header(r["access_token"])["kid"]
    public = next(k for k in jwks["keys"] if k["kid"] == kid)
    assert "d" not in public
    key = jwt.PyJWK(public)
    claims = jwt.decode(r["access_token"], key.key, algorithms=[public["alg"]], audience="authenticated", issuer=issuer)
    assert claims["sub"] == uid and claims["role"] == "authenticated"
    forged_claims = dict(claims, sub=str(uuid.uuid4()), exp=int(time.time()) + 600)
    # No private key leaves the database: a token "signed" with our published key is refused…
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(forged_claims, attacker, algorithm="ES256", headers={"kid": kid})
    # …and so is the classic confusion: HS256 keyed with the published key (JWK text or PEM).
    # PyJWT refuses to make such tokens, so they are assembled by hand.
    pem = key.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    confused = [hs256(forged_claims, secret, kid) for secret in (json.dumps(public).encode(), pem)]
    with cluster.connect(user="app_user") as api:
        for t in [forged, *confused]:
            assert error_code(api, "SELECT auth.verify(%s)", (t,)) == "28000 INVALID_TOKEN"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims, secret, kid):
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + b64(json.dumps(claims).encode())
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def test_failed_sign_in_is_audited_despite_rollback(cluster, account):
    email, uid = account
    failed = "SELECT count(*) FROM auth.audit_log WHERE user_id = %s AND event = 'sign_in_failed'"
    with cluster.connect(autocommit=True) as admin:
        n0 = admin.execute(failed, (uid,)).fetchone()[0]
    with cluster.connect(user="app_user") as api:
        # error_code rolls the caller's transaction back; the audit row stays.
        assert error_code(api, "SELECT auth.sign_in(%s, 'a wrong password')", (email,)) == "28P01 INVALID_CREDENTIALS"
        r = sign_in(api, email)
        r2 = api.execute("SELECT auth.refresh(%s)", (r["refresh_token"],)).fetchone()[0]
        api.commit()
    with cluster.connect(autocommit=True) as admin:
        assert admin.execute(failed, (uid,)).fetchone()[0] == n0 + 1
        # No secret in any audit row: passwords, tokens, or their hashes.
        everything = admin.execute("SELECT string_agg(a::text, ' ') FROM auth.audit_log a").fetchone()[0]
        hashes = [h.hex() for (h,) in admin.execute("SELECT token_hash FROM auth.refresh_tokens")]
        for secret in ["a wrong password", "long enough pw", r["refresh_token"], r2["refresh_token"],
                       r["access_token"], r2["access_token"], r["access_token"].split(".")[2], *hashes]:
            assert secret not in everything
        admin.execute("DELETE FROM auth.failed_sign_ins")


def test_purge_while_traffic_flows(cluster, account):
    email, uid = account
    stop = threading.Event()
    errors = []
    refreshes = [0]

    def traffic():
        try:
            with cluster.connect(user="app_user") as c:
                r = sign_in(c, email)
                tok = r["refresh_token"]
                while not stop.is_set():
                    tok = c.execute("SELECT auth.refresh(%s)", (tok,)).fetchone()[0]["refresh_token"]
                    c.commit()
                    refreshes[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    t = threading.Thread(target=traffic)
    t.start()
    while refreshes[0] < 20 and t.is_alive():
        time.sleep(0.05)
    purged = 0
    with cluster.connect(autocommit=True) as admin:
        for _ in range(5):
            admin.execute("UPDATE auth.refresh_tokens SET expires_at = now() - interval '1 hour' WHERE rotated_at IS NOT NULL")
            counts = admin.execute("SELECT auth.purge_expired(interval '1 year')").fetchone()[0]
            assert set(counts) == {"refresh_tokens", "sessions", "failed_sign_ins", "one_time_tokens",
                                   "mfa_challenges", "mfa_failed_verifications", "audit_log"}
            purged += counts["refresh_tokens"]
            before = refreshes[0]
            while refreshes[0] < before + 5 and t.is_alive():
                time.sleep(0.01)
        left = admin.execute("SELECT count(*) FROM auth.refresh_tokens WHERE expires_at < now()").fetchone()[0]
    stop.set()
    t.join()
    assert errors == []
    # Rotated tokens were really purged, and the refresh loop kept going across every purge.
    assert purged >= 20 and left == 0 and refreshes[0] >= 45


def test_session_timebox_ends_access_at_its_time(cluster, account):
    """auth.sessions.not_after ends a session when that time comes, with no write to notice."""
    email, uid = account
    with cluster.connect(user="app_user") as api, cluster.connect(user="app_user", autocommit=True) as held:
        r = sign_in(api, email)
        session = jwt.decode(r["access_token"], options={"verify_signature": False})["session_id"]
        with cluster.connect(autocommit=True) as admin:
            admin.execute("UPDATE auth.sessions SET not_after = now() + interval '1.5 seconds' WHERE id = %s", (session,))
        held.execute("SELECT set_config('auth.jwt', %s, false)", (r["access_token"],))
        assert held.execute("SELECT auth.uid()::text").fetchone()[0] == uid
        time.sleep(2)
        assert error_code(held, "SELECT auth.uid()") == "28000 TOKEN_REVOKED"
        assert bound(api, r["access_token"]) == "28000 TOKEN_REVOKED"
        assert error_code(api, "SELECT auth.refresh(%s)", (r["refresh_token"],)) == "28000 TOKEN_REVOKED"


def test_account_reads_leave_ddl_in_the_same_transaction_free(cluster, account):
    """The account read of a bind keeps its locks, as a query does, but no relation open: DDL
    that refuses tables "in use" still runs after a bind in the same transaction, and the
    identity is re-read (fail-closed) after the tables change."""
    email, uid = account
    with cluster.connect(user="app_user") as app:
        token = sign_in(app, email)["access_token"]
    with cluster.connect() as admin:
        with admin.transaction(force_rollback=True):
            admin.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
            assert str(admin.execute("SELECT auth.uid()").fetchone()[0]) == uid
            admin.execute("REINDEX INDEX auth.users_pkey")
            admin.execute("REINDEX INDEX auth.sessions_pkey")
            admin.execute("ALTER TABLE auth.users ALTER COLUMN email SET STATISTICS 200")
            assert str(admin.execute("SELECT auth.uid()").fetchone()[0]) == uid
            admin.execute("DELETE FROM auth.sessions WHERE user_id = %s", (uid,))
            with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification) as e:
                admin.execute("SELECT auth.uid()")
            assert e.value.diag.message_primary.startswith("TOKEN_REVOKED")
