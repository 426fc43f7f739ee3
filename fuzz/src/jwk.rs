//! JWK target: generated and mutated JWKs of every kty (short secrets, small and huge RSA
//! moduli, even moduli and bad exponents, off-curve and small-order points, non-canonical
//! encodings, wrong lengths, `use: enc`, odd `alg`, private members, hostile values) through
//! `Jwk::parse`, `parse_jwks`, `KeyEntry::new` and the thumbprint.
//!
//! Oracle: a key the core accepts must satisfy, checked independently here, every rule the
//! module documents, must be usable (a verifier builds; an HMAC or a real signature by the
//! matching private key verifies; a random signature does not), and must round-trip through
//! `to_json` with the same kid, alg and RFC 7638 thumbprint.

use crate::fixture::{self, hmac_sign, Fixture, Private};
use crate::tokens::{random_string, random_value};
use crate::util::{as_text, havoc, unhex, Rng, B64URL};
use crate::{Ctx, Kind};
use auth_core::jwk::{parse_jwks, Jwk, Material, SMALL_ORDER_ED25519_Y};
use auth_core::{b64, json, Alg, ErrorCode, KeyEntry};
use aws_lc_rs::agreement;
use aws_lc_rs::rand::SystemRandom;
use serde_json::{json, Map, Value};

/// The largest RSA modulus the crypto backend verifies with (aws-lc's RSA_*_2048_8192_*).
const BACKEND_MAX_RSA_BITS: usize = 8192;
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];
/// 2^255 - 19, little-endian.
const ED25519_P_LE: &str = "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
const P256_P: &str = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff";

fn s(bytes: &[u8]) -> Value {
    json!(b64::encode(bytes))
}

/// A random odd number of exactly `bits` bits, big-endian.
fn random_modulus(r: &mut Rng, bits: usize) -> Vec<u8> {
    let nbytes = bits.div_ceil(8);
    let mut n = r.bytes(nbytes);
    let top = bits - (nbytes - 1) * 8; // bits used in the first byte, 1..=8
    n[0] &= (1u16 << top).wrapping_sub(1) as u8;
    n[0] |= 1 << (top - 1);
    n[nbytes - 1] |= 1;
    n
}

fn rsa_n(r: &mut Rng, fx: &Fixture) -> Value {
    match r.below(8) {
        0 | 1 => {
            let m = fx
                .materials
                .iter()
                .filter(|m| matches!(m.private, Private::Rsa(_)))
                .nth(r.below(2))
                .expect("rsa");
            s(&m.raw_public)
        }
        2 => {
            let bits = *r.pick(&[
                512, 1024, 2047, 2048, 2049, 3072, 4096, 8191, 8192, 8193, 9000, 12288, 16384,
                16385, 20000,
            ]);
            s(&random_modulus(r, bits))
        }
        3 => {
            let bits = *r.pick(&[2048, 4096]);
            let mut n = random_modulus(r, bits);
            let last = n.len() - 1;
            n[last] &= 0xfe;
            s(&n)
        }
        4 => {
            let mut n = vec![0u8; r.range(1, 3)];
            n.extend(random_modulus(r, 2048));
            s(&n)
        }
        5 => s(&[]),
        6 => s(&vec![0xff; 256]),
        _ => {
            let bits = r.range(2000, 2100);
            s(&random_modulus(r, bits))
        }
    }
}

fn rsa_e(r: &mut Rng) -> Value {
    json!(r.pick(&[
        "AQAB", "AQAB", "Aw", "AQ", "Ag", "AAEAAQ", "AAAAAQAB", "AQAAAAE", "AQAC", "_____w", "",
        "AA", "BQ", "EQ", "AQABAQAB",
    ]))
}

