//! Token targets: seed tokens mutated (bytes, segments, base64 forms, header and payload edits,
//! signature edits, alg none, algorithm confusion, embedded keys, hostile JSON, lengths), and
//! compact JWS strings generated from scratch, through every verification entry point.
//!
//! Forgery oracle: a token an entry point accepts must be byte-identical to a seed token the
//! model says that entry point accepts (the core enforces canonical base64url, so no other
//! spelling of a valid token may pass). The one other acceptable case is a second valid ECDSA
//! signature (r, n − s) over a seed token's exact header and payload: ECDSA signatures are
//! malleable by design and RFC 7518 does not ask verifiers to refuse high-s; it is counted, not
//! failed, since it carries no content the key holder did not sign.

use crate::fixture::{self, algs_of, hmac_sign, Fixture, Original, Private, NOW, POLICIES};
use crate::util::{as_text, havoc, unhex, Rng, B64URL};
use crate::{Ctx, Kind};
use auth_core::identity::{Identity, DEFAULT_ROLES_CLAIM};
use auth_core::verify::{verify_jws_with_key, verify_jwt_with_key};
use auth_core::{b64, jws, verify_jws, verify_jwt, Alg, AuthError};
use serde_json::{json, Map, Value};

/// The orders of the P-256 and P-384 groups (big-endian) and of the Ed25519 base point
/// (little-endian, as signatures encode S).
const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const P384_N: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";
const ED25519_L_LE: &str = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";

/// Entry points, for the oracle.
#[derive(Clone, Copy, Debug)]
enum Entry {
    Jwt(usize),
    Jws(usize),
    JwsWithKey(usize, usize),
    JwtWithKey(usize, usize),
}

impl Entry {
    fn expected(self, fx: &Fixture, o: &Original) -> bool {
        match self {
            Entry::Jwt(p) => fx.expect_jwt(o, &POLICIES[p]),
            Entry::Jws(max) => fx.expect_jws(o, max),
            Entry::JwsWithKey(e, max) => fx.expect_jws_with_key(o, e, max),
            Entry::JwtWithKey(e, p) => fx.expect_jwt_with_key(o, e, &POLICIES[p]),
        }
    }
}

/// Checks every seed token against every entry point before fuzzing starts.
pub fn sanity(fx: &Fixture, keys: &fixture::ThreadKeys) -> Vec<(Kind, String)> {
    let mut bad = Vec::new();
    for o in &fx.originals {
        let t = o.token.as_str();
        let mut check = |entry: Entry, got: Result<(), AuthError>| {
            let want = entry.expected(fx, o);
            if want != got.is_ok() {
                // Accepting what the model refuses is a forgery (a bypass of a rule).
                let kind = if want { Kind::Invariant } else { Kind::Forgery };
                bad.push((
                    kind,
                    format!(
                        "seed token {:?} via {entry:?}: model says {}, core says {got:?}",
                        o.label,
                        if want { "accept" } else { "refuse" }
                    ),
                ));
            }
        };
        for (pi, p) in POLICIES.iter().enumerate() {
            check(Entry::Jwt(pi), verify_jwt(t, &keys.set, NOW, p).map(|_| ()));
        }
        for max in [8192, 600] {
            check(
                Entry::Jws(max),
                verify_jws(t, &keys.set, NOW, max).map(|_| ()),
            );
        }
        for (ei, entry) in keys.single.iter().enumerate() {
            check(
                Entry::JwsWithKey(ei, 8192),
                verify_jws_with_key(t, entry, 8192).map(|_| ()),
            );
            check(
                Entry::JwtWithKey(ei, 0),
                verify_jwt_with_key(t, entry, NOW, &POLICIES[0]).map(|_| ()),
            );
        }
    }
    bad
}

fn split(tok: &[u8]) -> Vec<Vec<u8>> {
    tok.split(|&b| b == b'.').map(<[u8]>::to_vec).collect()
}

fn join(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.join(&b'.')
}

fn dec(seg: &[u8]) -> Option<Vec<u8>> {
    b64::decode(std::str::from_utf8(seg).ok()?)
}

fn enc(bytes: &[u8]) -> Vec<u8> {
    b64::encode(bytes).into_bytes()
}

/// JSON values an attacker tries as `alg`.
fn alg_value(r: &mut Rng) -> Value {
    match r.below(4) {
        0 | 1 => json!(r.pick(&auth_core::alg::ALL).name()),
        2 => json!(r.pick(&[
            "none",
            "None",
            "NONE",
            "nOnE",
            "",
            "ES512",
            "RS1",
            "HS1",
            "hs256",
            " HS256",
            "HS256 ",
            "HS256\u{0}",
            "EdDSA\n",
            "Ed25519",
            "ES256K",
            "RSA-OAEP",
            "dir",
            "A128KW",
            "PS256\u{200b}"
        ])),
        _ => r
            .pick(&[
                json!(256),
                json!(null),
                json!(["HS256"]),
                json!({"alg": "HS256"}),
                json!(true),
                json!(1e308),
            ])
            .clone(),
    }
}

