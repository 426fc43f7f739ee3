#!/usr/bin/env python3
"""Where a first bind spends its time: `perf` on one backend binding N distinct tokens.

Starts a throwaway cluster, creates N users and an HS256 key for a declared account issuer (as
first_bind_bench.py does), then, in one backend, binds each user's token in turn
(`set_config('auth.jwt', t, true)` + `auth.uid()`, in a PL/pgSQL loop) while
`perf record -g` samples that backend, and prints the top frames by self time.

Usage: benches/sql/profile_first_bind.py [--tokens N] [--alg HS256|ES256|RS256|EdDSA] [--top K] [--verify]
                                          [--children] [--dwarf] [--stat]
Needs `perf` (Debian: linux-perf) and a release build installed in $PG_BIN's PostgreSQL.
"""
import argparse
import base64
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

import jwt
import psycopg
from benchlib import SCAN_CONF, throwaway_cluster
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISS = "https://bench.test"
# One loop per measured call, each over the same server-side token array.
BODIES = {
    "loop_alone": "s := length(t)::text;",
    "loop_jws": "b := auth.verify_jws(t, k);",
    "loop_verify": "j := auth.verify(t);",
    "loop_bind": "s := set_config('auth.jwt', t, true); u := auth.uid();",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--alg", choices=("HS256", "ES256", "RS256", "EdDSA"), default="HS256")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--children", action="store_true",
                    help="sort by inclusive time (callees included) instead of self time")
    ap.add_argument("--verify", action="store_true",
                    help="profile auth.verify(token) instead of a bind")
    ap.add_argument("--stat", action="store_true",
                    help="CPU time per token (perf stat) of the loop alone, verify_jws, "
                         "auth.verify and a first bind, each in a fresh backend: for comparing "
                         "builds (this machine's VM exposes no instruction counters)")
    ap.add_argument("--runs", type=int, default=5, help="--stat: runs per loop (median)")
    ap.add_argument("--dwarf", action="store_true",
                    help="unwind with DWARF (Rust frames lack frame pointers): exact callers, "
                         "slower sampling")
    a = ap.parse_args()
    if a.alg == "HS256":
        secret = os.urandom(32)
        jwk = {"kty": "oct", "kid": "prof", "alg": "HS256",
               "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}
        sign_key = secret
    else:
        sign_key, to_jwk = {
            "ES256": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm.to_jwk),
            "RS256": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
                      RSAAlgorithm.to_jwk),
            "EdDSA": (ed25519.Ed25519PrivateKey.generate, OKPAlgorithm.to_jwk),
        }[a.alg]
        sign_key = sign_key()
        jwk = to_jwk(sign_key.public_key(), as_dict=True) | {"kid": "prof", "alg": a.alg}
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
            # The tokens live in the server, so the profile holds no client parsing (array_in).
            c.execute("CREATE TABLE prof_tokens (warm text[], toks text[])")
            c.execute("ALTER TABLE prof_tokens ALTER toks SET STORAGE EXTERNAL")  # no pglz
            c.execute("INSERT INTO prof_tokens VALUES (%s, %s)", (toks[:50], toks[50:]))
            c.execute("CREATE TABLE prof_key (k jsonb)")
            c.execute("INSERT INTO prof_key VALUES (%s)", (psycopg.types.json.Json(jwk),))
            for name, body in BODIES.items():
                c.execute(f"""CREATE FUNCTION {name}(toks text[], k jsonb) RETURNS void
                    LANGUAGE plpgsql AS $$
                    DECLARE t text; s text; u uuid; j jsonb; b bytea;
                    BEGIN FOREACH t IN ARRAY toks LOOP {body} END LOOP; END $$""")
        n = len(toks) - 50
        if a.stat:
            print(f"{a.alg}, {n} distinct tokens, a users row each; CPU µs per token of the "
                  f"backend (perf stat task-clock, loop included), median and minimum of {a.runs} "
                  "interleaved runs, each in a fresh backend")
            runs = {name: [] for name in BODIES}
            for _ in range(a.runs):
                for name in BODIES:
                    runs[name].append(stat_run(dsn, name) / n)
            # The minimum is the run least disturbed by the machine's other work.
            med = {name: statistics.median(v) for name, v in runs.items()}
            low = {name: min(v) for name, v in runs.items()}
            print(f"  {'':<12} {'median':>9} {'ratio':>6} {'min':>9} {'ratio':>6}")
            for name in BODIES:
                print(f"  {name:<12} {med[name]:6.2f} µs {med[name] / med['loop_jws']:5.2f}x"
                      f" {low[name]:6.2f} µs {low[name] / low['loop_jws']:5.2f}x   runs: "
                      + " ".join(f"{v:.1f}" for v in runs[name]))
            return
        fn = "loop_verify" if a.verify else "loop_bind"
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"SELECT {fn}(warm, k) FROM prof_tokens, prof_key")  # library, keys, plans
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            with tempfile.TemporaryDirectory() as d:
                data = f"{d}/perf.data"
                perf = subprocess.Popen(["perf", "record", "-F", "2000",
                                         *(["--call-graph", "dwarf,16384"] if a.dwarf else ["-g"]),
                                         "-o", data,
                                         "-p", str(pid)], stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                t0 = time.perf_counter()
                c.execute(f"SELECT {fn}(toks, k) FROM prof_tokens, prof_key")
                us = (time.perf_counter() - t0) * 1e6 / n
                perf.send_signal(2)
                perf.wait()
                if os.environ.get("KEEP_PERF"):
                    subprocess.run(["cp", data, os.environ["KEEP_PERF"]])
                what = "auth.verify calls" if a.verify else "first binds"
                print(f"{a.alg}: {n} {what}, {us:.1f} µs each (with perf attached)")
                rep = subprocess.run(["perf", "report", "-i", data,
                                      "--children" if a.children else "--no-children", "--stdio",
                                      "--sort", "symbol", "-g", "none", "--percent-limit", "0.5"],
                                     capture_output=True, text=True).stdout
                lines = [l for l in rep.splitlines() if l.strip() and not l.startswith("#")]
                print("\n".join(lines[:a.top]))


def stat_run(dsn, fn):
    """CPU µs (perf stat task-clock) of one fresh backend running `fn` over the tokens."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"SELECT {fn}(warm, k) FROM prof_tokens, prof_key")
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        with tempfile.TemporaryDirectory() as d:
            out = f"{d}/stat"
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "task-clock",
                                     "-o", out, "-p", str(pid)])
            time.sleep(0.3)
            c.execute(f"SELECT {fn}(toks, k) FROM prof_tokens, prof_key")
            perf.send_signal(2)
            perf.wait()
            for line in open(out):
                f = line.split(",")
                if len(f) > 2 and f[2].startswith("task-clock"):
                    return float(f[0]) * 1000  # msec -> µs
    raise RuntimeError("perf stat printed no task-clock")

if __name__ == "__main__":
    main()
