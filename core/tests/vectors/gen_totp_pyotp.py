#!/usr/bin/env python3
"""Builds totp_pyotp.json: TOTP/HOTP codes, window decisions and key URIs computed by PyOTP,
an implementation independent of ours, for core/tests/otp_vectors.rs.

Deterministic (fixed seed): re-running it with the same PyOTP gives the same file.
    pip install pyotp  # the file records the version used
    python3 core/tests/vectors/gen_totp_pyotp.py > core/tests/vectors/totp_pyotp.json
"""
import base64
import hashlib
import json
import random
import sys
from importlib.metadata import version
from urllib.parse import quote

import pyotp

rng = random.Random(6238)
DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


# The RFC 6238 Appendix B and RFC 4226 Appendix D values, recomputed by PyOTP: a check of
# the transcription in src/totp.rs, not part of the output.
rfc_seeds = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
rfc6238 = {
    59: ("94287082", "46119246", "90693936"),
    1111111109: ("07081804", "68084774", "25091201"),
    1111111111: ("14050471", "67062674", "99943326"),
    1234567890: ("89005924", "91819424", "93441116"),
    2000000000: ("69279037", "90698825", "38618901"),
    20000000000: ("65353130", "77737706", "47863826"),
}
for t, codes in rfc6238.items():
    for alg, code in zip(("SHA1", "SHA256", "SHA512"), codes):
        totp = pyotp.TOTP(b32(rfc_seeds[alg]), digits=8, digest=DIGESTS[alg])
        assert totp.at(t) == code, (alg, t)
rfc4226 = ["755224", "287082", "359152", "969429", "338314",
           "254676", "287922", "162583", "399871", "520489"]
for i, code in enumerate(rfc4226):
    assert pyotp.HOTP(b32(rfc_seeds["SHA1"])).at(i) == code

totp_cases = []
for alg in DIGESTS:
    for digits in (6, 7, 8):
        for step in (30, 60):
            for length in (16, 20, 32, 64):
                raw = bytes(rng.randrange(256) for _ in range(length))
                secret = b32(raw)
                totp = pyotp.TOTP(secret, digits=digits, digest=DIGESTS[alg], interval=step)
                for now in (0, 59, 1_750_000_000, rng.randrange(1 << 34)):
                    t = now // step
                    # The codes of steps t-2..t+2 and PyOTP's verdict with window 1.
                    neighbours = []
                    for k in range(-2, 3):
                        if t + k < 0:
                            continue
                        code = totp.at((t + k) * step)
                        neighbours.append({
                            "step": t + k,
                            "code": code,
                            # PyOTP refuses negative counters: no verdict at step 0.
                            "pyotp_valid_window_1": (
                                totp.verify(code, for_time=now, valid_window=1) if t >= 1 else None
                            ),
                        })
                    totp_cases.append({
                        "algorithm": alg, "digits": digits, "step": step,
                        "secret_hex": raw.hex(), "secret_base32": secret,
                        "now": now, "time_step": t, "code": totp.at(now),
                        "neighbours": neighbours,
                    })

hotp_cases = []
for alg in DIGESTS:
    raw = bytes(rng.randrange(256) for _ in range(20))
    hotp = pyotp.HOTP(b32(raw), digits=6, digest=DIGESTS[alg])
    for counter in (0, 1, 2, 1 << 32, (1 << 63) - 1, rng.randrange(1 << 63)):
        hotp_cases.append({"algorithm": alg, "secret_hex": raw.hex(),
                           "counter": counter, "code": hotp.at(counter)})

# Key URIs in our format (every parameter explicit, RFC 3986 unreserved characters kept),
# each read back by PyOTP's parser: same secret, issuer, account, parameters and codes.
uri_cases = []
for issuer, account, alg, digits, step in [
    ("auth_ext", "alice@example.com", "SHA1", 6, 30),
    ("Example Co", "alice+mfa@example.com", "SHA1", 6, 30),
    ("Zürich & Co/~x", "bob b. smith", "SHA256", 8, 60),
    ("a?b#c%d", "名前@例え.jp", "SHA512", 7, 30),
]:
    raw = bytes(rng.randrange(256) for _ in range(20))
    enc_issuer = quote(issuer, safe="")
    uri = (f"otpauth://totp/{enc_issuer}:{quote(account, safe='')}?secret={b32(raw)}"
           f"&issuer={enc_issuer}&algorithm={alg}&digits={digits}&period={step}")
    parsed = pyotp.parse_uri(uri)
    assert parsed.issuer == issuer and parsed.name == account, (parsed.issuer, parsed.name)
    assert parsed.byte_secret() == raw and parsed.digits == digits and parsed.interval == step
    assert parsed.digest().name == alg.lower()
    reference = pyotp.TOTP(b32(raw), digits=digits, digest=DIGESTS[alg], interval=step)
    assert parsed.at(1_750_000_000) == reference.at(1_750_000_000)
    uri_cases.append({"issuer": issuer, "account": account, "algorithm": alg,
                      "digits": digits, "step": step, "secret_hex": raw.hex(), "uri": uri,
                      "code_at_1750000000": parsed.at(1_750_000_000)})

json.dump({
    "source": "core/tests/vectors/gen_totp_pyotp.py",
    "pyotp": version("pyotp"),
    "python": sys.version.split()[0],
    "totp": totp_cases,
    "hotp": hotp_cases,
    "uri": uri_cases,
}, sys.stdout, indent=1, ensure_ascii=False)
sys.stdout.write("\n")