fn ec_point(r: &mut Rng, fx: &Fixture, size: usize) -> (Value, Value) {
    let real: Vec<&fixture::Material> = fx
        .materials
        .iter()
        .filter(|m| matches!(m.private, Private::Ec(_)) && m.raw_public.len() == 1 + 2 * size)
        .collect();
    let p = &r.pick(&real).raw_public;
    let (x, y) = (p[1..1 + size].to_vec(), p[1 + size..].to_vec());
    match r.below(9) {
        0..=2 => (s(&x), s(&y)),
        3 => {
            let mut y2 = y.clone();
            y2[size - 1] ^= 1;
            (s(&x), s(&y2))
        }
        4 => (s(&vec![0; size]), s(&vec![0; size])),
        5 => (s(&x), s(&unhex(P256_P))),
        6 => (s(&y), s(&x)),
        7 => {
            let mut x2 = vec![0u8];
            x2.extend(&x);
            (s(&x2), s(&y))
        }
        _ => (s(&r.bytes(size)), s(&r.bytes(size))),
    }
}

fn okp_x(r: &mut Rng, fx: &Fixture) -> Value {
    match r.below(8) {
        0..=2 => {
            let real: Vec<&fixture::Material> = fx
                .materials
                .iter()
                .filter(|m| matches!(m.private, Private::Ed(_)))
                .collect();
            s(&r.pick(&real).raw_public)
        }
        3 => {
            let mut x = unhex(r.pick::<&str>(&SMALL_ORDER_ED25519_Y));
            if r.chance(0.5) {
                x[31] |= 0x80;
            }
            s(&x)
        }
        4 => {
            // Non-canonical: y + p for a small y (still below 2^255).
            let mut x = unhex(ED25519_P_LE);
            x[0] = x[0].wrapping_add(r.range(0, 18) as u8);
            s(&x)
        }
        5 => s(&r.bytes(32)),
        6 => {
            let n = *r.pick(&[0, 31, 33, 64]);
            s(&r.bytes(n))
        }
        _ => {
            let mut y = [0u8; 32];
            y[0] = r.range(0, 20) as u8;
            if r.chance(0.3) {
                y[31] = 0x80;
            }
            s(&y)
        }
    }
}

fn gen_alg(r: &mut Rng, natural: &str) -> Option<Value> {
    match r.below(10) {
        0..=4 => Some(json!(natural)),
        5 => None,
        6 => Some(json!(r.pick(&auth_core::alg::ALL).name())),
        7 => Some(json!(r.pick(&[
            "none", "ES512", "RSA-OAEP", "hs256", "EdDSA ", "Ed25519", ""
        ]))),
        _ => Some(r.pick(&[json!(null), json!(256), json!(["ES256"])]).clone()),
    }
}

