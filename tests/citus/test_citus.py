"""auth_ext on Citus 13: a coordinator and two workers (fixtures and data set: conftest.py).

What the suite proves, test by test (the numbers follow the brief of issue 12):
- setup: `auth.distribute_trust()` made the seven trust tables reference tables with a copy on
  every node, is idempotent and refuses without Citus; every shard of the test tables enforces
  the policy on its worker; each user's rows are spread over both workers.
- 1: PyJWT tokens of an imported key, bound with `auth.bind($1)`, give exactly their owner's
  rows on multi-shard and router queries, served by both workers.
- 2: the extension's own tokens (sign_up, sign_in, refresh) work the same; a reused refresh
  token revokes the session on the workers too, also inside a transaction bound before.
- 3: key retirement, bans, user deletion, session revocation and sign-out made on the
  coordinator reach the workers: in a transaction bound before the change, the very next query
  is refused by a worker; a new transaction is refused by `auth.bind` on the coordinator and,
  when the coordinator's check is bypassed by hand, by the worker's own copy. The delay from
  the COMMIT of a change to the first refused query is printed.
- 4: the identity ends with the transaction on Citus's cached worker connections and with
  ROLLBACK TO SAVEPOINT.
- 5: every known way of "binding" that does not reach the workers is an error
  (IDENTITY_NOT_PROPAGATED, SQLSTATE 55000), never 0 rows.
- 6: rebinding inside a transaction switches the rows; prepared statements (generic plans)
  stay correct across binds.
- 7: Citus refuses policies with subqueries; the documented form `owner = auth.uid()` works.
- 8: 16 concurrent connections, one user each, never see another user's rows.
- The token travels as a bind parameter, never in the SQL text.
- A one-time code guessed past its limit is voided (expired by the bookkeeping worker) and
  `auth.purge_expired` deletes it, on a reference table.

Each assertion compares exact row sets with the rows the fixtures inserted (kept in
`citus.notes` / `citus.notes2`); every refusal is checked for its SQLSTATE, its code and the
node that raised it (a worker's errors carry "while executing command on host:port").
"""
import pathlib
import re
import threading
import time
import uuid

import jwt
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from conftest import PASSWORD


NOTES = "SELECT owner::text, body FROM notes"
NOTES2 = "SELECT id, owner::text, body FROM notes2"


# -- helpers ------------------------------------------------------------------------------
def bind(conn, token, prepare=None):
    """The application's way to bind: the token is a bind parameter ($1), never SQL text."""
    return conn.execute("SELECT auth.bind(%s)", (token,), prepare=prepare).fetchone()[0]


def rows(conn, query, params=(), prepare=None):
    """All rows, sorted (a duplicated row would show up, a set would hide it)."""
    return sorted(conn.execute(query, params, prepare=prepare).fetchall())


def refusal(conn, query, params=()):
    """Runs a query that must fail; returns (sqlstate, code, port of the worker that raised it
    or None when the coordinator itself did)."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params).fetchall()
    e = info.value
    # DESIGN.md §8 "Clients see codes, not internals": no token (or any JWT) in what is relayed.
    said = " ".join(filter(None, (e.diag.message_primary, e.diag.message_detail, e.diag.message_hint, e.diag.context)))
    assert not re.search(r"eyJ[\w-]{8,}", said), said
    code = (e.diag.message_primary or "").split(":")[0]
    m = re.search(r"while executing command on [^:\s]+:(\d+)", e.diag.context or "")
    return e.sqlstate, code, int(m.group(1)) if m else None


def assert_worker_refused(citus, got, sqlstate, code):
    """A refusal raised on one of the workers (relayed by the coordinator)."""
    assert got[:2] == (sqlstate, code), got
    assert got[2] in {w.port for w in citus.workers}, f"not raised by a worker: {got}"


def assert_coordinator_refused(got, sqlstate, code):
    assert got == (sqlstate, code, None), got


def own_rows(citus, uid):
    return sorted(citus.notes[uid]), sorted(citus.notes2[uid])


def assert_sees_exactly(citus, conn, uid):
    """In a bound transaction: both tables, multi-shard, give exactly uid's rows."""
    n, n2 = own_rows(citus, uid)
    assert rows(conn, NOTES) == n
    assert rows(conn, NOTES2) == n2


def hand_propagated(conn, token):
    """Bypasses the coordinator's verification: forwards the token to the workers with the
    same SET LOCAL statements auth.bind issues, without checking it on the coordinator. Only
    the workers' own copy of the trust tables can refuse it then. (The token is in the SQL
    text here on purpose, as a literal, because SET takes no parameters.)"""
    conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")
    conn.execute("SET LOCAL citus.select_opens_transaction_block = on")
    conn.execute(sql.SQL("SET LOCAL auth.jwt = {}").format(sql.Literal(token)))
    conn.execute("SET LOCAL auth.bound = on")


def session_of(access_token):
    """The session an access token of ours belongs to (its session_id claim)."""
    return jwt.decode(access_token, options={"verify_signature": False})["session_id"]


