"""Fail-closed sign-in bookkeeping, end to end, tried the way an attacker would try it.

What is claimed (auth.sign_in, auth.refresh, src/autonomous.rs)
----------------------------------------------------------------
* Every sign-in attempt is *reserved* — committed by a short-lived background worker in a
  transaction of its own — before its password is judged. Per email and lockout window at most
  auth.max_failed_sign_ins passwords are judged, whatever the concurrency; the reservation that
  reaches the limit locks the email (ACCOUNT_LOCKED, 28000, nothing judged). A success gives back
  its own reservation only.
* An attempt that cannot be recorded (no worker slot within 2 s, a worker that cannot commit) is
  refused unjudged: TEMPORARILY_UNAVAILABLE (53000). Cancelling a caller leaves no worker behind.
* A read-only transaction or a hot standby gets READ_ONLY (25006) at once, without a worker.
* No signing key: NOT_CONFIGURED (55000) before anything is judged or counted.
* Reuse of a rotated refresh token revokes the session through the worker, or is refused with
  TEMPORARILY_UNAVAILABLE when that cannot be recorded, and revoked on a later presentation.

How it is tried
---------------
Three throwaway clusters of this module's own (scripts/cluster.sh), on loopback, removed at the
end whatever happens:
  main     40 worker slots (so bookkeeping never runs short by accident), log_min_messages =
           debug1 so that the postmaster's "registering background worker" lines count the
           workers launched; also the primary of
  standby  a hot standby made with pg_basebackup -R;
  slots    max_worker_processes = 4: an ordinary role ("hog") can take every slot with parallel
           query workers, and a slot leaked by a cancelled sign-in would show. fsync = on, as in
           production (cluster.sh turns it off), and commit_delay = 20 ms with commit_siblings =
           0 (group commit, as a busy server may use): a commit spends real time inside its
           critical section, as it does on any server whose commits wait for the disk, so a
           cancellation can land there reliably rather than by luck.
Figures measured on the way (judged guesses, times to 53000 / 25006) are printed at the end of
the module (pytest -s).
"""
import collections
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid

import jwt
import psycopg
import pytest

from conftest import ROOT, Cluster

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")  # as scripts/cluster.sh
CLUSTER_SH = str(ROOT / "scripts/cluster.sh")
PASSWORD = "long enough pw"
WRONG = "not the password"
HASH_SQL = "encode(sha256(convert_to(lower(%s), 'UTF8')), 'hex')"
CHEAP = {"auth.argon2_memory_kib": "1024", "auth.argon2_iterations": "1"}

INVALID = "28P01 INVALID_CREDENTIALS"
LOCKED = "28000 ACCOUNT_LOCKED"
UNAVAILABLE = "53000 TEMPORARILY_UNAVAILABLE"
READ_ONLY = "25006 READ_ONLY"
NOT_CONFIGURED = "55000 NOT_CONFIGURED"
REVOKED = "28000 TOKEN_REVOKED"
CANCELED = "57014 CANCELED"
LOST = "LOST"  # the server closed the connection
CRASH = re.compile(r"PANIC:|terminated by signal|terminated by exception|all server processes terminated")
# The postmaster's DEBUG1 lines (the prefix keeps "registering" from matching "unregistering").
REGISTERED = 'DEBUG:  registering background worker "auth_ext bookkeeping"'
UNREGISTERED = 'DEBUG:  unregistering background worker "auth_ext bookkeeping"'
# Processes that are not background workers (they take no max_worker_processes slot).
NOT_BGWORKERS = ("client backend", "autovacuum launcher", "autovacuum worker", "background writer",
                 "checkpointer", "walwriter", "startup", "walreceiver", "walsender", "archiver", "logger")

FIGURES = {}


# --------------------------------------------------------------------------------------------
# Clusters

def sh(*args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, timeout=120)


def as_postgres(*args):
    return sh("runuser", "-u", "postgres", "--", *args)


def start_cluster(directory, *conf):
    # These tests sign users in right after sign-up (email confirmation: test_passwordless.py).
    conf = ("auth.require_email_confirmation = off", *conf)
    port = int(sh(CLUSTER_SH, "start", directory, *conf).stdout.strip())
    return Cluster(directory, port)


