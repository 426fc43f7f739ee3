"""End-to-end fixtures: a throwaway PostgreSQL cluster with auth_ext installed, real client
connections (psycopg), and tokens signed by an independent implementation (PyJWT with
pyca/cryptography keys generated for this run)."""
import json
import os
import pathlib
import subprocess
import time
import uuid

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ROOT = pathlib.Path(__file__).resolve().parents[2]
ISSUER = "https://e2e.auth-ext.test"
AUDIENCE = "authenticated"
ALICE = str(uuid.UUID("8d8ac610-566d-4ef0-9c22-186b2a5ed793"))
BOB = str(uuid.UUID("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"))


class Cluster:
    def __init__(self, directory: str, port: int):
        self.dir = directory
        self.port = port
        self.dbname = "e2e"

    def connect(self, user="postgres", dbname=None, autocommit=False, port=None):
        return psycopg.connect(host="127.0.0.1", port=port or self.port, dbname=dbname or self.dbname,
                               user=user, autocommit=autocommit, connect_timeout=10)


class Signer:
    """Keys known to the database (public half only) and an independent signer for them."""

    def __init__(self):
        self.private = {
            "ES256": ec.generate_private_key(ec.SECP256R1()),
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "EdDSA": ed25519.Ed25519PrivateKey.generate(),
            "HS256": os.urandom(32),
        }
        self.kids = {alg: f"e2e-{alg.lower()}" for alg in self.private}

    def public_jwk(self, alg):
        key = self.private[alg]
        if alg == "HS256":
            return {"kty": "oct", "alg": "HS256", "kid": self.kids[alg], "k": jwt.utils.base64url_encode(key).decode()}
        pub = key.public_key()
        jwk = json.loads({"ES256": ECAlgorithm, "RS256": RSAAlgorithm, "EdDSA": OKPAlgorithm}[alg].to_jwk(pub))
        jwk.update({"kid": self.kids[alg], "alg": alg})
        return jwk

    def token(self, sub=ALICE, alg="ES256", ttl=3600, **claims):
        now = int(time.time())
        body = {"sub": sub, "role": "authenticated", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + ttl}
        body.update(claims)
        return jwt.encode(body, self.private[alg], algorithm=alg, headers={"kid": self.kids[alg]})


def _run(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def cluster():
    directory = f"/tmp/auth_ext_e2e_{os.getpid()}"
    port = int(_run(str(ROOT / "scripts/cluster.sh"), "start", directory).stdout.strip())
    c = Cluster(directory, port)
    try:
        with c.connect(dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE e2e")
        with c.connect(autocommit=True) as conn:
            conn.execute("CREATE EXTENSION auth_ext")
            # Most tests sign users in right after sign-up; the confirmation flow has its own
            # tests (test_passwordless.py), which turn it on for their role.
            conn.execute("ALTER DATABASE e2e SET auth.require_email_confirmation = off")
            # Sign-in issues tokens, and never makes its own signing key.
            conn.execute("SELECT auth.generate_signing_key()")
            conn.execute("CREATE ROLE app_user LOGIN")
        yield c
    finally:
        _run(str(ROOT / "scripts/cluster.sh"), "stop", directory)


@pytest.fixture(scope="session")
def signer(cluster):
    s = Signer()
    with cluster.connect(autocommit=True) as conn:
        for alg in s.private:
            conn.execute("SELECT auth.add_key(%s::jsonb, %s, ARRAY[%s])", (json.dumps(s.public_jwk(alg)), ISSUER, AUDIENCE))
        # The test IdP's subjects (ALICE, BOB) are this database's user ids.
        conn.execute("SELECT auth.add_account_issuer(%s)", (ISSUER,))
    return s


@pytest.fixture(scope="session")
def documents(cluster, signer):
    """An RLS-protected table: 3 rows for alice, 2 for bob, 1 for nobody."""
    with cluster.connect(autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE documents (id serial PRIMARY KEY, user_id uuid NOT NULL, title text NOT NULL);
            ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
            CREATE POLICY own_documents ON documents USING (user_id = auth.uid());
            GRANT SELECT, INSERT ON documents TO app_user;
            GRANT USAGE ON SEQUENCE documents_id_seq TO app_user;
        """)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO documents (user_id, title) VALUES (%s, %s)",
                            [(ALICE, "a1"), (ALICE, "a2"), (ALICE, "a3"), (BOB, "b1"), (BOB, "b2"),
                             (str(uuid.uuid4()), "other")])
    return "documents"
