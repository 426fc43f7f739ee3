"""Citus scale-out fixtures (docs/citus.md, DESIGN.md §8 "Scale-out keeps the promises").

One session-scoped Citus 13 cluster on loopback: a coordinator (in the metadata through
`citus_set_coordinator_host`, so it holds a copy of every reference table, but no shards of the
distributed tables) and two workers, each a throwaway PostgreSQL 15 cluster started by
`scripts/cluster.sh` (owned by the OS user postgres, trust authentication on loopback, a free
port, `max_prepared_transactions` > 0 for the two-phase commits of reference-table writes).
They are stopped and deleted at the end of the session, also when setup or a test fails.

On the coordinator: `CREATE EXTENSION auth_ext` (Citus creates it on the workers), then
`auth.distribute_trust()`, so every key, user and session written afterwards lives in Citus
reference tables. Test data:
- `notes(owner uuid, body text)`, distributed by `owner` (4 shards); ALICE's rows are on a
  shard of worker 1 and BOB's on a shard of worker 2 (the fixture picks the ids so).
- `notes2(id int, owner uuid, body text)`, distributed by `id` (4 shards); every user's rows are
  spread over shards of BOTH workers (the fixture picks the ids from a pool per worker).
- Both with RLS enabled and FORCE'd, `POLICY p USING (owner = auth.uid())`, SELECT granted to
  the non-superuser login role `app` that all requests use.
- Keys: an ES256 and an HS256 key imported with `auth.add_key(jwk, issuer, ARRAY[audience])`,
  tokens signed by PyJWT (an independent implementation); the issuer is declared an account
  issuer (`auth.add_account_issuer`), so a token's `sub` is this database's user id
  (docs/keys.md, "Identity: issuer and subject"). And the extension's own ES256 signing key
  (`auth.generate_signing_key`), for `auth.sign_up` / `auth.sign_in` / `auth.refresh` tokens.

Ground truth for "which worker holds a row" is read from the shard tables on each worker
directly (`CitusCluster.rows_on_workers`), never through the coordinator.
"""
import itertools
import json
import os
import pathlib
import subprocess
import threading
import time
import uuid

import jwt
import psycopg
import pytest
from psycopg import sql
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ROOT = pathlib.Path(__file__).resolve().parents[2]
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
DBNAME = "citus_e2e"
ISSUER = "https://citus.auth-ext.test"
AUDIENCE = "authenticated"
PASSWORD = "long enough pw"

# Lines printed in the terminal summary (timings, measured delays).
REPORT = []
_STARTED = time.monotonic()


def report(line):
    REPORT.append(line)


def pytest_terminal_summary(terminalreporter):
    for line in REPORT:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"citus tests: total wall time {time.monotonic() - _STARTED:.1f} s")


def _run(*args):
    env = dict(os.environ, PG_BIN=PG_BIN)
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, env=env)


class Signer:
    """Keys whose public half (or secret) the database trusts, and PyJWT signing with them."""

    def __init__(self):
        self.private = {"ES256": ec.generate_private_key(ec.SECP256R1()), "HS256": os.urandom(32)}
        self.kids = {alg: f"citus-{alg.lower()}-{uuid.uuid4().hex[:8]}" for alg in self.private}

    def public_jwk(self, alg):
        if alg == "HS256":
            return {"kty": "oct", "alg": "HS256", "kid": self.kids[alg],
                    "k": jwt.utils.base64url_encode(self.private[alg]).decode()}
        jwk = json.loads(ECAlgorithm.to_jwk(self.private[alg].public_key()))
        jwk.update({"kid": self.kids[alg], "alg": alg})
        return jwk

    def token(self, sub, alg="ES256", ttl=3600, **claims):
        now = int(time.time())
        body = {"sub": sub, "role": "authenticated", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl}
        body.update(claims)
        return jwt.encode(body, self.private[alg], algorithm=alg, headers={"kid": self.kids[alg]})


class Node:
    def __init__(self, name, directory, port):
        self.name, self.dir, self.port = name, directory, port


