#!/usr/bin/env python3
"""Reference sender for auth_ext's outbox (docs/passwordless.md): delivers the one-time codes
and magic links that auth.sign_in_with_otp, auth.reset_password_for_email and auth.resend
queue in auth.outbox, by SMTP.

The database never talks SMTP itself. This process connects as a role the DBA granted
SELECT, UPDATE, DELETE ON auth.outbox (UPDATE for FOR UPDATE), waits on NOTIFY auth_outbox, and for each batch:
  BEGIN; DELETE … WHERE id IN (SELECT id … ORDER BY id FOR UPDATE SKIP LOCKED LIMIT n)
  RETURNING …; send each message; COMMIT.
A message that cannot be sent rolls its batch back, so the rows stay for the next attempt;
several senders can run at once (SKIP LOCKED). Expired messages are dropped unsent.

  outbox_sender.py --dsn 'host=… dbname=… user=mailer' --smtp-host localhost --smtp-port 25 \
                   --sender 'no-reply@example.com' --link-base 'https://app.example.com/auth/verify'
  --once: deliver what is queued now and exit (cron, tests).
"""
import argparse
import select
import smtplib
import sys
import urllib.parse
from email.message import EmailMessage

import psycopg

SUBJECTS = {
    "already_registered": "Someone tried to sign up with your email",
    "email_change_current": "Confirm your email change",
    "email_change_new": "Confirm your new email",
    "signup": "Confirm your email",
    "magiclink": "Your sign-in code",
    "recovery": "Reset your password",
}

# Email kinds only: `sms` rows (auth.sign_in_with_phone_otp) are for an SMS sender.
EMAIL_KINDS = ["signup", "magiclink", "recovery", "email_change_current", "email_change_new",
               "already_registered"]

CLAIM = """
DELETE FROM auth.outbox
 WHERE id IN (SELECT id FROM auth.outbox WHERE kind = ANY(%s)
               ORDER BY id FOR UPDATE SKIP LOCKED LIMIT %s)
RETURNING id, kind, recipient, code, link_token, expires_at > now() AS live
"""


def message(args, kind, recipient, code, link_token):
    verify_type = {"signup": "signup", "magiclink": "magiclink", "recovery": "recovery",
                   "email_change_current": "email_change", "email_change_new": "email_change"}.get(kind, "email")
    link = args.link_base + "?" + urllib.parse.urlencode(
        {"email": recipient, "token": link_token, "type": verify_type})
    m = EmailMessage()
    m["From"] = args.sender
    m["To"] = recipient
    m["Subject"] = SUBJECTS.get(kind, "Your code")
    m["X-Auth-Kind"] = kind
    if code is None:
        # already_registered: no code; say what happened and what the owner can do.
        m.set_content("Someone tried to create an account with this email, which already has one.\n"
                      "If it was you, sign in, or reset your password. Otherwise ignore this message.\n")
    else:
        m.set_content(f"Your code: {code}\n\nOr open this link: {link}\n\n"
                      "If you did not ask for this, ignore this message.\n")
    return m


def deliver_batch(conn, args):
    """Delivers one batch; returns how many rows it took."""
    with conn.transaction():
        rows = conn.execute(CLAIM, (EMAIL_KINDS, args.batch)).fetchall()
        if not rows:
            return 0
        with smtplib.SMTP(args.smtp_host, args.smtp_port, timeout=30) as smtp:
            for _id, kind, recipient, code, link_token, live in rows:
                if live:
                    smtp.send_message(message(args, kind, recipient, code, link_token))
    return len(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", required=True)
    p.add_argument("--smtp-host", default="localhost")
    p.add_argument("--smtp-port", type=int, default=25)
    p.add_argument("--sender", default="no-reply@localhost")
    p.add_argument("--link-base", default="http://localhost/auth/verify")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--once", action="store_true")
    args = p.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as listen, psycopg.connect(args.dsn) as conn:
        listen.execute("LISTEN auth_outbox")
        while True:
            while deliver_batch(conn, args):
                pass
            if args.once:
                return 0
            # Wake on a NOTIFY, or every 30 s to retry what failed.
            select.select([listen.pgconn.socket], [], [], 30)
            listen.pgconn.consume_input()
            while listen.pgconn.notifies():
                pass


if __name__ == "__main__":
    sys.exit(main())
