"""Hostile tokens through SQL: at least 100,000 of them, and nothing breaks or lets a forgery in.

Every SQL entry point that reads a token gets a share of one seeded stream of hostile tokens:

  keyset        auth.verify(token)                      (the key set)
  key           auth.verify(token, key jsonb)            (one given JWK)
  bound         set_config('auth.jwt', token, true) + auth.uid() / auth.jwt() / auth.role()
                (called in rotating order, in the same subtransaction as the set_config)
  authenticate  auth.authenticate(token)

and a small "big" lane runs, as a superuser with `SET auth.max_token_bytes = 1048576`, the
inputs that only reach the parsers past the default 8192-byte cap (10,000 nested arrays,
100,000-digit numbers, 100 kB of claims, 4,000 claims, 50 kB kids, 10,000 segments).

The stream (distribution in `Fuzzer.next`): valid tokens signed by PyJWT with this module's
keys (ES256 ×2, ES384, RS256, PS256, EdDSA, HS256 ×2, HS512; kids `fzsql-<run>-…`, bound to
this module's own issuer, which it declares an account issuer so that auth.uid() is sub, and to
conftest's AUDIENCE; keys, issuer and schema are removed at the end) and,
dominating, mutations of them: bit flips in the text and in the decoded bytes, insertions,
deletions, truncations, segment swaps between algs, re-encodings (padding, `+`/`/`, non-canonical
trailing bits, whitespace, `Bearer `), tampered claims or headers kept under the original
signature, signature surgery (DER instead of raw ECDSA, high-S, Ed25519 S+L, RSA with a leading
zero, zeros, truncated). Then a pool of crafted tokens: alg none in every spelling, HS256/384/512
signed with the RSA/EC/Ed25519 public key bytes as the HMAC secret (PEM, DER, JWK text, raw
point/modulus), kids of other keys, unknown/odd kids, crit/b64/zip, jku/x5u/jwk/x5c (with an
attacker's key and with ours), typ oddities, headers and claims that are not JSON objects,
duplicate names, deep nesting, huge numbers, exp/nbf/iat edges, invalid UTF-8 and escaped NULs
inside the segments, oversized tokens, 5-segment JWE look-alikes, empty segments, garbage.
(A token in SQL text cannot hold NUL or invalid UTF-8 — PostgreSQL refuses those before any
function runs — so those bytes are only ever inside the base64url segments.)

One PL/pgSQL function (schema fuzz_sql) loops over a text[] batch and calls the entry point in
`BEGIN … EXCEPTION WHEN OTHERS`, returning one row per token: accepted (with the claims' sub and,
bound, auth.uid()), anonymous, or the SQLSTATE and message. Batches of BATCH tokens run on two
app_user connections in parallel (plus the big lane, as postgres).

What must hold:
  * every error is one of ours: SQLSTATE 28000/22023 and a message starting with INVALID_TOKEN,
    TOKEN_EXPIRED, TOKEN_NOT_YET_VALID, INVALID_CLAIMS, TOKEN_REVOKED or INVALID_PARAMETER —
    never XX000, never "panicked", ".rs:" or "backtrace" in the message or detail;
  * no forgery: every accepted token is byte-identical to a token this module signed with the
    key it was checked against (key set: the kid names the signing key, or there is no kid, and
    iss/aud are ours), excluding the crafted tokens that must be refused (crit, duplicates, too
    deep, expired, …). The one deliberate exception is the high-S twin of our own ECDSA
    signatures, which docs/keys.md documents as accepted (made here with our key's signature);
  * the unmutated valid tokens are accepted by every entry point, with the right sub;
  * a few crafted classes get their precise code (alg none, JWE, oversized: INVALID_TOKEN;
    expired: TOKEN_EXPIRED; nbf ahead: TOKEN_NOT_YET_VALID; no exp: INVALID_CLAIMS);
  * every backend that ran a lane is the same pid at the end and answers SELECT 1;
  * no crash line in the server log since this module started (test_contexts' CRASH lines).

Knobs: FUZZ_SQL_TOKENS (default 100000), FUZZ_SQL_SEED (default: a fresh random seed, printed
in every failure message and in the summary), FUZZ_SQL_DUMP=<file> (outcome counts per token
class and every refusal detail). The seed fixes the stream's choices; keys (and so signatures)
are fresh per run, so a failure message also quotes the offending tokens themselves. A batch
that loses its connection is written to /tmp/fuzz_sql_crash_<seed>_<batch>.json (tokens, labels,
the public JWKs) for minimising; a crash while the extension's library file was being replaced
by an install (SIGBUS) is flagged as such.
"""
import base64
import collections
import concurrent.futures
import dataclasses
import hashlib
import hmac
import json
import os
import queue
import random
import secrets
import time
import uuid
from typing import Optional

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.algorithms import get_default_algorithms
from psycopg.types.json import Jsonb

from conftest import AUDIENCE
from test_contexts import Env

TOKENS = int(os.environ.get("FUZZ_SQL_TOKENS", "100000"))
SEED = int(os.environ.get("FUZZ_SQL_SEED") or secrets.randbits(48))
BATCH = 2500
MAX_TOKEN_BYTES = 8192
BIG_MAX_TOKEN_BYTES = 1 << 20

# Share of the stream per entry point; the big lane takes 1% (at most 400) out of keyset/bound.
SHARES = {"keyset": 0.30, "key": 0.20, "bound": 0.30, "authenticate": 0.20}

OUR_STATES = {"28000", "22023"}
OUR_CODES = {"INVALID_TOKEN", "TOKEN_EXPIRED", "TOKEN_NOT_YET_VALID", "INVALID_CLAIMS", "TOKEN_REVOKED",
             "INVALID_PARAMETER"}
INTERNALS = ("panicked", ".rs:", "backtrace")

RUN = secrets.token_hex(3)
# Our own issuer (declared an account issuer for the module: auth.uid() is then sub), so that
# nothing here changes what other modules' keys and issuer do.
ISSUER = "https://fuzz-sql.auth-ext.test"
PREFIX = "fzsql-"
ALGOS = get_default_algorithms()
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_N = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16)
ED25519_L = 2 ** 252 + 27742317777372353535851937790883648493


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64d(seg: str) -> Optional[bytes]:
    """Lenient decode (for mutating): None if the segment is not base64url at all."""
    try:
        return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
    except Exception:  # noqa: BLE001 - any garbage
        return None


def segment_object(seg: str) -> Optional[dict]:
    """The JSON object a token segment holds, or None (for mutating)."""
    try:
        value = json.loads(b64d(seg))
    except Exception:  # noqa: BLE001 - any garbage
        return None
    return value if isinstance(value, dict) else None


def jb(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def seed_note():
    return f"(seed {SEED}: rerun with FUZZ_SQL_SEED={SEED} FUZZ_SQL_TOKENS={TOKENS})"


# ------------------------------------------------------------------------------------ keys
class Key:
    def __init__(self, name, alg, private, registered=True):
        self.alg = alg
        self.kid = f"{PREFIX}{RUN}-{name}" if registered else f"attacker-{RUN}-{name}"
        self.private = private
        self.registered = registered
        self.prepared = ALGOS[alg].prepare_key(private)
        if alg.startswith("HS"):
            self.jwk = {"kty": "oct", "alg": alg, "kid": self.kid, "k": b64e(private)}
            self.public_forms = []
        else:
            pub = private.public_key()
            self.jwk = json.loads(ALGOS[alg].to_jwk(pub))
            self.jwk.update({"kid": self.kid, "alg": alg})
            pem = serialization.PublicFormat.SubjectPublicKeyInfo
            self.public_forms = [
                pub.public_bytes(serialization.Encoding.PEM, pem),
                pub.public_bytes(serialization.Encoding.PEM, pem).rstrip(b"\n"),
                pub.public_bytes(serialization.Encoding.DER, pem),
                json.dumps(self.jwk).encode(), jb(self.jwk),
            ]
            if isinstance(pub, rsa.RSAPublicKey):
                n = pub.public_numbers().n
                self.public_forms += [
                    pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
                    pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
                    n.to_bytes(256, "big"), self.jwk["n"].encode()]
            elif isinstance(pub, ec.EllipticCurvePublicKey):
                self.public_forms += [
                    pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint),
                    pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint),
                    self.jwk["x"].encode()]
            else:
                self.public_forms += [pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
                                      self.jwk["x"].encode()]

    def sign(self, signing_input: bytes) -> bytes:
        return ALGOS[self.alg].sign(signing_input, self.prepared)

    def __repr__(self):
        return self.kid