# -- setup ----------------------------------------------------------------------------------
# The tables token checks read, and those whose foreign keys tie them to that group.
TRUST_TABLES = {"auth.key_store", "auth.account_issuers", "auth.users", "auth.identities",
                "auth.sessions", "auth.signing_keys", "auth.refresh_tokens", "auth.one_time_tokens",
                "auth.mfa_factors", "auth.mfa_challenges", "auth.mfa_amr_claims"}


def test_trust_tables_are_reference_tables_on_every_node(citus, people):
    """distribute_trust() (run by the fixture) made the seven trust tables Citus reference
    tables with a placement on each of the three nodes; a second call changes nothing; without
    Citus it raises NOT_CONFIGURED. Every shard of notes/notes2 on the workers has RLS enabled,
    FORCE'd and policy p; each user's notes2 rows are on both workers."""
    with citus.admin() as conn:
        ref = {r for (r,) in conn.execute(
            "SELECT logicalrelid::regclass::text FROM pg_dist_partition "
            "WHERE partmethod = 'n' AND repmodel = 't' AND logicalrelid::regclass::text LIKE 'auth.%'")}
        assert ref == TRUST_TABLES
        placements = dict(conn.execute(
            "SELECT s.logicalrelid::regclass::text, array_agg(DISTINCT p.nodeport ORDER BY p.nodeport) "
            "FROM pg_dist_shard s JOIN pg_dist_shard_placement p USING (shardid) "
            "WHERE s.logicalrelid::regclass::text LIKE 'auth.%' GROUP BY 1").fetchall())
        nodes = sorted([citus.coordinator.port] + [w.port for w in citus.workers])
        assert placements == {t: nodes for t in TRUST_TABLES}
        assert conn.execute("SELECT auth.distribute_trust()").fetchone()[0] == \
            "the trust tables are already reference tables"
        # The keys added after distribute_trust reached every node's copy.
        # (citus_shards does not list extension-owned tables: read the metadata directly.)
        shard_ports = conn.execute(
            "SELECT shard_name(s.logicalrelid, s.shardid), p.nodeport FROM pg_dist_shard s "
            "JOIN pg_dist_shard_placement p USING (shardid) "
            "WHERE s.logicalrelid = 'auth.key_store'::regclass").fetchall()
        assert sorted(port for _, port in shard_ports) == nodes
        for shard, port in shard_ports:
            with citus.connect(citus.worker_port(port) if port != citus.coordinator.port else citus.coordinator) as nc:
                kids = {k for (k,) in nc.execute(
                    sql.SQL("SELECT kid FROM auth.{}").format(sql.Identifier(shard.split(".")[-1])))}
                assert set(citus.signer.kids.values()) <= kids, (port, kids)
        # Without Citus: NOT_CONFIGURED (a database of the coordinator without the extension).
        with citus.connect(dbname="postgres") as pg:
            pg.execute("DROP DATABASE IF EXISTS no_citus")
            pg.execute("CREATE DATABASE no_citus")
        try:
            with citus.connect(dbname="no_citus") as nc:
                nc.execute("CREATE EXTENSION auth_ext")
                assert refusal(nc, "SELECT auth.distribute_trust()") == ("55000", "NOT_CONFIGURED", None)
        finally:
            with citus.connect(dbname="postgres") as pg:
                pg.execute("DROP DATABASE no_citus")
    # RLS on every shard, on the workers.
    for table in ("notes", "notes2"):
        shards = citus.shards(table)
        assert {port for _, port in shards} == {w.port for w in citus.workers}
        for shard, port in shards:
            with citus.connect(citus.worker_port(port)) as wc:
                wc.execute("SET citus.override_table_visibility = off")  # shards are hidden otherwise
                got = wc.execute(
                    "SELECT c.relrowsecurity, c.relforcerowsecurity, "
                    "       (SELECT array_agg(pg_get_expr(p.polqual, p.polrelid)) FROM pg_policy p WHERE p.polrelid = c.oid) "
                    "FROM pg_class c WHERE c.oid = %s::regclass", (f"public.{shard}",)).fetchone()
                assert got == (True, True, ["(owner = auth.uid())"]), (shard, got)
    # The data set: ALICE's notes on worker 1, BOB's on worker 2; notes2 rows on both.
    w1, w2 = citus.workers
    alice, bob = people["alice"][0], people["bob"][0]
    on = citus.rows_on_workers("notes")
    assert citus.notes[alice] <= on[w1.port] and citus.notes[bob] <= on[w2.port]
    on2 = citus.rows_on_workers("notes2")
    for uid in (alice, bob):
        assert citus.notes2[uid] <= on2[w1.port] | on2[w2.port]
        assert citus.notes2[uid] & on2[w1.port] and citus.notes2[uid] & on2[w2.port]


