#!/usr/bin/env python3
"""Role-sync benchmarks, ratios measured in the same run:

1. Bulk INSERT of N grant rows (default 100,000) into a registered grant table vs the same
   INSERT into an identical table without sync, for two shapes: 10 rows per user (an
   org_members-like table, role from a column) and one row per user (a creators-like table,
   fixed role) — the worst case, where every row changes a user. Target: <= 2x.
2. auth.has_role('reader') in an RLS policy over 1M rows vs the same count with a constant.

Usage: benches/sql/roles_bench.py [--rows N] [--scan-rows M] [--runs K]
"""
import argparse
import json
import statistics
import time

import jwt
import psycopg
from benchlib import SCAN_CONF, throwaway_cluster
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--scan-rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with throwaway_cluster("rolebench", *SCAN_CONF) as (port, _):
        run(port, args)


def timed(conn, sql):
    t0 = time.perf_counter()
    conn.execute(sql)
    return (time.perf_counter() - t0) * 1000


def run(port, args):
    c = psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user="postgres", autocommit=True)
    c.execute("CREATE EXTENSION auth_ext")
    n = args.rows
    c.execute(f"INSERT INTO auth.users (id, email) SELECT gen_random_uuid(), 'u' || g || '@example.test' FROM generate_series(1, {n}) g")
    c.execute("CREATE TABLE user_ids AS SELECT id, row_number() OVER (ORDER BY id) AS rn FROM auth.users")
    c.execute("CREATE INDEX ON user_ids (rn)")
    c.execute("VACUUM ANALYZE auth.users")
    c.execute("VACUUM ANALYZE user_ids")
    shapes = {
        "10 rows per user (role column)": (
            "(org_id int, member_id uuid, role text, PRIMARY KEY (org_id, member_id))",
            "'=role', 'member_id'",
            f"SELECT g % 10, u.id, CASE WHEN g % 3 = 0 THEN 'admin' ELSE 'member' END FROM generate_series(1, {n}) g "
            f"JOIN user_ids u ON u.rn = (g / 10) + 1"),
        "1 row per user (fixed role)": (
            "(user_id uuid PRIMARY KEY)",
            "'creator'",
            f"SELECT u.id FROM generate_series(1, {n}) g JOIN user_ids u ON u.rn = g"),
    }
    print(f"\nbulk INSERT of {n} grant rows, median of {args.runs} (ms)")
    for name, (cols, reg, select) in shapes.items():
        base, synced, floor = [], [], []
        for i in range(args.runs):
            c.execute(f"CREATE TABLE plain_{i} {cols}")
            base.append(timed(c, f"INSERT INTO plain_{i} {select}"))
            c.execute(f"CREATE TABLE synced_{i} {cols}")
            c.execute(f"SELECT auth.enable_role_sync('synced_{i}', {reg})")
            synced.append(timed(c, f"INSERT INTO synced_{i} {select}"))
            changed = c.execute("SELECT count(*) FROM auth.users WHERE role_sync IS NOT NULL").fetchone()[0]
            assert changed > 0
            c.execute(f"DROP TABLE synced_{i}")  # the event trigger unregisters and resyncs
            # The floor of any sync: the INSERT plus one plain UPDATE that writes the same
            # users' rows by hand (no trigger), the least a correct sync must do.
            floor.append(base[-1] + timed(c, "UPDATE auth.users u SET raw_app_meta_data = u.raw_app_meta_data || '{\"roles\": [\"x\"]}' "
                                             f"WHERE u.id IN (SELECT DISTINCT p.{'member_id' if 'member_id' in cols else 'user_id'} FROM plain_{i} p)"))
            c.execute("UPDATE auth.users SET raw_app_meta_data = raw_app_meta_data - 'roles'")
            c.execute(f"DROP TABLE plain_{i}")
            c.execute("VACUUM auth.users")
        b, s, f = statistics.median(base), statistics.median(synced), statistics.median(floor)
        print(f"  {name:<32} without sync {b:8.0f}   with sync {s:8.0f}   ratio {s / b:5.2f}x (target <= 2)")
        print(f"  {'':<32} floor: INSERT + a bare UPDATE of the same user rows {f:8.0f} ({f / b:5.2f}x); "
              f"sync / floor {s / f:5.2f}x")

    # has_role in a policy over many rows.
    m = args.scan_rows
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "rb", "alg": "ES256"})
    c.execute("SELECT auth.add_key(%s::jsonb, 'https://bench.test', ARRAY['*'])", (json.dumps(jwk),))
    c.execute("SELECT auth.add_account_issuer('https://bench.test')")
    uid = c.execute("SELECT id FROM user_ids WHERE rn = 1").fetchone()[0]
    c.execute("CREATE TABLE readers (user_id uuid PRIMARY KEY)")
    c.execute("SELECT auth.enable_role_sync('readers', 'reader')")
    c.execute("INSERT INTO readers VALUES (%s)", (uid,))
    c.execute(f"CREATE TABLE docs AS SELECT g AS id, 'x' AS body FROM generate_series(1, {m}) g")
    c.execute("CREATE TABLE docs_rls AS SELECT * FROM docs")
    c.execute("ALTER TABLE docs_rls ENABLE ROW LEVEL SECURITY")
    c.execute("CREATE POLICY readers ON docs_rls USING (auth.has_role('reader'))")
    c.execute("CREATE ROLE rb_app LOGIN")
    c.execute("GRANT SELECT ON docs, docs_rls TO rb_app")
    c.execute("VACUUM ANALYZE docs")
    c.execute("VACUUM ANALYZE docs_rls")
    app = psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user="rb_app", autocommit=True)
    app.prepare_threshold = None
    tok = jwt.encode({"sub": str(uid), "iss": "https://bench.test", "exp": int(time.time()) + 3600}, key,
                     algorithm="ES256", headers={"kid": "rb"})
    app.execute("SELECT set_config('auth.jwt', %s, false)", (tok,))
    variants = {"constant (no RLS)": ("on", "SELECT count(*) FROM docs WHERE 'reader' = ANY ('{reader}'::text[])"),
                "policy auth.has_role('reader')": ("on", "SELECT count(*) FROM docs_rls"),
                "same, per-row call (initPlan off)": ("off", "SELECT count(*) FROM docs_rls")}
    times = {k: [] for k in variants}
    for _ in range(args.runs * 3):
        for name, (setting, q) in variants.items():
            app.execute(f"SET auth.helpers_as_initplans = {setting}")
            t0 = time.perf_counter()
            assert app.execute(q).fetchone()[0] == m
            times[name].append((time.perf_counter() - t0) * 1000)
    base = statistics.median(times["constant (no RLS)"])
    print(f"\ncount(*) over {m} rows, median (ms)")
    for name in variants:
        v = statistics.median(times[name])
        print(f"  {name:<36} {v:8.1f}   {v / base:5.2f}x")


if __name__ == "__main__":
    main()