def stop_cluster(directory):
    """Stops and removes a cluster of this module. A cluster that crashed may be stuck in crash
    recovery, where a fast shutdown can hang: it is stopped in immediate mode, before
    cluster.sh removes the directory."""
    data = f"{directory}/data"
    if os.path.exists(f"{data}/postmaster.pid"):
        try:
            with open(f"{directory}/server.log", encoding="utf-8", errors="replace") as f:
                crashed = any(CRASH.search(line) for line in f)
        except OSError:
            crashed = False
        stopped = False
        if not crashed:
            stopped = subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D", data, "-m", "fast",
                                      "-t", "20", "-w", "stop"], capture_output=True, timeout=60).returncode == 0
        if not stopped:
            subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate",
                            "-t", "20", "-w", "stop"], capture_output=True, timeout=60)
    subprocess.run([CLUSTER_SH, "stop", directory], capture_output=True, timeout=120)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install(c, roles, dbname="e2e", signing_key=True, **create):
    """A database with auth_ext (and its signing key), and LOGIN roles with per-role settings."""
    options = " ".join(f"{k.upper()} '{v}'" if k != "locale_provider" else f"LOCALE_PROVIDER {v}"
                       for k, v in create.items())
    with c.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname} TEMPLATE template0 {options}")
        for role, settings in roles.items():
            if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                admin.execute(f"CREATE ROLE {role} LOGIN")
            for k, v in settings.items():
                admin.execute(f"ALTER ROLE {role} SET {k} = {v}")
    with c.connect(dbname=dbname, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION auth_ext")
        if signing_key:
            admin.execute("SELECT auth.generate_signing_key('ES256')")


def server_log(c):
    with open(f"{c.dir}/server.log", encoding="utf-8", errors="replace") as f:
        return f.read()


def crashes(c, since=0):
    """Server log lines (from character `since` on) that say a process crashed the cluster."""
    return [line for line in server_log(c)[since:].splitlines() if CRASH.search(line)]


def registrations(c):
    """Bookkeeping workers the postmaster registered so far (log_min_messages = debug1)."""
    return server_log(c).count(REGISTERED)


def wait_for(what, check, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield FIGURES
    print("\n[fail_closed] measured figures:\n" + json.dumps(FIGURES, indent=2, ensure_ascii=False))


@pytest.fixture(scope="module")
def main():
    directory = f"/tmp/auth_ext_fc_{os.getpid()}_main"
    try:
        c = start_cluster(directory, "max_worker_processes = 40", "max_parallel_workers = 8",
                          "wal_level = replica", "max_wal_senders = 4", "log_min_messages = debug1")
        install(c, {
            "app_user": {**CHEAP, "auth.refresh_reuse_interval_seconds": "0"},
            "app_three": {**CHEAP, "auth.max_failed_sign_ins": "3"},
            "app_ro": {**CHEAP, "default_transaction_read_only": "on"},
        })
        yield c
    finally:
        stop_cluster(directory)


@pytest.fixture(scope="module")
def slots():
    """Four worker slots in all (one is the logical replication launcher's), and an ordinary role
    that can take the rest with parallel query: a table of one row per page and a slow,
    parallel-safe per-row function of its own schema."""
    directory = f"/tmp/auth_ext_fc_{os.getpid()}_slots"
    try:
        c = start_cluster(directory, "max_worker_processes = 4", "max_parallel_workers = 4",
                          "log_min_messages = debug1", "fsync = on", "commit_delay = 20000", "commit_siblings = 0")
        install(c, {
            "app_user": {**CHEAP, "auth.refresh_reuse_interval_seconds": "0"},
            "app_many": {**CHEAP, "auth.max_failed_sign_ins": "1000"},
            "hog": {},
        })
        with c.connect(autocommit=True) as admin:
            admin.execute("CREATE SCHEMA hog AUTHORIZATION hog")
            assert not admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'hog'").fetchone()[0]
        with c.connect(user="hog", autocommit=True) as hog:
            hog.execute("CREATE TABLE hog.hog_rows (i int, pad text) WITH (fillfactor = 10)")
            hog.execute("INSERT INTO hog.hog_rows SELECT i, repeat('x', 900) FROM generate_series(1, 2000) i")
            hog.execute("ANALYZE hog.hog_rows")
            hog.execute("""CREATE FUNCTION hog.hog_slow(i int) RETURNS boolean LANGUAGE plpgsql PARALLEL SAFE
                           AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN true; END $$""")
            pages = hog.execute("SELECT pg_relation_size('hog.hog_rows') / 8192").fetchone()[0]
            assert pages >= 1000, f"the hog table should span >= 1000 pages (one row each), has {pages}"
        yield c
    finally:
        stop_cluster(directory)


@pytest.fixture(scope="module")
def standby(main):
    """A hot standby of `main` (pg_basebackup -R), on its own port and directory."""
    directory = f"/tmp/auth_ext_fc_{os.getpid()}_standby"
    try:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        shutil.chown(directory, "postgres", "postgres")
        as_postgres(f"{PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", main.port, "-U", "postgres",
                    "-D", f"{directory}/data", "-R", "-X", "stream", "-c", "fast")
        port = free_port()
        with open(f"{directory}/data/postgresql.conf", "a") as f:
            f.write(f"port = {port}\nunix_socket_directories = '{directory}'\nhot_standby = on\n")
        as_postgres(f"{PG_BIN}/pg_ctl", "-D", f"{directory}/data", "-l", f"{directory}/server.log", "-w", "start")
        s = Cluster(directory, port)

        def ready():
            try:
                with s.connect(autocommit=True) as conn:
                    return conn.execute("SELECT pg_is_in_recovery() AND to_regprocedure('auth.sign_in(text, text)') IS NOT NULL"
                                        " AND EXISTS (SELECT 1 FROM auth.signing_keys)").fetchone()[0]
            except psycopg.OperationalError:
                return False
        wait_for("the standby to accept connections with auth_ext replayed", ready, timeout=30, step=0.2)
        yield s
    finally:
        stop_cluster(directory)


# --------------------------------------------------------------------------------------------
# Attempts

def outcome(e):
    if e.sqlstate == "57014":
        return CANCELED
    return f"{e.sqlstate} {e.diag.message_primary.split(':')[0]}"


def call(conn, sql, params=()):
    """One statement; 'ok' or 'SQLSTATE CODE' ('LOST …' when the server dropped the connection),
    and the seconds it took. A transaction that is not autocommit is rolled back afterwards,
    whatever happened (autocommit: the work stays)."""
    t0 = time.monotonic()
    try:
        conn.execute(sql, params).fetchall()
        return "ok", time.monotonic() - t0
    except psycopg.Error as e:
        if e.sqlstate is None:
            return f"{LOST} {str(e).splitlines()[0]}", time.monotonic() - t0
        return outcome(e), time.monotonic() - t0
    finally:
        if not conn.autocommit and not conn.broken:
            conn.rollback()


def attempt(conn, email, password):
    return call(conn, "SELECT auth.sign_in(%s, %s)", (email, password))[0]


def sign_in(conn, email, password=PASSWORD):
    r = conn.execute("SELECT auth.sign_in(%s, %s)", (email, password)).fetchone()[0]
    if not conn.autocommit:
        conn.commit()
    return r


def new_user(c, user="app_user", dbname=None, email=None):
    email = email or f"u{uuid.uuid4().hex[:12]}@example.test"
    with c.connect(user=user, dbname=dbname, autocommit=True) as conn:
        uid = conn.execute("SELECT auth.sign_up(%s, %s)", (email, PASSWORD)).fetchone()[0]
    return email, str(uid)


def ghost():
    return f"ghost{uuid.uuid4().hex[:12]}@example.test"


def row(c, email, dbname=None):
    """(failed_count, locked now?) of the email's lockout row; (0, False) without a row."""
    with c.connect(dbname=dbname, autocommit=True) as admin:
        r = admin.execute(f"SELECT failed_count, coalesce(locked_until > now(), false) FROM auth.failed_sign_ins "
                          f"WHERE email_hash = {HASH_SQL}", (email,)).fetchone()
    return (r[0], r[1]) if r else (0, False)


def email_hash(c, email, dbname=None):
    with c.connect(dbname=dbname, autocommit=True) as admin:
        return admin.execute(f"SELECT {HASH_SQL}", (email,)).fetchone()[0]


def audit_mark(c, dbname=None):
    with c.connect(dbname=dbname, autocommit=True) as admin:
        return admin.execute("SELECT coalesce(max(id), 0) FROM auth.audit_log").fetchone()[0]


def audit_since(c, mark, dbname=None, email_hash=None):
    """Events written after `mark`; with email_hash, only the rows that carry it."""
    with c.connect(dbname=dbname, autocommit=True) as admin:
        rows = admin.execute("SELECT event FROM auth.audit_log WHERE id > %s AND "
                             "(%s::text IS NULL OR details->>'email_hash' = %s::text)",
                             (mark, email_hash, email_hash)).fetchall()
    return collections.Counter(e for (e,) in rows)


def storm(c, user, plans, dbname=None):
    """Each plan is a list of (email, password) tried in order on a connection of its own; all
    connections are open before the first attempt and start together. Returns
    [(email, password, outcome, seconds)]."""
    barrier = threading.Barrier(len(plans))
    out, errors, lock = [], [], threading.Lock()

    def run(plan):
        try:
            with c.connect(user=user, dbname=dbname, autocommit=True) as conn:
                barrier.wait(timeout=60)
                for email, password in plan:
                    r, dt = call(conn, "SELECT auth.sign_in(%s, %s)", (email, password))
                    with lock:
                        out.append((email, password, r, dt))
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(repr(e))
            barrier.abort()

    threads = [threading.Thread(target=run, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, f"a client of the storm broke: {errors}"
    assert not any(t.is_alive() for t in threads), "a client of the storm hung for 120 s"
    return out


def bookkeeping_backends(c):
    with c.connect(autocommit=True) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'auth_ext bookkeeping'").fetchone()[0]


# --------------------------------------------------------------------------------------------
# Worker slots taken by an ordinary role

def slot_usage(c):
    with c.connect(autocommit=True) as admin:
        return admin.execute(
            "SELECT count(*) FILTER (WHERE backend_type <> ALL (%s)), "
            "count(*) FILTER (WHERE backend_type = 'parallel worker'), "
            "current_setting('max_worker_processes')::int FROM pg_stat_activity",
            (list(NOT_BGWORKERS),)).fetchone()


@contextlib.contextmanager
def slots_exhausted(c):
    """An ordinary role ("hog") holds every background worker slot with parallel query workers
    busy in a slow parallel-safe function, until the holders are cancelled on exit."""
    pids, errors, threads = [], [], []

    def hold():
        try:
            with c.connect(user="hog", autocommit=True) as h:
                h.execute("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; "
                          "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 4; "
                          "SET statement_timeout = '150s'")
                pids.append(h.info.backend_pid)
                try:
                    h.execute("SELECT count(*) FROM hog.hog_rows WHERE hog.hog_slow(i)").fetchall()
                except psycopg.errors.QueryCanceled:
                    pass
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    def more():
        t = threading.Thread(target=hold)
        t.start()
        threads.append(t)

    try:
        more()
        deadline = time.monotonic() + 20
        while True:
            used, parallel, total = slot_usage(c)
            if used >= total and parallel > 0:
                break
            assert not errors, f"a holder failed: {errors}"
            assert time.monotonic() < deadline, f"could not take every worker slot: {used}/{total} used"
            if len(threads) < 4 and len(pids) == len(threads):
                more()
            time.sleep(0.2)
        FIGURES.setdefault("slots taken by the hog", f"{parallel} parallel workers + {used - parallel} other = {total} of max_worker_processes")
        yield
        used, parallel, total = slot_usage(c)
        assert used >= total, f"the hog lost slots during the test ({used}/{total}): the test proved nothing"
    finally:
        with c.connect(autocommit=True) as admin:
            for pid in list(pids):
                admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        for t in threads:
            t.join(timeout=30)
        wait_for("the parallel workers to end", lambda: slot_usage(c)[1] == 0, timeout=20)


def workers_launched(c):
    """How many parallel workers a 4-worker plan gets: the free slots (at most 4)."""
    with c.connect(user="hog", autocommit=True) as h:
        h.execute("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; "
                  "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 4; "
                  "SET cpu_tuple_cost = 1")  # without a costly filter, make the rows count
        plan = h.execute("EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM hog.hog_rows").fetchone()[0]

    def find(node):
        if "Workers Launched" in node:
            return node["Workers Launched"]
        for child in node.get("Plans", []):
            n = find(child)
            if n is not None:
                return n
        return None
    return find(plan[0]["Plan"])


# ============================================================================================
# 1. Concurrent guessing: at most max_failed_sign_ins passwords judged per email and window.

@pytest.mark.parametrize("kind", ["real account", "unknown email"])
def test_16_concurrent_guesses_judge_exactly_the_limit(main, kind):
    email = new_user(main)[0] if kind == "real account" else ghost()
    h = email_hash(main, email)
    mark = audit_mark(main)
    t0 = time.monotonic()
    out = storm(main, "app_user", [[(email, WRONG)] for _ in range(16)])
    elapsed = time.monotonic() - t0
    got = collections.Counter(r for _, _, r, _ in out)
    FIGURES[f"16 concurrent wrong guesses, {kind}: outcomes"] = dict(got)
    FIGURES[f"16 concurrent wrong guesses, {kind}: seconds"] = round(elapsed, 2)
    assert got == {INVALID: 5, LOCKED: 11}, \
        f"16 concurrent guesses on a {kind}: expected exactly 5 judged (INVALID_CREDENTIALS) and 11 ACCOUNT_LOCKED, got {dict(got)}"
    assert row(main, email) == (5, True), f"the {kind} should be locked with failed_count 5, row is {row(main, email)}"
    by_hash = audit_since(main, mark, email_hash=h)
    everything = audit_since(main, mark)
    assert by_hash["sign_in_failed"] == 5, f"one sign_in_failed audit row per judged guess expected (5), got {dict(by_hash)}"
    assert by_hash["sign_in_locked"] == 11, f"one sign_in_locked audit row per refused guess expected (11), got {dict(by_hash)}"
    assert everything["account_locked"] == 1, f"exactly one account_locked audit row expected, got {dict(everything)}"
    assert everything["signed_in"] == 0, f"nobody signed in, yet the audit says {dict(everything)}"


def test_64_guesses_with_a_limit_of_3_judge_exactly_3(main):
    email, _ = new_user(main, user="app_three")
    h = email_hash(main, email)
    mark = audit_mark(main)
    out = storm(main, "app_three", [[(email, WRONG)] * 4 for _ in range(16)])
    got = collections.Counter(r for _, _, r, _ in out)
    FIGURES["16 connections x 4 wrong guesses, max_failed_sign_ins = 3: outcomes"] = dict(got)
    assert got == {INVALID: 3, LOCKED: 61}, \
        f"64 guesses with auth.max_failed_sign_ins = 3: expected exactly 3 judged and 61 ACCOUNT_LOCKED, got {dict(got)}"
    assert row(main, email) == (3, True), f"expected failed_count 3 and locked, row is {row(main, email)}"
    a = audit_since(main, mark, email_hash=h)
    assert a["sign_in_failed"] == 3 and a["sign_in_locked"] == 61, f"audit does not match the outcomes: {dict(a)}"


def test_15_wrong_and_the_right_password_concurrently(main):
    email, uid = new_user(main)
    h = email_hash(main, email)
    mark = audit_mark(main)
    plans = [[(email, WRONG)] for _ in range(15)] + [[(email, PASSWORD)]]
    random.Random(7).shuffle(plans)
    out = storm(main, "app_user", plans)
    wrong = collections.Counter(r for _, pw, r, _ in out if pw == WRONG)
    right = [r for _, pw, r, _ in out if pw == PASSWORD]
    FIGURES["15 wrong + 1 right concurrently: wrong outcomes"] = dict(wrong)
    FIGURES["15 wrong + 1 right concurrently: right outcome"] = right[0]
    assert set(wrong) <= {INVALID, LOCKED}, f"wrong guesses got unexpected outcomes: {dict(wrong)}"
    assert wrong[INVALID] <= 5, f"at most 5 wrong passwords may be judged in a window, {wrong[INVALID]} were"
    assert right[0] in ("ok", LOCKED), f"the right password got {right[0]}"
    if right[0] == "ok":
        # Its reservation was given back: only the wrong ones stay counted. Once it is given back
        # the guessers may take the freed place, so 4 or 5 wrong ones are judged.
        assert wrong[INVALID] in (4, 5), f"with the right password among them, 4 or 5 wrong are judged, got {dict(wrong)}"
    else:
        assert wrong[INVALID] == 5, f"the right password was refused as locked, so 5 wrong were judged, got {dict(wrong)}"
    count, locked = row(main, email)
    assert count == wrong[INVALID], f"failed_count {count} should equal the judged wrong guesses {wrong[INVALID]}"
    assert locked == (count == 5), f"locked must be exactly when the count reached 5 (count {count}, locked {locked})"
    a = audit_since(main, mark, email_hash=h)
    assert a["sign_in_failed"] == wrong[INVALID], f"sign_in_failed audit rows {dict(a)} do not match {dict(wrong)}"
    with main.connect(autocommit=True) as admin:
        signed = admin.execute("SELECT count(*) FROM auth.audit_log WHERE id > %s AND event = 'signed_in' AND user_id = %s",
                               (mark, uid)).fetchone()[0]
    assert signed == (1 if right[0] == "ok" else 0), f"signed_in audit rows: {signed}, right password got {right[0]}"


# ============================================================================================
# 2. A success gives back its own reservation, not the earlier failures.

def test_success_gives_back_only_its_own_reservation(main):
    email, uid = new_user(main)
    mark = audit_mark(main)
    # (password, expected outcome, expected (failed_count, locked) afterwards)
    steps = [
        (WRONG, INVALID, (1, False)),
        (WRONG, INVALID, (2, False)),
        (WRONG, INVALID, (3, False)),
        (WRONG, INVALID, (4, False)),
        # Reserved as the 5th (which locks), judged right, given back: 4 and unlocked.
        (PASSWORD, "ok", (4, False)),
        # The earlier four still count: this one is the 5th and locks.
        (WRONG, INVALID, (5, True)),
        # Locked: even the right password is not judged.
        (PASSWORD, LOCKED, (5, True)),
    ]
    with main.connect(user="app_user", autocommit=True) as conn:
        for i, (password, expected, state) in enumerate(steps, 1):
            got = attempt(conn, email, password)
            which = "right" if password == PASSWORD else "wrong"
            assert got == expected, f"step {i} ({which} password): expected {expected}, got {got}"
            assert row(main, email) == state, f"after step {i} ({which} password): expected (failed_count, locked) = {state}, got {row(main, email)}"
    with main.connect(autocommit=True) as admin:
        events = [e for (e,) in admin.execute(
            "SELECT event FROM auth.audit_log WHERE id > %s AND (user_id = %s OR details->>'email_hash' = %s) ORDER BY id",
            (mark, uid, email_hash(main, email)))]
    assert events == ["sign_in_failed"] * 4 + ["signed_in", "sign_in_failed", "account_locked", "sign_in_locked"], \
        f"audit trail does not match the attempts: {events}"


# ============================================================================================
# 3. Worker slots exhausted by an ordinary role: nothing is judged, TEMPORARILY_UNAVAILABLE.

def test_no_worker_slot_means_unavailable_and_nothing_judged(slots):
    c = slots
    email, uid = new_user(c)
    h = email_hash(c, email)
    mark = audit_mark(c)
    with slots_exhausted(c):
        with c.connect(user="app_user") as conn:
            for password in (WRONG, PASSWORD):
                got, dt = call(conn, "SELECT auth.sign_in(%s, %s)", (email, password))
                which = "right" if password == PASSWORD else "wrong"
                FIGURES[f"slots exhausted: seconds to 53000 ({which} password)"] = round(dt, 2)
                assert got == UNAVAILABLE, f"with every worker slot taken a {which} password must get {UNAVAILABLE}, got {got}"
                assert 1.5 <= dt <= 3.5, f"TEMPORARILY_UNAVAILABLE should come after the ~2 s slot wait, came after {dt:.2f} s"
            # A read-only transaction never waits for a slot.
            conn.execute("SET TRANSACTION READ ONLY")
            got, dt = call(conn, "SELECT auth.sign_in(%s, %s)", (email, WRONG))
            assert got == READ_ONLY and dt < 0.2, f"read-only sign-in with no slot free: expected {READ_ONLY} in < 0.2 s, got {got} in {dt:.3f} s"
        out = storm(c, "app_user", [[(email, WRONG if i else PASSWORD)] for i in range(16)])
        got = collections.Counter(r for _, _, r, _ in out)
        slowest = max(dt for *_, dt in out)
        FIGURES["slots exhausted: 16 concurrent attempts"] = dict(got)
        FIGURES["slots exhausted: 16 concurrent, slowest seconds"] = round(slowest, 2)
        assert got == {UNAVAILABLE: 16}, f"16 concurrent attempts with no slot free: all must be {UNAVAILABLE}, got {dict(got)}"
        assert slowest < 4, f"the slowest refusal took {slowest:.2f} s (bound: ~2 s slot wait)"
        assert row(c, email) == (0, False), f"nothing may be counted when nothing was recorded, row is {row(c, email)}"
    assert row(c, email) == (0, False), f"no attempt may be counted, row is {row(c, email)}"
    a = audit_since(c, mark)
    FIGURES["slots exhausted: judged passwords"] = a["sign_in_failed"]
    assert a["sign_in_failed"] == 0 and a["signed_in"] == 0, f"no password may have been judged, audit: {dict(a)}"
    # Slots free again: the same email signs in, and a wrong password is judged and counted.
    with c.connect(user="app_user") as conn:
        assert attempt(conn, email, PASSWORD) == "ok", "with slots free again the right password must sign in"
        assert attempt(conn, email, WRONG) == INVALID, "with slots free again a wrong password must be judged"
    assert row(c, email) == (1, False), f"after recovery exactly the one wrong attempt counts, row is {row(c, email)}"
    assert audit_since(c, mark, email_hash=h)["sign_in_failed"] == 1


def test_refresh_reuse_without_a_slot_is_refused_then_revoked(slots):
    c = slots
    email, uid = new_user(c)
    with c.connect(user="app_user", autocommit=True) as conn:
        first = sign_in(conn, email)
        second = conn.execute("SELECT auth.refresh(%s)", (first["refresh_token"],)).fetchone()[0]
    session = jwt.decode(first["access_token"], options={"verify_signature": False})["session_id"]

    def revoked():
        with c.connect(autocommit=True) as admin:
            return admin.execute("SELECT revoked_at IS NOT NULL, revoked_reason FROM auth.sessions WHERE id = %s",
                                 (session,)).fetchone()

    with slots_exhausted(c):
        with c.connect(user="app_user", autocommit=True) as conn:
            for i in range(2):
                got, dt = call(conn, "SELECT auth.refresh(%s)", (first["refresh_token"],))
                FIGURES[f"slots exhausted: seconds to 53000 (refresh-token reuse #{i + 1})"] = round(dt, 2)
                assert got == UNAVAILABLE, f"reuse #{i + 1} with no slot: expected {UNAVAILABLE} (refused either way), got {got}"
                assert dt < 3.5, f"the refusal took {dt:.2f} s"
                assert revoked() == (False, None), f"the revocation could not be recorded, yet the session reads {revoked()}"
    with c.connect(user="app_user", autocommit=True) as conn:
        assert call(conn, "SELECT auth.refresh(%s)", (first["refresh_token"],))[0] == REVOKED, \
            "with slots free again the reused token must revoke the session (TOKEN_REVOKED)"
        assert revoked() == (True, "refresh_token_reused"), f"the session must be revoked for reuse, reads {revoked()}"
        assert call(conn, "SELECT auth.refresh(%s)", (second["refresh_token"],))[0] == REVOKED, \
            "the live token of a revoked session must be refused"
    with c.connect(autocommit=True) as admin:
        n = admin.execute("SELECT count(*) FROM auth.audit_log WHERE event = 'refresh_token_reused' AND session_id = %s",
                          (session,)).fetchone()[0]
    assert n == 1, f"one refresh_token_reused audit row expected, got {n}"


# ============================================================================================
# 4. Cancelled callers: no worker left behind, no slot leaked, counted attempts stay counted.

def test_cancelled_sign_ins_leak_nothing(slots):
    """120 sign-ins cancelled at varied instants by the attacker himself (statement_timeout, or
    pg_cancel_backend from a second connection of the same role): the server survives, no worker
    stays running or registered, no slot leaks, judged guesses stay within the limit and were all
    counted before being judged, and sign-in keeps working."""
    c = slots
    free = workers_launched(c)
    assert free == 3, f"the slots cluster should have 3 free worker slots before the storm, a parallel plan got {free}"
    victim, _ = new_user(c)                         # app_user: the default limit of 5
    many, _ = new_user(c, user="app_many")          # limit 1000: every attempt reaches the worker
    spare, _ = new_user(c)
    mark = audit_mark(c)
    rng = random.Random(20261130)
    results = {victim: [], many: []}
    log_start = len(server_log(c))
    lost = None
    n = 0
    for user, email in (("app_user", victim), ("app_many", many)):
        # 30 with statement_timeout from 1 ms to 100 ms, then 30 cancelled by pg_cancel_backend
        # from the attacker's other connection 0-120 ms after the call.
        plan = [("statement_timeout", rng.randint(1, 100)) for _ in range(30)] + \
               [("pg_cancel_backend", rng.uniform(0.0, 0.12)) for _ in range(30)]
        with c.connect(user=user, autocommit=True) as conn, c.connect(user=user, autocommit=True) as killer:
            pid = conn.info.backend_pid

            def cancel():
                with contextlib.suppress(psycopg.Error):
                    killer.execute("SELECT pg_cancel_backend(%s)", (pid,))

            for how, value in plan:
                n += 1
                timer = None
                try:
                    if how == "statement_timeout":
                        conn.execute(f"SET statement_timeout = {value}")
                    else:
                        conn.execute("RESET statement_timeout")
                        timer = threading.Timer(value, cancel)
                        timer.start()
                    r = attempt(conn, email, WRONG)
                except psycopg.OperationalError as e:  # the server went away between two attempts
                    r = f"{LOST} {str(e).splitlines()[0]}"
                finally:
                    if timer:
                        timer.join()
                results[email].append(r)
                if r.startswith(LOST):
                    lost = (n, how, f"{value} ms" if how == "statement_timeout" else f"after {value * 1000:.0f} ms", r)
                    break
        if lost:
            break
    crashed = crashes(c, log_start)
    FIGURES["cancellation storm: attempts"] = n
    FIGURES["cancellation storm: server crash"] = (f"after {lost[0]} attempts ({lost[1]} {lost[2]})" if lost else "none") \
        + (f"; server log: {crashed[:3]}" if crashed else "")
    assert lost is None and not crashed, (
        f"a cancelled sign-in crashed the server (attempt {lost[0] if lost else n}"
        f"{(', ' + lost[1] + ' ' + lost[2]) if lost else ''}; the client got {lost[3] if lost else 'an answer'}); "
        f"server log: {crashed[:4]}. Reading: the caller's cancel terminates its bookkeeping worker (SIGTERM), "
        f"and the worker keeps PostgreSQL's default background-worker SIGTERM handler (bgworker_die), which raises "
        f"FATAL inside the signal handler; landing inside a critical section (the worker's commit) that FATAL "
        f"becomes PANIC, and the postmaster restarts the whole cluster, dropping every session")
    for email, label in ((victim, "limit 5"), (many, "limit 1000")):
        FIGURES[f"cancellation storm ({label}): outcomes"] = dict(collections.Counter(results[email]))
    everything = results[victim] + results[many]
    assert set(everything) <= {CANCELED, INVALID, LOCKED, UNAVAILABLE}, f"unexpected outcomes: {collections.Counter(everything)}"
    assert everything.count(CANCELED) >= 30, f"the storm should cancel most attempts, it cancelled {everything.count(CANCELED)} of 120"

    # No worker is left running or registered.
    wait_for("every bookkeeping worker to end", lambda: bookkeeping_backends(c) == 0, timeout=5)
    wait_for("every registered bookkeeping worker to be unregistered",
             lambda: server_log(c).count(REGISTERED) == server_log(c).count(UNREGISTERED), timeout=5)
    assert workers_launched(c) == free, "a worker slot leaked: a parallel plan gets fewer workers than before the storm"

    # Judged wrong guesses stay within the limit; every judged guess was counted first.
    count, locked = row(c, victim)
    judged = audit_since(c, mark, email_hash=email_hash(c, victim))["sign_in_failed"]
    FIGURES["cancellation storm (limit 5): failed_count, judged (audited)"] = [count, judged]
    assert results[victim].count(INVALID) <= count <= 5, \
        f"limit 5: failed_count {count} must be >= the {results[victim].count(INVALID)} INVALID_CREDENTIALS results and <= 5"
    assert judged <= 5, f"limit 5: {judged} wrong passwords were judged (sign_in_failed audit rows)"
    count, _ = row(c, many)
    judged = audit_since(c, mark, email_hash=email_hash(c, many))["sign_in_failed"]
    FIGURES["cancellation storm (limit 1000): failed_count, judged (audited)"] = [count, judged]
    assert count >= results[many].count(INVALID), \
        f"limit 1000: failed_count {count} < {results[many].count(INVALID)} INVALID_CREDENTIALS results: a judged guess was not counted"
    assert count >= judged, f"limit 1000: {judged} judged (audited) guesses but only {count} counted"

    # Sign-in still works, more times in a row than there are worker slots.
    with c.connect(user="app_user", autocommit=True) as conn:
        seq = [attempt(conn, spare, PASSWORD) for _ in range(10)]
    assert seq == ["ok"] * 10, f"10 sequential sign-ins after the storm (max_worker_processes = 4): {seq}"
    assert row(c, spare) == (0, False), "successful sign-ins must give their reservations back"
    assert bookkeeping_backends(c) == 0


# ============================================================================================
# 5. A bookkeeping row held by someone else: a bounded wait, then TEMPORARILY_UNAVAILABLE.

@pytest.mark.parametrize("hold", ["row FOR UPDATE", "uncommitted insert"])
def test_held_lockout_row_gives_a_bounded_unavailable(main, hold):
    email, _ = new_user(main)
    with main.connect(user="app_user") as conn:
        if hold == "row FOR UPDATE":
            assert attempt(conn, email, WRONG) == INVALID
        before = row(main, email)
        timeouts_before = server_log(main).count("canceling statement due to lock timeout")
        with main.connect() as admin:  # a transaction, held open
            if hold == "row FOR UPDATE":
                admin.execute(f"SELECT * FROM auth.failed_sign_ins WHERE email_hash = {HASH_SQL} FOR UPDATE", (email,)).fetchall()
            else:
                admin.execute(f"INSERT INTO auth.failed_sign_ins (email_hash, failed_count, last_failed_at) "
                              f"VALUES ({HASH_SQL}, 0, now())", (email,))
            for password in (WRONG, PASSWORD):
                got, dt = call(conn, "SELECT auth.sign_in(%s, %s)", (email, password))
                which = "right" if password == PASSWORD else "wrong"
                FIGURES[f"lockout row held ({hold}): seconds to 53000, {which} password"] = round(dt, 2)
                assert got == UNAVAILABLE, f"{which} password while an admin holds the row ({hold}): expected {UNAVAILABLE}, got {got}"
                assert dt < 10, f"the wait must be bounded (< 10 s), it took {dt:.2f} s"
            admin.rollback()
        assert row(main, email) == before, f"no attempt may be counted while the row was held: {before} -> {row(main, email)}"
        assert server_log(main).count("canceling statement due to lock timeout") >= timeouts_before + 2, \
            "the workers should have given up on their own lock_timeout (server log)"
        assert attempt(conn, email, WRONG) == INVALID, "once released, attempts are judged again"
        assert row(main, email) == (before[0] + 1, False), f"and counted: {row(main, email)}"


# ============================================================================================
# 6. Read-only transactions: READ_ONLY at once, no worker, nothing counted.

def read_only_calls(conn, email, tokens, explicit):
    """Every writing entry point, each in a read-only transaction. Returns [(what, outcome, seconds)]."""
    calls = [
        ("sign_in wrong", "SELECT auth.sign_in(%s, %s)", (email, WRONG)),
        ("sign_in right", "SELECT auth.sign_in(%s, %s)", (email, PASSWORD)),
        ("sign_in unknown", "SELECT auth.sign_in(%s, %s)", (ghost(), WRONG)),
        ("sign_up", "SELECT auth.sign_up(%s, %s)", (f"ro{uuid.uuid4().hex[:10]}@example.test", PASSWORD)),
        ("refresh", "SELECT auth.refresh(%s)", (tokens["refresh_token"],)),
        ("sign_out", "SELECT auth.sign_out()", ()),
    ]
    out = []
    for what, sql, params in calls:
        if explicit:
            conn.execute("BEGIN READ ONLY")
        else:
            conn.execute("BEGIN")
            assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "on", "the role's transactions should be read-only"
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (tokens["access_token"],))
        t0 = time.monotonic()
        try:
            conn.execute(sql, params).fetchall()
            r = "ok"
        except psycopg.Error as e:
            r = outcome(e)
        out.append((what, r, time.monotonic() - t0))
        conn.execute("ROLLBACK")
    return out


@pytest.mark.parametrize("how", ["BEGIN READ ONLY", "ALTER ROLE SET default_transaction_read_only"])
def test_read_only_transactions_are_refused_at_once(main, how):
    user = "app_user" if how == "BEGIN READ ONLY" else "app_ro"
    email, _ = new_user(main)
    with main.connect(user="app_user", autocommit=True) as conn:
        tokens = sign_in(conn, email)
        assert attempt(conn, email, WRONG) == INVALID
    before, mark, launched = row(main, email), audit_mark(main), registrations(main)
    with main.connect(user=user, autocommit=True) as conn:
        out = read_only_calls(conn, email, tokens, explicit=(how == "BEGIN READ ONLY"))
    FIGURES[f"read-only ({how}): slowest READ_ONLY seconds"] = round(max(dt for *_, dt in out), 4)
    for what, r, dt in out:
        assert r == READ_ONLY, f"{what} in a read-only transaction ({how}): expected {READ_ONLY}, got {r}"
        assert dt < 0.2, f"{what} in a read-only transaction took {dt:.3f} s (bound 0.2 s)"
    assert registrations(main) == launched, "a read-only call launched a bookkeeping worker"
    assert row(main, email) == before, f"a read-only call changed the count: {before} -> {row(main, email)}"
    assert audit_since(main, mark) == {}, f"a read-only call wrote audit rows: {dict(audit_since(main, mark))}"
    with main.connect(user="app_user", autocommit=True) as conn:
        r, _ = call(conn, "SELECT auth.refresh(%s)", (tokens["refresh_token"],))
        assert r == "ok", f"the session must be untouched by the read-only calls, refresh got {r}"


# ============================================================================================
# 7. Hot standby: READ_ONLY at once for every writer; reads work.

def test_hot_standby_refuses_writers_and_serves_readers(main, standby):
    email, uid = new_user(main)
    with main.connect(user="app_user", autocommit=True) as conn:
        tokens = sign_in(conn, email)
    with main.connect(autocommit=True) as admin:
        lsn = admin.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    with standby.connect(autocommit=True) as s:
        wait_for("the standby to replay the sign-in", lambda: s.execute(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(lsn),)).fetchone()[0], timeout=20)
        assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0], "the standby must be in recovery"
    launched = registrations(standby)

    with standby.connect(user="app_user", autocommit=True) as conn:
        seq = [call(conn, "SELECT auth.sign_in(%s, %s)", (email, WRONG if i % 2 else PASSWORD)) for i in range(30)]
        others = [
            ("sign_up", *call(conn, "SELECT auth.sign_up(%s, %s)", (f"sb{uuid.uuid4().hex[:8]}@example.test", PASSWORD))),
            ("refresh", *call(conn, "SELECT auth.refresh(%s)", (tokens["refresh_token"],))),
        ]
        conn.execute("BEGIN")
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (tokens["access_token"],))
        others.append(("sign_out", *call(conn, "SELECT auth.sign_out()")))
        conn.execute("ROLLBACK")
    FIGURES["standby: 30 sequential sign-ins, slowest READ_ONLY seconds"] = round(max(dt for _, dt in seq), 4)
    assert [r for r, _ in seq] == [READ_ONLY] * 30, f"30 sign-ins on the standby: all must be {READ_ONLY}, got {collections.Counter(r for r, _ in seq)}"
    assert max(dt for _, dt in seq) < 0.2, f"READ_ONLY on the standby must be immediate, slowest took {max(dt for _, dt in seq):.3f} s"
    for what, r, dt in others:
        assert r == READ_ONLY and dt < 0.2, f"{what} on the standby: expected {READ_ONLY} in < 0.2 s, got {r} in {dt:.3f} s"

    out = storm(standby, "app_user", [[(email if i % 2 else ghost(), WRONG)] for i in range(16)])
    slowest = max(dt for *_, dt in out)
    FIGURES["standby: 16 concurrent sign-ins, slowest READ_ONLY seconds"] = round(slowest, 4)
    assert [r for _, _, r, _ in out] == [READ_ONLY] * 16, f"16 concurrent sign-ins on the standby: {collections.Counter(r for _, _, r, _ in out)}"
    assert slowest < 0.5, f"READ_ONLY under 16 concurrent callers took up to {slowest:.3f} s"

    with standby.connect(autocommit=True) as s:
        stuck = s.execute("SELECT backend_type, state, wait_event_type, wait_event FROM pg_stat_activity "
                          "WHERE pid <> pg_backend_pid() AND (backend_type = 'auth_ext bookkeeping' "
                          "OR (backend_type = 'client backend' AND state <> 'idle') OR wait_event_type = 'Extension')").fetchall()
    assert stuck == [], f"backends or workers accumulated on the standby: {stuck}"
    assert registrations(standby) == launched, "the standby registered bookkeeping workers"

    # Reads work on the standby: tokens from the primary verify, auth.uid() binds, JWKS serves.
    with standby.connect(user="app_user") as conn:
        claims = conn.execute("SELECT auth.verify(%s)", (tokens["access_token"],)).fetchone()[0]
        assert claims["sub"] == uid, f"auth.verify on the standby returned {claims}"
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (tokens["access_token"],))
        assert str(conn.execute("SELECT auth.uid()").fetchone()[0]) == uid, "auth.uid() on the standby"
        conn.rollback()
        jwks = conn.execute("SELECT auth.jwks()").fetchone()[0]
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    keys = [k for k in jwks["keys"] if k.get("kid") == kid]
    assert keys, f"the standby's auth.jwks() lacks the signing key {kid}: {jwks}"
    decoded = jwt.decode(tokens["access_token"], jwt.PyJWK(keys[0]).key, algorithms=["ES256"], audience="authenticated")
    assert decoded["sub"] == uid, "the standby's JWKS verifies the primary's token with an independent library"

    # Revocation on a replica is as late as replication: a ban on the primary refuses the token
    # on the standby by the first statement after the ban is replayed (measured, not asserted
    # beyond a generous bound: it is replication lag, which the DBA's setup decides).
    with main.connect(autocommit=True) as m, standby.connect(user="app_user", autocommit=True) as s:
        s.execute("SELECT auth.verify(%s)", (tokens["access_token"],))

        def refused():
            try:
                s.execute("SELECT auth.verify(%s)", (tokens["access_token"],))
                return False
            except psycopg.errors.InvalidAuthorizationSpecification as e:
                assert "TOKEN_REVOKED" in str(e), e
                return True

        started = time.monotonic()
        m.execute("SELECT auth.ban_user(%s, now() + interval '1 hour')", (uid,))
        wait_for("the ban to reach the standby", refused, timeout=10, step=0.001)
        delay = time.monotonic() - started
        m.execute("SELECT auth.ban_user(%s, NULL)", (uid,))
    FIGURES["standby: a ban on the primary refuses the token on the standby after (seconds)"] = round(delay, 4)