def make_keys():
    mine = [Key("es256-a", "ES256", ec.generate_private_key(ec.SECP256R1())),
            Key("es256-b", "ES256", ec.generate_private_key(ec.SECP256R1())),
            Key("es384", "ES384", ec.generate_private_key(ec.SECP384R1())),
            Key("rs256", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            Key("ps256", "PS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            Key("eddsa", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
            Key("hs256-a", "HS256", os.urandom(32)),
            Key("hs256-b", "HS256", os.urandom(48)),
            Key("hs512", "HS512", os.urandom(64))]
    attacker = [Key("rs256", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048), False),
                Key("es256", "ES256", ec.generate_private_key(ec.SECP256R1()), False),
                Key("eddsa", "EdDSA", ed25519.Ed25519PrivateKey.generate(), False),
                Key("hs256", "HS256", os.urandom(32), False)]
    return mine, attacker


# ---------------------------------------------------------------------------------- tokens
@dataclasses.dataclass(frozen=True)
class Case:
    token: str
    label: str
    key: Optional[Key] = None  # the key it was signed with / aimed at (given to auth.verify(t, key))
    expect: Optional[str] = None  # the code every entry point must answer (with `key` for "key")
    given: Optional[Key] = None  # for auth.verify(token, key): a key other than `key`


class Fuzzer:
    """The seeded stream. Remembers what was legitimately signed: ok_keyset (tokens the key set
    may accept), ok_key ((token, kid) pairs auth.verify(token, key) may accept), must (the
    unmutated valid tokens, which every entry point must accept) and sub_of (their subs)."""

    def __init__(self, rng: random.Random, keys, attacker, now: int, max_bytes=MAX_TOKEN_BYTES):
        self.rng, self.keys, self.attacker, self.now, self.max_bytes = rng, keys, attacker, now, max_bytes
        self.ok_keyset, self.ok_key, self.must, self.sub_of = set(), set(), {}, {}
        self.pristine = [self.pyjwt_token(k, i) for k in keys for i in range(24)]
        self.pool = []  # crafted, drawn from by next()

    # --- building blocks
    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def claims(self, **over):
        r = self.rng
        c = {"sub": self.uuid(), "role": "authenticated", "iss": ISSUER, "aud": AUDIENCE,
             "iat": self.now - r.randrange(0, 600), "exp": self.now + r.randrange(900, 7200)}
        if r.random() < 0.5:
            c["email"] = f"u{r.randrange(10**6)}@fuzz.test"
        if r.random() < 0.4:
            c["app_metadata"] = {"roles": r.sample(["editor", "admin", "viewer", "x"], r.randrange(0, 4)),
                                 "tenant": f"t-{r.randrange(100)}"}
        if r.random() < 0.2:
            c["user_metadata"] = {"name": r.choice(["Zoë", "李", "🦀", "O'Brien", "\"q\"", "a\\b"])}
        if r.random() < 0.2:
            c["aud"] = [AUDIENCE, "other"]
        c.update(over)
        return c

    def pyjwt_token(self, key, i):
        """An unmutated valid token, signed by PyJWT (the independent implementation)."""
        claims = self.claims()
        headers = {"kid": key.kid} if i % 6 else {}  # some without kid: tried by alg
        tok = jwt.encode(claims, key.private, algorithm=key.alg, headers=headers)
        self.allow(tok, key, keyset=True)
        self.must[tok] = key
        self.sub_of[tok] = claims["sub"]
        return Case(tok, "valid", key)

    def allow(self, tok, key, keyset):
        self.ok_key.add((tok, key.kid))
        if keyset and key.registered:
            self.ok_keyset.add(tok)

    def raw(self, key, header, payload, signer=None, sig=None, legit=False, keyset=None, label="", expect=None):
        """A token of raw header/payload (dict or bytes) signed by `signer` (default `key`) or with
        `sig`. legit: signed by `key` itself with its alg, and acceptable per policy (then the key
        path may accept it; the key set too unless keyset=False)."""
        if isinstance(header, dict):
            header = jb(header)
        if isinstance(payload, dict):
            payload = jb(payload)
        si = f"{b64e(header)}.{b64e(payload)}"
        if sig is None:
            sig = (signer or key).sign(si.encode())
        tok = f"{si}.{b64e(sig) if isinstance(sig, bytes) else sig}"
        if legit and signer in (None, key):
            self.allow(tok, key, keyset=keyset if keyset is not None else True)
        return Case(tok, label, key, expect)

    def hdr(self, key, **extra):
        h = {"alg": key.alg, "kid": key.kid}
        h.update(extra)
        return h

    # --- crafted tokens (the pool)
    def crafted(self):
        r = self.rng
        k = r.choice(self.keys)
        pub = [x for x in self.keys if x.public_forms]
        kind = r.choices(CRAFTED, weights=[w for _, w in CRAFTED_W])[0]
        return getattr(self, "c_" + kind)(k, pub)

    def c_alg_none(self, k, pub):
        r = self.rng
        h = {"alg": r.choice(["none", "None", "NONE", "nOnE", "none", "NoNe"])}
        if r.random() < 0.7:
            h["kid"] = k.kid
        if r.random() < 0.3:
            h["typ"] = "JWT"
        sig = r.choice(["", "", b64e(k.sign(b"x")), "AA", "bm9uZQ"])
        return self.raw(k, h, self.claims(), sig=sig, label="alg_none", expect="INVALID_TOKEN")

    def c_alg_odd(self, k, pub):
        r = self.rng
        alg = r.choice(["", " ", "hs256", "HS256 ", " ES256", "ES256K", "RS1", "ES512", "PS512x", "Ed25519",
                        "EdDSA\u0001", "A256GCM", "RSA-OAEP", "dir", 256, None,
                        ["ES256"], {"alg": "ES256"}, True, "\u212aS256", "ＥS256"])
        h = {"alg": alg, "kid": k.kid}
        if r.random() < 0.3:
            del h["alg"]
        return self.raw(k, h, self.claims(), label="alg_odd", expect="INVALID_TOKEN")

    def c_hmac_confusion(self, k, pub):
        """alg HS* signed with a public key's bytes as the HMAC secret (the classic)."""
        r = self.rng
        target = r.choice(pub)
        secret = r.choice(target.public_forms + [b"", target.kid.encode()])
        alg = r.choice(["HS256", "HS256", "HS384", "HS512"])
        h = {"alg": alg}
        roll = r.random()
        if roll < 0.6:
            h["kid"] = target.kid
        elif roll < 0.8:
            h["kid"] = r.choice([x for x in self.keys if x.alg == "HS256"]).kid
        if r.random() < 0.5:
            h["typ"] = "JWT"
        si = f"{b64e(jb(h))}.{b64e(jb(self.claims()))}"
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        sig = hmac.new(secret, si.encode(), digest).digest()
        return Case(f"{si}.{b64e(sig)}", "hmac_confusion", target, "INVALID_TOKEN")

    def c_wrong_kid(self, k, pub):
        """Signed by k, naming another of our keys (same alg or not), or claiming its alg."""
        r = self.rng
        other = r.choice([x for x in self.keys if x is not k])
        same = [x for x in self.keys if x.alg == k.alg and x is not k]
        if same and r.random() < 0.5:
            other = same[0]
        if r.random() < 0.7:
            return self.raw(k, self.hdr(k, kid=other.kid), self.claims(), legit=True, keyset=False,
                            label="wrong_kid", expect=None)
        # k's signature under another alg's name and kid
        other = r.choice([x for x in self.keys if x.alg != k.alg])
        return self.raw(other, {"alg": other.alg, "kid": other.kid}, self.claims(), signer=k,
                        label="wrong_alg_kid", expect="INVALID_TOKEN")

    def c_odd_kid(self, k, pub):
        r = self.rng
        kid = r.choice(["", " ", f"{PREFIX}{RUN}-nope", "../../etc/passwd", "' OR '1'='1' --", "%s%s%n",
                        k.kid + " ", k.kid.upper(), k.kid + "\u0001", "\u202e" + k.kid, "x" * 3000, "🔑" * 100,
                        "e2e-es256", "e2e-hs256", "null", "*"])
        if r.random() < 0.3:  # not a string
            h = {"alg": k.alg, "kid": r.choice([7, None, [], [k.kid], {"kid": k.kid}, True, 1e308])}
            return self.raw(k, h, self.claims(), label="kid_not_string", expect="INVALID_TOKEN")
        # the key path ignores kid: signed by k, so it may accept
        return self.raw(k, self.hdr(k, kid=kid), self.claims(), legit=True, keyset=False, label="unknown_kid")

    def c_crit(self, k, pub):
        r = self.rng
        extra = r.choice([{"crit": ["exp"]}, {"crit": []}, {"crit": "exp"}, {"crit": None}, {"crit": ["b64"], "b64": False},
                          {"b64": False}, {"b64": True}, {"zip": "DEF"}, {"crit": ["http://x"], "http://x": 1}])
        return self.raw(k, self.hdr(k, **extra), self.claims(), label="crit_b64_zip", expect="INVALID_TOKEN")

    def c_key_headers(self, k, pub):
        """jku/x5u/jwk/x5c: never followed. By the attacker's key: refused; by ours: just ignored."""
        r = self.rng
        atk = r.choice(self.attacker)
        extra = r.choice([{"jku": "https://evil.test/jwks.json"}, {"x5u": "https://evil.test/cert.pem"},
                          {"jwk": atk.jwk if not atk.alg.startswith("HS") else {"kty": "oct", "k": atk.jwk["k"]}},
                          {"x5c": ["MIIB" + "A" * 40]}, {"jku": "file:///etc/passwd", "x5u": "http://169.254.169.254/"}])
        if r.random() < 0.6:
            kid = r.choice([None, atk.kid, r.choice(self.keys).kid])
            h = {"alg": atk.alg, **extra}
            if kid:
                h["kid"] = kid
            return self.raw(atk, h, self.claims(), label="attacker_key_header")
        return self.raw(k, self.hdr(k, **extra), self.claims(), legit=True, label="key_header_ignored")

    def c_typ(self, k, pub):
        r = self.rng
        extra = r.choice([{"typ": "JWT"}, {"typ": "jwt"}, {"typ": "at+jwt"}, {"typ": "JOSE"}, {"typ": "JOSE+JSON"},
                          {"typ": ""}, {"typ": 123}, {"typ": None}, {"typ": []}, {"typ": {"a": 1}},
                          {"typ": "application/jwt"}, {"typ": "x" * 500}, {"cty": "JWT"}, {"cty": "json"},
                          {"typ": "JWT", "typ2": "JWT"}, {"x": "\u2028\u2029"}])
        return self.raw(k, self.hdr(k, **extra), self.claims(), legit=True, label="typ_oddity")

    def c_header_bytes(self, k, pub):
        """Headers that are not one clean JSON object; a few that are (still valid)."""
        r = self.rng
        alg, kid = k.alg, k.kid
        ok = r.random() < 0.25
        if ok:
            h = r.choice([
                f'{{ "alg" : "{alg}" , "kid" : "{kid}" }}'.encode(),
                f'{{\n  "alg": "{alg}",\n  "kid": "{kid}"\n}}\n'.encode(),
                f'{{"kid":"{kid}","alg":"{alg}"}}'.encode(),
                ('{"alg":"' + "".join(f"\\u{ord(c):04x}" for c in alg) + f'","kid":"{kid}"}}').encode(),
            ])
            return self.raw(k, h, self.claims(), legit=True, label="header_equivalent_json")
        h = r.choice([
            b"[]", b'"alg"', b"null", b"{}", b"", b" ", b"1", b"true",
            f'{{"alg":"{alg}","kid":"{kid}"'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}",}}'.encode(),
            f"{{'alg':'{alg}','kid':'{kid}'}}".encode(),
            f'{{"alg":"{alg}","kid":"{kid}"}}x'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}"}}{{}}'.encode(),
            b"\xef\xbb\xbf" + f'{{"alg":"{alg}","kid":"{kid}"}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}"}}'.encode("utf-16"),
            f'{{"alg":"{alg}","alg":"{alg}","kid":"{kid}"}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}","kid":"{kid}"}}'.encode(),
            f'{{"alg":"{alg}","alg":"none","kid":"{kid}"}}'.encode(),
            f'{{"alg":"none","alg":"{alg}","kid":"{kid}"}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}","x":{{"a":1,"a":2}}}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}\\u0000"}}'.encode(),
            f'{{"alg":"{alg}\\u0000","kid":"{kid}"}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}","x":"\\u0000"}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}","\\u0000":1}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}","x":"\xff"}}'.encode("latin-1"),
            f'{{"alg":"{alg}","kid":"{kid}","x":"'.encode() + b"\xed\xa0\x80" + b'"}',
            f'{{"alg":"{alg}","kid":"{kid}","x":"'.encode() + b"\xc0\xaf" + b'"}',
            f'{{"alg":"{alg}","kid":"{kid}","x":'.encode() + b"[" * 200 + b"]" * 200 + b"}",
            f'{{"alg":"{alg}","kid":"{kid}","x":NaN}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}"/*c*/}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}","x":1e99999}}'.encode(),
            f'{{"alg":"{alg}","kid":"{kid}"}}'.encode() + b"\x00",
        ])
        return self.raw(k, h, self.claims(), label="header_malformed", expect="INVALID_TOKEN")

    def c_dup_claims(self, k, pub):
        r = self.rng
        c = self.claims()
        body = jb(c)[:-1].decode()
        dup = r.choice([f',"role":"service_role"', f',"sub":"{self.uuid()}"', f',"exp":{self.now + 10**6}',
                        f',"iss":"{ISSUER}"', f',"aud":"{AUDIENCE}"', ',"app_metadata":{"roles":["admin"],"roles":[]}',
                        ',"x":{"a":{"b":1,"b":1}}', ',"x":[{"k":1,"k":2}]'])
        if dup.startswith(',"x"') or r.random() < 0.5:
            payload = (body + dup + "}").encode()
        else:  # the duplicate first
            payload = ("{" + dup[1:] + "," + body[1:] + "}").encode()
        return self.raw(k, self.hdr(k), payload, label="duplicate_claims")

    def c_nesting(self, k, pub):
        r = self.rng
        depth = r.choice([10, 100, 126, 129, 130, 200, 1000, 3000])
        kind = r.random()
        if kind < 0.5:
            nest = "[" * depth + "]" * depth
        elif kind < 0.8:
            nest = '{"a":' * depth + "1" + "}" * depth
        else:
            nest = "[{" * (depth // 2) + "}]" * (depth // 2)
        body = jb(self.claims())[:-1].decode() + ',"deep":' + nest + "}"
        legit = depth <= 126  # within auth's 128 levels with the claims object around it
        if r.random() < 0.2:  # in the header instead
            h = jb(self.hdr(k))[:-1].decode() + ',"deep":' + nest + "}"
            return self.raw(k, h.encode(), self.claims(), legit=legit, label=f"nesting_header_{depth}")
        return self.raw(k, self.hdr(k), body.encode(), legit=legit, label=f"nesting_{depth}")

    def c_numbers(self, k, pub):
        r = self.rng
        field = r.choice(["exp", "exp", "iat", "nbf", "n"])
        val = r.choice(["1e308", "1.7976931348623157e308", "1e400", "-1e400", "1" + "0" * 30, "1" + "0" * 400,
                        "-1e308", "0", "-0", "-1", "9007199254740993", "9223372036854775808", "18446744073709551616",
                        "1e-300", "5e-324", "1E+3", str(self.now + 3600) + ".999999999999999999", "9" * 4000,
                        "-" + "9" * 4000, "0." + "0" * 3000 + "1"])
        body = jb(self.claims())[:-1].decode() if field == "n" else jb({x: y for x, y in self.claims().items() if x != field})[:-1].decode()
        payload = f'{body},"{field}":{val}}}'.encode()
        return self.raw(k, self.hdr(k), payload, legit=True, label=f"huge_number_{field}")

    def c_times(self, k, pub):
        r = self.rng
        now = self.now
        choice = r.randrange(14)
        c = self.claims()
        legit, expect = False, None
        if choice == 0:
            c["exp"], expect = now - 3600, "TOKEN_EXPIRED"
        elif choice == 1:
            c["exp"], expect = now - 300, "TOKEN_EXPIRED"
        elif choice == 2:
            c["exp"], legit = now - 5, True  # within the 30 s leeway
        elif choice == 3:
            c["nbf"], expect = now + 3600, "TOKEN_NOT_YET_VALID"
        elif choice == 4:
            c["nbf"], legit = now + 5, True
        elif choice == 5:
            c["iat"] = now + 3600
        elif choice == 6:
            c["iat"], legit = now + 5, True
        elif choice == 7:
            del c["exp"]
            expect = "INVALID_CLAIMS"
        elif choice == 8:
            c["exp"] = r.choice([str(now + 3600), None, True, [now + 3600], {"t": now + 3600}, ""])
        elif choice == 9:
            c["nbf"] = r.choice([str(now), None, False, [], "yesterday"])
        elif choice == 10:
            c["iat"] = r.choice([str(now), None, {}, "now"])
        elif choice == 11:
            c["exp"], legit = now + 0.5, True
        elif choice == 12:
            c["exp"], c["nbf"], c["iat"], legit = now + 10**9, now - 10**9, 0, True
        else:
            c["exp"], c["iat"] = now + 3600, now + 10**9
        return self.raw(k, self.hdr(k), c, legit=legit, label=f"time_{choice}", expect=expect)

    def c_claim_values(self, k, pub):
        """Legit signatures over odd claim values: accepted or refused, never a crash."""
        r = self.rng
        c = self.claims()
        choice = r.randrange(16)
        keyset = True
        if choice == 0:
            c["sub"] = r.choice([12345, None, {"id": 1}, [self.uuid()], "", "x" * 2000, self.uuid().upper(),
                                 "{" + self.uuid() + "}", "auth0|abc", "00000000-0000-0000-0000-000000000000"])
        elif choice == 1:
            c["role"] = r.choice([["admin"], 1, None, "service_role", "postgres", "", "x" * 1000, "pg_read_server_files"])
        elif choice == 2:
            c["iss"] = r.choice([ISSUER + "/", ISSUER.upper(), "", None, [ISSUER], "https://evil.test"])
            keyset = False
        elif choice == 3:
            c["aud"] = r.choice(["other", [], ["other"], None, 7, AUDIENCE.upper(), [[AUDIENCE]]])
            keyset = False
        elif choice == 4:
            del c[r.choice(["iss", "aud", "sub", "role"])]
            keyset = None if "iss" in c and "aud" in c else False
        elif choice == 5:
            c["email"] = r.choice([1, None, [], "a@b", "é@ü.test", "x" * 3000])
        elif choice == 6:
            c["app_metadata"] = r.choice([[], "admin", {"roles": "admin"}, {"roles": [1, None, {}]},
                                          {"roles": ["a"] * 500}, None, {"tenant": {"a": [1, 2]}}])
        elif choice == 7:
            c["x"] = "\ud83e\udd80" + "\u2028\u2029\ufeff\uffff\u0001"
        elif choice == 8:  # escaped NUL: refused (no NUL characters)
            payload = jb(c)[:-1] + r.choice([b',"x":"a\\u0000b"}', b',"\\u0000":1}', b',"e":{"\\u0000k":1}}'])
            return self.raw(k, self.hdr(k), payload, label="claims_escaped_nul")
        elif choice == 9:  # lone surrogates (JSON-escaped): a policy call, never a crash
            payload = jb(c)[:-1] + r.choice([b',"x":"\\ud800"}', b',"x":"\\udfff\\ud800"}', b',"\\ud83e":1}'])
            return self.raw(k, self.hdr(k), payload, legit=True, label="claims_lone_surrogate")
        elif choice == 10:  # invalid UTF-8 inside the JSON
            bad = r.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80", b"\x80"])
            payload = jb(c)[:-1] + b',"x":"' + bad + b'"}'
            return self.raw(k, self.hdr(k), payload, label="claims_invalid_utf8")
        elif choice == 11:  # many claims
            for i in range(r.choice([100, 400])):
                c[f"c{i}"] = i
        elif choice == 12:  # big but under the cap
            c["blob"] = "y" * r.choice([1000, 4000, 5600])
        elif choice == 13:  # over the cap
            c["blob"] = "z" * r.choice([6200, 9000, 20000])
            return self.raw(k, self.hdr(k), c, label="oversized_legit", expect="INVALID_TOKEN")
        elif choice == 14:
            c["https://example.com/roles"] = ["admin"]
            c["a.b"] = {"c": 1}
        else:
            c["session_id"] = self.uuid()
        return self.raw(k, self.hdr(k), c, legit=True, keyset=keyset, label=f"claim_values_{choice}")

    def c_payload_not_object(self, k, pub):
        r = self.rng
        c = jb(self.claims())
        payload = r.choice([b"[]", b'"sub"', b"1", b"null", b"", b" ", c[:-1], c + b"x", c + b"{}", c.replace(b'"', b"'"),
                            c[:-1] + b',"x":NaN}', c[:-1] + b',"x":Infinity}', c[:-1] + b",}", b"/*x*/" + c,
                            b"\xef\xbb\xbf" + c, c.decode().encode("utf-16-le"), c + b"\x00", b"[" + c + b"]"])
        return self.raw(k, self.hdr(k), payload, label="claims_not_object")

    def c_jwe(self, k, pub):
        r = self.rng
        h = b64e(jb({"alg": r.choice(["RSA-OAEP", "dir", "A256KW", "ECDH-ES"]), "enc": "A256GCM", "kid": k.kid}))
        segs = [h, b64e(os.urandom(r.choice([0, 32, 256]))), b64e(os.urandom(12)), b64e(os.urandom(r.randrange(1, 200))),
                b64e(os.urandom(16))]
        return Case(".".join(segs), "jwe", k, "INVALID_TOKEN")

    def c_empty_segments(self, k, pub):
        r = self.rng
        base = r.choice(self.pristine).token
        h, p, s = base.split(".")
        tok = r.choice(["", ".", "..", "...", "....", f"{h}..", f"{h}.{p}.", f".{p}.{s}", f"{h}..{s}", f"..{s}", f"{h}.{p}",
                        f"{h}", f"{h}.{p}.{s}.", f".{h}.{p}.{s}", f"{h}.{p}..{s}", f"{h}.{p}.{s}.{s}"])
        if tok == "":
            return Case("", "empty_token", k)
        if r.random() < 0.3:  # an empty payload, properly signed: a valid JWS, not a valid JWT
            return self.raw(k, self.hdr(k), b"", label="empty_payload_signed")
        return Case(tok, "empty_segments", k, "INVALID_TOKEN")

    def c_sig_surgery(self, k, pub):
        r = self.rng
        si = f"{b64e(jb(self.hdr(k)))}.{b64e(jb(self.claims()))}"
        sig = k.sign(si.encode())
        # the intact token is ours (a later mutation may well undo the surgery)
        self.allow(f"{si}.{b64e(sig)}", k, keyset=True)
        if k.alg in ("ES256", "ES384") and r.random() < 0.35:
            # docs/keys.md: high-S ECDSA signatures are valid JWS and accepted. The twin (r, n - s) of our
            # own signature is as much ours as (r, s): allowed, not a forgery.
            n = P256_N if k.alg == "ES256" else P384_N
            size = len(sig) // 2
            high = (n - int.from_bytes(sig[size:], "big")).to_bytes(size, "big")
            tok = f"{si}.{b64e(sig[:size] + high)}"
            self.allow(tok, k, keyset=True)
            return Case(tok, "ecdsa_high_s", k)
        if k.alg in ("ES256", "ES384"):
            n = P256_N if k.alg == "ES256" else P384_N
            size = len(sig) // 2
            rr, ss = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            bad = r.choice([encode_dss_signature(rr, ss), sig[size:] + sig[:size], bytes(2 * size),
                            sig[:size] + (ss + n).to_bytes(size + 1, "big")[-size:] if ss + n < 2 ** (8 * size) else bytes(size),
                            (rr + n).to_bytes(size + 1, "big")[1:] + sig[size:], b"\x00" + sig, sig[:-1], sig + b"\x00",
                            n.to_bytes(size, "big") + sig[size:], sig[:size] + (1).to_bytes(size, "big")])
        elif k.alg == "EdDSA":
            s_int = int.from_bytes(sig[32:], "little")
            plus_l = (s_int + ED25519_L).to_bytes(32, "little") if s_int + ED25519_L < 2 ** 256 else bytes(32)
            bad = r.choice([sig[:32] + plus_l, bytes(64), sig[32:] + sig[:32], sig[:63], sig + b"\x00",
                            b"\x01" + bytes(31) + bytes(32)])
        elif k.alg.startswith(("RS", "PS")):
            bad = r.choice([b"\x00" + sig, sig[1:], sig + b"\x00", bytes(len(sig)), b"\xff" * len(sig), sig[:128],
                            (int.from_bytes(sig, "big") + k.private.public_key().public_numbers().n).to_bytes(257, "big")])
        else:
            bad = r.choice([sig[:-1], sig + b"\x00", bytes(len(sig)), sig[:16], sig * 2, hashlib.sha256(si.encode()).digest()])
        return Case(f"{si}.{b64e(bad)}", "sig_surgery", k, "INVALID_TOKEN")

    def c_attacker(self, k, pub):
        """The attacker's own keys, naming ours (or nothing)."""
        r = self.rng
        atk = r.choice(self.attacker)
        mine = [x for x in self.keys if x.alg == atk.alg]
        h = {"alg": atk.alg}
        roll = r.random()
        if roll < 0.6 and mine:
            h["kid"] = r.choice(mine).kid
        elif roll < 0.8:
            h["kid"] = atk.kid
        return self.raw(mine[0] if mine else k, h, self.claims(), signer=atk, label="attacker_signed",
                        expect="INVALID_TOKEN")

    # --- mutations (of the text, and of the decoded segments)
    def mutate(self, tok: str) -> str:
        r = self.rng
        for _ in range(r.choices([1, 2, 3], weights=[70, 20, 10])[0]):
            op = r.choices(MUTATIONS, weights=[w for _, w in MUTATIONS_W])[0]
            tok = getattr(self, "m_" + op)(tok)
        return tok

    def pos(self, s):
        return self.rng.randrange(len(s)) if s else 0

    def m_flip_text(self, s):
        if not s:
            return "A"
        i = self.pos(s)
        c = ord(s[i])
        for _ in range(8):
            n = c ^ (1 << self.rng.randrange(8))
            if n != 0 and not 0xD800 <= n <= 0xDFFF:
                return s[:i] + chr(n) + s[i + 1:]
        return s

    def m_flip_bytes(self, s):
        """A bit flipped in a segment's decoded bytes, re-encoded canonically."""
        segs = s.split(".")
        i = self.rng.randrange(len(segs))
        raw = b64d(segs[i])
        if not raw:
            return self.m_flip_text(s)
        raw = bytearray(raw)
        j = self.rng.randrange(len(raw))
        raw[j] ^= 1 << self.rng.randrange(8)
        segs[i] = b64e(bytes(raw))
        return ".".join(segs)

    def m_insert(self, s):
        r = self.rng
        ch = r.choice(INSERTABLE) if r.random() < 0.4 else r.choice(B64)
        i = r.randrange(len(s) + 1)
        return s[:i] + ch * r.choice([1, 1, 1, 2, 4]) + s[i:]

    def m_delete(self, s):
        if not s:
            return s
        i = self.pos(s)
        return s[:i] + s[i + self.rng.choice([1, 1, 1, 2, 3, 8]):]

    def m_truncate(self, s):
        return s[:self.rng.randrange(len(s) + 1)]

    def m_swap_segment(self, s):
        """A segment from a token of another alg (header, payload, signature, or two of them)."""
        r = self.rng
        mine = s.split(".")[0]
        others = [c for c in (r.choice(self.pristine) for _ in range(8)) if not c.token.startswith(mine + ".")]
        other = (others[0] if others and r.random() < 0.8 else r.choice(self.pristine)).token.split(".")
        segs = s.split(".")
        for i in r.sample(range(3), r.choice([1, 1, 2])):
            if i < len(segs):
                segs[i] = other[i]
        return ".".join(segs)

    def m_padding(self, s):
        segs = s.split(".")
        i = self.rng.randrange(len(segs))
        segs[i] += self.rng.choice(["=", "==", "===", "=" * (-len(segs[i]) % 4) or "===="])
        return ".".join(segs)

    def m_std_alphabet(self, s):
        """Standard base64 (+ /), or a segment re-encoded as padded standard base64."""
        if self.rng.random() < 0.5 and ("-" in s or "_" in s):
            return s.replace("-", "+").replace("_", "/")
        segs = s.split(".")
        i = self.rng.randrange(len(segs))
        raw = b64d(segs[i])
        if raw is None:
            return s.replace("-", "+")
        segs[i] = base64.b64encode(raw).decode()
        return ".".join(segs)

    def m_noncanonical(self, s):
        """Non-zero trailing bits in a segment's last character (same bytes when decoded leniently)."""
        segs = s.split(".")
        candidates = [i for i, g in enumerate(segs) if len(g) % 4 in (2, 3) and g[-1] in B64]
        if not candidates:
            return self.m_padding(s)
        i = self.rng.choice(candidates)
        g = segs[i]
        unused = 4 if len(g) % 4 == 2 else 2
        v = B64.index(g[-1])
        v = (v & ~((1 << unused) - 1)) | self.rng.randrange(1, 1 << unused)
        segs[i] = g[:-1] + B64[v]
        return ".".join(segs)

    def m_whitespace(self, s):
        r = self.rng
        ws = r.choice([" ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\ufeff", "\x0b", "\x0c"])
        where = r.random()
        if where < 0.3:
            return ws + s
        if where < 0.6:
            return s + ws
        if where < 0.8:
            return "\n".join(s[i:i + 64] for i in range(0, len(s), 64))
        i = r.randrange(len(s) + 1)
        return s[:i] + ws + s[i:]

    def m_prefix(self, s):
        return self.rng.choice(["Bearer ", "bearer ", "Bearer  ", "JWT ", "Token ", "Authorization: Bearer ", '"', "'"]) + s

    def m_dots(self, s):
        r = self.rng
        i = r.randrange(len(s) + 1)
        if r.random() < 0.5:
            return s[:i] + "." * r.choice([1, 2, 3]) + s[i:]
        return s.replace(".", r.choice(["", "..", ",", "。", "%2E"]), r.choice([1, 2]))

    def m_case(self, s):
        if not s:
            return s
        i = self.pos(s)
        return s[:i] + s[i].swapcase() + s[i + 1:]

    def m_unicode(self, s):
        r = self.rng
        i = self.pos(s)
        ch = r.choice(UNICODE)
        if r.random() < 0.5 and s and s[i] in B64[:52]:  # a look-alike in place of a letter
            ch = chr(0xFF21 + ord(s[i]) - 65) if s[i].isupper() else chr(0x1D41A + ord(s[i]) - 97)
            return s[:i] + ch + s[i + 1:]
        return s[:i] + ch + s[i:]

    def m_tamper_claims(self, s):
        """Claims changed (role, sub, exp, aud, admin flags), re-encoded, the signature kept."""
        segs = s.split(".")
        if len(segs) < 2:
            return self.m_flip_text(s)
        c = segment_object(segs[1])
        if c is None:
            return self.m_flip_bytes(s)
        r = self.rng
        what = r.randrange(7)
        if what == 0:
            c["role"] = "service_role"
        elif what == 1:
            c["sub"] = self.uuid()
        elif what == 2:
            c["exp"] = self.now + 10**7
        elif what == 3:
            c["app_metadata"] = {"roles": ["admin"]}
        elif what == 4:
            c["is_admin"] = True
        elif what == 5:
            c.pop("exp", None)
        else:  # same claims, different but equivalent JSON
            segs[1] = b64e(json.dumps(c, indent=r.choice([None, 1])).encode())
            return ".".join(segs)
        segs[1] = b64e(jb(c))
        return ".".join(segs)

    def m_tamper_header(self, s):
        """Header changed (alg to another/none/HS256, kid to another/removed, extras), signature kept."""
        segs = s.split(".")
        h = segment_object(segs[0])
        if h is None:
            return self.m_flip_bytes(s)
        r = self.rng
        what = r.randrange(6)
        if what == 0:
            h["alg"] = r.choice(["HS256", "RS256", "ES256", "PS256", "EdDSA", "HS512", "ES384", "none"])
        elif what == 1:
            h["kid"] = r.choice(self.keys).kid
        elif what == 2:
            h.pop("kid", None)
        elif what == 3:
            h["typ"] = r.choice(["JWT", "at+jwt", None])
        elif what == 4:
            h["alg"] = "none"
            segs = segs[:2] + [""]
        else:
            h["jwk"] = r.choice(self.attacker).jwk
        segs[0] = b64e(jb(h))
        return ".".join(segs)

    def m_oversize(self, s):
        r = self.rng
        segs = s.split(".")
        i = r.randrange(len(segs))
        segs[i] += "".join(r.choice(B64) for _ in range(64)) * ((self.max_bytes - len(s)) // 64 + r.choice([1, 2, 40]))
        return ".".join(segs)

    def m_sig_tail(self, s):
        """Signature bytes shortened, lengthened, zeroed, or another token's."""
        r = self.rng
        segs = s.split(".")
        raw = b64d(segs[-1]) or b""
        op = r.randrange(5)
        if op == 0:
            raw = raw[:-1]
        elif op == 1:
            raw = raw + bytes([r.randrange(256)])
        elif op == 2:
            raw = bytes(len(raw))
        elif op == 3:
            raw = b"\x00" + raw
        else:
            raw = raw[len(raw) // 2:] + raw[:len(raw) // 2]
        segs[-1] = b64e(raw)
        return ".".join(segs)

    def garbage(self):
        r = self.rng
        kind = r.randrange(7)
        if kind == 0:
            return "".join(r.choice(B64) for _ in range(r.randrange(0, 400)))
        if kind == 1:
            return ".".join(b64e(os.urandom(r.randrange(0, 80))) for _ in range(r.choice([2, 3, 3, 3, 4, 5, 7])))
        if kind == 2:
            return "".join(chr(r.randrange(1, 0xD800)) for _ in range(r.randrange(1, 200)))
        if kind == 3:
            return r.choice(["null", "undefined", "Bearer", "Bearer ", "{}", '{"alg":"none"}', "eyJ", "eyJ.eyJ.",
                             ".".join(["eyJ"] * 3), "\\x00", "%00", "'; DROP TABLE auth.users; --", "$1", "a" * 10000,
                             "." * 5000, " " * 300])
        if kind == 4:  # JSON (not base64) segments
            return ".".join(json.dumps(x) for x in (self.hdr(r.choice(self.keys)), self.claims(), "sig"))
        if kind == 5:  # a base64url encoding of a whole token
            return b64e(r.choice(self.pristine).token.encode())
        return r.choice(self.pristine).token[::-1]

    def next(self) -> Case:
        r = self.rng
        roll = r.random()
        if roll < 0.05:
            return r.choice(self.pristine)
        if roll < 0.63:
            base = r.choice(self.pristine)
            tok = base.token
            for _ in range(4):  # a mutation that changed nothing is no mutation
                tok = self.mutate(base.token)
                if tok != base.token:
                    break
            return Case(tok, "mutated_valid", base.key)
        if roll < 0.85:
            return r.choice(self.pool)
        if roll < 0.95:
            base = r.choice(self.pool)
            return Case(self.mutate(base.token), "mutated_crafted", base.key)
        return Case(self.garbage(), "garbage", r.choice(self.keys))

    def fill_pool(self, n):
        while len(self.pool) < n:
            c = self.crafted()
            if c is not None:
                self.pool.append(c)


CRAFTED_W = [("alg_none", 6), ("alg_odd", 4), ("hmac_confusion", 12), ("wrong_kid", 7), ("odd_kid", 5), ("crit", 4),
             ("key_headers", 5), ("typ", 4), ("header_bytes", 7), ("dup_claims", 5), ("nesting", 4), ("numbers", 5),
             ("times", 8), ("claim_values", 9), ("payload_not_object", 4), ("jwe", 3), ("empty_segments", 4),
             ("sig_surgery", 8), ("attacker", 6)]
CRAFTED = [name for name, _ in CRAFTED_W]
MUTATIONS_W = [("flip_text", 20), ("flip_bytes", 20), ("insert", 8), ("delete", 8), ("truncate", 5), ("swap_segment", 7),
               ("padding", 3), ("std_alphabet", 3), ("noncanonical", 4), ("whitespace", 4), ("prefix", 2), ("dots", 3),
               ("case", 3), ("unicode", 3), ("tamper_claims", 8), ("tamper_header", 6), ("oversize", 1), ("sig_tail", 5)]
MUTATIONS = [name for name, _ in MUTATIONS_W]
INSERTABLE = ".=+/ \t\n\r~!$%&*()[]{}|\\\"'`,;:<>?@#^\x01\x1f\x7f\x80\xa0é€𝄞\u2028\ufeff\uffff"
UNICODE = ["é", "€", "𝄞", "\u00a0", "\u200b", "\u2028", "\ufeff", "\uffff", "\U0010ffff", "\x01", "\x7f", "\x85", "ı", "İ", "ß"]


def big_cases(fz: Fuzzer, n: int):
    """For the lane with auth.max_token_bytes = 1 MiB: the parsers, past the default cap."""
    r = fz.rng
    out = []
    for i in range(n):
        k = r.choice(fz.keys)
        kind = i % 10
        c = fz.claims()
        if kind == 0:
            body = jb(c)[:-1] + b',"deep":' + b"[" * 10000 + b"]" * 10000 + b"}"
            out.append(fz.raw(k, fz.hdr(k), body, label="big_nesting_arrays_10k"))
        elif kind == 1:
            body = jb(c)[:-1] + b',"deep":' + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b"}"
            out.append(fz.raw(k, fz.hdr(k), body, label="big_nesting_objects_10k"))
        elif kind == 2:
            h = jb(fz.hdr(k))[:-1] + b',"deep":' + b"[" * 20000 + b"]" * 20000 + b"}"
            out.append(fz.raw(k, h, c, label="big_nesting_header_20k"))
        elif kind == 3:
            digits = r.choice([20000, 100000])
            body = jb({x: y for x, y in c.items() if x != "exp"})[:-1] + b',"exp":' + b"9" * digits + b"}"
            out.append(fz.raw(k, fz.hdr(k), body, legit=True, label="big_number_exp"))
        elif kind == 4:
            c["blob"] = ["y" * 1000] * r.choice([20, 100])
            out.append(fz.raw(k, fz.hdr(k), c, legit=True, label="big_claims_legit"))
        elif kind == 5:
            out.append(fz.raw(k, fz.hdr(k, kid="k" * 50000), c, legit=True, keyset=False, label="big_kid"))
        elif kind == 6:
            out.append(Case(".".join(["eyJhbGciOiJIUzI1NiJ9"] * 10000), "big_segments", k, "INVALID_TOKEN"))
        elif kind == 7:
            body = b'{"sub":"' + fz.uuid().encode() + b'",' + b" " * 100000 + jb(c)[1:]
            out.append(fz.raw(k, fz.hdr(k), body, label="big_whitespace_dup_sub"))
        elif kind == 8:
            base = r.choice(fz.pristine)
            out.append(Case(fz.mutate(fz.m_oversize(base.token)), "big_mutated", base.key))
        else:
            c.update({f"c{j}": j for j in range(4000)})  # ~15 µs per member to verify and bind: kept small
            out.append(fz.raw(k, fz.hdr(k), c, legit=True, label="big_many_claims"))
    return out


# ------------------------------------------------------------------------------------ SQL
RUNNER = r"""
CREATE SCHEMA fuzz_sql;
GRANT USAGE ON SCHEMA fuzz_sql TO PUBLIC;
CREATE FUNCTION fuzz_sql.run(mode text, tokens text[], keys jsonb[], kidx int[])
RETURNS TABLE (i int, state text, code text, sub text, uid text, msg text, detail text)
LANGUAGE plpgsql AS $fn$
DECLARE
  t text; c jsonb; u uuid; r text; st text; m text; d text;
BEGIN
  FOR k IN 1 .. coalesce(array_length(tokens, 1), 0) LOOP
    t := tokens[k]; c := NULL; u := NULL; r := NULL;
    BEGIN
      IF mode = 'keyset' THEN
        c := auth.verify(t);
      ELSIF mode = 'key' THEN
        c := auth.verify(t, keys[kidx[k]]);
      ELSIF mode = 'authenticate' THEN
        c := auth.authenticate(t);
        u := auth.uid();
      ELSE
        PERFORM set_config('auth.jwt', t, true);
        CASE k % 3
          WHEN 0 THEN u := auth.uid(); c := auth.jwt(); r := auth.role();
          WHEN 1 THEN c := auth.jwt(); r := auth.role(); u := auth.uid();
          ELSE r := auth.role(); u := auth.uid(); c := auth.jwt();
        END CASE;
      END IF;
      i := k; state := CASE WHEN c IS NULL THEN 'anonymous' ELSE 'accepted' END; code := NULL;
      sub := c ->> 'sub'; uid := u::text; msg := NULL; detail := NULL;
      RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
      i := k; state := st; code := split_part(m, ':', 1); sub := NULL; uid := NULL; msg := m; detail := d;
      RETURN NEXT;
    END;
  END LOOP;
END $fn$;
"""


@dataclasses.dataclass
class Lane:
    name: str
    user: str
    settings: tuple = ()
    conn: Optional[psycopg.Connection] = None
    pid: Optional[int] = None


@dataclasses.dataclass
class Results:
    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    by_label: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    details: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bad_errors: list = dataclasses.field(default_factory=list)
    forgeries: list = dataclasses.field(default_factory=list)
    missed: list = dataclasses.field(default_factory=list)
    wrong_code: list = dataclasses.field(default_factory=list)
    wrong_identity: list = dataclasses.field(default_factory=list)
    lost: list = dataclasses.field(default_factory=list)
    total: int = 0
    seconds: float = 0.0
    backend_cpu: str = "?"


class Fuzz:
    def __init__(self, cluster):
        self.cluster = cluster
        self.env = Env(cluster, None, None)  # test_contexts' server-log reader
        self.log_start = self.env.log_size()
        self.keys, self.attacker = make_keys()
        self.lanes = [Lane("app-1", "app_user"), Lane("app-2", "app_user"),
                      Lane("big", "postgres", (f"SET auth.max_token_bytes = {BIG_MAX_TOKEN_BYTES}",))]
        self.results = None

    def setup(self):
        with self.cluster.connect(autocommit=True) as admin:
            admin.execute("DROP SCHEMA IF EXISTS fuzz_sql CASCADE")
            admin.execute(RUNNER)
            admin.execute("SELECT auth.add_account_issuer(%s)", (ISSUER,))
            for k in self.keys:
                admin.execute("SELECT auth.add_key(%s::jsonb, %s, ARRAY[%s])", (json.dumps(k.jwk), ISSUER, AUDIENCE))
            libdir = admin.execute("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'").fetchone()[0]
        self.library = os.path.join(libdir, "auth_ext.so")
        self.library_stamp = self.library_mtime()
        for lane in self.lanes:
            lane.conn = self.cluster.connect(user=lane.user, autocommit=True)
            for s in lane.settings:
                lane.conn.execute(s)
            lane.pid = lane.conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def library_mtime(self):
        try:
            return os.stat(self.library).st_mtime_ns
        except OSError:
            return None

    def library_note(self):
        """A crash while the library file was being replaced (SIGBUS) is no verdict on the code."""
        if self.library_mtime() != self.library_stamp:
            return (f"\nNOTE: {self.library} was replaced during this run (an install): a backend that had "
                    "it mapped may die of SIGBUS; re-run before reading anything into a crash.")
        return ""

    def teardown(self):
        for lane in self.lanes:
            if lane.conn is not None:
                try:
                    lane.conn.close()
                except Exception:  # noqa: BLE001 - a lost connection may not close cleanly
                    pass
        with self.cluster.connect(autocommit=True) as admin:
            admin.execute("DROP SCHEMA IF EXISTS fuzz_sql CASCADE")
            admin.execute("DELETE FROM auth.key_store WHERE kid LIKE %s", (PREFIX + "%",))
            admin.execute("SELECT auth.drop_account_issuer(%s)", (ISSUER,))

    def run_batch(self, lane, mode, cases, batch_no):
        key_list = self.keys
        keys = [Jsonb(k.jwk) for k in key_list]
        kidx = [key_list.index(c.given or c.key) + 1 if (c.given or c.key) in key_list else 1 for c in cases]
        try:
            rows = lane.conn.execute("SELECT i, state, code, sub, uid, msg, detail FROM fuzz_sql.run(%s, %s, %s, %s)",
                                     (mode, [c.token for c in cases], keys, kidx)).fetchall()
        except psycopg.OperationalError as e:
            path = f"/tmp/fuzz_sql_crash_{SEED}_{batch_no}.json"
            with open(path, "w") as f:
                json.dump({"mode": mode, "lane": lane.name, "tokens": [c.token for c in cases],
                           "labels": [c.label for c in cases], "kids": [c.key.kid if c.key else None for c in cases],
                           "jwks": [k.jwk for k in key_list]}, f)
            return mode, cases, kidx, None, f"{lane.name} lost its connection on batch {batch_no} ({mode}): {e!r}; batch in {path}"
        return mode, cases, kidx, rows, None


@pytest.fixture(scope="module")
def fuzz(cluster):
    f = Fuzz(cluster)
    f.setup()
    yield f
    f.teardown()


def plan(f: Fuzz, fz: Fuzzer, rng: random.Random):
    """The batches, ("app" | "big", mode, cases), generated lazily (SQL runs meanwhile)."""
    fz.fill_pool(min(4000, max(400, TOKENS // 25)))
    n_big = min(400, TOKENS // 100)
    counts = {mode: int(TOKENS * share) for mode, share in SHARES.items()}
    counts["keyset"] -= (n_big + 1) // 2  # the big lane's share (big[0::2] keyset, big[1::2] bound)
    counts["bound"] -= n_big // 2
    counts["authenticate"] += TOKENS - n_big - sum(counts.values())  # rounding
    for no, (mode, n) in enumerate(counts.items()):
        for i in range(0, n, BATCH):
            cases = [fz.next() for _ in range(min(BATCH, n - i))]
            if mode == "key":  # now and then, a key the token was not made for
                cases = [dataclasses.replace(c, given=rng.choice(f.keys)) if rng.random() < 0.15 else c for c in cases]
            yield "app", mode, cases
        if no == 0 and n_big:
            big = big_cases(fz, n_big)
            for bmode, part in (("keyset", big[0::2]), ("bound", big[1::2])):
                for i in range(0, len(part), 50):
                    yield "big", bmode, part[i:i + 50]


def short(tok, n=160):
    return tok if len(tok) <= n else f"{tok[:n]}…({len(tok)} chars)"


def judge(fz: Fuzzer, res: Results, mode, cases, kidx, rows, keys, lane):
    assert len(rows) == len(cases), f"{len(rows)} rows for {len(cases)} tokens"
    for (i, state, code, sub, uid, msg, detail), case, ki in zip(rows, cases, kidx):
        tok = case.token
        given = keys[ki - 1]
        res.total += 1
        if state == "accepted":
            outcome = "accepted"
            if mode == "key":
                legit = (tok, given.kid) in fz.ok_key
            else:
                legit = tok in fz.ok_keyset
            if not legit:
                res.forgeries.append(f"{mode} accepted a token it must refuse [{case.label}] "
                                     f"{'key ' + given.kid if mode == 'key' else ''}: {short(tok, 2000)}")
            if tok in fz.sub_of and sub != fz.sub_of[tok]:
                res.wrong_identity.append(f"{mode}: sub {sub!r}, signed {fz.sub_of[tok]!r}: {short(tok)}")
            if mode in ("bound", "authenticate") and tok in fz.sub_of and uid != fz.sub_of[tok]:
                res.wrong_identity.append(f"{mode}: auth.uid() {uid!r}, signed {fz.sub_of[tok]!r}: {short(tok)}")
        elif state == "anonymous":
            outcome = "anonymous"
            if not (mode == "bound" and tok == ""):
                res.bad_errors.append(f"{mode}: no error and no identity for [{case.label}] {short(tok)!r}")
        else:
            outcome = f"{state} {code}"
            text = f"{msg or ''}\n{detail or ''}"
            if (state not in OUR_STATES or code not in OUR_CODES or not (msg or "").startswith(code + ":")
                    or any(x in text for x in INTERNALS)):
                res.bad_errors.append(f"{mode} [{case.label}] {state} {short(msg or '', 300)!r} "
                                      f"DETAIL {short(detail or '', 300)!r}: {short(tok, 600)!r}")
            if tok in fz.must and (mode != "key" or given is fz.must[tok]) and lane != "big":
                res.missed.append(f"{mode} refused a valid token ({fz.must[tok].kid}): {state} {msg} / {detail}: {tok}")
            if case.expect and lane != "big" and (mode != "key" or given is case.key) and code != case.expect:
                res.wrong_code.append(f"{mode} [{case.label}] {code} ({detail}), expected {case.expect}: {short(tok, 300)!r}")
            res.details[(code, (detail or "")[:70])] += 1
        res.counts[(mode if lane != "big" else f"big:{mode}", outcome)] += 1
        res.by_label[(case.label, outcome)] += 1
    # valid tokens refused by the key path with their own key are "missed" above; the others
    # are accepted or refused as the key and policy decide.


def test_hostile_tokens_through_sql(fuzz):
    rng = random.Random(SEED)
    fz = Fuzzer(rng, fuzz.keys, fuzz.attacker, int(time.time()))
    res = Results()
    cpu0 = {lane.name: cpu_seconds(lane.pid) for lane in fuzz.lanes}
    t0 = time.monotonic()
    # app batches alternate between the two app_user connections, the big lane has its own; the
    # batches are generated here while the lanes run the earlier ones
    lanes = {lane.name: lane for lane in fuzz.lanes}
    queues = {name: queue.Queue() for name in lanes}

    def drain(name):
        out, lost = [], False
        while (item := queues[name].get()) is not None:
            if not lost:
                r = fuzz.run_batch(lanes[name], *item)
                out.append((name, r))
                lost = r[4] is not None
        return out

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(queues)) as pool:
        futures = [pool.submit(drain, name) for name in queues]
        n_app = 0
        try:
            for no, (kind, mode, cases) in enumerate(plan(fuzz, fz, rng)):
                name = "big" if kind == "big" else ("app-1", "app-2")[n_app % 2]
                n_app += kind == "app"
                queues[name].put((mode, cases, no))
        finally:
            for q in queues.values():
                q.put(None)
        done = [x for fut in futures for x in fut.result()]
    res.seconds = time.monotonic() - t0
    cpu = {lane.name: cpu_seconds(lane.pid) for lane in fuzz.lanes}
    if None not in cpu.values() and None not in cpu0.values():
        res.backend_cpu = ", ".join(f"{n} {cpu[n] - cpu0[n]:.1f} s" for n in cpu)
    for name, (mode, cases, kidx, rows, lost) in done:
        if lost:
            res.lost.append(lost)
            continue
        judge(fz, res, mode, cases, kidx, rows, fuzz.keys, "big" if name == "big" else "app")

    summary = summarize(res, fz)
    print(summary)
    if os.environ.get("FUZZ_SQL_DUMP"):  # every (label, outcome) and refusal detail, for a closer look
        with open(os.environ["FUZZ_SQL_DUMP"], "w") as out:
            for (label, outcome), n in sorted(res.by_label.items()):
                print(f"{label:32} {outcome:32} {n}", file=out)
            for (code, detail), n in res.details.most_common():
                print(f"{n:7} {code} {detail}", file=out)
    crash = fuzz.env.crash_lines(fuzz.log_start, wait=3.0 if res.lost else 0.0)
    problems = []
    for what, items in (("connections lost (crash?)", res.lost), ("errors that are not ours", res.bad_errors),
                        ("tokens accepted that this module did not legitimately sign", res.forgeries),
                        ("valid tokens refused", res.missed), ("wrong codes", res.wrong_code),
                        ("wrong identities", res.wrong_identity)):
        if items:
            problems.append(f"{len(items)} {what}:\n  " + "\n  ".join(items[:15]))
    if crash:
        problems.append("server log:\n  " + "\n  ".join(crash[:40]))
    assert not problems, f"{seed_note()}\n" + "\n".join(problems) + "\n" + summary + fuzz.library_note()
    assert res.total >= TOKENS, f"only {res.total} tokens judged {seed_note()}"


def cpu_seconds(pid):
    """utime + stime of a local process (the lanes' backends), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def summarize(res: Results, fz: Fuzzer):
    lines = [f"fuzz_sql: {res.total} tokens in {res.seconds:.1f} s wall (generated meanwhile; backend CPU "
             f"{res.backend_cpu}), "
             f"seed {SEED}, {len(fz.pristine)} valid base tokens, {len(fz.pool)} crafted"]
    modes = sorted({m for m, _ in res.counts})
    for m in modes:
        parts = sorted(((o, n) for (mm, o), n in res.counts.items() if mm == m), key=lambda x: -x[1])
        lines.append(f"  {m:14} {sum(n for _, n in parts):7}: " + ", ".join(f"{o} {n}" for o, n in parts))
    accepted = collections.Counter()
    for (label, outcome), n in res.by_label.items():
        if outcome in ("accepted", "anonymous"):
            accepted[f"{label}:{outcome}"] += n
    lines.append("  accepted by label: " + ", ".join(f"{k} {v}" for k, v in accepted.most_common()))
    lines.append("  most common refusals: " + "; ".join(f"{c} {d!r} {n}" for (c, d), n in res.details.most_common(12)))
    return "\n".join(lines)


@pytest.mark.parametrize("encoding", ["SQL_ASCII", "LATIN1"])
def test_databases_that_are_not_utf8_are_refused(fuzz, encoding):
    """Where SQL text could hold bytes that are not UTF-8, no token could be read safely:
    CREATE EXTENSION refuses such a database, clearly, instead of failing later."""
    db = f"fuzz_sql_{encoding.lower()}"
    with fuzz.cluster.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {db} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    try:
        with fuzz.cluster.connect(dbname=db, autocommit=True) as conn:
            with pytest.raises(psycopg.Error) as e:
                conn.execute("CREATE EXTENSION auth_ext")
            assert e.value.sqlstate == "0A000", e.value
            assert "needs a UTF8 database" in e.value.diag.message_primary, e.value.diag.message_primary
            assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'auth'").fetchone()[0] == 0
    finally:
        with fuzz.cluster.connect(dbname="postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_backends_survived(fuzz):
    """Every backend that ran a lane is still the same process and answers."""
    for lane in fuzz.lanes:
        try:
            pid = lane.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            one = lane.conn.execute("SELECT 1").fetchone()[0]
        except psycopg.Error as e:
            pytest.fail(f"lane {lane.name} (backend {lane.pid}) was lost: {e!r} {seed_note()}{fuzz.library_note()}")
        assert (pid, one) == (lane.pid, 1), f"lane {lane.name}: backend {pid}, was {lane.pid} {seed_note()}"


def test_server_log_has_no_crash(fuzz):
    """No crash line in the server log since this module started."""
    lines = fuzz.env.crash_lines(fuzz.log_start, context=False)
    assert not lines, (f"{len(lines)} crash lines in {fuzz.env.log} {seed_note()}:\n  " + "\n  ".join(lines[:40])
                       + fuzz.library_note())
