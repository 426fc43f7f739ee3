//! One-time codes and link tokens for the email and phone flows (sign-in codes, magic links,
//! recovery, email change): how they are made, and what is stored of them.
//!
//! What is stored is never the code but [`hash`]: HMAC-SHA-256 under a server secret
//! ([`HashKey`]), because a 6-digit code has only 10^6 values and a plain hash of it would be
//! brute-forced offline from a stolen table in a moment; without the secret, a stolen hash
//! says nothing. The HMAC input is domain-separated and includes a context (the purpose, the
//! user, the recipient…), length-prefixed part by part, so a code issued for one purpose or
//! one user never matches another.
//!
//! Guess limits, expiry and single use are the caller's (the SQL layer's): this module only
//! makes codes unpredictable and comparisons constant-time.

use crate::error::{AuthError, Result};
use aws_lc_rs::{constant_time, hmac};

/// Fewest and most digits of a [`numeric_code`].
pub const MIN_CODE_DIGITS: u32 = 6;
pub const MAX_CODE_DIGITS: u32 = 10;
/// Random bytes in a [`link_token`]: 256 bits.
pub const LINK_TOKEN_BYTES: usize = 32;
/// Shortest server secret a [`HashKey`] accepts (256 bits).
pub const MIN_KEY_BYTES: usize = 32;
/// Longest server secret a [`HashKey`] accepts.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest candidate [`matches`] hashes; a longer one is refused without hashing.
pub const MAX_CANDIDATE_BYTES: usize = 1024;
/// Bytes of a [`hash`].
pub const HASH_BYTES: usize = 32;

/// The HMAC input's prefix, which no other HMAC of this crate uses (refresh-token successors
/// HMAC the bare token).
const DOMAIN: &[u8] = b"auth_ext one-time code v1\0";

/// A string of `digits` decimal digits (6-10), uniform over all 10^digits values: a random
/// 64-bit draw from [`crate::random`], rejection-sampled so that no value is more likely than
/// another (a draw is rejected with probability < 2^-30).
pub fn numeric_code(digits: u32) -> Result<String> {
    if !(MIN_CODE_DIGITS..=MAX_CODE_DIGITS).contains(&digits) {
        return Err(AuthError::invalid_parameter(format!(
            "a one-time code has {MIN_CODE_DIGITS} to {MAX_CODE_DIGITS} digits, not {digits}"
        )));
    }
    let n = 10u64.pow(digits);
    let value = uniform_below(n, 64, || {
        let b = crate::random::bytes(8);
        u64::from_be_bytes(b.try_into().expect("8 bytes")) as u128
    });
    let width = digits as usize;
    Ok(format!("{value:0width$}"))
}

/// How many of the 2^bits values of a draw are accepted when sampling below `n`: the largest
/// multiple of `n` that fits. Every residue mod `n` then has exactly `bound / n` preimages.
fn rejection_bound(n: u64, bits: u32) -> u128 {
    let space = 1u128 << bits;
    space - space % n as u128
}

/// A uniform value in `0..n` from uniform `bits`-bit draws (`n` ≥ 1, `bits` ≤ 64).
fn uniform_below(n: u64, bits: u32, mut draw: impl FnMut() -> u128) -> u64 {
    let bound = rejection_bound(n, bits);
    loop {
        let x = draw();
        if x < bound {
            return (x % n as u128) as u64;
        }
    }
}

/// A token for a link (magic link, recovery, email confirmation): 256 random bits, base64url
/// without padding (43 characters, `A-Z a-z 0-9 - _`).
pub fn link_token() -> String {
    crate::b64::encode(&crate::random::bytes(LINK_TOKEN_BYTES))
}

/// The server secret under which codes and tokens are hashed for storage.
pub struct HashKey(hmac::Key);