/// A JWK of a random kty with members from palettes of good and bad values.
fn gen_jwk(r: &mut Rng, fx: &Fixture) -> Value {
    let mut o = Map::new();
    match r.below(5) {
        0 => {
            let alg = *r.pick(&["HS256", "HS384", "HS512"]);
            o.insert("kty".into(), json!("oct"));
            let len = *r.pick(&[0, 1, 16, 31, 32, 33, 47, 48, 63, 64, 65, 128, 1000]);
            o.insert("k".into(), s(&r.bytes(len)));
            if let Some(a) = gen_alg(r, alg) {
                o.insert("alg".into(), a);
            }
        }
        1 => {
            let alg = *r.pick(&["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]);
            o.insert("kty".into(), json!("RSA"));
            o.insert("n".into(), rsa_n(r, fx));
            o.insert("e".into(), rsa_e(r));
            if let Some(a) = gen_alg(r, alg) {
                o.insert("alg".into(), a);
            }
        }
        2 | 3 => {
            let (crv, alg, size) = *r.pick(&[("P-256", "ES256", 32), ("P-384", "ES384", 48)]);
            o.insert("kty".into(), json!("EC"));
            o.insert("crv".into(), json!(crv));
            let size = if r.chance(0.9) { size } else { 80 - size };
            let (x, y) = ec_point(r, fx, size);
            o.insert("x".into(), x);
            o.insert("y".into(), y);
            if r.chance(0.5) {
                if let Some(a) = gen_alg(r, alg) {
                    o.insert("alg".into(), a);
                }
            }
        }
        _ => {
            o.insert("kty".into(), json!("OKP"));
            o.insert("crv".into(), json!("Ed25519"));
            o.insert("x".into(), okp_x(r, fx));
            if r.chance(0.5) {
                if let Some(a) = gen_alg(r, "EdDSA") {
                    o.insert("alg".into(), a);
                }
            }
        }
    }
    if r.chance(0.6) {
        let kid = match r.below(6) {
            0 => json!(""),
            1 => json!("k".repeat(*r.pick(&[255, 256]))),
            2 => json!("a\u{7}b"),
            3 => json!(random_string(r)),
            4 => json!(7),
            _ => json!(format!("key-{}", r.below(5))),
        };
        o.insert("kid".into(), kid);
    }
    Value::Object(o)
}

/// One member-level mutation.
fn mutate_member(r: &mut Rng, fx: &Fixture, v: &mut Value) -> &'static str {
    let Some(o) = v.as_object_mut() else {
        return "not an object";
    };
    let member = *r.pick(&[
        "kty", "alg", "kid", "use", "key_ops", "crv", "x", "y", "n", "e", "k", "x5c", "ext",
    ]);
    match r.below(8) {
        0 => {
            o.remove(member);
            "member removed"
        }
        1 => {
            let val = match member {
                "kty" => json!(r.pick(&["oct", "RSA", "EC", "OKP", "rsa", "ec", "", "oct "])),
                "crv" => json!(r.pick(&[
                    "P-256",
                    "P-384",
                    "P-521",
                    "Ed25519",
                    "X25519",
                    "Ed448",
                    "secp256k1",
                    "p-256"
                ])),
                "use" => r
                    .pick(&[
                        json!("sig"),
                        json!("enc"),
                        json!("Sig"),
                        json!(null),
                        json!(["sig"]),
                    ])
                    .clone(),
                "key_ops" => r
                    .pick(&[
                        json!(["verify"]),
                        json!(["sign"]),
                        json!([]),
                        json!("verify"),
                        json!(["verify", "sign"]),
                        json!([1]),
                    ])
                    .clone(),
                "alg" => gen_alg(r, "ES256").unwrap_or(json!(null)),
                "n" => rsa_n(r, fx),
                "e" => rsa_e(r),
                "x" if r.chance(0.5) => okp_x(r, fx),
                "x" | "y" => {
                    let size = *r.pick(&[32, 48]);
                    ec_point(r, fx, size).0
                }
                _ => s(&r.some_bytes(64)),
            };
            o.insert(member.into(), val);
            "member set"
        }
        2 => {
            o.insert(member.into(), random_value(r, 2));
            "member set to a random value"
        }
        3 => {
            // A non-canonical spelling of a base64url member.
            let Some(text) = o.get(member).and_then(Value::as_str).map(str::to_owned) else {
                return "no such string member";
            };
            let mut t = text.into_bytes();
            match r.below(5) {
                0 => t.push(b'='),
                1 => {
                    for c in t.iter_mut() {
                        *c = match *c {
                            b'-' => b'+',
                            b'_' => b'/',
                            c => c,
                        }
                    }
                }
                2 if !t.is_empty() => {
                    let last = t.len() - 1;
                    let pos = B64URL.iter().position(|&c| c == t[last]).unwrap_or(0);
                    t[last] = B64URL[pos ^ 1];
                }
                3 => t.insert(0, b'A'),
                _ => t.push(b' '),
            }
            o.insert(member.into(), json!(as_text(&t)));
            "member spelled differently"
        }
        4 => {
            let mut t = o
                .get(member)
                .and_then(Value::as_str)
                .unwrap_or("AQAB")
                .as_bytes()
                .to_vec();
            havoc(r, &mut t);
            o.insert(member.into(), json!(as_text(&t)));
            "member bytes mutated"
        }
        5 => {
            o.insert(
                member.into(),
                r.pick(&[
                    json!(1e308),
                    json!(-1),
                    json!(u64::MAX),
                    json!(0.5),
                    json!(true),
                ])
                .clone(),
            );
            "member set to a number"
        }
        6 => {
            o.insert(
                member.into(),
                json!("A".repeat(*r.pick(&[1, 2, 3, 5, 10_000]))),
            );
            "member set to a long string"
        }
        _ => {
            let d = *r.pick(&PRIVATE_MEMBERS);
            o.insert(d.into(), s(&r.bytes(32)));
            "private member added"
        }
    }
}

/// A starting JWK: a fixture key's public members (with alg, maybe kid), or a generated one.
fn seed_jwk(r: &mut Rng, fx: &Fixture) -> Value {
    if r.chance(0.4) {
        let e = r.pick(&fx.entries);
        let mut v = e.jwk.clone();
        if r.chance(0.3) {
            v.as_object_mut().expect("object").remove("kid");
        }
        v
    } else {
        gen_jwk(r, fx)
    }
}

fn sha256_b64(text: &str) -> String {
    b64::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

fn str_member<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    &b[b.iter().position(|&x| x != 0).unwrap_or(b.len())..]
}

fn bit_len(b: &[u8]) -> usize {
    let b = strip_zeros(b);
    b.first()
        .map_or(0, |&t| (b.len() - 1) * 8 + 8 - t.leading_zeros() as usize)
}

/// Every documented rule, checked on an accepted key from its input JSON. Err names the first
/// one broken.
fn rules(input: &Value, j: &Jwk) -> Result<(), String> {
    let o = input.as_object().ok_or("accepted a non-object")?;
    let kty = str_member(o, "kty").ok_or("accepted without a string kty")?;
    if let Some(u) = o.get("use") {
        if u != "sig" {
            return Err(format!("accepted use {u}"));
        }
    }
    if let Some(ops) = o.get("key_ops") {
        let ok = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "verify"));
        if !ok {
            return Err(format!("accepted key_ops {ops}"));
        }
    }
    if kty != "oct" {
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| o.contains_key(**m)) {
            return Err(format!("accepted a {kty} key with private member {m}"));
        }
    }
    if j.alg.kty() != kty {
        return Err(format!("alg {} on kty {kty}", j.alg.name()));
    }
    match o.get("alg") {
        None if kty == "oct" || kty == "RSA" => return Err("accepted without alg".into()),
        None => {}
        Some(a) if a.as_str().and_then(Alg::from_name) != Some(j.alg) => {
            return Err(format!("input alg {a} but key alg {}", j.alg.name()));
        }
        Some(_) => {}
    }
    let b = |k: &str| -> Result<(String, Vec<u8>), String> {
        let t = str_member(o, k).ok_or(format!("{kty} key without string {k}"))?;
        let bytes = b64::decode(t).ok_or(format!("{k} is not canonical base64url"))?;
        if b64::encode(&bytes) != t {
            return Err(format!("{k} is not canonical"));
        }
        Ok((t.to_string(), bytes))
    };
    let canonical = match kty {
        "oct" => {
            let (ks, k) = b("k")?;
            if k.len() < j.alg.min_secret_bytes() {
                return Err(format!("{}-byte secret for {}", k.len(), j.alg.name()));
            }
            if !matches!(&j.material, Material::Oct(m) if m.as_slice() == k.as_slice()) {
                return Err("secret differs from the input".into());
            }
            format!(r#"{{"k":{},"kty":"oct"}}"#, json!(ks))
        }
        "RSA" => {
            let (ns, n) = b("n")?;
            let (es, e) = b("e")?;
            let bits = bit_len(&n);
            if !(2048..=BACKEND_MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "accepted a {bits}-bit RSA modulus: the verifier only takes 2048..{BACKEND_MAX_RSA_BITS} bits, so no signature can ever verify under this key"
                ));
            }
            if n.last().is_none_or(|x| x & 1 == 0) {
                return Err("even modulus".into());
            }
            let et = strip_zeros(&e);
            if et.is_empty() || et.len() > 4 || et[et.len() - 1] & 1 == 0 || et == [1] {
                return Err("bad exponent".into());
            }
            format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, json!(es), json!(ns))
        }
        "EC" => {
            let crv = str_member(o, "crv").ok_or("EC without crv")?;
            let (alg, size, ecdh) = match crv {
                "P-256" => (Alg::ES256, 32, &agreement::ECDH_P256),
                "P-384" => (Alg::ES384, 48, &agreement::ECDH_P384),
                other => return Err(format!("accepted curve {other:?}")),
            };
            if j.alg != alg {
                return Err(format!("{crv} with alg {}", j.alg.name()));
            }
            let (xs, x) = b("x")?;
            let (ys, y) = b("y")?;
            if x.len() != size || y.len() != size {
                return Err("coordinate length".into());
            }
            // On the curve: an ECDH agreement with a fresh key (another code path than the
            // signature verifier's key parsing) must succeed.
            let point = [&[4u8][..], &x, &y].concat();
            let mine = agreement::EphemeralPrivateKey::generate(ecdh, &SystemRandom::new())
                .map_err(|_| "ECDH keygen")?;
            agreement::agree_ephemeral(
                mine,
                agreement::UnparsedPublicKey::new(ecdh, &point),
                (),
                |_| Ok(()),
            )
            .map_err(|_| format!("accepted an EC point not on {crv}"))?;
            format!(
                r#"{{"crv":"{crv}","kty":"EC","x":{},"y":{}}}"#,
                json!(xs),
                json!(ys)
            )
        }
        "OKP" => {
            if str_member(o, "crv") != Some("Ed25519") {
                return Err("OKP curve".into());
            }
            let (xs, x) = b("x")?;
            let bytes: [u8; 32] = x.as_slice().try_into().map_err(|_| "x length")?;
            let mut y = bytes;
            y[31] &= 0x7f;
            let p = unhex(ED25519_P_LE);
            if y.iter().rev().cmp(p.iter().rev()) != std::cmp::Ordering::Less {
                return Err("accepted y >= p (non-canonical)".into());
            }
            if SMALL_ORDER_ED25519_Y.iter().any(|h| unhex(h)[..] == y[..]) {
                return Err("accepted a small-order point".into());
            }
            let point = curve25519_dalek::edwards::CompressedEdwardsY(bytes)
                .decompress()
                .ok_or("accepted a y with no curve point")?;
            if point.is_small_order() || point.compress().to_bytes() != bytes {
                return Err("accepted a small-order or non-canonical point".into());
            }
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, json!(xs))
        }
        other => return Err(format!("accepted kty {other:?}")),
    };
    let thumb = sha256_b64(&canonical);
    if j.thumbprint != thumb {
        return Err(format!(
            "thumbprint {} but RFC 7638 gives {thumb}",
            j.thumbprint
        ));
    }
    match o.get("kid") {
        None if j.kid != j.thumbprint || j.kid_given => {
            return Err("without a kid, the kid must be the thumbprint".into())
        }
        None => {}
        Some(k) => {
            let k = k.as_str().ok_or("accepted a non-string kid")?;
            if j.kid != k || !j.kid_given {
                return Err("kid differs from the input".into());
            }
            if k.is_empty() || k.len() > 255 || k.chars().any(char::is_control) {
                return Err(format!("accepted kid {k:?}"));
            }
        }
    }
    Ok(())
}