/// JSON values an attacker tries as `kid`.
fn kid_value(r: &mut Rng, fx: &Fixture) -> Option<Value> {
    match r.below(6) {
        0 | 1 => Some(json!(r.pick(&fx.entries).kid)),
        2 => None,
        3 => Some(
            r.pick(&[
                json!(null),
                json!(7),
                json!(""),
                json!(["hs256"]),
                json!({"kid": "hs256"}),
                json!(false),
            ])
            .clone(),
        ),
        4 => Some(json!(r.pick(&[
            "../../../../dev/null",
            "hs256\u{0}",
            "HS256",
            "hs256 ",
            " es256",
            "ed25519\n",
            "' OR 1=1 --",
            "kid\u{202e}",
            "\u{1F511}",
        ]))),
        _ => Some(json!("k".repeat(*r.pick(&[40, 41, 255, 256, 1000, 5000])))),
    }
}

/// Re-signs `header.payload` with a key the set does not trust, when one fits the header alg.
fn attacker_signature(fx: &Fixture, r: &mut Rng, header: &[u8], input: &[u8]) -> Option<Vec<u8>> {
    let alg = serde_json::from_slice::<Map<String, Value>>(header)
        .ok()
        .and_then(|h| {
            h.get("alg")
                .and_then(Value::as_str)
                .and_then(Alg::from_name)
        })
        .unwrap_or(*r.pick(&auth_core::alg::ALL));
    let fitting: Vec<usize> = fx
        .attackers
        .iter()
        .copied()
        .filter(|&m| algs_of(&fx.materials[m]).contains(&alg))
        .collect();
    if fitting.is_empty() {
        return None;
    }
    Some(fixture::sign(&fx.materials[*r.pick(&fitting)], alg, input))
}

/// An HMAC secret an attacker can know: a public key in some encoding, or the attacker's own
/// secret (never a trusted HMAC secret: that would sign a real token).
fn confusion_secret(fx: &Fixture, r: &mut Rng) -> Vec<u8> {
    let m = &fx.materials[r.below(fx.materials.len())];
    if !m.confusion_secrets.is_empty() {
        return r.pick(&m.confusion_secrets).clone();
    }
    let attacker = fx
        .attackers
        .iter()
        .map(|&i| &fx.materials[i])
        .find(|m| matches!(m.private, Private::Hmac(_)))
        .expect("attacker HMAC key");
    attacker.raw_public.clone()
}

/// Replaces the signature: kept (so the edit breaks it), re-signed by an untrusted key, or
/// HMAC-ed with a trusted public key as the secret.
fn resign(fx: &Fixture, r: &mut Rng, parts: &mut [Vec<u8>]) -> &'static str {
    if parts.len() < 3 {
        return "";
    }
    let input = [&parts[0][..], b".", &parts[1][..]].concat();
    match r.below(10) {
        0..=5 => "signature kept",
        6..=8 => {
            let header = dec(&parts[0]).unwrap_or_default();
            match attacker_signature(fx, r, &header, &input) {
                Some(sig) => {
                    parts[2] = enc(&sig);
                    "re-signed by an untrusted key"
                }
                None => "signature kept",
            }
        }
        _ => {
            let secret = confusion_secret(fx, r);
            let alg = *r.pick(&[Alg::HS256, Alg::HS384, Alg::HS512]);
            parts[2] = enc(&hmac_sign(alg, &secret, &input));
            "HMAC-ed with key material"
        }
    }
}

