"""Issue 2, end to end through real client connections."""
import json
import time

import psycopg
import pytest

from conftest import ALICE, AUDIENCE, BOB, ISSUER


def titles(conn, token=None):
    """One backend transaction of the request flow: set the token locally, query, commit."""
    with conn.transaction():
        if token is not None:
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
        rows = conn.execute("SELECT title FROM documents ORDER BY title").fetchall()
    return [r[0] for r in rows]


def error_of(conn, sql, params=(), token=None):
    """Runs one transaction (optionally binding `token` first) and returns the error raised as
    (sqlstate, message, detail), or None."""
    try:
        with conn.transaction():
            if token is not None:
                conn.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
            conn.execute(sql, params)
    except psycopg.Error as e:
        return e.sqlstate, e.diag.message_primary, e.diag.message_detail
    return None


def test_two_users_each_see_only_their_rows(cluster, signer, documents):
    with cluster.connect(user="app_user") as conn:
        assert titles(conn, signer.token(ALICE)) == ["a1", "a2", "a3"]
        assert titles(conn, signer.token(BOB, alg="RS256")) == ["b1", "b2"]
        assert titles(conn, signer.token(ALICE, alg="EdDSA")) == ["a1", "a2", "a3"]
        assert titles(conn, signer.token(BOB, alg="HS256")) == ["b1", "b2"]
        assert titles(conn) == [], "anonymous sees nothing"


def test_insert_is_checked_against_the_policy(cluster, signer, documents):
    with cluster.connect(user="app_user") as conn:
        with conn.transaction():
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (signer.token(ALICE),))
            conn.execute("INSERT INTO documents (user_id, title) VALUES (%s, 'mine')", (ALICE,))
        err = error_of(conn, "INSERT INTO documents (user_id, title) VALUES (%s, 'forged')", (BOB,), token=signer.token(ALICE))
        assert err and err[0] == "42501", err
    with cluster.connect(autocommit=True) as admin:
        admin.execute("DELETE FROM documents WHERE title = 'mine'")


def test_set_local_token_is_gone_after_commit(cluster, signer, documents):
    with cluster.connect(user="app_user") as conn:
        with conn.transaction():
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (signer.token(ALICE),))
            assert conn.execute("SELECT auth.uid()::text").fetchone()[0] == ALICE
        with conn.transaction():
            assert conn.execute("SELECT auth.uid(), current_setting('auth.jwt', true)").fetchone() in [(None, ""), (None, None)]
        assert titles(conn) == []


def test_rollback_also_ends_the_identity(cluster, signer, documents):
    with cluster.connect(user="app_user") as conn:
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (signer.token(ALICE),))
        assert conn.execute("SELECT auth.uid()::text").fetchone()[0] == ALICE
        conn.rollback()
        assert conn.execute("SELECT auth.uid()").fetchone()[0] is None
        conn.rollback()


def test_discard_all_clears_a_session_token(cluster, signer, documents):
    with cluster.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SELECT set_config('auth.jwt', %s, false)", (signer.token(BOB),))
        for _ in range(3):  # survives transactions
            assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 2
        conn.execute("DISCARD ALL")
        assert conn.execute("SELECT auth.uid()").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0
        conn.execute("SET auth.jwt = %s" % psycopg.sql.quote(signer.token(BOB)))
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 2
        conn.execute("RESET auth.jwt")
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0


def test_authenticate_returns_claims_and_binds(cluster, signer, documents):
    with cluster.connect(user="app_user") as conn:
        with conn.transaction():
            claims = conn.execute("SELECT auth.authenticate(%s)", (signer.token(BOB, email="bob@x.test"),)).fetchone()[0]
            assert claims["sub"] == BOB and claims["email"] == "bob@x.test"
            assert [r[0] for r in conn.execute("SELECT title FROM documents ORDER BY 1")] == ["b1", "b2"]
        assert titles(conn) == []


def test_errors_carry_code_and_sqlstate(cluster, signer, documents):
    with cluster.connect(user="app_user") as conn:
        expired = signer.token(ALICE, ttl=-3600)
        state, msg, detail = error_of(conn, "SELECT count(*) FROM documents", token=expired)
        assert (state, msg.split(":")[0]) == ("28000", "TOKEN_EXPIRED")
        assert expired not in (detail or "")
        forged = signer.token(ALICE)[:-4] + "AAAA"
        state, msg, _ = error_of(conn, "SELECT auth.verify(%s)", (forged,))
        assert (state, msg.split(":")[0]) == ("28000", "INVALID_TOKEN")
        wrong_aud = signer.token(ALICE, aud="other")
        state, msg, _ = error_of(conn, "SELECT auth.verify(%s)", (wrong_aud,))
        assert (state, msg.split(":")[0]) == ("28000", "INVALID_CLAIMS")
        state, msg, _ = error_of(conn, "SELECT auth.require_role('admin')", token=signer.token(ALICE))
        assert (state, msg.split(":")[0]) == ("42501", "INSUFFICIENT_PERMISSIONS")