# ============================================================================================
# 8. One normalisation: the database's lower(), for the key, the lookup and the unique index.

SPELLINGS = [
    # (label, the account's spelling, another spelling)
    ("ASCII mixed case", "MiXeD.{t}@Example.TEST", "mixed.{t}@example.test"),
    ("KELVIN SIGN", "\u212aELVIN.{t}@example.test", "kelvin.{t}@example.test"),
    ("dotted capital I", "\u0130NES.{t}@example.test", "ines.{t}@example.test"),
    ("capital sharp s", "STRA\u1e9eE.{t}@example.test", "stra\u00dfe.{t}@example.test"),
    ("sharp s vs ss", "STRA\u1e9eE2.{t}@example.test", "strasse2.{t}@example.test"),
]


@pytest.mark.parametrize("provider", ["libc C.UTF-8", "icu und"])
def test_lockout_key_is_the_databases_lower(main, provider):
    dbname = "fc_libc" if provider.startswith("libc") else "fc_icu"
    create = {"locale": "C.UTF-8"} if dbname == "fc_libc" else {"locale_provider": "icu", "icu_locale": "und", "locale": "C.UTF-8"}
    install(main, {"app_three": {**CHEAP, "auth.max_failed_sign_ins": "3"}}, dbname=dbname, **create)
    mapping = {}
    with main.connect(dbname=dbname, autocommit=True) as admin, \
            main.connect(user="app_three", dbname=dbname, autocommit=True) as conn:
        def key(e):
            return admin.execute(f"SELECT lower(%s), {HASH_SQL}", (e, e)).fetchone()

        for label, a, b in SPELLINGS:
            t = uuid.uuid4().hex[:8]
            a, b = a.format(t=t), b.format(t=t)
            (la, ha), (lb, hb) = key(a), key(b)
            same = la == lb
            mapping[label] = "same account" if same else "different accounts"
            assert ha == hashlib.sha256(la.encode()).hexdigest(), f"{label}: the server's hash is not sha256 of its lower()"
            rows_before = admin.execute("SELECT count(*) FROM auth.failed_sign_ins").fetchone()[0]
            uid_a = str(conn.execute("SELECT auth.sign_up(%s, %s)", (a, PASSWORD)).fetchone()[0])
            r, _ = call(conn, "SELECT auth.sign_up(%s, %s)", (b, PASSWORD))
            if same:
                assert r == "22023 INVALID_PARAMETER", f"{label}: {b!r} is the same account as {a!r} here, sign_up must refuse it, got {r}"
                uid_b = uid_a
            else:
                assert r == "ok", f"{label}: {b!r} is a different account from {a!r} here, sign_up got {r}"
                uid_b = admin.execute("SELECT id::text FROM auth.users WHERE email = %s", (b,)).fetchone()[0]
            assert sign_in(conn, b)["user"]["id"] == uid_b, f"{label}: signing in as {b!r} reached the wrong account"
            assert attempt(conn, a, WRONG) == INVALID and attempt(conn, b, WRONG) == INVALID
            got = dict(admin.execute("SELECT email_hash, failed_count FROM auth.failed_sign_ins WHERE email_hash IN (%s, %s)",
                                     (ha, hb)).fetchall())
            rows_after = admin.execute("SELECT count(*) FROM auth.failed_sign_ins").fetchone()[0]
            if same:
                assert got == {ha: 2}, f"{label}: both spellings must share one counter keyed by the server's hash, rows: {got}"
                assert rows_after == rows_before + 1, f"{label}: one lockout row expected, {rows_after - rows_before} appeared"
                assert attempt(conn, b, WRONG) == INVALID, f"{label}: third wrong guess"
                for e in (a, b):
                    assert attempt(conn, e, PASSWORD) == LOCKED, f"{label}: {e!r} must be locked after 3 guesses over both spellings"
            else:
                assert got == {ha: 1, hb: 1}, f"{label}: each spelling must have its own counter keyed by the server's hash, rows: {got}"
                assert rows_after == rows_before + 2, f"{label}: two lockout rows expected, {rows_after - rows_before} appeared"
                assert attempt(conn, a, WRONG) == INVALID and attempt(conn, a, WRONG) == INVALID
                assert attempt(conn, a, PASSWORD) == LOCKED, f"{label}: {a!r} must be locked after 3 guesses"
                assert sign_in(conn, b)["user"]["id"] == uid_b, f"{label}: {b!r} must not share {a!r}'s lock"
    FIGURES[f"email spellings ({provider})"] = mapping
    assert mapping["ASCII mixed case"] == "same account" and mapping["sharp s vs ss"] == "different accounts"
    non_ascii = [v for k, v in mapping.items() if k != "ASCII mixed case"]
    assert "same account" in non_ascii and "different accounts" in non_ascii, \
        f"the non-ASCII spellings should cover both outcomes to prove anything: {mapping}"


