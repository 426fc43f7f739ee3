#!/usr/bin/env python3
"""SQL benchmarks for the RLS helpers, each printing ratios measured in the same run.

1. count(*) over N rows (default 1M) under a policy `user_id = auth.uid()` (no select
   wrapper), against the same query with the uuid literal, a Supabase-style SQL auth.uid()
   policy, the explicit `(select auth.uid())` wrapper, and auth.uid() with the initPlan
   rewrite turned off (a cached per-row call).
2. pgbench: select-only transactions carrying a bearer token, against the same query without
   auth (one round trip each: `set_config(…, true) \\; SELECT`), with one token per client
   (cached verification) and with a different user's token every transaction.

Usage: benches/sql/rls_bench.py [--rows N] [--runs K] [--pgbench-seconds S]
Targets (docs/performance.md "Targets"): policy ≤ 1.2× literal; ≥ 10× faster than Supabase-style SQL;
pgbench with a token ≥ 0.9× the TPS without auth.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import jwt
import psycopg
from benchlib import PG_BIN, SCAN_CONF, throwaway_cluster
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ALICE = "8d8ac610-566d-4ef0-9c22-186b2a5ed793"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--only-pgbench", action="store_true")
    args = ap.parse_args()

    with throwaway_cluster("bench", *SCAN_CONF) as (port, d):
        run(port, d, args)


def run(port, d, args):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench", "alg": "ES256"})

    def token(sub):
        return jwt.encode({"sub": sub, "iss": "https://bench.test", "role": "authenticated", "exp": int(time.time()) + 3600},
                          key, algorithm="ES256", headers={"kid": "bench"})

    admin = psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user="postgres", autocommit=True)
    admin.execute("CREATE EXTENSION auth_ext")
    admin.execute("SELECT auth.add_key(%s::jsonb, 'https://bench.test', ARRAY['*'])", (json.dumps(jwk),))
    admin.execute("SELECT auth.add_account_issuer('https://bench.test')")
    admin.execute("CREATE ROLE bench_app LOGIN")
    if args.only_pgbench:
        pgbench(port, d, args, admin, token)
        return
    print(f"loading {args.rows} rows …", flush=True)
    admin.execute(f"""
        CREATE TABLE docs AS
          SELECT i AS id, CASE WHEN i % 10 = 0 THEN '{ALICE}'::uuid ELSE gen_random_uuid() END AS user_id, 'x' AS body
          FROM generate_series(1, {args.rows}) i;
        CREATE TABLE docs_auth AS SELECT * FROM docs;
        CREATE TABLE docs_wrapped AS SELECT * FROM docs;
        CREATE TABLE docs_supabase AS SELECT * FROM docs;
        ALTER TABLE docs_auth ENABLE ROW LEVEL SECURITY;
        CREATE POLICY p ON docs_auth USING (user_id = auth.uid());
        ALTER TABLE docs_wrapped ENABLE ROW LEVEL SECURITY;
        CREATE POLICY p ON docs_wrapped USING (user_id = (SELECT auth.uid()));
        ALTER TABLE docs_supabase ENABLE ROW LEVEL SECURITY;
        CREATE POLICY p ON docs_supabase USING (user_id = (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')::uuid);
        GRANT SELECT ON docs, docs_auth, docs_wrapped, docs_supabase TO bench_app;
    """)
    for t in ["docs", "docs_auth", "docs_wrapped", "docs_supabase"]:
        admin.execute(f"VACUUM ANALYZE {t}")
    want = args.rows // 10

    conn = psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user="bench_app", autocommit=True)
    # Plan every execution: a cached plan would not follow auth.helpers_as_initplans, which
    # the variants below switch (the only GUC whose change a cached plan does not see).
    conn.prepare_threshold = None
    conn.execute("SELECT set_config('auth.jwt', %s, false)", (token(ALICE),))
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": ALICE}),))
    # name -> (setting for auth.helpers_as_initplans, query)
    variants = {
        "uuid literal (no RLS)": ("on", f"SELECT count(*) FROM docs WHERE user_id = '{ALICE}'"),
        "policy user_id = auth.uid()": ("on", "SELECT count(*) FROM docs_auth"),
        "policy user_id = (select auth.uid())": ("on", "SELECT count(*) FROM docs_wrapped"),
        "auth.uid() per row (initPlan off)": ("off", "SELECT count(*) FROM docs_auth"),
        "Supabase-style SQL auth.uid()": ("on", "SELECT count(*) FROM docs_supabase"),
    }
    times = {name: [] for name in variants}

    def timed(setting, q):
        conn.execute(f"SET auth.helpers_as_initplans = {setting}")
        t0 = time.perf_counter()
        n = conn.execute(q).fetchone()[0]
        return n, (time.perf_counter() - t0) * 1000

    for name, (setting, q) in variants.items():  # warm-up and correctness
        assert timed(setting, q)[0] == want, name
    for _ in range(args.runs):  # interleaved so that drift hits every variant alike
        for name, (setting, q) in variants.items():
            times[name].append(timed(setting, q)[1])
    base = statistics.median(times["uuid literal (no RLS)"])
    ours = statistics.median(times["policy user_id = auth.uid()"])
    print(f"\nRLS count(*) over {args.rows} rows, median of {args.runs} (ms), ratio to the uuid literal")
    for name in variants:
        m = statistics.median(times[name])
        print(f"  {name:<40} {m:9.1f} ms  {m / base:6.2f}x")
    sb = statistics.median(times["Supabase-style SQL auth.uid()"])
    print(f"  auth.uid() policy vs literal: {ours / base:.2f}x (target <= 1.2); "
          f"Supabase-style SQL / auth.uid(): {sb / ours:.1f}x faster (target >= 10)")
    conn.close()

    if args.pgbench_seconds > 0:
        pgbench(port, d, args, admin, token)
    admin.close()


def pgbench(port, d, args, admin, token):
    admin.execute(f"""
        CREATE TABLE accounts AS SELECT i AS aid, '{ALICE}'::uuid AS owner, 0 AS abalance FROM generate_series(1, 100000) i;
        ALTER TABLE accounts ADD PRIMARY KEY (aid);
        CREATE TABLE accounts_rls AS SELECT * FROM accounts;
        ALTER TABLE accounts_rls ADD PRIMARY KEY (aid);
        ALTER TABLE accounts_rls ENABLE ROW LEVEL SECURITY;
        CREATE POLICY p ON accounts_rls USING (owner = auth.uid());
        GRANT SELECT ON accounts, accounts_rls TO bench_app;
    """)
    admin.execute("INSERT INTO accounts_rls SELECT aid + 100000 * (u + 1), ('00000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid, 0 "
                  "FROM accounts, generate_series(0, 15) u WHERE aid <= 1000")
    for t in ["accounts", "accounts_rls"]:
        admin.execute(f"VACUUM ANALYZE {t}")
    tmp = tempfile.mkdtemp(dir=d)
    os.chmod(tmp, 0o755)

    def script(name, body):
        p = f"{tmp}/{name}.sql"
        with open(p, "w") as f:
            f.write(body)
        return p

    plain = script("plain", "\\set aid random(1, 100000)\nSELECT abalance FROM accounts WHERE aid = :aid;\n")
    # The same round trip as the auth flow, carrying the token in a setting auth_ext ignores.
    shaped = script("shaped", "\\set aid random(1, 100000)\n"
                    f"SELECT set_config('app.request_token', '{token(ALICE)}', true) \\; SELECT abalance FROM accounts WHERE aid = :aid;\n")
    same = script("token", "\\set aid random(1, 100000)\n"
                  f"SELECT set_config('auth.jwt', '{token(ALICE)}', true) \\; SELECT abalance FROM accounts_rls WHERE aid = :aid;\n")
    rotating = []
    for i in range(16):
        sub = "00000000-0000-4000-8000-%012x" % i
        rotating.append(script(f"user{i}", "\\set n random(1, 1000)\n"
                               f"SELECT set_config('auth.jwt', '{token(sub)}', true) \\; "
                               f"SELECT abalance FROM accounts_rls WHERE aid = :n + {100000 * (i + 1)};\n"))

    def tps(files):
        cmd = [f"{PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "bench_app", "-n", "-c", "4", "-j", "2",
               "-T", str(args.pgbench_seconds), "-M", "simple"]
        for f in files:
            cmd += ["-f", f]
        out = subprocess.run(cmd + ["postgres"], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("tps = "):
                return float(line.split()[2])
        raise RuntimeError(out)

    results = {"no auth": [], "no auth, same round trip shape": [], "one token per client (cached)": [],
               "new user every transaction": []}
    for _ in range(2):
        results["no auth"].append(tps([plain]))
        results["no auth, same round trip shape"].append(tps([shaped]))
        results["one token per client (cached)"].append(tps([same]))
        results["new user every transaction"].append(tps(rotating))
    base = statistics.median(results["no auth"])
    print(f"\npgbench select-only, 4 clients, {args.pgbench_seconds} s x 2 runs (median TPS), ratio to no auth")
    for name, v in results.items():
        m = statistics.median(v)
        print(f"  {name:<34} {m:10.0f} tps  {m / base:5.2f}x")
    print("  target: token per transaction >= 0.9x the TPS without auth")


if __name__ == "__main__":
    main()
