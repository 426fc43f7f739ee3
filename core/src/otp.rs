//! One-time codes and link tokens for email and phone flows, and what is stored of them: a
//! keyed hash (HMAC-SHA256 under a server secret, so a copy of the table does not allow an
//! offline search of the 10^6 codes), bound to a context (user, token type, code or link) so
//! that a value issued for one purpose never matches another.

use aws_lc_rs::hmac;

/// A uniformly random code of `digits` decimal digits (6–10), without modulo bias.
pub fn numeric_code(digits: u32) -> String {
    let digits = digits.clamp(6, 10);
    let bound = 10u64.pow(digits);
    // The largest multiple of `bound` below 2^64: values at or above it are drawn again.
    let limit = u64::MAX - (u64::MAX % bound);
    loop {
        let v = u64::from_le_bytes(crate::random::bytes(8).try_into().expect("8 bytes"));
        if v < limit {
            return format!("{:0width$}", v % bound, width = digits as usize);
        }
    }
}

/// A link token: 256 random bits, base64url without padding.
pub fn link_token() -> String {
    crate::b64::encode(&crate::random::bytes(32))
}

/// The message under the MAC: the context length-prefixed, so that no (context, value) pair
/// can be confused with another.
fn message(value: &str, context: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(8 + context.len() + value.len());
    msg.extend_from_slice(&(context.len() as u64).to_be_bytes());
    msg.extend_from_slice(context.as_bytes());
    msg.extend_from_slice(value.as_bytes());
    msg
}

fn mac(value: &str, context: &str, secret: &[u8]) -> hmac::Tag {
    hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        &message(value, context),
    )
}

/// What is stored of `value` issued for `context`.
pub fn hash(value: &str, context: &str, secret: &[u8]) -> [u8; 32] {
    mac(value, context, secret)
        .as_ref()
        .try_into()
        .expect("SHA-256 output")
}

/// `candidate` is the value whose [`hash`] (hex) is `stored_hex`, for `context`; compared in
/// constant time. Any input, however malformed, is just `false`.
pub fn matches_hex(stored_hex: &str, candidate: &str, context: &str, secret: &[u8]) -> bool {
    let Some(stored) = from_hex(stored_hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    // hmac::verify compares in constant time.
    hmac::verify(&key, &message(candidate, context), &stored).is_ok()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn codes_have_the_asked_digits() {
        for d in 6..=10 {
            let c = numeric_code(d);
            assert_eq!(c.len(), d as usize);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(numeric_code(3).len(), 6, "clamped");
    }

    #[test]
    fn every_digit_appears_in_every_position() {
        // 2,000 codes: a digit missing from a position has probability < 10 * 6 * 0.9^2000.
        let codes: Vec<String> = (0..2000).map(|_| numeric_code(6)).collect();
        for pos in 0..6 {
            for d in b'0'..=b'9' {
                assert!(codes.iter().any(|c| c.as_bytes()[pos] == d));
            }
        }
    }

    #[test]
    fn a_hash_matches_only_its_value_and_context() {
        let s = b"secret-secret-secret-secret-1234";
        let h = hex(&hash("123456", "u/confirmation_token/code", s));
        assert!(matches_hex(&h, "123456", "u/confirmation_token/code", s));
        assert!(!matches_hex(&h, "123457", "u/confirmation_token/code", s));
        assert!(!matches_hex(&h, "123456", "u/recovery_token/code", s));
        assert!(!matches_hex(
            &h,
            "123456",
            "u/confirmation_token/code",
            b"other"
        ));
        // Moving bytes between context and value changes the hash.
        let a = hash("6", "u/x/code12345", s);
        let b = hash("123456", "u/x/code", s);
        assert_ne!(a, b);
        for garbage in ["", "zz", &h[..63], &format!("{h}0"), "é"] {
            assert!(!matches_hex(garbage, "123456", "c", s));
        }
    }

    #[test]
    fn link_tokens_are_long_and_distinct() {
        let a = link_token();
        assert!(a.len() >= 43);
        assert_ne!(a, link_token());
    }
}