fn edit_header(fx: &Fixture, r: &mut Rng, h: &mut Map<String, Value>) -> &'static str {
    match r.below(9) {
        0 => {
            h.insert("alg".into(), alg_value(r));
            "header alg changed"
        }
        1 => {
            match kid_value(r, fx) {
                Some(k) => h.insert("kid".into(), k),
                None => h.remove("kid"),
            };
            "header kid changed"
        }
        2 => {
            let v = r
                .pick(&[
                    json!(["exp"]),
                    json!([]),
                    json!("b64"),
                    json!(["b64"]),
                    json!(null),
                    json!([7]),
                ])
                .clone();
            h.insert("crit".into(), v);
            "header crit"
        }
        3 => {
            let (k, v) = r
                .pick(&[
                    ("b64", json!(false)),
                    ("b64", json!(true)),
                    ("zip", json!("DEF")),
                    ("enc", json!("A128GCM")),
                    ("epk", json!({})),
                ])
                .clone();
            h.insert(k.into(), v);
            "header b64/zip/enc"
        }
        4 => {
            let a = &fx.materials[*r.pick(&fx.attackers)];
            let (k, v) = r
                .pick(&[
                    ("jku", json!("https://evil.example/jwks.json")),
                    ("x5u", json!("https://evil.example/cert.pem")),
                    ("jwk", Value::Object(a.members.clone())),
                    ("x5c", json!(["MIIBkTCB+wIJAKHHIG"])),
                    ("x5t", json!("dGh1bWI")),
                ])
                .clone();
            h.insert(k.into(), v);
            "header key reference"
        }
        5 => {
            h.remove("alg");
            "header alg removed"
        }
        6 => {
            let v = r
                .pick(&[
                    json!("JWT"),
                    json!("at+jwt"),
                    json!(null),
                    json!(1),
                    json!("JWE"),
                ])
                .clone();
            let k = if r.chance(0.5) { "typ" } else { "cty" };
            h.insert(k.into(), v);
            "header typ/cty"
        }
        7 => {
            // Move to another seed token's header wholesale, keeping this payload.
            *h = Map::new();
            h.insert("alg".into(), json!(r.pick(&auth_core::alg::ALL).name()));
            if r.chance(0.7) {
                h.insert("kid".into(), json!(r.pick(&fx.entries).kid));
            }
            "header replaced"
        }
        _ => {
            h.insert(
                format!("x{}", r.below(100)),
                r.pick(&[json!(1), json!("\u{0}"), json!([[[]]]), json!(-0.0)])
                    .clone(),
            );
            "header extra member"
        }
    }
}

fn edit_payload(r: &mut Rng, c: &mut Map<String, Value>) -> &'static str {
    let key = *r.pick(&[
        "exp",
        "nbf",
        "iat",
        "iss",
        "aud",
        "sub",
        "role",
        "app_metadata",
    ]);
    let v = r
        .pick(&[
            json!(4_102_444_800u64),
            json!(NOW - 100_000.0),
            json!(1e300),
            json!(-1e300),
            json!(18_446_744_073_709_551_615u64),
            json!(-9_223_372_036_854_775_808i64),
            json!("4102444800"),
            json!(null),
            json!(true),
            json!([]),
            json!({}),
            json!("https://issuer.example"),
            json!(["api", "authenticated"]),
            json!("service_role"),
            json!({"roles": ["admin"]}),
            json!(0.5),
        ])
        .clone();
    if r.chance(0.15) {
        c.remove(key);
        "claim removed"
    } else {
        c.insert(key.into(), v);
        "claim changed"
    }
}