# -- 1 --------------------------------------------------------------------------------------
def test_1_imported_tokens_see_exactly_their_rows_from_both_workers(citus, people):
    """Tokens signed by PyJWT with the imported ES256 (and HS256) key: in a bound transaction
    multi-shard queries on both tables return exactly the token's user's rows (which the data
    set puts on both workers), a router query on the distribution column returns them too, and
    another user's owner gives 0 rows."""
    alice, alice_token = people["alice"]
    bob, bob_token = people["bob"]
    nobody = people["nobody"]
    on2 = citus.rows_on_workers("notes2")
    for uid, token, other in ((alice, alice_token, bob), (bob, bob_token, alice),
                              (alice, citus.signer.token(alice, alg="HS256"), bob)):
        with citus.app() as conn:
            conn.execute("BEGIN")
            claims = bind(conn, token)
            assert claims["sub"] == uid and claims["iss"] == citus.issuer
            n, n2 = own_rows(citus, uid)
            assert rows(conn, NOTES) == n
            got2 = rows(conn, NOTES2)
            assert got2 == n2
            # The rows came from both workers, two from each (where the data set put them).
            per_worker = {w.port: len(set(got2) & on2[w.port]) for w in citus.workers}
            assert per_worker == {w.port: 2 for w in citus.workers}, per_worker
            # Router query on the distribution column: one task, own rows; another owner: none.
            plan = "\n".join(r for (r,) in conn.execute(
                "EXPLAIN (COSTS OFF) SELECT owner, body FROM notes WHERE owner = %s", (uid,)))
            assert "Task Count: 1" in plan, plan
            assert rows(conn, NOTES + " WHERE owner = %s", (uid,)) == n
            assert rows(conn, NOTES + " WHERE owner = %s", (other,)) == []
            assert rows(conn, NOTES + " WHERE owner = %s", (nobody,)) == []
            assert rows(conn, NOTES2 + " WHERE owner = %s", (other,)) == []
            assert rows(conn, NOTES2 + " WHERE id = ANY(%s)",
                        ([i for (i, _, _) in citus.notes2[other]],)) == []
            conn.execute("COMMIT")


def test_1_bad_tokens_are_refused_on_the_coordinator_and_on_the_workers(citus, people):
    """auth.bind refuses an expired, a forged (unknown key) and a tampered token on the
    coordinator with their codes. Forwarded by hand with the marker set (bypassing the
    coordinator), each is refused by the worker too: the marker grants nothing, every worker
    verifies the token against its own copy of the keys."""
    alice, good = people["alice"]
    stranger = citus.Signer()  # same kid naming scheme, a key the database never saw
    stranger.kids = dict(citus.signer.kids)
    head, body, sig = good.split(".")
    cases = [(citus.signer.token(alice, ttl=-3600), "TOKEN_EXPIRED"),
             (stranger.token(alice), "INVALID_TOKEN"),
             (f"{head}.{body}.{sig[:-4]}AAAA", "INVALID_TOKEN")]
    with citus.app() as conn:
        for token, code in cases:
            conn.execute("BEGIN")
            assert_coordinator_refused(refusal(conn, "SELECT auth.bind(%s)", (token,)), "28000", code)
            conn.execute("ROLLBACK")
            conn.execute("BEGIN")
            hand_propagated(conn, token)
            assert_worker_refused(citus, refusal(conn, NOTES2), "28000", code)
            conn.execute("ROLLBACK")
        # Control: the good token, forwarded the same way, is accepted by the workers.
        conn.execute("BEGIN")
        hand_propagated(conn, good)
        assert_sees_exactly(citus, conn, alice)
        conn.execute("COMMIT")


def test_token_is_a_bind_parameter_never_sql_text(citus, people):
    """auth.bind receives the token as a parameter: the server sees `SELECT auth.bind($1)`,
    and no statement in this file builds an auth.bind call with an f-string."""
    _, token = people["alice"]
    with citus.app() as conn, citus.admin() as admin:
        conn.execute("BEGIN")
        bind(conn, token)
        pid = conn.info.backend_pid
        text = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]
        assert text == "SELECT auth.bind($1)" and token not in text
        conn.execute("COMMIT")
    source = pathlib.Path(__file__).read_text()
    assert not re.search(r"""f["'][^"'\n]*auth\.bind""", source)


# -- 2 --------------------------------------------------------------------------------------
def test_2_own_tokens_and_refresh(citus):
    """auth.sign_up + auth.sign_in tokens (the extension's own ES256 key) give exactly the
    user's rows on the workers, router query included. auth.refresh rotates the refresh token,
    and both the new and the old access token (same session) still work."""
    uid, _, r1 = citus.own_user("own")
    with citus.app() as conn:
        conn.execute("BEGIN")
        assert bind(conn, r1["access_token"])["sub"] == uid
        assert_sees_exactly(citus, conn, uid)
        assert rows(conn, NOTES + " WHERE owner = %s", (uid,)) == sorted(citus.notes[uid])
        conn.execute("COMMIT")
        r2 = conn.execute("SELECT auth.refresh(%s)", (r1["refresh_token"],)).fetchone()[0]
        assert r2["refresh_token"] != r1["refresh_token"] and r2["access_token"] != r1["access_token"]
        for token in (r2["access_token"], r1["access_token"]):
            conn.execute("BEGIN")
            assert bind(conn, token)["sub"] == uid
            assert_sees_exactly(citus, conn, uid)
            conn.execute("COMMIT")