class CitusCluster:
    """The coordinator, two workers, the test data and helpers that tests share (the test
    module reaches everything through this fixture object, never by importing conftest)."""

    issuer = ISSUER
    audience = AUDIENCE
    Signer = Signer
    report = staticmethod(report)

    def __init__(self, coordinator, workers):
        self.coordinator = coordinator
        self.workers = workers
        self.signer = None
        # Expected rows per user id: notes → {(owner, body)}, notes2 → {(id, owner, body)}.
        self.notes = {}
        self.notes2 = {}
        self._lock = threading.Lock()
        self._id_pools = {}  # worker port → iterator of notes2 ids whose shard is on it
        self._emails = itertools.count(1)

    # -- connections ---------------------------------------------------------------------
    def connect(self, node=None, user="postgres", autocommit=True, dbname=DBNAME):
        node = node or self.coordinator
        return psycopg.connect(host="127.0.0.1", port=node.port, dbname=dbname, user=user,
                               autocommit=autocommit, connect_timeout=10)

    def admin(self):
        """A superuser connection to the coordinator (autocommit)."""
        return self.connect()

    def app(self):
        """A connection of the non-superuser role `app` to the coordinator (autocommit, so
        every transaction block in the tests is an explicit BEGIN … COMMIT)."""
        return self.connect(user="app")

    def worker_port(self, port):
        return next(w for w in self.workers if w.port == port)

    # -- data ----------------------------------------------------------------------------
    def take_ids(self, per_worker=2):
        """notes2 ids whose shards are on each worker, `per_worker` of each (never reused)."""
        with self._lock:
            return [next(self._id_pools[w.port]) for w in self.workers for _ in range(per_worker)]

    def owner_on(self, worker, table="notes"):
        """A fresh uuid whose `notes` shard is on `worker`."""
        with self.admin() as conn:
            for _ in range(200):
                u = str(uuid.uuid4())
                port = conn.execute(
                    "SELECT p.nodeport FROM pg_dist_shard_placement p "
                    "WHERE p.shardid = get_shard_id_for_distribution_column(%s::regclass, %s::uuid)",
                    (table, u)).fetchone()[0]
                if port == worker.port:
                    return u
        raise AssertionError("no uuid found whose shard is on the worker")

    def seed(self, uid, n_notes=2, per_worker=2, tag=None):
        """Rows for `uid`: `n_notes` in notes (one shard), `per_worker` notes2 rows on shards of
        each worker. Returns (notes set, notes2 set)."""
        tag = tag or uid[:8]
        notes = {(uid, f"{tag}-n{i}") for i in range(n_notes)}
        notes2 = {(i, uid, f"{tag}-m{i}") for i in self.take_ids(per_worker)}
        with self.admin() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO notes (owner, body) VALUES (%s, %s)", sorted(notes))
            cur.executemany("INSERT INTO notes2 (id, owner, body) VALUES (%s, %s, %s)", sorted(notes2))
        with self._lock:
            self.notes.setdefault(uid, set()).update(notes)
            self.notes2.setdefault(uid, set()).update(notes2)
        return notes, notes2

    def imported_user(self, tag=None, alg="ES256", owner=None):
        """An account of the imported issuer: a row in auth.users (so it can be banned or
        deleted), rows in both tables, and a PyJWT-signed token. Returns (uid, token)."""
        uid = owner or str(uuid.uuid4())
        with self.admin() as conn:
            conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)",
                         (uid, f"imp{next(self._emails)}-{uid[:8]}@citus.test"))
        self.seed(uid, tag=tag)
        return uid, self.signer.token(uid, alg=alg)

    def own_user(self, tag=None):
        """An account made by auth.sign_up and signed in by auth.sign_in (the extension's own
        tokens), with rows in both tables. Returns (uid, email, token response)."""
        email = f"own{next(self._emails)}-{uuid.uuid4().hex[:6]}@citus.test"
        with self.app() as conn:
            uid = str(conn.execute("SELECT auth.sign_up(%s, %s)", (email, PASSWORD)).fetchone()[0])
            self.seed(uid, tag=tag)
            # Email confirmation is on (the default): the code sign-up queued in the outbox
            # (one_time_tokens is a reference table here) confirms the email.
            with self.admin() as admin:
                code = admin.execute("SELECT code FROM auth.outbox WHERE recipient = %s AND kind = 'signup'",
                                     (email,)).fetchone()[0]
            conn.execute("SELECT auth.verify_otp(%s, %s, 'signup')", (email, code))
            r = conn.execute("SELECT auth.sign_in(%s, %s)", (email, PASSWORD)).fetchone()[0]
        return uid, email, r

    def shards(self, table):
        """[(shard_name, worker port)] of a distributed table, from the coordinator's metadata."""
        with self.admin() as conn:
            return conn.execute(
                "SELECT shard_name, nodeport FROM citus_shards WHERE table_name = %s::regclass "
                "ORDER BY shardid", (table,)).fetchall()

    def rows_on_workers(self, table):
        """{worker port: set of rows} read from the shard tables on each worker directly, as a
        superuser (no RLS). notes → (owner, body), notes2 → (id, owner, body)."""
        cols = "owner::text, body" if table == "notes" else "id, owner::text, body"
        out = {w.port: set() for w in self.workers}
        for shard, port in self.shards(table):
            with self.connect(self.worker_port(port)) as conn:
                out[port] |= set(conn.execute(
                    sql.SQL("SELECT {} FROM public.{}").format(sql.SQL(cols), sql.Identifier(shard))).fetchall())
        return out


