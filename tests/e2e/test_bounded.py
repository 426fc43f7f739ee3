"""Bounded cost for every input (docs/security.md, "Trust boundaries"): memory that does not grow with the number of
tokens bound or claim paths asked for, stored password hashes verified only within caps, and
weak (small-order) Ed25519 keys refused wherever a key enters."""
import base64
import json
import time

import psycopg
import pytest

BINDS = 20_000


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def backend_bytes(conn) -> int:
    return conn.execute("SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts").fetchone()[0]


@pytest.fixture(scope="module")
def hs_tokens(cluster):
    """BINDS distinct tokens of distinct users, signed by a generated HS256 key."""
    with cluster.connect(autocommit=True) as admin:
        kid = admin.execute("SELECT auth.generate_signing_key('HS256')").fetchone()[0]
        admin.execute("DROP TABLE IF EXISTS bound_tokens")
        admin.execute(
            "CREATE TABLE bound_tokens AS SELECT i, auth.sign(jsonb_build_object('sub', gen_random_uuid(), "
            "'aud', 'authenticated', 'role', 'authenticated', 'app_metadata', jsonb_build_object('tenant', i)), %s) AS t "
            "FROM generate_series(1, %s) i", (kid, BINDS))
        # A non-superuser that may read its own memory statistics.
        admin.execute("DROP ROLE IF EXISTS batch_job")
        admin.execute("CREATE ROLE batch_job LOGIN IN ROLE pg_read_all_stats")
        admin.execute("GRANT SELECT ON bound_tokens TO batch_job")
    yield
    with cluster.connect(autocommit=True) as admin:
        admin.execute("DROP TABLE bound_tokens")
        admin.execute("DROP ROLE batch_job")
        admin.execute("SELECT auth.retire_key(%s)", (kid,))


def test_replaced_identities_are_freed_at_once(cluster, hs_tokens):
    """A batch job binding many tokens in one transaction: the backend's memory stays flat
    (0.1.0 held every replaced identity until commit: 742 MiB after 100,000 binds)."""
    with cluster.connect(user="batch_job") as conn:
        conn.execute("SELECT auth.uid()")  # load the library and the key set
        before = backend_bytes(conn)
        distinct = conn.execute("""
            DO $$
            DECLARE r record; x uuid; n int := 0; seen uuid;
            BEGIN
              FOR r IN SELECT t FROM bound_tokens ORDER BY i LOOP
                PERFORM set_config('auth.jwt', r.t, true);
                x := auth.uid();
                IF x IS NULL OR x = seen THEN RAISE EXCEPTION 'bind % gave %', n, x; END IF;
                seen := x; n := n + 1;
              END LOOP;
              RAISE NOTICE 'bound %', n;
            END $$""")
        during = backend_bytes(conn)
        conn.rollback()
        grown = during - before
        print(f"backend memory after {BINDS} binds in one transaction: +{grown / 2**20:.1f} MiB")
        # 0.1.0: about 7.4 KiB per bind (≈ 145 MiB here). The results handed out cost ~40 bytes each.
        assert grown < 8 * 2**20, grown


def test_claim_cache_of_a_session_token_is_bounded(cluster, signer, hs_tokens):
    """A session-level token asked for ever new claim paths: answers stay right, memory flat."""
    token = signer.token(app_metadata={"tenant": "t1", "roles": ["a"]})
    with cluster.connect(user="batch_job", autocommit=True) as conn:
        conn.execute("SELECT set_config('auth.jwt', %s, false)", (token,))
        assert conn.execute("SELECT auth.claim('app_metadata.tenant')").fetchone()[0] == "t1"
        before = backend_bytes(conn)
        for _ in range(3):
            n = conn.execute(
                "SELECT count(auth.claim('app_metadata.x' || i)) FROM generate_series(1, 50000) i").fetchone()[0]
            assert n == 0
        assert conn.execute("SELECT auth.claim('app_metadata.tenant')").fetchone()[0] == "t1"
        after = backend_bytes(conn)
        print(f"150,000 distinct claim paths on a session token: +{(after - before) / 2**20:.2f} MiB")
        assert after - before < 2 * 2**20
        conn.execute("RESET auth.jwt")


def argon2_hash(m: int, t: int, p: int = 1) -> str:
    salt = b64(b"saltsaltsaltsalt")
    digest = b64(b"\x00" * 32)
    return f"$argon2id$v=19$m={m},t={t},p={p}${salt}${digest}"