def test_2_reused_refresh_token_revokes_the_session_on_workers(citus):
    """Presenting a spent refresh token again is reuse (auth.refresh_reuse_interval_seconds is
    0 for role app): the call fails with TOKEN_REVOKED and the session ends everywhere: a
    transaction bound before the reuse is refused by a worker at its next query, new binds of
    the old and the new access token are refused on the coordinator, the workers' own copy
    refuses them too, and the successor refresh token is dead."""
    uid, _, r1 = citus.own_user("reuse")
    with citus.app() as conn:
        r2 = conn.execute("SELECT auth.refresh(%s)", (r1["refresh_token"],)).fetchone()[0]
    with citus.app() as open_txn, citus.app() as other:
        open_txn.execute("BEGIN")
        bind(open_txn, r2["access_token"])
        assert_sees_exactly(citus, open_txn, uid)
        # Reuse of the rotated refresh token: refused, and the session is revoked (committed by
        # the bookkeeping worker although this call fails).
        got = refusal(other, "SELECT auth.refresh(%s)", (r1["refresh_token"],))
        with citus.admin() as admin:
            # The signed-in session (own_user's email confirmation opened another one).
            revoked = admin.execute("SELECT revoked_at IS NOT NULL FROM auth.sessions WHERE id = %s",
                                    (session_of(r1["access_token"]),)).fetchall()
        assert got[:2] == ("28000", "TOKEN_REVOKED"), f"reuse answered {got}; session revoked: {revoked}"
        assert revoked == [(True,)]
        assert_worker_refused(citus, refusal(open_txn, NOTES2), "28000", "TOKEN_REVOKED")
        open_txn.execute("ROLLBACK")
        for token in (r1["access_token"], r2["access_token"]):
            other.execute("BEGIN")
            assert_coordinator_refused(refusal(other, "SELECT auth.bind(%s)", (token,)), "28000", "TOKEN_REVOKED")
            other.execute("ROLLBACK")
            other.execute("BEGIN")
            hand_propagated(other, token)
            assert_worker_refused(citus, refusal(other, NOTES2), "28000", "TOKEN_REVOKED")
            other.execute("ROLLBACK")
        assert refusal(other, "SELECT auth.refresh(%s)", (r2["refresh_token"],))[:2] == ("28000", "TOKEN_REVOKED")


# -- 3 --------------------------------------------------------------------------------------
def _retire(citus):
    """A key of its own, retired at the start of the open transaction (retire_key(kid, at)
    keeps accepting the key in transactions that began before `at`)."""
    signer = citus.Signer()
    with citus.admin() as conn:
        conn.execute("SELECT auth.add_key(%s, %s, ARRAY[%s])",
                     (Jsonb(signer.public_jwk("ES256")), citus.issuer, citus.audience))
    uid, _ = citus.imported_user("retire")
    token = signer.token(uid)

    def change(admin, txn_start):
        admin.execute("SELECT auth.retire_key(%s, %s)", (signer.kids["ES256"], txn_start))
    return uid, token, change, "INVALID_TOKEN"


def _ban(citus):
    uid, token = citus.imported_user("ban")

    def change(admin, _):
        admin.execute("SELECT auth.ban_user(%s, now() + interval '1 hour')", (uid,))
    return uid, token, change, "TOKEN_REVOKED"


def _delete(citus):
    uid, _, r = citus.own_user("delete")

    def change(admin, _):
        assert admin.execute("DELETE FROM auth.users WHERE id = %s", (uid,)).rowcount == 1
    return uid, r["access_token"], change, "TOKEN_REVOKED"


def _revoke_session(citus):
    uid, _, r = citus.own_user("revoke")
    session = session_of(r["access_token"])

    def change(admin, _):
        admin.execute("SELECT auth.revoke_session(%s)", (session,))
    return uid, r["access_token"], change, "TOKEN_REVOKED"


def _sign_out(citus):
    uid, _, r = citus.own_user("signout")

    def change(_, __):
        with citus.app() as conn:  # the user signs out, from another connection
            conn.execute("BEGIN")
            bind(conn, r["access_token"])
            assert conn.execute("SELECT auth.sign_out('local')").fetchone()[0] == 1
            conn.execute("COMMIT")
    return uid, r["access_token"], change, "TOKEN_REVOKED"


@pytest.mark.parametrize("make", [_retire, _ban, _delete, _revoke_session, _sign_out],
                         ids=["retire_key", "ban_user", "delete_user", "revoke_session", "sign_out"])