def _start(name, directory):
    port = int(_run(ROOT / "scripts/cluster.sh", "start", directory,
                    "shared_preload_libraries = 'citus'",
                    "max_prepared_transactions = 50",
                    "max_connections = 200",
                    "citus.shard_count = 4").stdout.strip())
    return Node(name, directory, port)


@pytest.fixture(scope="session")
def citus():
    base = f"/tmp/auth_ext_citus_{os.getpid()}"
    started = []
    t0 = time.monotonic()
    try:
        # One at a time: scripts/cluster.sh picks a free port by binding and closing it.
        for name in ("coordinator", "worker1", "worker2"):
            started.append(_start(name, f"{base}_{name}"))
        coord, w1, w2 = started
        cc = CitusCluster(coord, [w1, w2])
        for node in started:
            with cc.connect(node, dbname="postgres") as conn:
                conn.execute(f"CREATE DATABASE {DBNAME}")
            with cc.connect(node) as conn:
                conn.execute("CREATE EXTENSION citus")
        with cc.admin() as conn:
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (coord.port,))
            for w in (w1, w2):
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (w.port,))
            conn.execute("CREATE EXTENSION auth_ext")
            conn.execute("SELECT auth.distribute_trust()")
            # Cheap password hashes; a rotated refresh token presented again is reuse at once.
            conn.execute("CREATE ROLE app LOGIN")
            for guc, value in (("auth.argon2_memory_kib", "1024"), ("auth.argon2_iterations", "1"),
                               ("auth.refresh_reuse_interval_seconds", "0")):
                conn.execute(f"ALTER ROLE app SET {guc} = {value}")
            conn.execute("SELECT auth.generate_signing_key('ES256')")
            signer = Signer()
            for alg in signer.private:
                conn.execute("SELECT auth.add_key(%s::jsonb, %s, ARRAY[%s])",
                             (json.dumps(signer.public_jwk(alg)), ISSUER, AUDIENCE))
            conn.execute("SELECT auth.add_account_issuer(%s)", (ISSUER,))
            cc.signer = signer
            for table, key in (("notes", "owner uuid, body text"), ("notes2", "id int, owner uuid, body text")):
                conn.execute(f"CREATE TABLE {table} ({key})")
                conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
                conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
                conn.execute(f"CREATE POLICY p ON {table} USING (owner = auth.uid())")
                conn.execute(f"GRANT SELECT ON {table} TO app")
            conn.execute("SELECT create_distributed_table('notes', 'owner', shard_count => 4)")
            conn.execute("SELECT create_distributed_table('notes2', 'id', shard_count => 4)")
            # A pool of notes2 ids per worker: the worker holding each id's shard.
            pools = {w.port: [] for w in (w1, w2)}
            for i, port in conn.execute(
                    "SELECT i, p.nodeport FROM generate_series(1, 4000) i "
                    "JOIN pg_dist_shard_placement p "
                    "  ON p.shardid = get_shard_id_for_distribution_column('notes2', i) ORDER BY i"):
                pools[port].append(i)
            assert all(pools.values()), f"notes2 shards are not on both workers: { {k: len(v) for k, v in pools.items()} }"
            cc._id_pools = {port: iter(ids) for port, ids in pools.items()}
        report(f"citus tests: cluster setup (3 nodes, extensions, trust, data) took {time.monotonic() - t0:.1f} s")
        yield cc
    finally:
        for node in reversed(started):
            try:
                _run(ROOT / "scripts/cluster.sh", "stop", node.dir)
            except subprocess.CalledProcessError as e:  # keep stopping the others
                print(f"stopping {node.name} failed: {e.stderr}")


@pytest.fixture(scope="session")
def people(citus):
    """ALICE (notes shard on worker 1) and BOB (notes shard on worker 2), accounts of the imported
    issuer with ES256 tokens, and one row owned by nobody, in each table."""
    w1, w2 = citus.workers
    alice, alice_token = citus.imported_user("alice", owner=citus.owner_on(w1))
    bob, bob_token = citus.imported_user("bob", owner=citus.owner_on(w2))
    nobody = str(uuid.uuid4())
    citus.seed(nobody, n_notes=1, per_worker=1, tag="nobody")
    return {"alice": (alice, alice_token), "bob": (bob, bob_token), "nobody": nobody}
