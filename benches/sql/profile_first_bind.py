#!/usr/bin/env python3
"""Where a first bind spends its time: `perf` on one backend binding N distinct tokens.

Starts a throwaway cluster, creates N users and an HS256 key for a declared account issuer (as
first_bind_bench.py does), then, in one backend, binds each user's token in turn
(`set_config('auth.jwt', t, true)` + `auth.uid()`, in a PL/pgSQL loop) while
`perf record -g` samples that backend, and prints the top frames by self time.

Usage: benches/sql/profile_first_bind.py [--tokens N] [--alg HS256|ES256] [--top K] [--verify]
Needs `perf` (Debian: linux-perf) and a release build installed in $PG_BIN's PostgreSQL.
"""
import argparse
import base64
import os
import subprocess
import tempfile
import threading
import time
import uuid

import jwt
import psycopg
from benchlib import SCAN_CONF, throwaway_cluster
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISS = "https://bench.test"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--alg", choices=("HS256", "ES256"), default="HS256")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--children", action="store_true",
                    help="sort by inclusive time (callees included) instead of self time")
    ap.add_argument("--verify", action="store_true",
                    help="profile auth.verify(token) instead of a bind")
    a = ap.parse_args()
    if a.alg == "HS256":
        secret = os.urandom(32)
        jwk = {"kty": "oct", "kid": "prof", "alg": "HS256",
               "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}
        sign_key = secret
    else:
        sign_key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(sign_key.public_key(), as_dict=True) | {"kid": "prof", "alg": "ES256"}
    now = int(time.time())
    subs = [str(uuid.uuid4()) for _ in range(a.tokens)]
    toks = [jwt.encode({"sub": s, "iss": ISS, "aud": "authenticated", "exp": now + 3600,
                        "role": "authenticated"}, sign_key, algorithm=a.alg,
                       headers={"kid": "prof"}) for s in subs]
    with throwaway_cluster("profile", *SCAN_CONF) as (port, _):
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE EXTENSION auth_ext")
            c.execute("SELECT auth.add_key(%s::jsonb, %s, ARRAY['authenticated'])",
                      (psycopg.types.json.Json(jwk), ISS))
            c.execute("SELECT auth.add_account_issuer(%s)", (ISS,))
            with c.cursor().copy("COPY auth.users (id, email) FROM STDIN") as cp:
                for s in subs:
                    cp.write_row((s, f"{s}@bench.test"))
            body = ("j := auth.verify(t);" if a.verify
                    else "s := set_config('auth.jwt', t, true); u := auth.uid();")
            c.execute(f"""CREATE FUNCTION bind_all(toks text[]) RETURNS void LANGUAGE plpgsql AS $$
                DECLARE t text; s text; u uuid; j jsonb;
                BEGIN FOREACH t IN ARRAY toks LOOP {body} END LOOP; END $$""")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT bind_all(%s)", (toks[:50],))  # warm: library, key set, plans
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            with tempfile.TemporaryDirectory() as d:
                data = f"{d}/perf.data"
                perf = subprocess.Popen(["perf", "record", "-F", "2000", "-g", "-o", data,
                                         "-p", str(pid)], stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                t0 = time.perf_counter()
                c.execute("SELECT bind_all(%s)", (toks,))
                us = (time.perf_counter() - t0) * 1e6 / len(toks)
                perf.send_signal(2)
                perf.wait()
                what = "auth.verify calls" if a.verify else "first binds"
                print(f"{a.alg}: {len(toks)} {what}, {us:.1f} µs each (with perf attached)")
                rep = subprocess.run(["perf", "report", "-i", data,
                                      "--children" if a.children else "--no-children", "--stdio",
                                      "--sort", "symbol", "-g", "none", "--percent-limit", "0.5"],
                                     capture_output=True, text=True).stdout
                lines = [l for l in rep.splitlines() if l.strip() and not l.startswith("#")]
                print("\n".join(lines[:a.top]))


if __name__ == "__main__":
    main()