def test_3_trust_changes_reach_workers(citus, make):
    """A change committed on the coordinator reaches the workers. Already bound: session A binds
    and reads its rows; session B commits the change; A's very next query is refused by a
    worker with the change's code (the delay from B's COMMIT is printed). New transaction:
    auth.bind refuses on the coordinator, and a worker refuses the token too when it is
    forwarded by hand without the coordinator's check (the worker's own copy has the change)."""
    uid, token, change, code = make(citus)
    with citus.app() as a, citus.admin() as b:
        # Control: before the change, both the bound and the hand-forwarded forms see the rows.
        a.execute("BEGIN")
        hand_propagated(a, token)
        assert_sees_exactly(citus, a, uid)
        a.execute("COMMIT")
        a.execute("BEGIN")
        bind(a, token)
        txn_start = a.execute("SELECT now()").fetchone()[0]
        assert_sees_exactly(citus, a, uid)
        change(b, txn_start)
        committed = time.monotonic()
        # Poll: the first query must already be refused; if not, measure how long it takes.
        served = 0
        while True:
            try:
                got = rows(a, NOTES2)
            except psycopg.Error as e:
                refused_at = time.monotonic()
                m = re.search(r"while executing command on [^:\s]+:(\d+)", e.diag.context or "")
                err = (e.sqlstate, (e.diag.message_primary or "").split(":")[0], int(m.group(1)) if m else None)
                break
            assert got == sorted(citus.notes2[uid])
            served += 1
            if time.monotonic() - committed > 5:
                pytest.fail(f"{make.__name__}: still served {served} queries 5 s after the change")
        citus.report(f"revocation delay on workers ({make.__name__[1:]}): "
                     f"{(refused_at - committed) * 1000:.1f} ms from COMMIT to the first refused query, "
                     f"{served} queries served after the COMMIT")
        assert_worker_refused(citus, err, "28000", code)
        assert served == 0, f"{served} queries were still served after the change"
        a.execute("ROLLBACK")
        # A new transaction: the coordinator refuses the bind...
        a.execute("BEGIN")
        assert_coordinator_refused(refusal(a, "SELECT auth.bind(%s)", (token,)), "28000", code)
        a.execute("ROLLBACK")
        # ... and so does each worker's own copy, when the coordinator is bypassed.
        for query in (NOTES2, NOTES + " WHERE owner = %s"):
            a.execute("BEGIN")
            hand_propagated(a, token)
            assert_worker_refused(citus, refusal(a, query, (uid,) if "%s" in query else ()), "28000", code)
            a.execute("ROLLBACK")


# -- 4 --------------------------------------------------------------------------------------
def _cached_worker_backends(citus, conn):
    """{worker port: pids} of the worker backends serving this coordinator backend."""
    gpid = conn.execute("SELECT citus_backend_gpid()").fetchone()[0]
    out = {}
    for w in citus.workers:
        with citus.connect(w) as wc:
            out[w.port] = {p for (p,) in wc.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (f"citus_internal gpid={gpid}",))}
    return out


def test_4_identity_ends_with_the_transaction_on_cached_connections(citus, people):
    """Txn 1 binds and reads; after COMMIT Citus keeps its worker connections open. Txn 2 on the
    same coordinator connection without a bind is refused by the worker
    (IDENTITY_NOT_PROPAGATED), instead of seeing the previous user's rows; with
    auth.bind(NULL) it is anonymous: 0 rows. Autocommit without a bind is refused too."""
    alice, token = people["alice"]
    with citus.app() as conn:
        conn.execute("BEGIN")
        bind(conn, token)
        assert_sees_exactly(citus, conn, alice)
        conn.execute("COMMIT")
        cached = _cached_worker_backends(citus, conn)
        assert all(cached.values()), f"no cached worker connection: {cached}"
        for query, params in ((NOTES2, ()), (NOTES + " WHERE owner = %s", (alice,)), (NOTES, ())):
            conn.execute("BEGIN")
            assert_worker_refused(citus, refusal(conn, query, params), "55000", "IDENTITY_NOT_PROPAGATED")
            conn.execute("ROLLBACK")
        after = _cached_worker_backends(citus, conn)
        citus.report(f"worker backends of one coordinator connection: {cached} after txn 1, {after} after the refusals")
        assert_worker_refused(citus, refusal(conn, NOTES2), "55000", "IDENTITY_NOT_PROPAGATED")
        conn.execute("BEGIN")
        assert bind(conn, None) is None
        assert rows(conn, NOTES) == [] and rows(conn, NOTES2) == []
        assert rows(conn, NOTES + " WHERE owner = %s", (alice,)) == []
        conn.execute("COMMIT")


def test_4_rollback_to_savepoint_ends_a_binding_made_inside(citus, people):
    """A bind inside a savepoint ends with ROLLBACK TO SAVEPOINT, on the workers too: with an
    explicit auth.bind(NULL) before the savepoint the transaction is anonymous again (0 rows);
    with another user's bind before it, that user's rows come back; with no bind before it,
    the next distributed query is refused (IDENTITY_NOT_PROPAGATED)."""
    alice, alice_token = people["alice"]
    bob, bob_token = people["bob"]
    with citus.app() as conn:
        for before, expect in ((None, "anonymous"), (bob_token, bob), ("nothing", "error")):
            conn.execute("BEGIN")
            if before != "nothing":
                bind(conn, before)
                if expect == "anonymous":
                    assert rows(conn, NOTES2) == []
                else:
                    assert_sees_exactly(citus, conn, expect)
            conn.execute("SAVEPOINT s")
            bind(conn, alice_token)
            assert_sees_exactly(citus, conn, alice)
            conn.execute("ROLLBACK TO SAVEPOINT s")
            if expect == "anonymous":
                assert rows(conn, NOTES2) == [] and rows(conn, NOTES) == []
            elif expect == "error":
                assert_worker_refused(citus, refusal(conn, NOTES2), "55000", "IDENTITY_NOT_PROPAGATED")
            else:
                assert_sees_exactly(citus, conn, expect)
            conn.execute("ROLLBACK")


