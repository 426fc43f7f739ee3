"""One-time codes and magic links end to end (docs/passwordless.md): the code travels from
auth.outbox through the reference sender (scripts/outbox_sender.py) to a real SMTP server
(aiosmtpd) and back into auth.verify_otp; recovery; no enumeration; guessing, concurrency,
rate, rollback and privileges."""
import email
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

import jwt
import psycopg
import pytest
from aiosmtpd.controller import Controller

from conftest import ROOT
from test_credentials import fast_app_user  # noqa: F401  (fixture)


class Sink:
    """A real SMTP server on loopback that keeps what it receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture(scope="module")
def mail(cluster, smtp, fast_app_user):  # noqa: F811
    """deliver(): runs the reference sender once, as the delivery role, and returns the
    messages that arrived at the SMTP server since the last call."""
    sink, port = smtp
    with cluster.connect(autocommit=True) as admin:
        admin.execute("DO $$ BEGIN CREATE ROLE mailer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        admin.execute("GRANT SELECT, UPDATE, DELETE ON auth.outbox TO mailer")
        admin.execute("ALTER ROLE app_user SET auth.otp_min_interval_seconds = 0")
    seen = [0]

    def deliver():
        p = subprocess.run(
            [sys.executable, str(ROOT / "scripts/outbox_sender.py"), "--once",
             "--dsn", f"host=127.0.0.1 port={cluster.port} dbname={cluster.dbname} user=mailer",
             "--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--sender", "auth@e2e.test",
             "--link-base", "https://app.e2e.test/verify"],
            check=False, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        new = sink.messages[seen[0]:]
        seen[0] = len(sink.messages)
        return new

    return deliver


def code_of(msg):
    body = msg.get_payload(decode=True).decode()
    code = re.search(r"Your code: (\d+)", body).group(1)
    link = re.search(r"(https://\S+)", body).group(1)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)
    return code, q["token"][0], q["type"][0]


def fresh_email():
    return f"p{uuid.uuid4().hex[:12]}@example.test"


def sqlerror(conn, sql, params=()):
    try:
        with conn.transaction():
            conn.execute(sql, params).fetchall()
        return "ok"
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}"


def uid_of(conn, access_token):
    with conn.transaction():
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (access_token,))
        return str(conn.execute("SELECT auth.uid()").fetchone()[0])


def test_a_code_arrives_by_mail_and_signs_a_new_user_in(cluster, mail):
    addr = fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SELECT auth.sign_in_with_otp(%s)", (addr,))
        [msg] = mail()
        assert msg["To"] == addr and msg["X-Auth-Kind"] == "signup"
        code, _, _ = code_of(msg)
        assert len(code) == 6
        r = conn.execute("SELECT auth.verify_otp(%s, %s, 'email')", (addr, code)).fetchone()[0]
        assert r["user"]["email"] == addr and r["user"]["email_confirmed_at"]
        assert uid_of(conn, r["access_token"]) == r["user"]["id"]
        # Single use.
        assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email')", (addr, code)) == "28P01 INVALID_OTP"
        # A confirmed user is sent a sign-in code next time, and the link works as well.
        conn.execute("SELECT auth.sign_in_with_otp(%s)", (addr,))
        [msg] = mail()
        assert msg["X-Auth-Kind"] == "magiclink"
        _, link_token, link_type = code_of(msg)
        r2 = conn.execute("SELECT auth.verify_otp(%s, %s, %s)", (addr, link_token, link_type)).fetchone()[0]
        assert r2["user"]["id"] == r["user"]["id"]
    with cluster.connect(autocommit=True) as admin:
        amr = admin.execute("SELECT details->>'method' FROM auth.audit_log WHERE user_id = %s AND event = 'signed_in' ORDER BY id",
                            (r["user"]["id"],)).fetchall()
        assert [a[0] for a in amr] == ["otp", "magiclink"]


def test_recovery_sets_a_new_password_and_ends_the_other_sessions(cluster, mail):
    addr = fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SELECT auth.sign_up(%s, 'old password 1')", (addr,))
        old = conn.execute("SELECT auth.sign_in(%s, 'old password 1')", (addr,)).fetchone()[0]
        conn.execute("SELECT auth.reset_password_for_email(%s)", (addr,))
        [msg] = mail()
        assert msg["X-Auth-Kind"] == "recovery"
        code, _, _ = code_of(msg)
        rec = conn.execute("SELECT auth.verify_otp(%s, %s, 'recovery')", (addr, code)).fetchone()[0]
        with conn.transaction():
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (rec["access_token"],))
            conn.execute("SELECT auth.update_user('{\"password\": \"new password 2\"}')")
        assert sqlerror(conn, "SELECT auth.sign_in(%s, 'old password 1')", (addr,)) == "28P01 INVALID_CREDENTIALS"
        assert conn.execute("SELECT auth.sign_in(%s, 'new password 2')", (addr,)).fetchone()[0]["access_token"]
        # The session signed in with the old password has ended; the recovery session lives.
        with conn.transaction():
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (old["access_token"],))
            assert sqlerror(conn, "SELECT auth.uid()") == "28000 TOKEN_REVOKED"
        assert uid_of(conn, rec["access_token"]) == rec["user"]["id"]


def test_answers_are_the_same_for_known_and_unknown_emails(cluster, mail):
    known = fresh_email()
    unknown = fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SELECT auth.sign_up(%s, 'some password 1')", (known,))
        for call in ["SELECT auth.sign_in_with_otp(%s, false)", "SELECT auth.reset_password_for_email(%s)",
                     "SELECT auth.resend(%s, 'signup')"]:
            a = conn.execute(call, (known,)).fetchall()
            b = conn.execute(call, (unknown,)).fetchall()
            assert a == b, call
        assert sqlerror(conn, "SELECT auth.verify_otp(%s, '123456', 'email')", (unknown,)) == \
            sqlerror(conn, "SELECT auth.verify_otp(%s, '123456', 'email')", (known,)) == "28P01 INVALID_OTP"
    got = mail()
    # Only the known address received anything: its sign-in code (a confirmation, as the
    # email is not confirmed yet), the recovery code, and the confirmation sent again.
    assert {m["To"] for m in got} == {known}
    assert sorted(m["X-Auth-Kind"] for m in got) == ["recovery", "signup", "signup"]


def test_guessing_stops_after_the_limit_even_with_rollbacks(cluster, mail):
    addr = fresh_email()
    with cluster.connect(user="app_user") as conn:
        conn.execute("SELECT auth.sign_in_with_otp(%s)", (addr,))
        conn.commit()
        [msg] = mail()
        code, _, _ = code_of(msg)
        wrong = f"{(int(code) + 1) % 1000000:06d}"
        for _ in range(4):
            # Each guess in a transaction that is rolled back: the count survives.
            assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email')", (addr, wrong)) == "28P01 INVALID_OTP"
            conn.rollback()
        # The 5th attempt is still judged; the right code after 5 is not.
        assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email')", (addr, wrong)) == "28P01 INVALID_OTP"
        assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email')", (addr, code)) == "28P01 INVALID_OTP"
    with cluster.connect(autocommit=True) as admin:
        uid = admin.execute("SELECT id FROM auth.users WHERE email = %s", (addr,)).fetchone()[0]
        events = [e for (e,) in admin.execute(
            "SELECT event FROM auth.audit_log WHERE user_id = %s ORDER BY id", (uid,))]
        assert events.count("one_time_token_failed") == 6
        assert events.count("one_time_token_voided") == 1
        # Voided by expiring (an attempt counted within the limit may still use it), and gone
        # with auth.purge_expired.
        assert admin.execute("SELECT count(*) FROM auth.one_time_tokens WHERE user_id = %s AND expires_at > now()",
                             (uid,)).fetchone()[0] == 0
        assert admin.execute("SELECT count(*) FROM auth.one_time_tokens WHERE user_id = %s", (uid,)).fetchone()[0] == 1
        assert admin.execute("SELECT auth.purge_expired()").fetchone()[0]["one_time_tokens"] >= 1
        assert admin.execute("SELECT count(*) FROM auth.one_time_tokens WHERE user_id = %s", (uid,)).fetchone()[0] == 0
    # A new code works again.
    with cluster.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SELECT auth.sign_in_with_otp(%s)", (addr,))
        [msg] = mail()
        code, _, _ = code_of(msg)
        assert conn.execute("SELECT auth.verify_otp(%s, %s, 'email')", (addr, code)).fetchone()[0]["user"]["id"] == str(uid)


@pytest.mark.parametrize("max_attempts", [5, 1])
def test_one_code_signs_in_once_under_concurrency(cluster, mail, max_attempts):
    # With a limit below the number of racers, later attempts void the code while one counted
    # within the limit is still judging it: that one must still sign in (a voided code
    # expires; it is not deleted under the attempt that may use it).
    addr = fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SELECT auth.sign_in_with_otp(%s)", (addr,))
    [msg] = mail()
    code, _, _ = code_of(msg)
    results = []
    barrier = threading.Barrier(8)

    def attempt():
        with cluster.connect(user="app_user", autocommit=True) as c:
            barrier.wait()
            results.append(sqlerror(c, "SELECT auth.verify_otp(%s, %s, 'email')", (addr, code)))

    with cluster.connect(autocommit=True) as admin:
        # Superuser-only (PGC_SUSET): a caller cannot raise its own guess budget.
        admin.execute(f"ALTER ROLE app_user SET auth.otp_max_attempts = {max_attempts}")
    try:
        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        with cluster.connect(autocommit=True) as admin:
            admin.execute("ALTER ROLE app_user RESET auth.otp_max_attempts")
    # Exactly one signs in. The others are refused: the code is used, or (fail closed) no
    # bookkeeping worker slot was free for them (max_worker_processes is 8 here).
    assert results.count("ok") == 1, results
    assert set(results) - {"ok"} <= {"28P01 INVALID_OTP", "53000 TEMPORARILY_UNAVAILABLE"}, results


def test_one_new_code_per_interval_and_rollback_sends_nothing(cluster, mail):
    addr = fresh_email()
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user SET auth.otp_min_interval_seconds = 60")
    try:
        with cluster.connect(user="app_user") as conn:
            conn.execute("SELECT auth.sign_in_with_otp(%s)", (addr,))
            conn.rollback()
            assert mail() == []
            for _ in range(3):
                conn.execute("SELECT auth.sign_in_with_otp(%s)", (addr,))
                conn.commit()
            assert len(mail()) == 1
    finally:
        with cluster.connect(autocommit=True) as admin:
            admin.execute("ALTER ROLE app_user SET auth.otp_min_interval_seconds = 0")


def test_expired_codes_are_refused(cluster, mail):
    addr = fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SELECT auth.sign_in_with_otp(%s)", (addr,))
        [msg] = mail()
        code, _, _ = code_of(msg)
        with cluster.connect(autocommit=True) as admin:
            admin.execute("UPDATE auth.one_time_tokens SET expires_at = now() - interval '1 second' "
                          "WHERE relates_to = %s", (addr,))
        assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email')", (addr, code)) == "28P01 INVALID_OTP"


def test_codes_and_hashes_are_private(cluster, mail):
    with cluster.connect(user="app_user", autocommit=True) as conn:
        for t in ["auth.outbox", "auth.one_time_tokens"]:
            assert sqlerror(conn, f"SELECT * FROM {t}") == "42501 permission denied for table " + t.split(".")[1]
        # Read-only transactions are refused before anything happens.
        conn.execute("SET default_transaction_read_only = on")
        assert sqlerror(conn, "SELECT auth.sign_in_with_otp('x@example.test')") == "25006 READ_ONLY"
        assert sqlerror(conn, "SELECT auth.verify_otp('x@example.test', '123456', 'email')") == "25006 READ_ONLY"
    with cluster.connect(autocommit=True) as admin:
        hashes = admin.execute("SELECT token_hash, link_hash FROM auth.one_time_tokens").fetchall()
        codes = {c for (c,) in admin.execute("SELECT code FROM auth.outbox")}
        assert all(len(h) == 64 and len(l) == 64 for h, l in hashes)
        assert not any(h in codes for h, _ in hashes)


def test_anonymous_users_sign_in_and_become_email_accounts_keeping_their_rows(cluster, mail):
    with cluster.connect(autocommit=True) as admin:
        admin.execute("""
            CREATE TABLE IF NOT EXISTS carts (owner uuid NOT NULL DEFAULT auth.uid(), item text NOT NULL);
            ALTER TABLE carts ENABLE ROW LEVEL SECURITY;
            DROP POLICY IF EXISTS own ON carts;
            CREATE POLICY own ON carts USING (owner = auth.uid()) WITH CHECK (owner = auth.uid());
            GRANT SELECT, INSERT ON carts TO app_user;
        """)
    with cluster.connect(user="app_user", autocommit=True) as conn:
        # Off by default: each call would create a user.
        assert sqlerror(conn, "SELECT auth.sign_in_anonymously()") == "55000 NOT_CONFIGURED"
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user SET auth.allow_anonymous_sign_ins = on")
    addr = fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        anon = conn.execute("SELECT auth.sign_in_anonymously()").fetchone()[0]
        claims = jwt.decode(anon["access_token"], options={"verify_signature": False})
        assert claims["is_anonymous"] is True and claims["role"] == "authenticated"
        assert [m["method"] for m in claims["amr"]] == ["anonymous"]
        assert anon["user"]["is_anonymous"] is True and anon["user"]["email"] is None
        uid = anon["user"]["id"]
        with conn.transaction():
            conn.execute("SELECT auth.bind(%s)", (anon["access_token"],))
            conn.execute("INSERT INTO carts (item) VALUES ('book'), ('pen')")
        # Becoming an email account keeps the id; a confirmation is sent.
        with conn.transaction():
            conn.execute("SELECT auth.bind(%s)", (anon["access_token"],))
            u = conn.execute("SELECT auth.update_user(%s)",
                             (json.dumps({"email": addr, "password": "converted pw 1"}),)).fetchone()[0]
        assert u["id"] == uid and u["email"] == addr and u["is_anonymous"] is False
        [msg] = mail()
        assert msg["To"] == addr and msg["X-Auth-Kind"] == "signup"
        t = conn.execute("SELECT auth.sign_in(%s, 'converted pw 1')", (addr,)).fetchone()[0]
        assert jwt.decode(t["access_token"], options={"verify_signature": False})["is_anonymous"] is False
        with conn.transaction():
            conn.execute("SELECT auth.bind(%s)", (t["access_token"],))
            assert conn.execute("SELECT auth.uid()::text, count(*) FROM carts GROUP BY 1").fetchall() == [(uid, 2)]
        # A taken email cannot be used, and a non-anonymous user cannot use this path.
        other = conn.execute("SELECT auth.sign_in_anonymously()").fetchone()[0]
        with conn.transaction():
            conn.execute("SELECT auth.bind(%s)", (other["access_token"],))
            assert sqlerror(conn, "SELECT auth.update_user(%s)", (json.dumps({"email": addr}),)) == "22023 INVALID_PARAMETER"
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user RESET auth.allow_anonymous_sign_ins")


@pytest.fixture()
def confirmation_on(cluster):
    """The default (auth.require_email_confirmation = on) for app_user; the e2e database turns
    it off for the other tests."""
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user SET auth.require_email_confirmation = on")
    yield
    with cluster.connect(autocommit=True) as admin:
        admin.execute("ALTER ROLE app_user RESET auth.require_email_confirmation")


def test_sign_in_waits_for_the_emailed_confirmation(cluster, mail, confirmation_on):
    addr = fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        uid = str(conn.execute("SELECT auth.sign_up(%s, 'confirm me 123')", (addr,)).fetchone()[0])
        [msg] = mail()
        assert msg["To"] == addr and msg["X-Auth-Kind"] == "signup"
        # Only the right password learns that the email is unconfirmed.
        assert sqlerror(conn, "SELECT auth.sign_in(%s, 'confirm me 123')", (addr,)) == "28000 EMAIL_NOT_CONFIRMED"
        assert sqlerror(conn, "SELECT auth.sign_in(%s, 'wrong password')", (addr,)) == "28P01 INVALID_CREDENTIALS"
        code, _, _ = code_of(msg)
        r = conn.execute("SELECT auth.verify_otp(%s, %s, 'signup')", (addr, code)).fetchone()[0]
        assert r["user"]["id"] == uid and r["user"]["email_confirmed_at"]
        assert conn.execute("SELECT auth.sign_in(%s, 'confirm me 123')", (addr,)).fetchone()[0]["user"]["id"] == uid


def test_signing_up_a_taken_email_looks_like_a_new_sign_up(cluster, mail, confirmation_on):
    addr = fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        first = conn.execute("SELECT auth.sign_up(%s, 'first password 1')", (addr,)).fetchone()[0]
        mail()
        t0 = time.monotonic()
        again = conn.execute("SELECT auth.sign_up(%s, 'second password 2')", (addr.upper(),)).fetchone()[0]
        taken_s = time.monotonic() - t0
        t0 = time.monotonic()
        conn.execute("SELECT auth.sign_up(%s, 'third password 3')", (fresh_email(),)).fetchone()[0]
        new_s = time.monotonic() - t0
        # The same kind of answer (an id, no error); the id names no user.
        assert again != first
        with cluster.connect(autocommit=True) as admin:
            assert admin.execute("SELECT count(*) FROM auth.users WHERE id = %s", (again,)).fetchone()[0] == 0
            assert admin.execute("SELECT count(*) FROM auth.users WHERE lower(email) = lower(%s)", (addr,)).fetchone()[0] == 1
        # Both paths hash the password: no timing gap of a hash (argon2 here costs ≥ 1 ms).
        assert taken_s < new_s * 3 + 0.05, (taken_s, new_s)
        # The owner is told; the original password still works after confirmation.
        got = mail()
        kinds = sorted((m["To"].lower() == addr, m["X-Auth-Kind"]) for m in got)
        assert (True, "already_registered") in kinds
        assert sqlerror(conn, "SELECT auth.sign_in(%s, 'second password 2')", (addr,)) == "28P01 INVALID_CREDENTIALS"


def test_an_email_change_needs_both_addresses(cluster, mail):
    old, new, taken = fresh_email(), fresh_email(), fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        uid = str(conn.execute("SELECT auth.sign_up(%s, 'change me 123')", (old,)).fetchone()[0])
        conn.execute("SELECT auth.sign_up(%s, 'someone else 1')", (taken,))
        t = conn.execute("SELECT auth.sign_in(%s, 'change me 123')", (old,)).fetchone()[0]
        mail()

        def update(attrs):
            with conn.transaction():
                conn.execute("SELECT auth.bind(%s)", (t["access_token"],))
                return conn.execute("SELECT auth.update_user(%s)", (json.dumps(attrs),)).fetchone()[0]

        # An address that has an account: the same answer, nothing changes, its owner is told.
        assert update({"email": taken})["email"] == old
        [notice] = mail()
        assert notice["To"] == taken and notice["X-Auth-Kind"] == "already_registered"
        # A free address: a code to each.
        assert update({"email": new})["email"] == old
        got = {m["X-Auth-Kind"]: m for m in mail()}
        assert got["email_change_current"]["To"] == old and got["email_change_new"]["To"] == new
        # Lost mail: resend 'email_change' sends both codes again; the first ones are void.
        conn.execute("SELECT auth.resend(%s, 'email_change')", (old,))
        stale_current, _, _ = code_of(got["email_change_current"])
        got = {m["X-Auth-Kind"]: m for m in mail()}
        assert got["email_change_current"]["To"] == old and got["email_change_new"]["To"] == new
        code_current, _, _ = code_of(got["email_change_current"])
        code_new, _, _ = code_of(got["email_change_new"])
        if stale_current != code_current:
            assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email_change')", (old, stale_current)) == "28P01 INVALID_OTP"
        # Each code is verified with the address it was sent to: swapped, neither works.
        if code_new != code_current:
            assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email_change')", (old, code_new)) == "28P01 INVALID_OTP"
            assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email_change')", (new, code_current)) == "28P01 INVALID_OTP"
        r1 = conn.execute("SELECT auth.verify_otp(%s, %s, 'email_change')", (old, code_current)).fetchone()[0]
        assert "msg" in r1 and "access_token" not in r1
        with cluster.connect(autocommit=True) as admin:
            assert admin.execute("SELECT email FROM auth.users WHERE id = %s", (uid,)).fetchone()[0] == old
        r2 = conn.execute("SELECT auth.verify_otp(%s, %s, 'email_change')", (new, code_new)).fetchone()[0]
        assert r2["user"]["id"] == uid and r2["user"]["email"] == new and r2["user"]["email_confirmed_at"]
        assert conn.execute("SELECT auth.sign_in(%s, 'change me 123')", (new,)).fetchone()[0]["user"]["id"] == uid
        assert sqlerror(conn, "SELECT auth.sign_in(%s, 'change me 123')", (old,)) == "28P01 INVALID_CREDENTIALS"


def test_guessing_one_address_code_voids_the_whole_email_change(cluster, mail):
    # Someone holding the user's session starts a change to an address they read, and guesses
    # the code sent to the user's address until it is void: the change cannot complete with
    # the new address's code alone, also after auth.purge_expired removed the voided rows.
    old, new = fresh_email(), fresh_email()
    with cluster.connect(user="app_user", autocommit=True) as conn:
        uid = str(conn.execute("SELECT auth.sign_up(%s, 'change me 123')", (old,)).fetchone()[0])
        t = conn.execute("SELECT auth.sign_in(%s, 'change me 123')", (old,)).fetchone()[0]
        mail()
        with conn.transaction():
            conn.execute("SELECT auth.bind(%s)", (t["access_token"],))
            conn.execute("SELECT auth.update_user(%s)", (json.dumps({"email": new}),))
        got = {m["X-Auth-Kind"]: m for m in mail()}
        code_current, _, _ = code_of(got["email_change_current"])
        code_new, _, _ = code_of(got["email_change_new"])
        wrong = f"{(int(code_current) + 1) % 1000000:06d}"
        for _ in range(6):
            assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email_change')", (old, wrong)) == "28P01 INVALID_OTP"
        assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email_change')", (new, code_new)) == "28P01 INVALID_OTP"
        with cluster.connect(autocommit=True) as admin:
            admin.execute("SELECT auth.purge_expired()")
            assert admin.execute("SELECT count(*) FROM auth.one_time_tokens WHERE user_id = %s",
                                 (uid,)).fetchone()[0] == 0
        assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email_change')", (new, code_new)) == "28P01 INVALID_OTP"
        assert sqlerror(conn, "SELECT auth.verify_otp(%s, %s, 'email_change')", (old, code_current)) == "28P01 INVALID_OTP"
        with cluster.connect(autocommit=True) as admin:
            assert admin.execute("SELECT email FROM auth.users WHERE id = %s", (uid,)).fetchone()[0] == old


def test_phone_sign_in_by_sms_code(cluster, mail):
    phone = "+1415555" + f"{uuid.uuid4().int % 10000:04d}"
    with cluster.connect(user="app_user", autocommit=True) as conn:
        assert sqlerror(conn, "SELECT auth.sign_in_with_phone_otp('0044 123')") == "22023 INVALID_PARAMETER"
        conn.execute("SELECT auth.sign_in_with_phone_otp(%s)", (phone,))
        # The email sender leaves SMS rows to an SMS sender.
        assert mail() == []
        with cluster.connect(autocommit=True) as admin:
            [(kind, code)] = admin.execute(
                "SELECT kind, code FROM auth.outbox WHERE recipient = %s", (phone,)).fetchall()
        assert kind == "sms" and len(code) == 6
        wrong = f"{(int(code) + 1) % 1000000:06d}"
        assert sqlerror(conn, "SELECT auth.verify_phone_otp(%s, %s)", (phone, wrong)) == "28P01 INVALID_OTP"
        assert sqlerror(conn, "SELECT auth.verify_phone_otp(%s, %s)", ("+14155550000", code)) == "28P01 INVALID_OTP"
        r = conn.execute("SELECT auth.verify_phone_otp(%s, %s)", (phone, code)).fetchone()[0]
        assert r["user"]["phone"] == phone
        claims = jwt.decode(r["access_token"], options={"verify_signature": False})
        assert claims["phone"] == phone and [m["method"] for m in claims["amr"]] == ["sms"]
        assert sqlerror(conn, "SELECT auth.verify_phone_otp(%s, %s)", (phone, code)) == "28P01 INVALID_OTP"
    with cluster.connect(autocommit=True) as admin:
        assert admin.execute("SELECT phone_confirmed_at IS NOT NULL FROM auth.users WHERE phone = %s",
                             (phone,)).fetchone()[0]
        admin.execute("DELETE FROM auth.outbox WHERE recipient = %s", (phone,))