impl HashKey {
    /// A key from a server secret of 32-1024 bytes (e.g. a row of `auth.secrets`).
    pub fn new(secret: &[u8]) -> Result<HashKey> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&secret.len()) {
            return Err(AuthError::invalid_parameter(format!(
                "the one-time code secret must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
            )));
        }
        Ok(HashKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// What is stored of a code or link token: HMAC-SHA-256 under `key` of
/// `DOMAIN ‖ u64be(#parts) ‖ (u64be(len) ‖ part)* ‖ u64be(len) ‖ token_or_code`. The
/// encoding is injective: different contexts (or a part moved from one to the next) never
/// produce the same input. Use one context part per fact the code is bound to, e.g.
/// `[b"email_otp", user_id, recipient]`.
pub fn hash(token_or_code: &str, context: &[&[u8]], key: &HashKey) -> [u8; HASH_BYTES] {
    let mut ctx = hmac::Context::with_key(&key.0);
    ctx.update(DOMAIN);
    ctx.update(&(context.len() as u64).to_be_bytes());
    for part in context {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(&(token_or_code.len() as u64).to_be_bytes());
    ctx.update(token_or_code.as_bytes());
    let tag = ctx.sign();
    let mut out = [0u8; HASH_BYTES];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `candidate` is the code or token whose [`hash`] under `context` and `key` is
/// `stored_hash`, compared in constant time. `false`, without panicking, for a stored hash
/// that is not 32 bytes and for a candidate longer than [`MAX_CANDIDATE_BYTES`] (not hashed).
pub fn matches(stored_hash: &[u8], candidate: &str, context: &[&[u8]], key: &HashKey) -> bool {
    if stored_hash.len() != HASH_BYTES || candidate.len() > MAX_CANDIDATE_BYTES {
        return false;
    }
    let computed = hash(candidate, context, key);
    constant_time::verify_slices_are_equal(&computed, stored_hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> HashKey {
        HashKey::new(&[42u8; 32]).unwrap()
    }

    #[test]
    fn rejection_bound_gives_every_value_the_same_weight() {
        // Exhaustively with 8-bit draws: for every n, each residue has bound/n preimages
        // below the bound, and fewer than n draws are rejected.
        for n in 1u64..=256 {
            let bound = rejection_bound(n, 8);
            assert_eq!(bound % n as u128, 0, "n={n}");
            assert!(256 - bound < n as u128, "n={n}");
            let mut counts = vec![0u32; n as usize];
            for x in 0..bound {
                counts[(x % n as u128) as usize] += 1;
            }
            assert!(
                counts.iter().all(|&c| c as u128 == bound / n as u128),
                "n={n}"
            );
        }
        // With 64-bit draws, for the sizes numeric_code uses.
        for digits in MIN_CODE_DIGITS..=MAX_CODE_DIGITS {
            let n = 10u64.pow(digits);
            let bound = rejection_bound(n, 64);
            assert_eq!(bound % n as u128, 0);
            assert!((1u128 << 64) - bound < n as u128);
            assert!(bound > (1u128 << 64) - (1u128 << 34), "rejections are rare");
        }
        // Powers of two reject nothing.
        assert_eq!(rejection_bound(1 << 20, 64), 1u128 << 64);
    }

    #[test]
    fn sampler_rejects_draws_at_or_above_the_bound() {
        // n = 3 over 8 bits: bound 255; the draw 255 is rejected, then 7 → 1.
        let mut draws = [255u128, 7].into_iter();
        assert_eq!(uniform_below(3, 8, || draws.next().unwrap()), 1);
        let mut draws = [254u128].into_iter();
        assert_eq!(uniform_below(3, 8, || draws.next().unwrap()), 254 % 3);
        // The largest accepted 64-bit draw for 10^6.
        let bound = rejection_bound(1_000_000, 64);
        let mut draws = [bound, bound + 1, bound - 1].into_iter();
        assert_eq!(
            uniform_below(1_000_000, 64, || draws.next().unwrap()),
            ((bound - 1) % 1_000_000) as u64
        );
    }

    #[test]
    fn codes_have_the_asked_length_and_only_digits() {
        for digits in MIN_CODE_DIGITS..=MAX_CODE_DIGITS {
            for _ in 0..200 {
                let c = numeric_code(digits).unwrap();
                assert_eq!(c.len(), digits as usize);
                assert!(c.bytes().all(|b| b.is_ascii_digit()), "{c}");
            }
        }
        for bad in [0, 5, 11, u32::MAX] {
            assert!(numeric_code(bad).is_err());
        }
    }

    #[test]
    fn code_digits_are_not_biased() {
        // 100,000 six-digit codes: each digit value should appear 10,000 times per position
        // (σ ≈ 95). Bounds far beyond chance: ±1,500 (≈ 16σ), and a chi-square (9 degrees of
        // freedom, mean 9) below 150 per position; a constant or skewed generator fails both.
        const N: usize = 100_000;
        let mut counts = [[0u32; 10]; 6];
        for _ in 0..N {
            for (pos, b) in numeric_code(6).unwrap().bytes().enumerate() {
                counts[pos][(b - b'0') as usize] += 1;
            }
        }
        let expected = (N / 10) as f64;
        for (pos, row) in counts.iter().enumerate() {
            let chi2: f64 = row
                .iter()
                .map(|&c| (c as f64 - expected).powi(2) / expected)
                .sum();
            assert!(chi2 < 150.0, "position {pos}: chi2 {chi2}, {row:?}");
            for &c in row {
                assert!(
                    (c as f64 - expected).abs() < 1_500.0,
                    "position {pos}: {row:?}"
                );
            }
        }
    }

    #[test]
    fn link_tokens() {
        let t = link_token();
        assert_eq!(t.len(), 43);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(crate::b64::decode(&t).unwrap().len(), 32);
        assert_ne!(t, link_token());
    }

    #[test]
    fn hashes_bind_the_context_and_the_key() {
        let k = key();
        let uid = b"2b0a4c3e-0000-4000-8000-000000000001";
        let ctx: &[&[u8]] = &[b"email_otp", uid];
        let h = hash("123456", ctx, &k);
        assert!(matches(&h, "123456", ctx, &k));
        assert!(!matches(&h, "123457", ctx, &k));
        assert!(!matches(&h, "123456 ", ctx, &k));
        assert!(!matches(&h, "", ctx, &k));
        // Another purpose, another user, another split of the same bytes, extra parts.
        assert!(!matches(&h, "123456", &[b"recovery", uid], &k));
        assert!(!matches(&h, "123456", &[b"email_otp", b"someone else"], &k));
        assert!(!matches(&h, "123456", &[b"email_otp2", &uid[1..]], &k));
        assert!(!matches(&h, "123456", &[b"email_otp", uid, b""], &k));
        assert!(!matches(&h, "123456", &[], &k));
        // The code cannot be moved into the context or vice versa.
        assert_ne!(hash("b", &[b"a"], &k), hash("", &[b"a", b"b"], &k));
        assert_ne!(hash("ab", &[], &k), hash("b", &[b"a"], &k));
        // Another server secret.
        let other = HashKey::new(&[43u8; 32]).unwrap();
        assert!(!matches(&h, "123456", ctx, &other));
        // Deterministic.
        assert_eq!(h, hash("123456", ctx, &k));
    }

    #[test]
    fn hash_is_the_documented_hmac() {
        // Recomputed independently: HMAC-SHA256(key, DOMAIN ‖ 1u64 ‖ 3u64 "otp" ‖ 4u64 "1234").
        let mut msg = b"auth_ext one-time code v1\0".to_vec();
        msg.extend_from_slice(&1u64.to_be_bytes());
        msg.extend_from_slice(&3u64.to_be_bytes());
        msg.extend_from_slice(b"otp");
        msg.extend_from_slice(&4u64.to_be_bytes());
        msg.extend_from_slice(b"1234");
        let k = hmac::Key::new(hmac::HMAC_SHA256, &[42u8; 32]);
        assert_eq!(
            hash("1234", &[b"otp"], &key()).as_slice(),
            hmac::sign(&k, &msg).as_ref()
        );
    }

    #[test]
    fn matches_refuses_garbage() {
        let k = key();
        let h = hash("123456", &[b"x"], &k);
        assert!(!matches(&h[..31], "123456", &[b"x"], &k));
        assert!(!matches(&[], "123456", &[b"x"], &k));
        assert!(!matches(
            &[h.as_slice(), &[0]].concat(),
            "123456",
            &[b"x"],
            &k
        ));
        assert!(!matches(&[0u8; 32], "123456", &[b"x"], &k));
        assert!(!matches(
            &h,
            &"1".repeat(MAX_CANDIDATE_BYTES + 1),
            &[b"x"],
            &k
        ));
        assert!(HashKey::new(&[0; 31]).is_err());
        assert!(HashKey::new(&[0; MAX_KEY_BYTES + 1]).is_err());
        assert_eq!(format!("{:?}", k), "HashKey(..)");
    }

    proptest! {
        #[test]
        fn matches_never_panics(stored in proptest::collection::vec(any::<u8>(), 0..70),
                                candidate in ".{0,64}", part in proptest::collection::vec(any::<u8>(), 0..40)) {
            let k = key();
            let ctx: &[&[u8]] = &[b"email_otp", &part];
            prop_assert!(!matches(&stored, &candidate, ctx, &k) || stored.len() == 32);
            let h = hash(&candidate, ctx, &k);
            prop_assert!(matches(&h, &candidate, ctx, &k));
        }
    }
}
