#!/usr/bin/env python3
"""Token and session benchmarks, ratios measured in the same run:

1. auth.sign_in end to end (default argon2id parameters) next to auth.verify_password of the
   same hash: argon2 dominates, and the rest (session row, refresh token, ES256 access token,
   audit row) is what sign-in adds.
2. auth.refresh per second: 1 connection, then 4 connections each rotating its own chain.
3. The cost of revocation checks, on vs off (target <= 1.05x):
   a. auth.uid() evaluated per row (initPlans off) over N rows under an RLS policy;
   b. pgbench, 4 clients, an issued access token per transaction;
   c. (b) while another connection revokes and restores a session 10 times per second (20
      invalidations/s), each making every backend re-read its account once.

Usage: benches/sql/sessions_bench.py [--rows N] [--runs K] [--seconds S]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time

import psycopg
from benchlib import PG_BIN, SCAN_CONF, median_ms, throwaway_cluster

PW = "correct horse battery staple"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    with throwaway_cluster("sessbench", *SCAN_CONF) as (port, d):
        run(port, d, args)


def connect(port, user="postgres"):
    return psycopg.connect(host="127.0.0.1", port=port, dbname="postgres", user=user, autocommit=True)


def run(port, d, args):
    admin = connect(port)
    admin.execute("CREATE EXTENSION auth_ext")
    # auth.revocation_checks is superuser-only (a client must not switch it off), so each
    # setting gets a role with it preset.
    for setting in ("on", "off"):
        admin.execute(f"CREATE ROLE bench_{setting} LOGIN")
        admin.execute(f"ALTER ROLE bench_{setting} SET auth.revocation_checks = {setting}")
    admin.execute("SELECT auth.generate_signing_key('ES256')")
    uid = admin.execute("SELECT auth.sign_up('bench@example.test', %s)", (PW,)).fetchone()[0]
    for i in range(4):
        admin.execute("SELECT auth.sign_up(%s, %s)", (f"bench{i}@example.test", PW))

    # 1. sign-in end to end vs the argon2 verify it contains
    h = admin.execute("SELECT encrypted_password FROM auth.users WHERE id = %s", (uid,)).fetchone()[0]
    # Interleaved pairs: argon2's run-to-run spread (±10 %) is larger than the rest of sign-in,
    # so the rest is the median of per-pair differences, not a difference of medians.
    pairs = []
    for _ in range(args.runs * 2 + 1):
        pairs.append((median_ms(lambda: admin.execute("SELECT auth.sign_in('bench@example.test', %s)", (PW,)).fetchone(), 1),
                      median_ms(lambda: admin.execute("SELECT auth.verify_password(%s, %s)", (PW, h)).fetchone(), 1)))
    sign_in = statistics.median(s for s, _ in pairs)
    argon = statistics.median(a for _, a in pairs)
    rest = statistics.median(s - a for s, a in pairs)
    print(f"\nsign-in end to end, {len(pairs)} interleaved pairs (medians)")
    print(f"  auth.sign_in (argon2id m=19456 KiB t=2 p=1, session, ES256 token) {sign_in:7.2f} ms")
    print(f"  auth.verify_password of the same hash                         {argon:7.2f} ms")
    print(f"  the rest of sign-in (median of per-pair differences): {rest:.2f} ms; "
          f"argon2 share {(sign_in - rest) / sign_in * 100:.0f}%")

    # 2. refresh throughput
    def chain(email, seconds, counts, idx):
        c = connect(port)
        rt = c.execute("SELECT auth.sign_in(%s, %s)", (email, PW)).fetchone()[0]["refresh_token"]
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            rt = c.execute("SELECT auth.refresh(%s)", (rt,)).fetchone()[0]["refresh_token"]
            n += 1
        counts[idx] = n
        c.close()

    def refresh_rate(conns):
        counts = [0] * conns
        secs = max(args.seconds / 2, 1)
        ts = [threading.Thread(target=chain, args=(f"bench{i}@example.test", secs, counts, i)) for i in range(conns)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return sum(counts) / secs

    one = refresh_rate(1)
    four = refresh_rate(4)
    print("\nauth.refresh (rotation + ES256 access token), each connection chaining its own tokens")
    print(f"  1 connection:  {one:8.0f} refreshes/s")
    print(f"  4 connections: {four:8.0f} refreshes/s   ({four / one:.2f}x of one connection, 2 cores)")

    # 3a. per-row auth.uid() with revocation checks on vs off
    token = admin.execute("SELECT auth.sign_in('bench@example.test', %s)", (PW,)).fetchone()[0]["access_token"]
    admin.execute(f"""
        CREATE TABLE docs AS
          SELECT i AS id, CASE WHEN i % 10 = 0 THEN '{uid}'::uuid ELSE gen_random_uuid() END AS user_id
          FROM generate_series(1, {args.rows}) i;
        ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
        CREATE POLICY p ON docs USING (user_id = auth.uid());
        GRANT SELECT ON docs TO bench_on, bench_off;
    """)
    admin.execute("VACUUM ANALYZE docs")
    conns = {}
    for setting in ("on", "off"):
        c = conns[setting] = connect(port, f"bench_{setting}")
        c.execute("SET auth.helpers_as_initplans = off")  # auth.uid() called for every row
        c.execute("SELECT set_config('auth.jwt', %s, false)", (token,))
        assert c.execute("SHOW auth.revocation_checks").fetchone()[0] == setting
        assert c.execute("SELECT count(*) FROM docs").fetchone()[0] == args.rows // 10
    times = {"on": [], "off": []}
    for _ in range(args.runs):  # interleaved
        for setting in ("on", "off"):
            t0 = time.perf_counter()
            conns[setting].execute("SELECT count(*) FROM docs").fetchone()
            times[setting].append((time.perf_counter() - t0) * 1000)
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(f"\nauth.uid() per row over {args.rows} rows (initPlans off), median of {args.runs}")
    print(f"  revocation checks off: {off:8.1f} ms")
    print(f"  revocation checks on:  {on:8.1f} ms   ratio {on / off:.3f} (target <= 1.05)")
    for c in conns.values():
        c.close()

    # 3b/3c. pgbench with an issued token per transaction
    admin.execute(f"""
        CREATE TABLE accounts AS SELECT i AS aid, '{uid}'::uuid AS owner, 0 AS abalance FROM generate_series(1, 100000) i;
        ALTER TABLE accounts ADD PRIMARY KEY (aid);
        ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
        CREATE POLICY p ON accounts USING (owner = auth.uid());
        GRANT SELECT ON accounts TO bench_on, bench_off;
    """)
    admin.execute("VACUUM ANALYZE accounts")
    tmp = tempfile.mkdtemp(dir=d)
    os.chmod(tmp, 0o755)
    script = f"{tmp}/token.sql"
    with open(script, "w") as f:
        f.write("\\set aid random(1, 100000)\n"
                f"SELECT set_config('auth.jwt', '{token}', true) \\; SELECT abalance FROM accounts WHERE aid = :aid;\n")
    secs = max(int(args.seconds), 1)

    def tps(setting):
        cmd = [f"{PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", f"bench_{setting}", "-n", "-c", "4", "-j", "2",
               "-T", str(secs), "-M", "simple", "-f", script, "postgres"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return next(float(line.split()[2]) for line in out.splitlines() if line.startswith("tps = "))

    def pair():
        r = {"on": [], "off": []}
        for _ in range(2):
            for setting in ("off", "on"):
                r[setting].append(tps(setting))
        return statistics.median(r["on"]), statistics.median(r["off"])

    on, off = pair()
    print(f"\npgbench, 4 clients, issued token per transaction, {secs} s x 2 runs (median TPS)")
    print(f"  revocation checks off: {off:9.0f} tps")
    print(f"  revocation checks on:  {on:9.0f} tps   ratio off/on {off / on:.3f} (target <= 1.05)")

    stop = threading.Event()
    revocations = [0]

    def storm():
        c = connect(port)
        victim = c.execute("SELECT (auth.sign_in('bench0@example.test', %s) -> 'user' ->> 'id')::uuid", (PW,)).fetchone()[0]
        while not stop.is_set():
            c.execute("SELECT auth.revoke_session(id) FROM auth.sessions WHERE user_id = %s AND revoked_at IS NULL LIMIT 1", (victim,))
            c.execute("UPDATE auth.sessions SET revoked_at = NULL WHERE user_id = %s", (victim,))
            revocations[0] += 1
            time.sleep(0.1)
        c.close()

    t = threading.Thread(target=storm)
    t.start()
    try:
        on_storm, off_storm = pair()
    finally:
        stop.set()
        t.join()
    print(f"  with 10 revoke+restore cycles/s elsewhere ({revocations[0]} in all): off {off_storm:9.0f} tps, "
          f"on {on_storm:9.0f} tps, ratio off/on {off_storm / on_storm:.3f}")
    admin.close()


if __name__ == "__main__":
    main()