# -- 5 --------------------------------------------------------------------------------------
def test_5_misconfigurations_are_errors_not_empty_results(citus, people):
    """Each way the identity fails to reach the workers is refused with IDENTITY_NOT_PROPAGATED
    (55000) rather than answered with 0 rows: set_config('auth.jwt', t, true) (also with the
    auth.bound marker set the same way), a session-level SET auth.jwt (in a transaction and in
    autocommit), auth.bind in autocommit (refused on the coordinator), and turning
    citus.select_opens_transaction_block off after the bind."""
    alice, token = people["alice"]
    with citus.app() as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
        assert_worker_refused(citus, refusal(conn, NOTES2), "55000", "IDENTITY_NOT_PROPAGATED")
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        conn.execute("SELECT set_config('auth.jwt', %s, true), set_config('auth.bound', 'on', true)", (token,))
        assert_worker_refused(citus, refusal(conn, NOTES + " WHERE owner = %s", (alice,)),
                              "55000", "IDENTITY_NOT_PROPAGATED")
        conn.execute("ROLLBACK")
    with citus.app() as conn:
        conn.execute(sql.SQL("SET auth.jwt = {}").format(sql.Literal(token)))
        conn.execute("BEGIN")
        assert_worker_refused(citus, refusal(conn, NOTES2), "55000", "IDENTITY_NOT_PROPAGATED")
        conn.execute("ROLLBACK")
        assert_worker_refused(citus, refusal(conn, NOTES2), "55000", "IDENTITY_NOT_PROPAGATED")
    with citus.app() as conn:
        assert_coordinator_refused(refusal(conn, "SELECT auth.bind(%s)", (token,)), "55000", "IDENTITY_NOT_PROPAGATED")
        assert_coordinator_refused(refusal(conn, "SELECT auth.bind(%s)", (None,)), "55000", "IDENTITY_NOT_PROPAGATED")
        assert_worker_refused(citus, refusal(conn, NOTES2), "55000", "IDENTITY_NOT_PROPAGATED")
        conn.execute("BEGIN")
        bind(conn, token)
        conn.execute("SET LOCAL citus.select_opens_transaction_block = off")
        assert_worker_refused(citus, refusal(conn, NOTES2), "55000", "IDENTITY_NOT_PROPAGATED")
        conn.execute("ROLLBACK")
        # Control: the same connection, bound properly, sees the rows.
        conn.execute("BEGIN")
        bind(conn, token)
        assert_sees_exactly(citus, conn, alice)
        conn.execute("COMMIT")


def test_5_bind_forces_propagation_for_its_transaction_only(citus, people):
    """A session that turned Citus's propagation off (propagate_set_commands = none,
    select_opens_transaction_block = off) still gets the right rows after auth.bind: the bind
    turns both on for its own transaction; after COMMIT the session's values are back, and an
    unbound transaction is refused again."""
    alice, token = people["alice"]
    setting = "SELECT current_setting('citus.propagate_set_commands'), current_setting('citus.select_opens_transaction_block')"
    with citus.app() as conn:
        conn.execute("SET citus.propagate_set_commands = 'none'")
        conn.execute("SET citus.select_opens_transaction_block = off")
        conn.execute("BEGIN")
        bind(conn, token)
        assert conn.execute(setting).fetchone() == ("local", "on")
        assert_sees_exactly(citus, conn, alice)
        assert rows(conn, NOTES + " WHERE owner = %s", (alice,)) == sorted(citus.notes[alice])
        conn.execute("COMMIT")
        assert conn.execute(setting).fetchone() == ("none", "off")
        conn.execute("BEGIN")
        assert_worker_refused(citus, refusal(conn, NOTES2), "55000", "IDENTITY_NOT_PROPAGATED")
        conn.execute("ROLLBACK")