/// Hostile JSON text for a header or payload.
fn hostile_json(r: &mut Rng, original: &[u8]) -> Vec<u8> {
    let body = String::from_utf8_lossy(original).into_owned();
    let inner = body.trim().trim_start_matches('{').trim_end_matches('}');
    let depth = *r.pick(&[64usize, 126, 127, 128, 129, 1000, 20_000]);
    let nest = |open: &str, close: &str| format!("{}{}", open.repeat(depth), close.repeat(depth));
    let choice = r.below(17);
    let text: Vec<u8> = match choice {
        0 => format!(r#"{{"alg":"none",{inner}}}"#).into_bytes(),
        1 => format!(r#"{{{inner},"alg":"none"}}"#).into_bytes(),
        2 => format!(r#"{{{inner},"exp":9999999999}}"#).into_bytes(),
        3 => format!(r#"{{"\u0061lg":"none",{inner}}}"#).into_bytes(),
        4 => format!(r#"{{{inner},"x":"\u0000"}}"#).into_bytes(),
        5 => [
            format!("{{{inner},\"x\":\"").as_bytes(),
            *r.pick(&[&b"\xff"[..], b"\xc0\x80", b"\xed\xa0\x80", b"\x00", b"\x80"]),
            b"\"}",
        ]
        .concat(),
        6 => format!(r#"{{{inner},"x":"\ud800"}}"#).into_bytes(),
        7 => format!(r#"{{{inner},"x":{}}}"#, nest("[", "]")).into_bytes(),
        8 => format!(r#"{{{inner},"x":{}}}"#, nest(r#"{"a":"#, "}")).into_bytes(),
        9 => format!(
            r#"{{{inner},"exp":{}}}"#,
            r.pick(&[
                "1e400",
                "-1e400",
                "123456789012345678901234567890",
                "1.7976931348623157e309",
                "0.0000000000000000000000001",
                "-0",
                "1E+2",
                "01",
                "1.",
                ".5",
                "+1",
                "NaN",
                "Infinity",
                "0x10"
            ])
        )
        .into_bytes(),
        10 => [&b"\xef\xbb\xbf"[..], original].concat(),
        11 => [&b" \t\r\n"[..], original, b" \n"].concat(),
        12 => [original, *r.pick(&[&b" x"[..], b"{}", b"\0", b",", b"]"])].concat(),
        13 => r
            .pick(&[&b"[]"[..], b"\"s\"", b"null", b"1", b"", b"{", b"}", b"{}"])
            .to_vec(),
        14 => format!(r#"{{{inner},"{}":1}}"#, "k".repeat(r.range(1, 5000))).into_bytes(),
        15 => format!(
            "{{{inner},\"x\":\"{}\"}}",
            "\\u0041".repeat(r.range(1, 2000))
        )
        .into_bytes(),
        _ => {
            let mut v = original.to_vec();
            for _ in 0..r.range(1, 3) {
                havoc(r, &mut v);
            }
            v
        }
    };
    text
}

/// One mutation of a token; returns what it did.
fn mutate(fx: &Fixture, r: &mut Rng, tok: &mut Vec<u8>) -> String {
    let mut parts = split(tok);
    let three = parts.len() == 3;
    let op = r.weighted(&[30, 8, 5, 8, 14, 8, 10, 5, 3, 4, 6, 2]);
    if !three && op != 0 && op != 2 {
        return havoc(r, tok).into();
    }
    let note: String = match op {
        0 => havoc(r, tok).into(),
        1 => {
            let other = split(r.pick(&fx.originals).token.as_bytes());
            let i = r.below(3);
            parts[i] = other[i].clone();
            *tok = join(&parts);
            format!("segment {i} from another seed token")
        }
        2 => {
            let choice = r.below(7);
            match choice {
                0 if !parts.is_empty() => {
                    let i = r.below(parts.len());
                    parts.remove(i);
                }
                1 if !parts.is_empty() => {
                    let i = r.below(parts.len());
                    parts.insert(i, parts[i].clone());
                }
                2 => parts.push(r.pick(&[&b""[..], b"x", b"AAAA", b"eyJ9"]).to_vec()),
                3 => {
                    parts.push(Vec::new());
                    parts.push(Vec::new());
                }
                4 if parts.len() > 1 => {
                    let (a, b) = (r.below(parts.len()), r.below(parts.len()));
                    parts.swap(a, b);
                }
                5 if !parts.is_empty() => {
                    let i = r.below(parts.len());
                    parts[i].clear();
                }
                _ => parts.truncate(r.below(3)),
            }
            *tok = join(&parts);
            format!("segment structure ({choice})")
        }
        3 => {
            let i = r.below(3);
            let seg = &mut parts[i];
            let choice = r.below(8);
            match choice {
                0 => seg.push(b'='),
                1 => seg.extend_from_slice(b"=="),
                2 => {
                    for b in seg.iter_mut() {
                        *b = match *b {
                            b'-' => b'+',
                            b'_' => b'/',
                            x => x,
                        };
                    }
                    if !seg.contains(&b'+') && !seg.is_empty() {
                        let j = r.below(seg.len());
                        seg[j] = *r.pick(b"+/");
                    }
                }
                3 if !seg.is_empty() => {
                    // Same leading bits, different trailing bits in the last character: a
                    // non-canonical spelling of the same bytes.
                    let last = seg.len() - 1;
                    let pos = B64URL.iter().position(|&c| c == seg[last]).unwrap_or(0);
                    // 2 characters carry 1 byte (4 spare bits), 3 carry 2 (2 spare bits).
                    let spare = match seg.len() % 4 {
                        2 => 16,
                        3 => 4,
                        _ => 1,
                    };
                    let base = pos - pos % spare;
                    seg[last] = B64URL[base + r.below(spare)];
                }
                4 => {
                    let j = r.range(0, seg.len());
                    let ws = *r.pick(&[&b" "[..], b"\n", b"\r\n", b"\t", b"%3D", b"\\"]);
                    seg.splice(j..j, ws.iter().copied());
                }
                5 => {
                    for b in seg.iter_mut() {
                        if b.is_ascii_alphabetic() && r.chance(0.2) {
                            *b ^= 0x20;
                        }
                    }
                }
                6 => {
                    // Standard base64 with padding of the same bytes.
                    if let Some(bytes) = dec(seg) {
                        use base64::Engine;
                        *seg = base64::engine::general_purpose::STANDARD
                            .encode(bytes)
                            .into_bytes();
                    }
                }
                _ => {
                    if !seg.is_empty() {
                        seg.pop();
                    }
                }
            }
            *tok = join(&parts);
            format!("base64 form of segment {i} ({choice})")
        }
        4 => {
            let Some(mut h) =
                dec(&parts[0]).and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            else {
                return havoc(r, tok).into();
            };
            let what = edit_header(fx, r, &mut h);
            parts[0] = enc(&serde_json::to_vec(&h).expect("json"));
            let how = resign(fx, r, &mut parts);
            *tok = join(&parts);
            format!("{what}, {how}")
        }
        5 => {
            let Some(mut c) =
                dec(&parts[1]).and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            else {
                return havoc(r, tok).into();
            };
            let what = edit_payload(r, &mut c);
            parts[1] = enc(&serde_json::to_vec(&c).expect("json"));
            let how = resign(fx, r, &mut parts);
            *tok = join(&parts);
            format!("{what}, {how}")
        }
        6 => {
            let what = edit_signature(fx, r, &mut parts);
            *tok = join(&parts);
            what.into()
        }
        7 => {
            // Algorithm confusion: HS* under an asymmetric key's kid (or none), HMAC-ed with
            // that public key in every encoding a confused verifier might use as the secret.
            let asym: Vec<&fixture::EntrySpec> = fx
                .entries
                .iter()
                .filter(|e| !matches!(fx.materials[e.material].private, Private::Hmac(_)))
                .collect();
            let e = *r.pick(&asym);
            let alg = *r.pick(&[Alg::HS256, Alg::HS384, Alg::HS512]);
            let mut h = Map::new();
            h.insert("alg".into(), json!(alg.name()));
            if r.chance(0.7) {
                h.insert("kid".into(), json!(e.kid));
            }
            parts[0] = enc(&serde_json::to_vec(&h).expect("json"));
            let input = [&parts[0][..], b".", &parts[1][..]].concat();
            let m = &fx.materials[e.material];
            let secret = r.pick(&m.confusion_secrets);
            parts[2] = enc(&hmac_sign(alg, secret, &input));
            *tok = join(&parts);
            format!("alg confusion {} with {}'s public key", alg.name(), e.kid)
        }
        8 => {
            let name = *r.pick(&["none", "None", "NONE", "nOnE", "none "]);
            let mut h = Map::new();
            h.insert("alg".into(), json!(name));
            if r.chance(0.5) {
                h.insert("kid".into(), json!(r.pick(&fx.entries).kid));
            }
            parts[0] = enc(&serde_json::to_vec(&h).expect("json"));
            match r.below(4) {
                0 => parts[2].clear(),
                1 => {
                    parts.pop();
                }
                2 => parts[2] = b"AA".to_vec(),
                _ => {}
            }
            *tok = join(&parts);
            format!("alg {name:?}")
        }
        9 => {
            // Embedded or referenced key: the attacker's own key in the header, token signed
            // with it.
            let mi = *r.pick(&fx.attackers);
            let m = &fx.materials[mi];
            let alg = *r.pick(algs_of(m));
            let mut h = Map::new();
            h.insert("alg".into(), json!(alg.name()));
            if let Some(k) = kid_value(r, fx) {
                h.insert("kid".into(), k);
            }
            let mut jwk = m.members.clone();
            jwk.insert("alg".into(), json!(alg.name()));
            let (k, v) = r
                .pick(&[
                    ("jwk", Value::Object(jwk)),
                    ("jku", json!("https://evil.example/jwks.json")),
                    ("x5u", json!("https://evil.example/cert.pem")),
                    ("x5c", json!(["MIIBkTCB+wIJAKHHIG"])),
                ])
                .clone();
            h.insert(k.into(), v);
            parts[0] = enc(&serde_json::to_vec(&h).expect("json"));
            let input = [&parts[0][..], b".", &parts[1][..]].concat();
            parts[2] = enc(&fixture::sign(m, alg, &input));
            *tok = join(&parts);
            format!("embedded {k} with {}, signed by it", m.name)
        }
        10 => {
            let i = r.below(2);
            let original = dec(&parts[i]).unwrap_or_default();
            parts[i] = enc(&hostile_json(r, &original));
            let how = resign(fx, r, &mut parts);
            *tok = join(&parts);
            format!("hostile JSON in segment {i}, {how}")
        }
        _ => {
            let max = r.pick(&POLICIES).max_token_bytes;
            let target = (max as isize + r.range(0, 4) as isize - 2).max(0) as usize;
            let len = tok.len();
            if target > len {
                // Grow the payload segment with base64url characters.
                let extra: Vec<u8> = (0..target - len).map(|_| *r.pick(B64URL)).collect();
                parts[1].extend(extra);
            } else {
                let keep = parts[1].len().saturating_sub(len - target);
                parts[1].truncate(keep);
            }
            *tok = join(&parts);
            format!("length near {max}")
        }
    };
    note
}

fn edit_signature(fx: &Fixture, r: &mut Rng, parts: &mut [Vec<u8>]) -> &'static str {
    let Some(mut sig) = dec(&parts[2]) else {
        parts[2].clear();
        return "signature cleared";
    };
    let n = sig.len();
    let what = match r.below(16) {
        0 if n > 0 => {
            let bit = r.below(n * 8);
            sig[bit / 8] ^= 1 << (bit % 8);
            "signature bit flip"
        }
        1 => {
            sig.iter_mut().for_each(|b| *b = 0);
            "signature zeroed (psychic signature: r = s = 0)"
        }
        2 => {
            sig.iter_mut().for_each(|b| *b = 0xff);
            "signature all ones"
        }
        3 => {
            sig.pop();
            "signature one byte short"
        }
        4 => {
            sig.push(0);
            "signature one byte long"
        }
        5 => {
            sig.insert(0, 0);
            "signature with a leading zero byte"
        }
        6 if n > 0 => {
            sig.remove(0);
            "signature without its first byte"
        }
        7 if n == 64 || n == 96 => {
            // The high-s twin (r, n − s): a second valid ECDSA signature.
            let order = unhex(if n == 64 { P256_N } else { P384_N });
            let s = sig[n / 2..].to_vec();
            if s.as_slice() < order.as_slice() {
                let twin = crate::util::be_sub(&order, &s);
                sig[n / 2..].copy_from_slice(&twin);
            }
            "ECDSA (r, n - s) twin"
        }
        8 if n == 64 || n == 96 => {
            let half = n / 2;
            let (a, b) = sig.split_at_mut(half);
            a.swap_with_slice(b);
            "ECDSA r and s swapped"
        }
        9 if n == 64 || n == 96 => {
            // DER (ASN.1) instead of the fixed r || s form.
            let half = n / 2;
            let body = [
                crate::util::der_uint(&sig[..half]),
                crate::util::der_uint(&sig[half..]),
            ]
            .concat();
            sig = crate::util::der(0x30, &body);
            "ECDSA signature in DER form"
        }
        10 if n == 64 => {
            // Ed25519: S + L (non-canonical S), or R = identity, S = 0 (verifies everything
            // under a small-order key, which the core refuses at the door).
            if r.chance(0.5) {
                let l = unhex(ED25519_L_LE);
                let s = crate::util::le_add32(&sig[32..], &l);
                sig[32..].copy_from_slice(&s);
                "Ed25519 S + L"
            } else {
                sig = vec![0u8; 64];
                sig[0] = 1;
                "Ed25519 R = identity, S = 0"
            }
        }
        11 => {
            let rsa = fx
                .materials
                .iter()
                .find(|m| matches!(m.private, Private::Rsa(_)))
                .expect("rsa material");
            sig = match r.below(3) {
                0 => rsa.raw_public.clone(),
                1 => {
                    let mut one = vec![0u8; 256];
                    one[255] = 1;
                    one
                }
                _ => {
                    let mut nm1 = rsa.raw_public.clone();
                    nm1[255] -= 1;
                    nm1
                }
            };
            "RSA signature n, 1 or n - 1"
        }
        12 => {
            sig = dec(&split(r.pick(&fx.originals).token.as_bytes())[2]).unwrap_or_default();
            "signature of another seed token"
        }
        13 => {
            sig.clear();
            "signature empty"
        }
        14 => {
            sig = [sig.clone(), sig].concat();
            "signature doubled"
        }
        _ => {
            sig = r.bytes(n);
            "signature random"
        }
    };
    parts[2] = enc(&sig);
    what
}

/// Judges one entry point's verdict on `text`.
fn judge(ctx: &mut Ctx, text: &str, entry: Entry, accepted: bool) {
    let fx = ctx.fx;
    match fx.by_token.get(text) {
        Some(&oi) => {
            let o = &fx.originals[oi];
            let want = entry.expected(fx, o);
            if accepted && !want {
                ctx.fail(
                    Kind::Forgery,
                    format!(
                        "{entry:?} accepted seed token {:?}, which it must refuse",
                        o.label
                    ),
                );
            } else if !accepted && want {
                ctx.fail(
                    Kind::Invariant,
                    format!(
                        "{entry:?} refused seed token {:?}, which it must accept",
                        o.label
                    ),
                );
            } else if accepted {
                ctx.count("seed token accepted");
            }
        }
        None if accepted => {
            if high_s_twin(fx, text, entry) {
                ctx.count("ECDSA high-s twin accepted");
            } else {
                ctx.fail(
                    Kind::Forgery,
                    format!("{entry:?} accepted a token that is not a seed token"),
                );
            }
        }
        None => {}
    }
    if accepted {
        ctx.accepted = true;
    }
}

/// True when `text` is a seed token the entry point accepts, with its ECDSA signature (r, s)
/// replaced by (r, n − s).
fn high_s_twin(fx: &Fixture, text: &str, entry: Entry) -> bool {
    let Some(dot) = text.rfind('.') else {
        return false;
    };
    let Some(seeds) = fx.by_signing_input.get(&text[..dot]) else {
        return false;
    };
    let Some(mine) = b64::decode(&text[dot + 1..]) else {
        return false;
    };
    seeds.iter().any(|&oi| {
        let o = &fx.originals[oi];
        let Some(theirs) = b64::decode(&o.token[o.token.rfind('.').expect("3 segments") + 1..])
        else {
            return false;
        };
        let order = match o.alg {
            Alg::ES256 => unhex(P256_N),
            Alg::ES384 => unhex(P384_N),
            _ => return false,
        };
        let half = order.len();
        mine.len() == 2 * half
            && theirs.len() == 2 * half
            && mine[..half] == theirs[..half]
            && theirs[half..] < order[..]
            && mine[half..] == crate::util::be_sub(&order, &theirs[half..])[..]
            && entry.expected(fx, o)
    })
}

/// Error details must not echo the token (DESIGN: no token text in errors).
fn check_detail(ctx: &mut Ctx, text: &str, e: &AuthError) {
    for seg in text.split('.').skip(1) {
        if seg.len() >= 24 && e.detail.contains(seg) {
            ctx.fail(
                Kind::Invariant,
                format!("error detail echoes a token segment: {}", e.detail),
            );
        }
    }
}

/// Every entry point on one token.
fn check_token(ctx: &mut Ctx, r: &mut Rng, text: &str) {
    let keys = ctx.keys;
    let pi = r.below(POLICIES.len());
    let got = ctx.timed("verify_jwt", || {
        verify_jwt(text, &keys.set, NOW, &POLICIES[pi])
    });
    match &got {
        Ok(v) => {
            // What the RLS helpers compute next must not fail on any accepted claims set.
            let _ = Identity::from_claims(&v.claims, DEFAULT_ROLES_CLAIM);
        }
        Err(e) => {
            check_detail(ctx, text, e);
            ctx.refused("verify_jwt", &e.detail);
        }
    }
    judge(ctx, text, Entry::Jwt(pi), got.is_ok());

    let max = *r.pick(&[8192, 8192, 600, 100_000]);
    let got = ctx.timed("verify_jws", || verify_jws(text, &keys.set, NOW, max));
    if let Err(e) = &got {
        check_detail(ctx, text, e);
    }
    judge(ctx, text, Entry::Jws(max), got.is_ok());

    let ei = r.below(keys.single.len());
    let entry = &keys.single[ei];
    if r.chance(0.5) {
        let got = ctx.timed("verify_jws_with_key", || {
            verify_jws_with_key(text, entry, max)
        });
        judge(ctx, text, Entry::JwsWithKey(ei, max), got.is_ok());
    } else {
        let got = ctx.timed("verify_jwt_with_key", || {
            verify_jwt_with_key(text, entry, NOW, &POLICIES[pi])
        });
        judge(ctx, text, Entry::JwtWithKey(ei, pi), got.is_ok());
    }
}

pub fn mutated(ctx: &mut Ctx, r: &mut Rng) {
    let fx = ctx.fx;
    // Mostly tokens the set accepts: those are the ones a forgery would start from.
    let o = loop {
        let o = r.pick(&fx.originals);
        if o.signer.is_some() && o.header_ok && o.payload_ok || r.chance(0.3) {
            break o;
        }
    };
    let mut tok = o.token.clone().into_bytes();
    let rounds = 1 + r.weighted(&[6, 3, 1]);
    let notes: Vec<String> = (0..rounds).map(|_| mutate(fx, r, &mut tok)).collect();
    ctx.set_input(&tok, format!("seed {:?}; {}", o.label, notes.join("; ")));
    let text = as_text(&tok);
    check_token(ctx, r, &text);
}

/// A random JSON value, depth-bounded.
pub fn random_value(r: &mut Rng, depth: usize) -> Value {
    match r.below(if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(r.chance(0.5)),
        2 => json!(r.u64() as i64 >> r.below(64)),
        3 => json!(r.f64() * 10f64.powi(r.range(0, 600) as i32 - 300)),
        4 => json!(random_string(r)),
        5 => json!(r.pick(&[
            "HS256",
            "none",
            "es256",
            "8d8ac610-566d-4ef0-9c22-186b2a5ed793",
            ""
        ])),
        6 => Value::Array(
            (0..r.small_len(6))
                .map(|_| random_value(r, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..r.small_len(6))
                .map(|_| (random_string(r), random_value(r, depth - 1)))
                .collect(),
        ),
    }
}

pub fn random_string(r: &mut Rng) -> String {
    let n = r.small_len(40);
    (0..n)
        .map(|_| match r.below(10) {
            0 => char::from_u32(r.range(0, 0x1f) as u32).unwrap_or('x'),
            1 => char::from_u32(r.range(0x80, 0x10ffff) as u32).unwrap_or('\u{fffd}'),
            _ => *r.pick(&['a', 'k', 'i', 'd', '.', '"', '\\', '/', '-', '0', ' ', '$']),
        })
        .collect()
}

fn gen_header(fx: &Fixture, r: &mut Rng) -> Vec<u8> {
    match r.below(10) {
        0 => hostile_json(r, br#"{"alg":"HS256","kid":"hs256"}"#),
        1 => r.some_bytes(64),
        _ => {
            let mut h = Map::new();
            if r.chance(0.9) {
                h.insert("alg".into(), alg_value(r));
            }
            if let Some(k) = kid_value(r, fx) {
                h.insert("kid".into(), k);
            }
            for _ in 0..r.small_len(4) {
                let k = *r.pick(&[
                    "typ", "cty", "crit", "jku", "jwk", "x5u", "x5c", "b64", "zip", "enc", "x",
                ]);
                h.insert(k.into(), random_value(r, 2));
            }
            serde_json::to_vec(&h).expect("json")
        }
    }
}

fn gen_payload(r: &mut Rng) -> Vec<u8> {
    match r.below(10) {
        0 => hostile_json(r, br#"{"sub":"x","exp":4102444800}"#),
        1 => r.some_bytes(200),
        _ => {
            let mut c = Map::new();
            for k in [
                "sub",
                "exp",
                "nbf",
                "iat",
                "iss",
                "aud",
                "role",
                "app_metadata",
            ] {
                if r.chance(0.5) {
                    let v = if k == "exp" && r.chance(0.6) {
                        json!(NOW + 3600.0)
                    } else {
                        random_value(r, 2)
                    };
                    c.insert(k.into(), v);
                }
            }
            serde_json::to_vec(&c).expect("json")
        }
    }
}

pub fn generated(ctx: &mut Ctx, r: &mut Rng) {
    let fx = ctx.fx;
    let header = gen_header(fx, r);
    let payload = gen_payload(r);
    let mut segs: Vec<Vec<u8>> = vec![enc(&header), enc(&payload)];
    let input = join(&segs);
    let sig: Vec<u8> = match r.below(6) {
        0 => attacker_signature(fx, r, &header, &input).unwrap_or_default(),
        1 => {
            let secret = confusion_secret(fx, r);
            hmac_sign(
                *r.pick(&[Alg::HS256, Alg::HS384, Alg::HS512]),
                &secret,
                &input,
            )
        }
        2 => dec(&split(r.pick(&fx.originals).token.as_bytes())[2]).unwrap_or_default(),
        3 => vec![0u8; *r.pick(&[32, 48, 64, 96, 256])],
        _ => {
            let n = *r.pick(&[
                0, 1, 2, 31, 32, 33, 48, 63, 64, 65, 95, 96, 255, 256, 257, 384, 512,
            ]);
            r.bytes(n)
        }
    };
    segs.push(enc(&sig));
    // Structure: mostly three canonical segments; sometimes raw text, other counts, odd sizes.
    if r.chance(0.15) {
        let i = r.below(3);
        segs[i] = match r.below(3) {
            0 => [&header, &payload, &sig][i].clone(),
            1 => (0..r.small_len(100)).map(|_| *r.pick(B64URL)).collect(),
            _ => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .encode([&header, &payload, &sig][i])
                    .into_bytes()
            }
        };
    }
    if r.chance(0.08) {
        match r.below(3) {
            0 => segs.truncate(r.below(3)),
            1 => segs.extend((0..r.range(1, 3)).map(|_| b"eyJ9".to_vec())),
            _ => segs.insert(r.below(3), Vec::new()),
        }
    }
    let mut tok = join(&segs);
    if r.chance(0.05) {
        let target = *r.pick(&[8191usize, 8192, 8193, 20_000, 200_000]);
        while tok.len() < target {
            tok.push(*r.pick(B64URL));
        }
    }
    ctx.set_input(&tok, "generated compact JWS");
    let text = as_text(&tok);
    let max = *r.pick(&[8192, 100_000]);
    let _ = ctx.timed("parse_compact", || {
        jws::parse_compact(&text, max).map(|c| c.header)
    });
    let _ = ctx.timed("parse_header", || jws::parse_header(&header));
    check_token(ctx, r, &text);
}