@pytest.mark.parametrize("m,t", [(1048576, 20), (4194304, 1), (262144, 20)])
def test_stored_hash_beyond_the_caps_is_refused_at_once(cluster, m, t):
    """auth.verify_password is PUBLIC: a stored hash asking for 1 GiB × 20 passes ran ~30 s
    outside statement_timeout in 0.1.0. Now INVALID_PARAMETER before any work."""
    with cluster.connect(user="app_user") as conn:
        started = time.monotonic()
        with pytest.raises(psycopg.Error) as e:
            conn.execute("SELECT auth.verify_password('pw', %s)", (argon2_hash(m, t),))
        took = time.monotonic() - started
        assert e.value.sqlstate == "22023", e.value
        assert e.value.diag.message_primary.startswith("INVALID_PARAMETER")
        assert took < 0.5, took


def test_hash_within_the_caps_still_verifies(cluster):
    import argon2

    h = argon2.PasswordHasher(memory_cost=65536, time_cost=3, parallelism=1).hash("correct horse")
    with cluster.connect(user="app_user") as conn:
        started = time.monotonic()
        assert conn.execute("SELECT auth.verify_password('correct horse', %s)", (h,)).fetchone()[0] is True
        print(f"argon2id m=64 MiB t=3 verified in {time.monotonic() - started:.2f} s")


def test_worst_accepted_hash_is_capped_in_time(cluster):
    """The largest stored hash the defaults accept runs in a few seconds at most."""
    row = None
    with cluster.connect(autocommit=True) as admin:
        admin.execute("LOAD 'auth_ext'")
        row = admin.execute(
            "SELECT current_setting('auth.max_verify_memory_kib')::int, current_setting('auth.max_verify_memory_passes')::bigint"
        ).fetchone()
    m, passes = row
    t = max(1, passes // m)
    with cluster.connect(user="app_user") as conn:
        started = time.monotonic()
        assert conn.execute("SELECT auth.verify_password('x', %s)", (argon2_hash(m, t),)).fetchone()[0] is False
        took = time.monotonic() - started
    print(f"worst accepted argon2 hash (m={m} KiB, t={t}): {took:.2f} s")
    assert took < 8, took  # ≈ 2.5 s on this 2-core machine (release build)


# Ed25519 points of small order (order 1, 2, 4, 8) in their canonical encodings, and
# non-canonical encodings of the same points (y >= p, and x = 0 with the sign bit set).
P = 2**255 - 19
SMALL_ORDER_Y = [
    1,  # identity, order 1
    P - 1,  # (0, -1), order 2
    0,  # (±sqrt(-1), 0), order 4
    0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,  # order 8
    0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,  # order 8
]


def encodings():
    out = []
    for y in SMALL_ORDER_Y:
        for sign in (0, 1):  # for x = 0 (y = ±1) the sign bit makes a non-canonical encoding
            out.append(((y | (sign << 255)).to_bytes(32, "little"), f"y={y:#x} sign={sign}"))
    for y in (1, 0):  # y + p still fits in 255 bits only for small y
        out.append((((y + P)).to_bytes(32, "little"), f"y={y}+p"))
    return out


ENCODINGS = encodings()


def okp(x: bytes, kid="weak") -> dict:
    return {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid, "x": b64(x)}


def forged_token(kid="weak") -> str:
    header = b64(json.dumps({"alg": "EdDSA", "kid": kid}).encode())
    payload = b64(json.dumps({"sub": "8d8ac610-566d-4ef0-9c22-186b2a5ed793", "exp": int(time.time()) + 600}).encode())
    sig = b64((1).to_bytes(32, "little") + b"\x00" * 32)  # R = identity, S = 0
    return f"{header}.{payload}.{sig}"


@pytest.mark.parametrize("x,label", ENCODINGS, ids=[e[1] for e in ENCODINGS])
def test_small_order_ed25519_keys_refused_everywhere(cluster, x, label):
    jwk = json.dumps(okp(x))
    jwks = json.dumps({"keys": [okp(x)]})
    token = forged_token()
    calls = [
        ("SELECT auth.add_key(%s::jsonb, NULL, ARRAY['*'])", (jwk,)),
        ("SELECT auth.import_jwks(%s::jsonb, NULL, ARRAY['*'])", (jwks,)),
        ("SELECT auth.verify(%s, %s::jsonb)", (token, jwk)),
        ("SELECT auth.verify_jws(%s, %s::jsonb)", (token, jwk)),
        ("SELECT auth.verify_jws(%s, %s::jsonb)", (token, jwks)),
    ]
    with cluster.connect(autocommit=True) as admin:
        for sql, args in calls:
            with pytest.raises(psycopg.Error) as e:
                admin.execute(sql, args)
            assert e.value.sqlstate in ("22023", "28000"), (sql, e.value)
        assert admin.execute("SELECT count(*) FROM auth.keys WHERE kid = 'weak'").fetchone()[0] == 0
