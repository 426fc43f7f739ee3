#!/usr/bin/env python3
"""Demo parts 11 and 12 (scripts/demo.sh): a sign-in code that arrives by mail, and an MFA
upgrade to aal2. A real SMTP server (aiosmtpd) listens on loopback; the reference sender
(scripts/outbox_sender.py) delivers auth.outbox to it; the code comes back from the mail."""
import email
import json
import pathlib
import re
import socket
import subprocess
import sys

import jwt
import psycopg
import pyotp
from aiosmtpd.controller import Controller

ROOT = pathlib.Path(__file__).resolve().parents[1]
port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} dbname=postgres"


class Sink:
    messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


s = socket.socket()
s.bind(("127.0.0.1", 0))
smtp_port = s.getsockname()[1]
s.close()
sink = Sink()
smtp = Controller(sink, hostname="127.0.0.1", port=smtp_port)
smtp.start()
try:
    print("== 11. Passwordless: a sign-in code arrives by mail", flush=True)
    with psycopg.connect(dsn + " user=postgres", autocommit=True) as su:
        su.execute("DO $$ BEGIN CREATE ROLE mailer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        su.execute("GRANT SELECT, UPDATE, DELETE ON auth.outbox TO mailer")
        su.execute("DELETE FROM auth.outbox")  # part 8's confirmation was already used
    with psycopg.connect(dsn + " user=postgres", autocommit=True) as app:
        app.execute("SET ROLE app_user")  # the demo's application role (parts 2-10)
        app.execute("SELECT auth.sign_in_with_otp('dora@example.test')")
        print("   SELECT auth.sign_in_with_otp('dora@example.test')  -> queued in auth.outbox, NOTIFY auth_outbox")
        subprocess.run([sys.executable, str(ROOT / "scripts/outbox_sender.py"), "--once",
                        "--dsn", dsn + " user=mailer", "--smtp-host", "127.0.0.1",
                        "--smtp-port", str(smtp_port), "--sender", "auth@demo.test",
                        "--link-base", "https://app.example/verify"], check=True)
        msg = sink.messages[-1]
        body = msg.get_payload(decode=True).decode()
        print(f"   the SMTP server received: To: {msg['To']}  Subject: {msg['Subject']}")
        for line in body.strip().splitlines()[:3]:
            print(f"     | {line}")
        code = re.search(r"Your code: (\d+)", body).group(1)
        r = app.execute("SELECT auth.verify_otp('dora@example.test', %s, 'email')", (code,)).fetchone()[0]
        c = jwt.decode(r["access_token"], options={"verify_signature": False})
        print(f"   auth.verify_otp(email, '{code}', 'email') -> signed in as {r['user']['email']}, "
              f"email confirmed, aal {c['aal']}, amr {[m['method'] for m in c['amr']]}")

        print("== 12. MFA: an authenticator app (pyotp here) raises the session to aal2")
        with psycopg.connect(dsn + " user=postgres", autocommit=True) as su:
            su.execute("CREATE TABLE vault (owner uuid DEFAULT auth.uid(), secret text)")
            su.execute("ALTER TABLE vault ENABLE ROW LEVEL SECURITY")
            su.execute("CREATE POLICY own ON vault USING (owner = auth.uid())")
            su.execute("CREATE POLICY mfa ON vault AS RESTRICTIVE USING (auth.aal() = 'aal2')")
            su.execute("GRANT SELECT ON vault TO app_user")
            su.execute("INSERT INTO vault VALUES (%s, 'the launch codes')", (r["user"]["id"],))
        print("   vault: policy own USING (owner = auth.uid()), restrictive policy USING (auth.aal() = 'aal2')")

        def as_dora(token, sql, params=()):
            with app.transaction():
                app.execute("SELECT auth.bind(%s)", (token,))
                return app.execute(sql, params).fetchone()[0]

        print(f"   aal1 token: SELECT count(*) FROM vault -> {as_dora(r['access_token'], 'SELECT count(*) FROM vault')}")
        f = as_dora(r["access_token"], "SELECT auth.mfa_enroll('totp', 'phone')")
        print(f"   auth.mfa_enroll() -> {f['totp']['uri'].split('?')[0]}?secret=… (shown to the user once)")
        totp = pyotp.parse_uri(f["totp"]["uri"])
        ch = as_dora(r["access_token"], "SELECT auth.mfa_challenge(%s)", (f["id"],))
        r2 = as_dora(r["access_token"], "SELECT auth.mfa_verify(%s, %s, %s)", (f["id"], ch["id"], totp.now()))
        c2 = jwt.decode(r2["access_token"], options={"verify_signature": False})
        print(f"   auth.mfa_verify(factor, challenge, code from the app) -> aal {c2['aal']}, "
              f"amr {[m['method'] for m in c2['amr']]}")
        print(f"   aal2 token: SELECT secret FROM vault -> {as_dora(r2['access_token'], 'SELECT secret FROM vault')!r}")
        try:
            as_dora(r2["access_token"], "SELECT auth.mfa_verify(%s, %s, %s)",
                    (f["id"], as_dora(r2["access_token"], "SELECT auth.mfa_challenge(%s)", (f["id"],))["id"],
                     totp.now()))
        except psycopg.Error as e:
            print(f"   the same code again -> {e.sqlstate} {e.diag.message_primary}")
finally:
    smtp.stop()