# -- 6 --------------------------------------------------------------------------------------
def test_6_rebinding_and_prepared_statements(citus, people):
    """Rebinding inside one transaction to another user's token gives that user's rows (and
    back). Prepared statements (psycopg prepare=True), run 12 times each so that PostgreSQL
    switches to generic plans, return the bound user's rows whichever user is bound, across
    transactions and across binds inside one transaction."""
    alice, alice_token = people["alice"]
    bob, bob_token = people["bob"]
    users = [(alice, alice_token, bob), (bob, bob_token, alice)]
    with citus.app() as conn:
        conn.execute("BEGIN")
        for uid, token, _ in users + users:
            bind(conn, token)
            assert_sees_exactly(citus, conn, uid)
            assert rows(conn, NOTES + " WHERE owner = %s", (uid,)) == sorted(citus.notes[uid])
        conn.execute("COMMIT")

        every_id = sorted(i for u in (alice, bob) for (i, _, _) in citus.notes2[u])
        router = NOTES + " WHERE owner = %s"
        by_ids = NOTES2 + " WHERE id = ANY(%s)"
        for i in range(12):
            uid, token, other = users[i % 2]
            conn.execute("BEGIN")
            bind(conn, token, prepare=True)
            assert rows(conn, router, (uid,), prepare=True) == sorted(citus.notes[uid])
            assert rows(conn, router, (other,), prepare=True) == []
            assert rows(conn, by_ids, (every_id,), prepare=True) == sorted(citus.notes2[uid])
            # A second bind in the same transaction, then the same statements again.
            uid, token, other = users[(i + 1) % 2]
            bind(conn, token, prepare=True)
            assert rows(conn, router, (uid,), prepare=True) == sorted(citus.notes[uid])
            assert rows(conn, router, (other,), prepare=True) == []
            assert rows(conn, by_ids, (every_id,), prepare=True) == sorted(citus.notes2[uid])
            conn.execute("COMMIT")
        plans = conn.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements").fetchall()
        summary = [(" ".join(s.split())[:60], g, c) for s, g, c in plans]
        citus.report(f"prepared statements across binds (statement, generic plans, custom plans): {summary}")
        assert any(g > 0 for s, g, _ in plans if "notes" in s), plans


# -- 7 --------------------------------------------------------------------------------------
def test_7_policies_with_subqueries_are_refused_by_citus(citus, people):
    """Citus refuses subqueries in policies on distributed tables, so write
    `USING (owner = auth.uid())`, never `USING (owner = (SELECT auth.uid()))`. ALTER POLICY and
    distributing a table that has such a policy give "Subqueries are not supported in policies
    on distributed tables" (0A000); CREATE POLICY on an already distributed table fails inside
    Citus ("unexpected non-SELECT command in SubLink", XX000) - refused either way, and nothing
    is created. The direct form works (policy p of the fixture, test 1)."""
    with citus.admin() as conn:
        conn.execute("BEGIN")
        got = refusal(conn, "ALTER POLICY p ON notes USING (owner = (SELECT auth.uid()))")
        assert got[:2] == ("0A000", "cannot create policy"), got
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE notes_sub (owner uuid, body text)")
        conn.execute("ALTER TABLE notes_sub ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY p ON notes_sub USING (owner = (SELECT auth.uid()))")
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT create_distributed_table('notes_sub', 'owner')")
        assert info.value.sqlstate == "0A000"
        assert info.value.diag.message_detail == "Subqueries are not supported in policies on distributed tables"
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        with pytest.raises(psycopg.Error):
            conn.execute("CREATE POLICY p_sub ON notes USING (owner = (SELECT auth.uid()))")
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM pg_policy WHERE polname = 'p_sub'").fetchone()[0] == 0
        assert conn.execute("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy "
                            "WHERE polrelid = 'notes'::regclass").fetchall() == [("(owner = auth.uid())",)]


