"""Issue 4 end to end: many concurrent writers through real connections, then every user's
roles compared with a recomputation from the grant tables; freshness across backends."""
import json
import random
import threading
import uuid

import psycopg
import pytest

WRITERS = 16
OPS_PER_WRITER = 2000
USERS = 24


@pytest.fixture(scope="module")
def grant_tables(cluster):
    users = [str(uuid.uuid4()) for _ in range(USERS)]
    with cluster.connect(autocommit=True) as admin:
        admin.execute("""
            CREATE TABLE sync_creators (user_id uuid PRIMARY KEY);
            CREATE TABLE sync_admins (user_id uuid, granted_by text, PRIMARY KEY (user_id, granted_by));
            CREATE TABLE sync_members (org_id int, member_id uuid, role text NOT NULL, PRIMARY KEY (org_id, member_id));
            GRANT SELECT, INSERT, UPDATE, DELETE ON sync_creators, sync_admins, sync_members TO app_user;
        """)
        with admin.cursor() as cur:
            cur.executemany("INSERT INTO auth.users (id, email, raw_app_meta_data) VALUES (%s, %s, %s)",
                            [(u, f"sync{i}@example.test", json.dumps({"roles": ["manual"]} if i % 5 == 0 else {}))
                             for i, u in enumerate(users)])
        admin.execute("SELECT auth.enable_role_sync('sync_creators', 'creator')")
        admin.execute("SELECT auth.enable_role_sync('sync_admins', 'admin')")
        admin.execute("SELECT auth.enable_role_sync('sync_members', '=role', 'member_id')")
    return users


EXPECTED = """
    WITH granted AS (
        SELECT user_id, 'creator' AS role FROM sync_creators
        UNION SELECT user_id, 'admin' FROM sync_admins
        UNION SELECT member_id, role FROM sync_members),
    manual AS (SELECT id AS user_id, 'manual' AS role FROM auth.users WHERE email LIKE 'sync%' AND
               (substring(email from 'sync(\\d+)')::int % 5) = 0)
    SELECT u.id::text, coalesce((SELECT jsonb_agg(role ORDER BY role) FROM (SELECT role FROM granted g WHERE g.user_id = u.id
                                  UNION SELECT role FROM manual m WHERE m.user_id = u.id) r), '[]'::jsonb) AS expected,
           coalesce(u.raw_app_meta_data -> 'roles', '[]'::jsonb) AS actual
      FROM auth.users u WHERE u.email LIKE 'sync%'
"""


def test_concurrent_writers_converge_to_the_truth(cluster, grant_tables):
    users = grant_tables
    errors, retries = [], [0]

    def writer(seed):
        rnd = random.Random(seed)
        try:
            with cluster.connect(user="app_user", autocommit=True) as conn:
                for _ in range(OPS_PER_WRITER):
                    u = rnd.choice(users)
                    op = rnd.randrange(7)
                    sql, params = [
                        ("INSERT INTO sync_creators VALUES (%s) ON CONFLICT DO NOTHING", (u,)),
                        ("DELETE FROM sync_creators WHERE user_id = %s", (u,)),
                        ("INSERT INTO sync_admins VALUES (%s, %s) ON CONFLICT DO NOTHING", (u, rnd.choice("abc"))),
                        ("DELETE FROM sync_admins WHERE user_id = %s AND granted_by = %s", (u, rnd.choice("abc"))),
                        ("INSERT INTO sync_members VALUES (%s, %s, %s) ON CONFLICT (org_id, member_id) DO UPDATE SET role = excluded.role",
                         (rnd.randrange(4), u, rnd.choice(["viewer", "editor", "owner"]))),
                        ("DELETE FROM sync_members WHERE org_id = %s AND member_id = %s", (rnd.randrange(4), u)),
                        ("UPDATE sync_members SET member_id = %s WHERE org_id = %s AND member_id = %s",
                         (u, rnd.randrange(4), rnd.choice(users))),
                    ][op]
                    for _ in range(20):
                        try:
                            conn.execute(sql, params)
                            break
                        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
                                psycopg.errors.UniqueViolation):
                            retries[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with cluster.connect(autocommit=True) as admin:
        rows = admin.execute(EXPECTED).fetchall()
        assert len(rows) == USERS
        wrong = [(uid, e, a) for uid, e, a in rows if e != a]
        assert wrong == [], f"{len(wrong)} users disagree (retries: {retries[0]}): {wrong[:3]}"
        # The truth was reached by the triggers alone: a resync has nothing to change.
        assert admin.execute("SELECT auth.resync_role_claims()").fetchone()[0] == 0


def test_role_removal_reaches_other_backends(cluster, signer, grant_tables):
    users = grant_tables
    user = users[1]
    with cluster.connect(autocommit=True) as admin:
        admin.execute("INSERT INTO sync_creators VALUES (%s) ON CONFLICT DO NOTHING", (user,))
    token = signer.token(sub=user)  # the token itself carries no roles
    with cluster.connect(user="app_user") as conn, cluster.connect(autocommit=True) as admin:
        conn.execute("SELECT set_config('auth.jwt', %s, false)", (token,))
        conn.commit()
        assert conn.execute("SELECT auth.has_role('creator')").fetchone()[0] is True
        conn.commit()
        admin.execute("DELETE FROM sync_creators WHERE user_id = %s", (user,))
        # Same connection, same token, next transaction: gone.
        assert conn.execute("SELECT auth.has_role('creator')").fetchone()[0] is False
        # And inside an open transaction, by the next statement.
        admin.execute("INSERT INTO sync_creators VALUES (%s)", (user,))
        assert conn.execute("SELECT auth.has_role('creator')").fetchone()[0] is True
        admin.execute("DELETE FROM sync_creators WHERE user_id = %s", (user,))
        has, roles = conn.execute("SELECT auth.has_role('creator'), auth.roles()").fetchone()
        assert has is False and "creator" not in roles
        conn.rollback()
    # Without a user row, the token's own claim decides.
    stranger = signer.token(sub=str(uuid.uuid4()), app_metadata={"roles": ["creator"]})
    with cluster.connect(user="app_user") as conn:
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (stranger,))
        assert conn.execute("SELECT auth.has_role('creator')").fetchone()[0] is True
        conn.rollback()


def test_users_metadata_is_never_an_authorization_source(cluster, signer, grant_tables):
    """raw_user_meta_data (what a user may edit about themselves) never grants roles."""
    user = grant_tables[2]
    token = signer.token(sub=user, user_metadata={"roles": ["admin"]})
    with cluster.connect(autocommit=True) as admin:
        admin.execute("UPDATE auth.users SET raw_user_meta_data = '{\"roles\": [\"admin\"]}' WHERE id = %s", (user,))
        # Positive control: a grant row does make this user admin, with this very token…
        admin.execute("INSERT INTO sync_admins VALUES (%s, 'control') ON CONFLICT DO NOTHING", (user,))
        with cluster.connect(user="app_user") as conn:
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
            assert conn.execute("SELECT auth.has_role('admin')").fetchone()[0] is True
            conn.rollback()
        admin.execute("DELETE FROM sync_admins WHERE user_id = %s", (user,))
    # …and without one, the metadata that claims admin gives nothing.
    with cluster.connect(user="app_user") as conn:
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
        assert conn.execute("SELECT auth.has_role('admin')").fetchone()[0] is False
        conn.rollback()
