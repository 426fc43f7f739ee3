//! PHC target: argon2 PHC strings and bcrypt `$2a$/$2b$/$2y$` hashes, generated and mutated,
//! through `password::verify_with_limits`, `needs_rehash_with_limits` and `scheme`.
//!
//! Cheap by construction: the seed hashes cost m = 8..32 KiB and t ≤ 2 (argon2) or cost 4
//! (bcrypt), and a mutant whose parameters the default limits allow but that would cost more
//! (argon2 m × t > 8 MiB-passes, bcrypt cost 6..15) is re-rolled before it reaches the core.
//! What is left is either cheap or beyond the limits, and must then be refused before any
//! hashing: a call slower than 2 s fails the run.
//!
//! Oracle: `Ok(true)` only for a password and a hash that is semantically one of the seed
//! hashes of that password (same scheme, parameters, salt and output bytes; the bcrypt variant
//! letter and an omitted argon2 version, which means 0x10, do not count).

use crate::util::{havoc, Rng};
use crate::{Ctx, Kind};
use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, ParamsBuilder, PasswordHasher, Version};
use auth_core::password::{
    needs_rehash_with_limits, scheme, verify_with_limits, Argon2Params, VerifyLimits,
};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sem {
    Bcrypt {
        cost: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Argon2 {
        alg: String,
        version: u64,
        params: Vec<(String, String)>,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

pub struct Entry {
    pub password: usize,
    pub hash: String,
    pub sem: Sem,
}

pub struct Pool {
    pub passwords: Vec<Vec<u8>>,
    pub entries: Vec<Entry>,
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(DecodePaddingMode::RequireNone);

fn bcrypt_b64(s: &str) -> Option<Vec<u8>> {
    GeneralPurpose::new(&base64::alphabet::BCRYPT, LENIENT)
        .decode(s)
        .ok()
}

fn std_b64(s: &str) -> Option<Vec<u8>> {
    GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT)
        .decode(s)
        .ok()
}

/// What a hash string means, parsed here independently of the core (None: not a hash).
pub fn semantic(s: &str) -> Option<Sem> {
    if let Some(rest) = s.strip_prefix("$2") {
        let b = s.as_bytes();
        if b.len() != 60 || !matches!(rest.as_bytes()[0], b'a' | b'b' | b'y') || b[3] != b'$' {
            return None;
        }
        let cost = std::str::from_utf8(&b[4..6]).ok()?.parse().ok()?;
        return Some(Sem::Bcrypt {
            cost,
            salt: bcrypt_b64(s.get(7..29)?)?,
            hash: bcrypt_b64(s.get(29..)?)?,
        });
    }
    let parts: Vec<&str> = s.split('$').collect();
    if parts.first() != Some(&"") || parts.len() < 5 {
        return None;
    }
    let alg = parts[1].to_string();
    let (version, rest) = match parts[2].strip_prefix("v=") {
        Some(v) => (v.parse().ok()?, &parts[3..]),
        None => (0x10, &parts[2..]),
    };
    let [params, salt, hash] = rest else {
        return None;
    };
    // A repeated parameter: the argon2 crate (limits and hashing alike) takes the last one.
    // keyid only names the secret key and is not hashed.
    let mut map = std::collections::BTreeMap::new();
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=')?;
        if k != "keyid" {
            map.insert(k.to_string(), v.to_string());
        }
    }
    // Absent ones take the argon2 crate's defaults.
    for (k, v) in [("m", "19456"), ("t", "2"), ("p", "1")] {
        map.entry(k.to_string()).or_insert(v.to_string());
    }
    let ps: Vec<(String, String)> = map.into_iter().collect();
    Some(Sem::Argon2 {
        alg,
        version,
        params: ps,
        salt: std_b64(salt)?,
        hash: std_b64(hash)?,
    })
}

fn argon2_hash(
    pw: &[u8],
    alg: Algorithm,
    version: Version,
    (m, t, p): (u32, u32, u32),
    out: usize,
    data: Option<&[u8]>,
) -> String {
    let mut b = ParamsBuilder::new();
    b.m_cost(m).t_cost(t).p_cost(p).output_len(out);
    if let Some(d) = data {
        b.data(d.try_into().expect("associated data"));
    }
    let params = b.build().expect("argon2 params");
    let salt = SaltString::encode_b64(&auth_core::random::bytes(16)).expect("salt");
    Argon2::new(alg, version, params)
        .hash_password(pw, &salt)
        .expect("argon2 hash")
        .to_string()
}

impl Pool {
    pub fn build() -> Pool {
        let passwords: Vec<Vec<u8>> = vec![
            b"correct horse battery staple".to_vec(),
            Vec::new(),
            "pässwörd ünïcode \u{1F511}".as_bytes().to_vec(),
            b"a".to_vec(),
            vec![b'x'; 72],
            vec![b'y'; 100],
            b"Tr0ub4dor&3".to_vec(),
            vec![b'z'; auth_core::password::MAX_PASSWORD_BYTES],
        ];
        use Algorithm::*;
        let v13 = Version::V0x13;
        let mut hashes: Vec<(usize, String)> = vec![
            (
                0,
                argon2_hash(&passwords[0], Argon2id, v13, (8, 1, 1), 32, None),
            ),
            (
                1,
                argon2_hash(&passwords[1], Argon2id, v13, (8, 1, 1), 32, None),
            ),
            (
                2,
                argon2_hash(&passwords[2], Argon2i, v13, (16, 2, 1), 32, None),
            ),
            (
                3,
                argon2_hash(&passwords[3], Argon2d, v13, (8, 1, 1), 32, None),
            ),
            (
                5,
                argon2_hash(&passwords[5], Argon2id, v13, (16, 1, 2), 16, None),
            ),
            (
                6,
                argon2_hash(&passwords[6], Argon2id, v13, (8, 2, 1), 64, None),
            ),
            (
                0,
                argon2_hash(
                    &passwords[0],
                    Argon2id,
                    v13,
                    (32, 1, 1),
                    32,
                    Some(b"context data"),
                ),
            ),
            (
                7,
                argon2_hash(&passwords[7], Argon2id, v13, (8, 1, 1), 32, None),
            ),
        ];
        let old = argon2_hash(&passwords[4], Argon2id, Version::V0x10, (8, 1, 1), 32, None);
        // No v=: the same hash, version 0x10 by default.
        hashes.push((4, old.replace("$v=16$", "$")));
        hashes.push((4, old));
        for (pw, variant) in [
            (0, bcrypt::Version::TwoB),
            (6, bcrypt::Version::TwoA),
            (4, bcrypt::Version::TwoY),
            (5, bcrypt::Version::TwoB),
            (2, bcrypt::Version::TwoB),
        ] {
            let h = bcrypt::hash_with_result(&passwords[pw], 4)
                .expect("bcrypt")
                .format_for_version(variant);
            hashes.push((pw, h));
        }
        let entries = hashes
            .into_iter()
            .map(|(password, hash)| Entry {
                password,
                sem: semantic(&hash).expect("seed hash parses"),
                hash,
            })
            .collect();
        Pool { passwords, entries }
    }
}

/// Passwords bcrypt cannot tell apart: it hashes the password, a NUL, all cut at 72 bytes.
fn bcrypt_key(pw: &[u8]) -> Vec<u8> {
    let mut k = pw.to_vec();
    k.push(0);
    k.truncate(72);
    k
}

/// The (m, t, p) the argon2 crate would use for this string as far as this harness can tell
/// (the largest value of each, defaults 19456, 2, 1 when absent), or None when not argon2.
fn argon2_cost(s: &str) -> Option<(u64, u64, u64)> {
    if !s.starts_with("$argon2") {
        return None;
    }
    let find = |name: &str, default: u64| -> u64 {
        let mut best: Option<u64> = None;
        for (i, _) in s.match_indices(&format!("{name}=")) {
            if i > 0 && matches!(s.as_bytes()[i - 1], b'$' | b',') {
                let digits: String = s[i + 2..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let v = digits.parse::<u64>().unwrap_or(u64::MAX);
                best = Some(best.map_or(v, |b| b.max(v)));
            }
        }
        best.unwrap_or(default)
    };
    Some((find("m", 19456), find("t", 2), find("p", 1)))
}

/// True for hashes the default limits allow whose verification would cost more than this
/// harness spends on one input: re-rolled, never sent.
fn too_costly(s: &str) -> bool {
    if s.starts_with("$2") && s.len() >= 6 {
        let cost = s
            .get(4..6)
            .filter(|c| c.bytes().all(|d| d.is_ascii_digit()))
            .and_then(|c| c.parse::<u32>().ok());
        return cost.is_some_and(|c| (6..=15).contains(&c));
    }
    match argon2_cost(s) {
        Some((m, t, p)) => {
            let allowed =
                m <= 262_144 && m.saturating_mul(t) <= 2 * 1024 * 1024 && t <= 20 && p <= 16;
            allowed && m.saturating_mul(t) > 8192
        }
        None => false,
    }
}

const BEYOND_M: [&str; 9] = [
    "262145",
    "1048576",
    "1048577",
    "4194304",
    "4294967295",
    "4294967296",
    "99999999999999999999",
    "524288",
    "300000",
];
const ODD_NUMBERS: [&str; 14] = [
    "0", "1", "7", "8", "9", "16", "-1", "", "08", "+8", "8 ", "0x10", "1e3", "\u{0663}",
];

/// One mutation of a hash string.
fn mutate(r: &mut Rng, pool: &Pool, s: &mut String) -> &'static str {
    let is_bcrypt = s.starts_with("$2");
    match r.below(if is_bcrypt { 6 } else { 10 }) {
        0 | 1 => {
            let mut v = s.clone().into_bytes();
            havoc(r, &mut v);
            *s = String::from_utf8_lossy(&v).into_owned();
            "bytes"
        }
        2 => {
            // Splice: the tail of another seed hash after a random '$'.
            let other = &r.pick(&pool.entries).hash;
            let cut_a = s.match_indices('$').map(|(i, _)| i).collect::<Vec<_>>();
            let cut_b = other.match_indices('$').map(|(i, _)| i).collect::<Vec<_>>();
            if let (Some(&a), Some(&b)) = (
                cut_a.get(r.below(cut_a.len().max(1))),
                cut_b.get(r.below(cut_b.len().max(1))),
            ) {
                *s = format!("{}{}", &s[..a], &other[b..]);
            }
            "spliced with another hash"
        }
        3 if is_bcrypt => {
            let cost = *r.pick(&[
                "00", "03", "04", "05", "16", "17", "31", "32", "99", "4$", "+4", "-1", "ab",
                "\u{0664}",
            ]);
            if s.len() >= 6 && s.is_char_boundary(4) && s.is_char_boundary(6) {
                s.replace_range(4..6, cost);
            }
            "bcrypt cost"
        }
        4 if is_bcrypt => {
            let v = *r.pick(&["a", "b", "y", "x", "c", "A", "$", "2"]);
            if s.len() > 3 && s.is_char_boundary(3) {
                s.replace_range(2..3, v);
            }
            "bcrypt variant"
        }
        5 if is_bcrypt => {
            // A character of the salt or hash replaced inside the alphabet: still well formed,
            // so it is hashed (cost 4) and must not verify.
            if s.len() == 60 {
                let i = r.range(7, 59);
                let c = *r.pick(b"./ABCXYZabcxyz0189");
                let mut v = s.clone().into_bytes();
                v[i] = c;
                *s = String::from_utf8_lossy(&v).into_owned();
            }
            "bcrypt character"
        }
        3 => {
            let name = *r.pick(&["m", "t", "p"]);
            let value = match (name, r.below(3)) {
                ("m", 0) => *r.pick(&BEYOND_M),
                ("t", 0) => *r.pick(&["21", "100", "4294967295", "9"]),
                ("p", 0) => *r.pick(&["17", "255", "16777216"]),
                _ => *r.pick(&ODD_NUMBERS),
            };
            let mut out = String::new();
            let mut rest = s.as_str();
            if let Some(i) = rest.find(&format!("{name}=")) {
                out.push_str(&rest[..i + 2]);
                rest = &rest[i + 2..];
                let end = rest.find([',', '$']).unwrap_or(rest.len());
                out.push_str(value);
                out.push_str(&rest[end..]);
                *s = out;
            }
            "argon2 parameter"
        }
        4 => {
            let (m, t) = *r.pick(&[
                (262_144u64, 9u64),
                (131_072, 17),
                (262_145, 1),
                (2_097_152, 1),
                (65_536, 33),
            ]);
            *s = s.replacen(
                &s.split('$')
                    .find(|x| x.starts_with("m="))
                    .unwrap_or("m=8,t=1,p=1")
                    .to_string(),
                &format!("m={m},t={t},p=1"),
                1,
            );
            "argon2 parameters beyond the limits"
        }
        5 => {
            let edits: [(&str, &str); 12] = [
                ("m=", "t=1,m="),
                (",p=1", ",p=1,m=8"),
                (",p=1", ",p=1,x=1"),
                (",p=1", ",p=1,keyid=AAAA"),
                (",p=1", ",p=1,data=AAAAAAAA"),
                (",p=1", ""),
                ("t=1,", ""),
                ("m=8,", ""),
                (",", ", "),
                ("$v=19", "$v=16"),
                ("$v=19", ""),
                ("$v=19", "$v=18"),
            ];
            let (from, to) = *r.pick(&edits);
            *s = s.replacen(from, to, 1);
            "argon2 parameter list"
        }
        6 => {
            let ident = *r.pick(&[
                "argon2id",
                "argon2i",
                "argon2d",
                "argon2",
                "argon2x",
                "ARGON2ID",
                "scrypt",
                "pbkdf2-sha256",
                "argon2id\u{0}",
            ]);
            if let Some(end) = s.get(1..).and_then(|t| t.find('$')) {
                s.replace_range(1..1 + end, ident);
            }
            "argon2 identifier"
        }
        7 => {
            // Salt or output: length, spelling.
            let mut parts: Vec<String> = s.split('$').map(str::to_owned).collect();
            let n = parts.len();
            if n >= 2 {
                let i = n - 1 - r.below(2);
                let seg = &mut parts[i];
                match r.below(6) {
                    0 => {
                        let mut cut = r.below(seg.len().max(1));
                        while !seg.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        seg.truncate(cut);
                    }
                    1 => seg.push_str(&"A".repeat(r.range(1, 64))),
                    2 => seg.push('='),
                    3 => *seg = seg.replace('+', "-").replace('/', "_"),
                    4 => {
                        if let Some(c) = seg.pop() {
                            let alphabet =
                                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                            let pos = alphabet.iter().position(|&x| x as char == c).unwrap_or(0);
                            seg.push(alphabet[pos ^ 1] as char);
                        }
                    }
                    _ => seg.clear(),
                }
            }
            *s = parts.join("$");
            "argon2 salt or output"
        }
        8 => {
            let v = *r.pick(&["v=19", "v=16", "v=0", "v=20", "v=019", "v=", "v=4294967296"]);
            *s = s.replacen("v=19", v, 1).replacen("v=16", v, 1);
            "argon2 version"
        }
        _ => {
            *s = s.replacen('$', "$$", 1);
            "doubled separator"
        }
    }
}

/// A string built from scratch: a PHC or bcrypt shape with random fields, or garbage.
fn generate(r: &mut Rng) -> String {
    let b64 = |r: &mut Rng, n: usize| -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/./";
        (0..n).map(|_| *r.pick(alphabet) as char).collect()
    };
    match r.below(5) {
        0 => {
            let (sn, hn) = (r.range(0, 70), r.range(0, 90));
            let (salt, hash) = (b64(r, sn), b64(r, hn));
            format!(
                "$argon2{}$v={}$m={},t={},p={}${}${}",
                r.pick(&["id", "i", "d", ""]),
                r.pick(&["19", "16", "1"]),
                r.pick(&["8", "16", "64", "262145", "4294967295", "0"]),
                r.pick(&["1", "2", "0", "21"]),
                r.pick(&["1", "2", "0", "17"]),
                salt,
                hash,
            )
        }
        1 => format!(
            "$2{}${}${}",
            r.pick(&["a", "b", "y", "x"]),
            r.pick(&["04", "05", "16", "31", "99", "4"]),
            {
                let n = r.range(50, 56);
                b64(r, n)
            }
        ),
        2 => r
            .pick(&[
                "",
                "plain",
                "$1$abc$def",
                "$5$rounds=5000$x$y",
                "{SSHA}abc",
                "$",
                "$$$$",
                "$2",
                "$argon2id",
            ])
            .to_string(),
        3 => "$argon2id$v=19$m=8,t=1,p=1$".repeat(r.range(1, 400)),
        _ => String::from_utf8_lossy(&r.some_bytes(120)).into_owned(),
    }
}

pub fn run(ctx: &mut Ctx, r: &mut Rng) {
    let pool = &ctx.fx.phc;
    let seed = r.pick(&pool.entries);
    let (mut s, note) = if r.chance(0.85) {
        let mut tries = 0;
        loop {
            let mut s = seed.hash.clone();
            let notes: Vec<&str> = (0..1 + r.below(2))
                .map(|_| mutate(r, pool, &mut s))
                .collect();
            tries += 1;
            if !too_costly(&s) {
                break (s, format!("seed {:?}; {}", seed.hash, notes.join(", ")));
            }
            ctx.count("costly mutant re-rolled");
            if tries == 10 {
                break (seed.hash.clone(), "seed hash (mutants re-rolled)".into());
            }
        }
    } else {
        (generate(r), "generated".to_string())
    };
    if too_costly(&s) {
        ctx.count("costly mutant re-rolled");
        s = seed.hash.clone();
    }
    let pw: Vec<u8> = match r.below(10) {
        0..=4 => pool.passwords[seed.password].clone(),
        5..=8 => r.pick(&pool.passwords).clone(),
        _ => {
            let n = *r.pick(&[0, 1, 71, 72, 73, 1024, 1025, 5000]);
            r.bytes(n)
        }
    };
    // The defaults, or tighter caps (never looser: the cost guard above assumes the defaults).
    let d = VerifyLimits::DEFAULT;
    let limits = if r.chance(0.8) {
        d
    } else {
        VerifyLimits {
            max_memory_kib: (*r.pick(&[0, 8, 16, 1024, u32::MAX])).min(d.max_memory_kib),
            max_memory_passes: (*r.pick(&[0, 8, 16, 1 << 20, u64::MAX])).min(d.max_memory_passes),
            max_bcrypt_cost: (*r.pick(&[0, 4, 5, 31, u32::MAX])).min(d.max_bcrypt_cost),
        }
    };
    ctx.set_input(
        s.as_bytes(),
        format!("{note}; password {} bytes; {limits:?}", pw.len()),
    );

    let got = ctx.timed("verify_with_limits", || {
        verify_with_limits(&pw, &s, &limits)
    });
    let _ = ctx.timed("needs_rehash_with_limits", || {
        needs_rehash_with_limits(&s, Argon2Params::OWASP, &limits)
    });
    let parsed = ctx.timed("scheme", || scheme(&s));
    match got {
        Ok(true) => {
            ctx.accepted = true;
            let sem = semantic(&s);
            let legit = pool.entries.iter().any(|e| {
                let same_pw = match e.sem {
                    Sem::Bcrypt { .. } => {
                        bcrypt_key(&pw) == bcrypt_key(&pool.passwords[e.password])
                    }
                    Sem::Argon2 { .. } => pw == pool.passwords[e.password],
                };
                same_pw && sem.as_ref() == Some(&e.sem)
            });
            if legit {
                ctx.count("verified (semantically a seed hash)");
            } else {
                ctx.fail(
                    Kind::Forgery,
                    "a password verified against a hash that is not semantically a hash of it"
                        .into(),
                );
            }
            if pw.len() > auth_core::password::MAX_PASSWORD_BYTES {
                ctx.fail(
                    Kind::Forgery,
                    "a password over the length limit verified".into(),
                );
            }
            if parsed.is_err() {
                ctx.fail(
                    Kind::Invariant,
                    "verified a hash that scheme() refuses".into(),
                );
            }
        }
        Ok(false) => {
            ctx.count("wrong password (hashed, Ok(false))");
            let sem = semantic(&s);
            let owner = pool.entries.iter().find(|e| {
                sem.as_ref() == Some(&e.sem)
                    && match e.sem {
                        Sem::Bcrypt { .. } => {
                            bcrypt_key(&pw) == bcrypt_key(&pool.passwords[e.password])
                        }
                        Sem::Argon2 { .. } => pw == pool.passwords[e.password],
                    }
            });
            if let Some(e) = owner {
                ctx.fail(
                    Kind::Invariant,
                    format!(
                        "the right password is refused against a hash equivalent to seed {:?}",
                        e.hash
                    ),
                );
            }
            if parsed.is_err() && limits == VerifyLimits::DEFAULT {
                ctx.fail(
                    Kind::Invariant,
                    "a hash scheme() refuses was hashed and compared (Ok(false))".into(),
                );
            }
        }
        Err(e) => {
            ctx.refused("verify_with_limits", &e.detail);
            if e.detail.contains(&*String::from_utf8_lossy(&pw)) && pw.len() >= 4 {
                ctx.fail(Kind::Invariant, "error detail echoes the password".into());
            }
        }
    }
}