# ============================================================================================
# 9. No signing key: NOT_CONFIGURED, nothing judged or counted. No message tells accounts apart.

def test_not_configured_judges_and_counts_nothing(main):
    install(main, {}, dbname="fc_nokey", signing_key=False)
    email, _ = new_user(main, dbname="fc_nokey")
    mark, launched = audit_mark(main, dbname="fc_nokey"), registrations(main)
    with main.connect(user="app_user", dbname="fc_nokey", autocommit=True) as conn:
        got = [call(conn, "SELECT auth.sign_in(%s, %s)", (e, p)) for e, p in
               [(email, WRONG)] * 4 + [(email, PASSWORD)] * 2 + [(ghost(), WRONG)]]
        assert [r for r, _ in got] == [NOT_CONFIGURED] * 7, f"sign-in without a signing key: {got}"
        assert registrations(main) == launched, "NOT_CONFIGURED must come before any bookkeeping worker"
        assert row(main, email, dbname="fc_nokey") == (0, False), "attempts refused as NOT_CONFIGURED must not count"
        assert audit_since(main, mark, dbname="fc_nokey") == {}, "attempts refused as NOT_CONFIGURED must not be audited"
        with main.connect(dbname="fc_nokey", autocommit=True) as admin:
            admin.execute("SELECT auth.generate_signing_key()")
        # Seven refused attempts would have locked the email had they counted.
        assert attempt(conn, email, WRONG) == INVALID, "with a key, a wrong password is judged"
        assert row(main, email, dbname="fc_nokey") == (1, False), f"only the judged attempt counts: {row(main, email, dbname='fc_nokey')}"
        assert attempt(conn, email, PASSWORD) == "ok", "with a key, the right password signs in"


