#!/usr/bin/env python3
"""Demo identity provider: makes an ES256 key pair and signs tokens with PyJWT (an
implementation independent of auth_ext). Prints shell assignments for scripts/demo.sh."""
import json
import shlex
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISS = "https://demo-idp.example"
key = ec.generate_private_key(ec.SECP256R1())
jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "demo-2026", "alg": "ES256", "use": "sig"})
now = int(time.time())


def sign(sub, email, exp=now + 3600, roles=()):
    claims = {"sub": sub, "email": email, "role": "authenticated", "iss": ISS, "aud": "authenticated",
              "iat": now, "exp": exp, "app_metadata": {"roles": list(roles)}}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "demo-2026"})


alice = sign("8d8ac610-566d-4ef0-9c22-186b2a5ed793", "alice@example.com", roles=["editor"])
bob = sign("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "bob@example.com")
expired = sign("8d8ac610-566d-4ef0-9c22-186b2a5ed793", "alice@example.com", exp=now - 3600)
# Forged: bob's payload under alice's signature.
h, _, s = alice.split(".")
forged = ".".join([h, bob.split(".")[1], s])
for name, value in [("JWKS", json.dumps({"keys": [jwk]})), ("ISSUER", ISS), ("ALICE", alice), ("BOB", bob),
                    ("EXPIRED", expired), ("FORGED", forged)]:
    print(f"{name}={shlex.quote(value)}")