def test_new_transaction_past_exp_is_refused(cluster, signer, documents):
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user SET auth.leeway_seconds = 0")
    try:
        with cluster.connect(user="app_user") as conn:
            token = signer.token(ALICE, ttl=2)
            assert titles(conn, token) == ["a1", "a2", "a3"]
            conn.execute("SELECT set_config('auth.jwt', %s, false)", (token,))
            conn.commit()
            assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 3
            conn.commit()
            time.sleep(3)
            # Same token, same backend, cached verification: the new transaction re-checks exp.
            state, msg, _ = error_of(conn, "SELECT count(*) FROM documents")
            assert (state, msg.split(":")[0]) == ("28000", "TOKEN_EXPIRED")
    finally:
        with cluster.connect(autocommit=True) as admin:
            admin.execute("ALTER ROLE app_user RESET auth.leeway_seconds")


def test_key_changes_reach_other_backends(cluster, signer, documents):
    """A retired or added key takes effect in a backend that already verified, at its next
    statement, without reconnecting — also inside its open transaction."""
    extra = signer.__class__()  # fresh keys, not yet known to the database
    extra.kids = {alg: f"e2e-extra-{alg.lower()}" for alg in extra.kids}
    token = extra.token(ALICE, alg="EdDSA")
    with cluster.connect(user="app_user") as user_conn, cluster.connect(autocommit=True) as admin:
        state, msg, detail = error_of(user_conn, "SELECT auth.verify(%s)", (token,))
        assert msg.startswith("INVALID_TOKEN") and "unknown kid" in detail
        admin.execute("SELECT auth.add_key(%s::jsonb, %s, ARRAY[%s])", (json.dumps(extra.public_jwk("EdDSA")), ISSUER, AUDIENCE))
        assert user_conn.execute("SELECT auth.verify(%s)->>'sub'", (token,)).fetchone()[0] == ALICE
        # Retired now: the next transaction of the other backend refuses the token.
        user_conn.commit()
        admin.execute("SELECT auth.retire_key(%s)", (extra.kids["EdDSA"],))
        state, msg, detail = error_of(user_conn, "SELECT auth.uid()", token=token)
        assert state == "28000" and "retired" in detail
        # retire_key compares `at` with the transaction time: a transaction that began before
        # `at` keeps the key, a key retired as of a time before it began is refused by its
        # next statement.
        admin.execute("SELECT auth.add_key(%s::jsonb, %s, ARRAY[%s])", (json.dumps(extra.public_jwk("EdDSA")), ISSUER, AUDIENCE))
        user_conn.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
        assert user_conn.execute("SELECT auth.uid()::text").fetchone()[0] == ALICE
        admin.execute("SELECT auth.retire_key(%s, now() - interval '1 hour')", (extra.kids["EdDSA"],))
        with pytest.raises(psycopg.Error) as e:
            user_conn.execute("SELECT auth.uid()").fetchone()
        assert e.value.sqlstate == "28000" and "retired" in e.value.diag.message_detail
        user_conn.rollback()
        # Retirement with a future time: still accepted until then.
        admin.execute("SELECT auth.add_key(%s::jsonb, %s, ARRAY[%s])", (json.dumps(extra.public_jwk("EdDSA")), ISSUER, AUDIENCE))
        admin.execute("SELECT auth.retire_key(%s, now() + interval '1 hour')", (extra.kids["EdDSA"],))
        assert user_conn.execute("SELECT auth.verify(%s)->>'sub'", (token,)).fetchone()[0] == ALICE
        user_conn.rollback()
        admin.execute("DELETE FROM auth.key_store WHERE kid = %s", (extra.kids["EdDSA"],))


def test_concurrent_sessions_never_mix_identities(cluster, signer, documents):
    """Many connections, alternating users per transaction: each sees exactly its rows."""
    import threading
    errors = []

    def worker(i):
        try:
            with cluster.connect(user="app_user") as conn:
                for n in range(40):
                    who = ALICE if (i + n) % 2 == 0 else BOB
                    tok = signer.token(who, alg=["ES256", "RS256", "EdDSA", "HS256"][n % 4])
                    got = titles(conn, tok)
                    want = ["a1", "a2", "a3"] if who == ALICE else ["b1", "b2"]
                    if got != want:
                        errors.append((i, n, got))
                    if titles(conn) != []:
                        errors.append((i, n, "anonymous saw rows"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_postgrest_compatibility_is_opt_in(cluster, signer, documents):
    claims = json.dumps({"sub": ALICE, "role": "authenticated"})
    with cluster.connect(user="app_user") as conn:
        with conn.transaction():
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
            assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0, "off: request claims are not trusted"
        err = error_of(conn, "SET auth.trust_request_claims = on")
        assert err and err[0] == "42501", "only a superuser may turn it on"
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user SET auth.trust_request_claims = on")
    try:
        with cluster.connect(user="app_user") as conn:
            with conn.transaction():
                conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
                assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 3
    finally:
        with cluster.connect(autocommit=True) as admin:
            admin.execute("ALTER ROLE app_user RESET auth.trust_request_claims")