def messages_of(c, email, password, attempts):
    """Everything a client with client_min_messages = debug5 receives during `attempts` sign-ins
    on a fresh connection: notices of every level and the errors, field by field."""
    got = []
    with c.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SET client_min_messages = debug5")
        conn.add_notice_handler(lambda d: got.append(("notice", d.severity, d.sqlstate, d.message_primary,
                                                      d.message_detail, d.message_hint, d.context)))
        for _ in range(attempts):
            try:
                conn.execute("SELECT auth.sign_in(%s, %s)", (email, password))
                got.append(("ok",))
            except psycopg.Error as e:
                d = e.diag
                detail = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+\d\d", "<time>", d.message_detail or "")
                got.append(("error", d.severity, d.sqlstate, d.message_primary, detail, d.message_hint, d.context))
    return got


def test_no_message_tells_an_account_from_an_unknown_email(main):
    email, uid = new_user(main)
    unknown = ghost()
    real = messages_of(main, email, WRONG, 6)
    fake = messages_of(main, unknown, WRONG, 6)
    FIGURES["client messages at debug5 per 6 wrong sign-ins"] = len(real)
    assert real == fake, f"a client can tell a real account from an unknown email:\nreal:    {real}\nunknown: {fake}"
    assert [m[2] for m in real if m[0] == "error"] == ["28P01"] * 5 + ["28000"], f"5 judged, then locked: {real}"
    text = json.dumps(real)
    for secret in (uid, email_hash(main, email), "dummy"):
        assert secret not in text, f"a client-visible message mentions {secret!r}: {text}"


# ============================================================================================
# Whatever happened above, no cluster of this module crashed.

@pytest.mark.parametrize("name", ["main", "slots", "standby"])
def test_no_cluster_crashed(request, name):
    c = request.getfixturevalue(name)
    crashed = crashes(c)
    assert crashed == [], f"the {name} cluster crashed during this module (server log): {crashed[:6]}"
