#!/usr/bin/env python3
"""Benchmarks of the passwordless and MFA paths (issue 13), as figures and ratios measured in
one run on one throwaway server (no figure is asserted):

1. `auth.aal()` in a restrictive policy: count(*) over N rows (default 1M) under
   `USING (auth.aal() = 'aal2')` with an aal2 token bound, against the same query under a policy
   comparing two constants (`USING ('aal2' = 'aal2')`). Target: ≤ 1.2× (the helper is an
   initPlan, evaluated once per query).
2. Verify-code latency through SQL, client round trip included, medians over --codes codes:
   `auth.verify_otp` (one email code each: a bookkeeping-worker round trip to count the
   attempt, an HMAC, a session), `auth.mfa_verify` (a TOTP code each, same shape), and
   `auth.sign_in` with a password (argon2id at the default cost) as the anchor.

Usage: benches/sql/mfa_otp_bench.py [--rows N] [--runs K] [--codes C]
"""
import argparse
import statistics
import time

import psycopg
import pyotp
from benchlib import SCAN_CONF, median_ms, throwaway_cluster


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--codes", type=int, default=30)
    a = ap.parse_args()
    with throwaway_cluster("mfa_bench", *SCAN_CONF) as (port, _):
        dsn = f"host=127.0.0.1 port={port} dbname=postgres user=postgres"
        with psycopg.connect(dsn, autocommit=True) as su:
            su.execute("CREATE EXTENSION auth_ext")
            su.execute("SELECT auth.generate_signing_key('ES256')")
            su.execute("ALTER SYSTEM SET auth.otp_min_interval_seconds = 0")
            su.execute("ALTER SYSTEM SET auth.require_email_confirmation = off")
            su.execute("SELECT pg_reload_conf()")
            su.execute("CREATE ROLE bench LOGIN")
            for name, using in [("t_aal", "auth.aal() = 'aal2'"), ("t_const", "'aal2' = 'aal2'")]:
                su.execute(f"CREATE TABLE {name} (id bigint, owner uuid)")
                su.execute(f"INSERT INTO {name} SELECT g, gen_random_uuid() FROM generate_series(1, %s) g",
                           (a.rows,))
                su.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
                su.execute(f"CREATE POLICY p ON {name} USING (true)")
                su.execute(f"CREATE POLICY r ON {name} AS RESTRICTIVE USING ({using})")
                su.execute(f"GRANT SELECT ON {name} TO bench")
                su.execute(f"VACUUM ANALYZE {name}")
            # An aal2 session: password sign-in, then a TOTP factor verified.
            su.execute("SELECT auth.sign_up('bench@example.test', 'bench password 1')")
            t1 = su.execute("SELECT auth.sign_in('bench@example.test', 'bench password 1')").fetchone()[0]
            with su.transaction():
                su.execute("SELECT auth.bind(%s)", (t1["access_token"],))
                f = su.execute("SELECT auth.mfa_enroll()").fetchone()[0]
            totp = pyotp.parse_uri(f["totp"]["uri"])

            def mfa_verify(token, code):
                with su.transaction():
                    su.execute("SELECT auth.bind(%s)", (token,))
                    ch = su.execute("SELECT auth.mfa_challenge(%s)", (f["id"],)).fetchone()[0]
                    return su.execute("SELECT auth.mfa_verify(%s, %s, %s)", (f["id"], ch["id"], code)).fetchone()[0]

            t2 = mfa_verify(t1["access_token"], totp.now())

        with psycopg.connect(f"host=127.0.0.1 port={port} dbname=postgres user=bench") as conn:
            conn.execute("SELECT auth.bind(%s)", (t2["access_token"],))
            assert conn.execute("SELECT auth.aal()").fetchone()[0] == "aal2"
            counts = {}
            times = {}
            for name in ["t_aal", "t_const"]:
                counts[name] = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            for name in ["t_aal", "t_const"] * 2:  # warm both, twice
                conn.execute(f"SELECT count(*) FROM {name}")
            for name in ["t_aal", "t_const"]:
                times[name] = median_ms(lambda n=name: conn.execute(f"SELECT count(*) FROM {n}").fetchone(), a.runs)
            conn.rollback()
        assert counts["t_aal"] == counts["t_const"] == a.rows, counts
        print(f"auth.aal() restrictive policy over {a.rows} rows (aal2 token bound), median of {a.runs}:")
        print(f"  USING ('aal2' = 'aal2') (constant)      {times['t_const']:9.2f} ms  1.00x")
        print(f"  USING (auth.aal() = 'aal2')            {times['t_aal']:9.2f} ms  "
              f"{times['t_aal'] / times['t_const']:.2f}x   target <= 1.2x")

        with psycopg.connect(dsn, autocommit=True) as su:
            otp_ms, totp_ms, password_ms = [], [], []
            for i in range(a.codes):
                email = f"otp{i}@example.test"
                su.execute("SELECT auth.sign_in_with_otp(%s)", (email,))
                code = su.execute("SELECT code FROM auth.outbox WHERE recipient = %s ORDER BY id DESC LIMIT 1",
                                  (email,)).fetchone()[0]
                t0 = time.perf_counter()
                su.execute("SELECT auth.verify_otp(%s, %s, 'email')", (email, code)).fetchone()
                otp_ms.append((time.perf_counter() - t0) * 1000)
            # TOTP: one factor per user (a verified factor needs aal2 to add another).
            for i in range(a.codes):
                email = f"mfa{i}@example.test"
                su.execute("SELECT auth.sign_up(%s, 'bench password 1')", (email,))
                tk = su.execute("SELECT auth.sign_in(%s, 'bench password 1')", (email,)).fetchone()[0]
                t0 = time.perf_counter()
                su.execute("SELECT auth.sign_in(%s, 'bench password 1')", (email,)).fetchone()
                password_ms.append((time.perf_counter() - t0) * 1000)
                with su.transaction():
                    su.execute("SELECT auth.bind(%s)", (tk["access_token"],))
                    fi = su.execute("SELECT auth.mfa_enroll()").fetchone()[0]
                with su.transaction():
                    su.execute("SELECT auth.bind(%s)", (tk["access_token"],))
                    ch = su.execute("SELECT auth.mfa_challenge(%s)", (fi["id"],)).fetchone()[0]
                code = pyotp.parse_uri(fi["totp"]["uri"]).now()
                with su.transaction():
                    su.execute("SELECT auth.bind(%s)", (tk["access_token"],))
                    t0 = time.perf_counter()
                    su.execute("SELECT auth.mfa_verify(%s, %s, %s)", (fi["id"], ch["id"], code)).fetchone()
                    totp_ms.append((time.perf_counter() - t0) * 1000)
        print(f"verify-code latency through SQL (round trip included), median of {a.codes}:")
        print(f"  auth.sign_in (argon2id, the anchor)    {statistics.median(password_ms):9.2f} ms  1.00x")
        for label, xs in [("auth.verify_otp (email code)", otp_ms), ("auth.mfa_verify (TOTP code)", totp_ms)]:
            print(f"  {label:<38} {statistics.median(xs):9.2f} ms  "
                  f"{statistics.median(xs) / statistics.median(password_ms):.2f}x")


if __name__ == "__main__":
    main()