/// Accepted keys must be usable, and must not verify what their key did not sign.
fn usable(ctx: &mut Ctx, r: &mut Rng, j: &Jwk) {
    let entry = match ctx.timed("KeyEntry::new", || KeyEntry::new(j.clone(), None, None)) {
        Ok(e) => e,
        Err(e) => {
            ctx.fail(
                Kind::Invariant,
                format!("Jwk::parse accepted a key KeyEntry::new refuses: {e}"),
            );
            return;
        }
    };
    let msg = r.some_bytes(100);
    let len = match (&j.material, j.alg) {
        (Material::Rsa { n, .. }, _) => bit_len(n).div_ceil(8),
        (_, Alg::HS256) => 32,
        (_, Alg::HS384) => 48,
        (_, Alg::ES384) => 96,
        _ => 64,
    };
    let random = r.bytes(len);
    if ctx.timed("verify_signature", || entry.verify_signature(&msg, &random)) {
        ctx.fail(
            Kind::Forgery,
            format!("a random {len}-byte signature verified under accepted key {j:?}"),
        );
    }
    // A real signature by the key's owner must verify: the HMAC secret is in the JWK; for the
    // public kinds, when the material is a fixture key, its private half signs.
    let real = match &j.material {
        Material::Oct(k) => Some(hmac_sign(j.alg, k, &msg)),
        _ => {
            let key_of = |members: &Map<String, Value>| -> Vec<Option<Vec<u8>>> {
                ["kty", "n", "e", "x", "y"]
                    .iter()
                    .map(|k| {
                        let v = members.get(*k).and_then(Value::as_str)?;
                        let bytes = if *k == "kty" {
                            Some(v.as_bytes().to_vec())
                        } else {
                            b64::decode(v)
                        };
                        bytes.map(|b| strip_zeros(&b).to_vec())
                    })
                    .collect()
            };
            let pubj = j.public_json().unwrap_or_default();
            let mine = key_of(pubj.as_object().expect("object"));
            ctx.fx
                .materials
                .iter()
                .find(|m| key_of(&m.members) == mine && fixture::algs_of(m).contains(&j.alg))
                .map(|m| fixture::sign(m, j.alg, &msg))
        }
    };
    if let Some(sig) = real {
        if !ctx.timed("verify_signature", || entry.verify_signature(&msg, &sig)) {
            ctx.fail(
                Kind::Invariant,
                format!("accepted key {j:?} does not verify its owner's real signature"),
            );
        }
    }
}

