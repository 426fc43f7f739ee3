#!/usr/bin/env python3
"""Credential benchmarks (default OWASP argon2id parameters), ratios measured in one run:

1. auth.verify_password in SQL next to argon2-cffi (the C reference implementation) verifying
   the same hash; and the backend's peak resident memory while hashing.
2. auth.sign_in: unknown email vs wrong password (the dummy-hash path must cost about the same;
   target: medians within 20%), and a successful sign-in end to end.

Usage: benches/sql/credentials_bench.py [--runs N]
"""
import argparse
import statistics

import argon2
import psycopg
from benchlib import median_ms, throwaway_cluster



def vm(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with throwaway_cluster("credbench") as (port, _):
        conn = psycopg.connect(host="127.0.0.1", port=int(port), dbname="postgres", user="postgres", autocommit=True)
        conn.execute("CREATE EXTENSION auth_ext")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        pw = "correct horse battery staple"
        rss_before = vm(pid, "VmHWM")
        h = conn.execute("SELECT auth.hash_password(%s)", (pw,)).fetchone()[0]
        rss_after = vm(pid, "VmHWM")
        sql_verify = median_ms(lambda: conn.execute("SELECT auth.verify_password(%s, %s)", (pw, h)).fetchone(), args.runs)
        cffi = argon2.PasswordHasher()
        ref_verify = median_ms(lambda: cffi.verify(h, pw), args.runs)
        print(f"auth.verify_password (SQL, m=19456 KiB t=2 p=1): {sql_verify:7.2f} ms")
        print(f"argon2-cffi verify of the same hash:            {ref_verify:7.2f} ms   ratio {sql_verify / ref_verify:.2f}")
        print(f"backend peak RSS (VmHWM) around one hash: {rss_before / 1024:.1f} MiB -> {rss_after / 1024:.1f} MiB "
              f"(+{(rss_after - rss_before) / 1024:.1f} MiB; argon2 m=19 MiB is allocated by the hash)")

        conn.execute("SELECT auth.generate_signing_key()")
        conn.execute("SELECT auth.sign_up('bench@example.test', %s)", (pw,))
        # Lockout off the path: every attempt here is a failure by design.
        conn.execute("SET auth.max_failed_sign_ins = 1000")

        def attempt(email, password):
            try:
                conn.execute("SELECT auth.sign_in(%s, %s)", (email, password)).fetchone()
            except psycopg.Error:
                pass

        unknown, wrong = [], []
        for i in range(args.runs):  # interleaved
            unknown.append(median_ms(lambda: attempt(f"nobody{i}@example.test", "wrong password"), 1))
            wrong.append(median_ms(lambda: attempt("bench@example.test", "wrong password"), 1))
        ok = median_ms(lambda: attempt("bench@example.test", pw), args.runs)
        u, w = statistics.median(unknown), statistics.median(wrong)
        print(f"sign_in unknown email:  {u:7.2f} ms (median of {args.runs})")
        print(f"sign_in wrong password: {w:7.2f} ms   difference {abs(u - w) / w * 100:.1f}% (target < 20%)")
        print(f"sign_in success:        {ok:7.2f} ms")


if __name__ == "__main__":
    main()