# -- 8 --------------------------------------------------------------------------------------
def test_8_sixteen_concurrent_users_never_see_each_other(citus):
    """16 threads, each its own connection and its own user (a PyJWT token): for 3 seconds each
    binds and reads both tables (multi-shard and router) in a loop. Every answer must be exactly
    that user's rows: no connection ever sees another user's rows, and nothing fails."""
    users = [citus.imported_user(f"c{i:02d}") for i in range(16)]
    deadline = time.monotonic() + 3
    bad, done = [], [0] * len(users)
    start = threading.Barrier(len(users))

    def run(k, uid, token):
        n, n2 = own_rows(citus, uid)
        try:
            with citus.app() as conn:
                start.wait(30)
                while time.monotonic() < deadline:
                    conn.execute("BEGIN")
                    bind(conn, token)
                    got = (rows(conn, NOTES), rows(conn, NOTES2), rows(conn, NOTES + " WHERE owner = %s", (uid,)))
                    conn.execute("COMMIT")
                    if got != (n, n2, n):
                        bad.append((uid, got))
                    done[k] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            bad.append((uid, repr(e)))

    threads = [threading.Thread(target=run, args=(k, uid, token)) for k, (uid, token) in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    citus.report(f"16 concurrent users: {sum(done)} bound transactions in 3 s, per connection {min(done)}–{max(done)}")
    assert not bad, bad[:3]
    assert min(done) >= 3, done


def test_mfa_aal2_reaches_the_workers(citus):
    """TOTP MFA on Citus: enroll, challenge and verify on the coordinator (the MFA tables are
    reference tables), and a policy requiring `auth.aal() = 'aal2'`, evaluated on the workers,
    admits the aal2 token and hides the rows from the same user's aal1 token.

    Citus 13.2.2 creates every policy on the shards as PERMISSIVE, even one made AS RESTRICTIVE
    (commands/policy.c never writes the keyword), so the aal requirement goes into the one
    permissive policy with AND (docs/citus.md). The probe below shows the hazard."""
    import pyotp

    uid, _, r = citus.own_user("mfa")
    with citus.admin() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS vault (owner uuid, secret text)")
        if admin.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'vault'::regclass").fetchone()[0] == 0:
            admin.execute("SELECT create_distributed_table('vault', 'owner', shard_count => 4)")
            admin.execute("ALTER TABLE vault ENABLE ROW LEVEL SECURITY")
            admin.execute("CREATE POLICY own_at_aal2 ON vault USING (owner = auth.uid() AND auth.aal() = 'aal2')")
            admin.execute("GRANT SELECT ON vault TO app")
        admin.execute("INSERT INTO vault VALUES (%s, 'gold')", (uid,))
    # The hazard, on a table of its own: a policy made AS RESTRICTIVE is permissive on the
    # workers' shards (on vault a restrictive USING (true) would have opened every row).
    with citus.admin() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS restrictive_probe (k int)")
        if admin.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'restrictive_probe'::regclass").fetchone()[0] == 0:
            admin.execute("SELECT create_distributed_table('restrictive_probe', 'k', shard_count => 2)")
            admin.execute("CREATE POLICY probe ON restrictive_probe AS RESTRICTIVE USING (k > 0)")
    for w in citus.workers:
        with citus.connect(w) as wc:
            wc.execute("SET citus.override_table_visibility = off")
            kinds = {k for (k,) in wc.execute(
                "SELECT permissive FROM pg_policies WHERE tablename LIKE 'restrictive_probe%%' AND policyname = 'probe'")}
            assert kinds == {"PERMISSIVE"}, kinds
    with citus.app() as conn:
        with conn.transaction():
            bind(conn, r["access_token"])
            f = conn.execute("SELECT auth.mfa_enroll()").fetchone()[0]
        with conn.transaction():
            bind(conn, r["access_token"])
            assert rows(conn, "SELECT secret FROM vault") == []
        # Its own transaction: after a multi-shard query, Citus refuses writes to reference
        # tables with foreign keys in the same transaction (docs/citus.md).
        with conn.transaction():
            bind(conn, r["access_token"])
            ch = conn.execute("SELECT auth.mfa_challenge(%s)", (f["id"],)).fetchone()[0]
        with conn.transaction():
            bind(conn, r["access_token"])
            r2 = conn.execute("SELECT auth.mfa_verify(%s, %s, %s)",
                              (f["id"], ch["id"], pyotp.parse_uri(f["totp"]["uri"]).now())).fetchone()[0]
        assert jwt.decode(r2["access_token"], options={"verify_signature": False})["aal"] == "aal2"
        with conn.transaction():
            bind(conn, r2["access_token"])
            assert rows(conn, "SELECT secret FROM vault") == [("gold",)]
        with conn.transaction():
            bind(conn, r["access_token"])
            assert rows(conn, "SELECT secret FROM vault") == []


def test_one_time_code_voided_by_guessing_and_purged_on_reference_tables(citus):
    """The bookkeeping worker voids a guessed code by expiring its row, and
    auth.purge_expired deletes it: both are writes to a reference table on Citus."""
    email = f"void-{uuid.uuid4().hex[:8]}@citus.test"
    with citus.app() as conn:
        conn.execute("SELECT auth.sign_up(%s, %s)", (email, PASSWORD))
        with citus.admin() as admin:
            code = admin.execute("SELECT code FROM auth.outbox WHERE recipient = %s AND kind = 'signup'",
                                 (email,)).fetchone()[0]
        wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
        for _ in range(5):
            assert refusal(conn, "SELECT auth.verify_otp(%s, %s, 'signup')", (email, wrong)) == \
                ("28P01", "INVALID_OTP", None)
        # The right code after the limit: void.
        assert refusal(conn, "SELECT auth.verify_otp(%s, %s, 'signup')", (email, code)) == \
            ("28P01", "INVALID_OTP", None)
    with citus.admin() as admin:
        uid = admin.execute("SELECT id FROM auth.users WHERE email = %s", (email,)).fetchone()[0]
        assert admin.execute("SELECT count(*) FILTER (WHERE expires_at <= now()), count(*) "
                             "FROM auth.one_time_tokens WHERE user_id = %s", (uid,)).fetchone() == (1, 1)
        assert admin.execute("SELECT count(*) FROM auth.audit_log WHERE user_id = %s "
                             "AND event = 'one_time_token_voided'", (uid,)).fetchone()[0] == 1
        assert admin.execute("SELECT auth.purge_expired()").fetchone()[0]["one_time_tokens"] >= 1
        assert admin.execute("SELECT count(*) FROM auth.one_time_tokens WHERE user_id = %s",
                             (uid,)).fetchone()[0] == 0
        # The reference table's copies on the workers agree.
        for w in citus.workers:
            with citus.connect(w) as wc:
                assert wc.execute("SELECT count(*) FROM auth.one_time_tokens WHERE user_id = %s",
                                  (uid,)).fetchone()[0] == 0