/// Judges Jwk::parse on one value.
fn check_one(ctx: &mut Ctx, r: &mut Rng, v: &Value) -> Option<Jwk> {
    let got = ctx.timed("Jwk::parse", || Jwk::parse(v));
    match got {
        Ok(j) => {
            ctx.accepted = true;
            if let Err(why) = rules(v, &j) {
                let kind = if why.contains("small-order") || why.contains("random") {
                    Kind::Forgery
                } else {
                    Kind::Invariant
                };
                ctx.fail(
                    kind,
                    format!("Jwk::parse accepted a key it must refuse: {why}"),
                );
            }
            usable(ctx, r, &j);
            match ctx.timed("Jwk::parse", || Jwk::parse(&j.to_json())) {
                Ok(again) => {
                    if again.kid != j.kid || again.alg != j.alg || again.thumbprint != j.thumbprint
                    {
                        ctx.fail(Kind::Invariant, "to_json does not round-trip".into());
                    }
                }
                Err(e) => ctx.fail(
                    Kind::Invariant,
                    format!("to_json of an accepted key is refused: {e}"),
                ),
            }
            if j.public_json().is_some() == matches!(j.material, Material::Oct(_)) {
                ctx.fail(
                    Kind::Invariant,
                    "public_json of a secret, or none of a public key".into(),
                );
            }
            if let Some(k) = v.get("k").and_then(Value::as_str) {
                if k.len() >= 8 && format!("{j:?}").contains(k) {
                    ctx.fail(Kind::Invariant, "Debug prints the secret".into());
                }
            }
            Some(j)
        }
        Err(e) => {
            ctx.refused("Jwk::parse", &e.detail);
            if e.code != ErrorCode::InvalidParameter {
                ctx.fail(Kind::Invariant, format!("refusal with code {:?}", e.code));
            }
            for secret in ["k", "d"] {
                if let Some(t) = v.get(secret).and_then(Value::as_str) {
                    if t.len() >= 8 && e.detail.contains(t) {
                        ctx.fail(Kind::Invariant, format!("error detail echoes {secret}"));
                    }
                }
            }
            None
        }
    }
}

pub fn run(ctx: &mut Ctx, r: &mut Rng) {
    let fx = ctx.fx;
    match r.below(10) {
        0..=6 => {
            let mut v = seed_jwk(r, fx);
            let rounds = r.below(4);
            let notes: Vec<&str> = (0..rounds).map(|_| mutate_member(r, fx, &mut v)).collect();
            ctx.set_input(
                &serde_json::to_vec(&v).expect("json"),
                format!("JWK; {}", notes.join(", ")),
            );
            check_one(ctx, r, &v);
        }
        7 | 8 => {
            let n = *r.pick(&[0usize, 1, 1, 2, 2, 3, 4]);
            let mut keys: Vec<Value> = (0..n)
                .map(|_| {
                    let mut v = seed_jwk(r, fx);
                    if r.chance(0.3) {
                        mutate_member(r, fx, &mut v);
                    }
                    v
                })
                .collect();
            if n > 0 && r.chance(0.2) {
                keys.push(keys[0].clone());
            }
            let doc = match r.below(12) {
                0 => json!({"keys": keys[..].first().cloned().unwrap_or(json!(null))}),
                1 => Value::Array(keys.clone()),
                2 => json!({"key": keys}),
                _ => json!({"keys": keys, "extra": 1}),
            };
            ctx.set_input(&serde_json::to_vec(&doc).expect("json"), "JWKS");
            let got = ctx.timed("parse_jwks", || parse_jwks(&doc));
            let arr = doc.get("keys").and_then(Value::as_array);
            let singles: Option<Vec<Option<Jwk>>> =
                arr.map(|a| a.iter().map(|k| check_one(ctx, r, k)).collect());
            let expect_ok = singles.as_ref().is_some_and(|s| {
                let all: Option<Vec<&Jwk>> = s.iter().map(Option::as_ref).collect();
                all.is_some_and(|all| {
                    let mut kids: Vec<&str> = all.iter().map(|j| j.kid.as_str()).collect();
                    kids.sort();
                    kids.dedup();
                    let secrets = all
                        .iter()
                        .filter(|j| matches!(j.material, Material::Oct(_)))
                        .count();
                    !all.is_empty()
                        && kids.len() == all.len()
                        && (secrets == 0 || secrets == all.len())
                })
            });
            match got {
                Ok(list) => {
                    ctx.accepted = true;
                    let kids_in = singles
                        .as_ref()
                        .map(|s| {
                            s.iter()
                                .map(|j| j.as_ref().map(|j| j.kid.clone()))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    let kids_out: Vec<Option<String>> =
                        list.iter().map(|j| Some(j.kid.clone())).collect();
                    if !expect_ok || kids_in != kids_out {
                        ctx.fail(
                            Kind::Forgery,
                            "parse_jwks accepted a set it must refuse (a bad key, a duplicate kid, secrets mixed with public keys, or no keys)".into(),
                        );
                    }
                }
                Err(e) => {
                    if expect_ok {
                        ctx.fail(
                            Kind::Invariant,
                            format!(
                                "parse_jwks refused a set of valid, distinct, unmixed keys: {e}"
                            ),
                        );
                    }
                }
            }
        }
        _ => {
            // Raw text: mutated bytes through the strict JSON parser, then the key parser.
            let v = seed_jwk(r, fx);
            let mut text = serde_json::to_vec(&v).expect("json");
            for _ in 0..r.range(1, 3) {
                havoc(r, &mut text);
            }
            ctx.set_input(&text, "JWK text, mutated");
            if let Ok(v) = ctx.timed("json::parse_value", || json::parse_value(&text)) {
                check_one(ctx, r, &v);
            }
        }
    }
}
