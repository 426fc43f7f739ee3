//! TOTP (RFC 6238) over HOTP (RFC 4226), as authenticator apps and Supabase/GoTrue use it:
//! SHA-1, 6 digits, 30-second steps by default; SHA-256/SHA-512 and 7-8 digits on request.
//!
//! HOTP is RFC 4226 §5.3's dynamic truncation over aws-lc's HMAC (the crate's one crypto
//! backend); a TOTP crate would add its own HMAC/SHA-1 stack and reports no accepted step,
//! which the replay rule needs.
//!
//! Replay rule: [`verify`] accepts a code only for a time step strictly greater than the last
//! step accepted for the same factor, and returns the step it accepted; the caller stores it
//! with compare-and-set (`… set last_step = $new where last_step is not distinct from $old`),
//! so a code is accepted at most once per factor, even by concurrent requests. When one code
//! matches several steps of the window, the greatest is accepted, so that replaying it cannot
//! match a later one.
//!
//! Bounded cost: secrets are 16-128 bytes, the window at most [`MAX_WINDOW`] steps either side
//! (at most 21 HMACs per call), and a code of the wrong length is refused before any HMAC.

use crate::error::{AuthError, ErrorCode};
use aws_lc_rs::{constant_time, hmac};
use data_encoding::BASE32_NOPAD;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;
use zeroize::Zeroizing;

/// Bytes of a generated secret: 160 bits, RFC 4226 R6's recommendation (GoTrue's size too).
pub const SECRET_BYTES: usize = 20;
/// RFC 4226 R6: a shared secret is at least 128 bits.
pub const MIN_SECRET_BYTES: usize = 16;
/// Upper bound on an imported secret (RFC 6238's SHA-512 seed is 64 bytes).
pub const MAX_SECRET_BYTES: usize = 128;
/// Steps accepted on either side of the current one by default (GoTrue's skew).
pub const DEFAULT_WINDOW: u32 = 1;
/// Largest window [`verify`] accepts.
pub const MAX_WINDOW: u32 = 10;
/// Longest issuer or account name put in an `otpauth://` URI, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

/// Why a TOTP operation failed. [`TotpError::code`] maps each to the stable error codes; the
/// SQL layer should answer `Malformed`, `Mismatch` and `Replayed` alike to clients (they differ
/// only for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TotpError {
    /// Not exactly `digits` ASCII digits.
    Malformed,
    /// Well-formed, but no step of the window produces it.
    Mismatch,
    /// It matches only steps at or before the last accepted one: already used (or older).
    Replayed,
    /// A bad secret, parameter, window or label; the text says which (never the secret).
    InvalidParameter(String),
}

impl TotpError {
    pub fn code(&self) -> ErrorCode {
        match self {
            TotpError::Malformed | TotpError::Mismatch | TotpError::Replayed => {
                ErrorCode::InvalidCredentials
            }
            TotpError::InvalidParameter(_) => ErrorCode::InvalidParameter,
        }
    }
}

impl fmt::Display for TotpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TotpError::Malformed => f.write_str("the code is not a well-formed TOTP code"),
            TotpError::Mismatch => f.write_str("the TOTP code does not match"),
            TotpError::Replayed => f.write_str("the TOTP code was already used"),
            TotpError::InvalidParameter(d) => f.write_str(d),
        }
    }
}

impl std::error::Error for TotpError {}

impl From<TotpError> for AuthError {
    fn from(e: TotpError) -> Self {
        AuthError::new(e.code(), e.to_string())
    }
}

fn invalid(detail: impl Into<String>) -> TotpError {
    TotpError::InvalidParameter(detail.into())
}

/// The HMAC of HOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name in `otpauth://` URIs (`algorithm=`).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// `SHA1`, `SHA256` or `SHA512`, any case.
    pub fn parse(name: &str) -> Option<Algorithm> {
        [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            // HOTP is defined over HMAC-SHA-1; HMAC-SHA-1 is not broken by SHA-1 collisions.
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// Digits, step and HMAC of a factor. Valid by construction: 6-8 digits, a 10-300 s step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Params {
    algorithm: Algorithm,
    digits: u32,
    step: u64,
}

impl Params {
    /// Supabase/GoTrue's (and every authenticator app's) defaults: SHA-1, 6 digits, 30 s.
    pub const GOTRUE: Params = Params {
        algorithm: Algorithm::Sha1,
        digits: 6,
        step: 30,
    };

    pub fn new(algorithm: Algorithm, digits: u32, step: u64) -> Result<Params, TotpError> {
        if !(6..=8).contains(&digits) {
            return Err(invalid(format!("TOTP digits must be 6 to 8, not {digits}")));
        }
        if !(10..=300).contains(&step) {
            return Err(invalid(format!(
                "TOTP step must be 10 to 300 seconds, not {step}"
            )));
        }
        Ok(Params {
            algorithm,
            digits,
            step,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    pub fn digits(&self) -> u32 {
        self.digits
    }
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The time step (RFC 6238's T, with T0 = 0) that contains `unix_seconds`.
    pub fn time_step(&self, unix_seconds: u64) -> u64 {
        unix_seconds / self.step
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::GOTRUE
    }
}

/// A factor's shared secret. Zeroed on drop; `Debug` does not show it; `==` is constant-time.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl Eq for Secret {}

impl Secret {
    /// A new 160-bit secret from [`crate::random`].
    pub fn generate() -> Secret {
        Secret(Zeroizing::new(crate::random::bytes(SECRET_BYTES)))
    }

    /// An existing secret of 16-128 bytes (e.g. imported from another system).
    pub fn from_bytes(bytes: &[u8]) -> Result<Secret, TotpError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(invalid(format!(
                "a TOTP secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {}",
                bytes.len()
            )));
        }
        Ok(Secret(Zeroizing::new(bytes.to_vec())))
    }

    /// RFC 4648 base32 as authenticator apps show it: any letter case, `=` padding optional,
    /// no spaces or other characters, canonical trailing bits. The decoded secret must be
    /// 16-128 bytes.
    pub fn from_base32(text: &str) -> Result<Secret, TotpError> {
        let bad = || invalid("a TOTP secret must be RFC 4648 base32 (A-Z, 2-7)");
        if text.len() > 2 * MAX_SECRET_BYTES {
            return Err(invalid(format!(
                "a TOTP secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
            )));
        }
        let unpadded = text.trim_end_matches('=');
        // Padding, when present, completes the last 8-character block exactly.
        if unpadded.len() != text.len() && text.len() != unpadded.len().next_multiple_of(8) {
            return Err(bad());
        }
        let upper = Zeroizing::new(unpadded.to_ascii_uppercase());
        let bytes = Zeroizing::new(BASE32_NOPAD.decode(upper.as_bytes()).map_err(|_| bad())?);
        Secret::from_bytes(&bytes)
    }

    /// RFC 4648 base32, upper case, without padding (what authenticator apps expect).
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// RFC 4226 HOTP: HMAC of the big-endian counter, dynamic truncation, `digits` decimal digits
/// (6-8: `Params` guarantees it). The number, not yet zero-padded.
fn hotp(secret: &Secret, algorithm: Algorithm, digits: u32, counter: u64) -> u32 {
    let key = hmac::Key::new(algorithm.hmac(), secret.as_bytes());
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = (mac[mac.len() - 1] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

/// The RFC 4226 HOTP code for `counter`, zero-padded to the digits of `params` (its step is
/// not used). Exposed for the RFC 4226 test vectors.
pub fn hotp_code(secret: &Secret, params: &Params, counter: u64) -> String {
    let width = params.digits as usize;
    format!(
        "{:0width$}",
        hotp(secret, params.algorithm, params.digits, counter)
    )
}

/// The code of `time_step` (see [`Params::time_step`]), zero-padded to `params.digits()`.
pub fn code_at(secret: &Secret, params: &Params, time_step: u64) -> String {
    hotp_code(secret, params, time_step)
}

/// Checks `code` at `now_unix` against the steps within `window` of the current one
/// (window ≤ [`MAX_WINDOW`]), accepting only steps strictly after `last_accepted_step`.
/// Returns the accepted step, which the caller must store (compare-and-set) as the factor's
/// new last accepted step.
///
/// Every step of the window is computed and compared in constant time, none skipped
/// whatever matched, so the timing does not tell how many digits matched. Any input is
/// answered without panicking; a code that is not exactly `digits` ASCII digits is
/// `Malformed` before any HMAC.
pub fn verify(
    secret: &Secret,
    params: &Params,
    code: &str,
    now_unix: u64,
    window: u32,
    last_accepted_step: Option<u64>,
) -> Result<u64, TotpError> {
    if window > MAX_WINDOW {
        return Err(invalid(format!(
            "the TOTP window must be at most {MAX_WINDOW} steps, not {window}"
        )));
    }
    let candidate = code.as_bytes();
    if candidate.len() != params.digits as usize || !candidate.iter().all(u8::is_ascii_digit) {
        return Err(TotpError::Malformed);
    }
    let now = params.time_step(now_unix);
    let first = now.saturating_sub(window as u64);
    let last = now.saturating_add(window as u64);
    let mut accepted = None;
    let mut replayed = false;
    for step in first..=last {
        let expected = code_at(secret, params, step);
        if constant_time::verify_slices_are_equal(expected.as_bytes(), candidate).is_ok() {
            // Ascending steps: the last fresh match is the greatest.
            match last_accepted_step {
                Some(done) if step <= done => replayed = true,
                _ => accepted = Some(step),
            }
        }
    }
    match accepted {
        Some(step) => Ok(step),
        None if replayed => Err(TotpError::Replayed),
        None => Err(TotpError::Mismatch),
    }
}

/// RFC 3986 unreserved characters stay; everything else is percent-encoded (a space is
/// `%20`, as the key-URI format asks, never `+`).
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The Google Authenticator key URI of a factor:
/// `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`,
/// issuer and account percent-encoded (UTF-8), the issuer both as the label prefix and as a
/// parameter, every parameter explicit. Issuer and account must be non-empty, at most
/// [`MAX_LABEL_BYTES`] bytes, without `:` (the key-URI format forbids it: it separates them)
/// and without control characters.
pub fn otpauth_uri(
    secret: &Secret,
    params: &Params,
    issuer: &str,
    account_name: &str,
) -> Result<String, TotpError> {
    for (what, value) in [("issuer", issuer), ("account name", account_name)] {
        if value.is_empty() || value.len() > MAX_LABEL_BYTES {
            return Err(invalid(format!(
                "the TOTP {what} must be 1 to {MAX_LABEL_BYTES} bytes"
            )));
        }
        if value.contains(':') || value.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the TOTP {what} must not contain ':' or control characters"
            )));
        }
    }
    let issuer = utf8_percent_encode(issuer, URI_COMPONENT).to_string();
    let account = utf8_percent_encode(account_name, URI_COMPONENT);
    Ok(format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm={}&digits={}&period={}",
        secret.to_base32(),
        params.algorithm.name(),
        params.digits,
        params.step
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ascii(s: &str) -> Secret {
        Secret::from_bytes(s.as_bytes()).unwrap()
    }

    /// RFC 6238 Appendix B: seeds are the ASCII digits repeated to the hash's size.
    fn rfc6238_seed(algorithm: Algorithm) -> Secret {
        let len = match algorithm {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        };
        let seed: String = "1234567890".chars().cycle().take(len).collect();
        ascii(&seed)
    }

    #[test]
    fn rfc6238_appendix_b() {
        // (time, step T in hex, SHA1, SHA256, SHA512)
        let table: [(u64, u64, &str, &str, &str); 6] = [
            (59, 0x1, "94287082", "46119246", "90693936"),
            (1111111109, 0x23523EC, "07081804", "68084774", "25091201"),
            (1111111111, 0x23523ED, "14050471", "67062674", "99943326"),
            (1234567890, 0x273EF07, "89005924", "91819424", "93441116"),
            (2000000000, 0x3F940AA, "69279037", "90698825", "38618901"),
            (20000000000, 0x27BC86AA, "65353130", "77737706", "47863826"),
        ];
        for (time, t, sha1, sha256, sha512) in table {
            for (algorithm, expected) in [
                (Algorithm::Sha1, sha1),
                (Algorithm::Sha256, sha256),
                (Algorithm::Sha512, sha512),
            ] {
                let params = Params::new(algorithm, 8, 30).unwrap();
                let secret = rfc6238_seed(algorithm);
                assert_eq!(params.time_step(time), t);
                assert_eq!(
                    code_at(&secret, &params, t),
                    expected,
                    "{algorithm:?} {time}"
                );
                assert_eq!(
                    verify(&secret, &params, expected, time, 0, None),
                    Ok(t),
                    "{algorithm:?} {time}"
                );
            }
        }
    }

    #[test]
    fn rfc4226_appendix_d() {
        let secret = ascii("12345678901234567890");
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp_code(&secret, &Params::GOTRUE, counter as u64), *code);
        }
    }

    #[test]
    fn defaults_are_gotrue() {
        let p = Params::default();
        assert_eq!(
            (p.algorithm(), p.digits(), p.step()),
            (Algorithm::Sha1, 6, 30)
        );
        assert!(Params::new(Algorithm::Sha1, 5, 30).is_err());
        assert!(Params::new(Algorithm::Sha1, 9, 30).is_err());
        assert!(Params::new(Algorithm::Sha1, 6, 0).is_err());
        assert!(Params::new(Algorithm::Sha1, 6, 301).is_err());
        assert_eq!(Algorithm::parse("sha256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("MD5"), None);
    }

    #[test]
    fn window_and_replay() {
        let secret = ascii("12345678901234567890");
        let p = Params::GOTRUE;
        let now = 1_750_000_015; // step 58_333_333, 15 s into it
        let t = p.time_step(now);
        let code = |step: u64| code_at(&secret, &p, step);
        // The current step, and one step either side with the default window.
        assert_eq!(verify(&secret, &p, &code(t), now, 1, None), Ok(t));
        assert_eq!(verify(&secret, &p, &code(t - 1), now, 1, None), Ok(t - 1));
        assert_eq!(verify(&secret, &p, &code(t + 1), now, 1, None), Ok(t + 1));
        assert_eq!(
            verify(&secret, &p, &code(t + 2), now, 1, None),
            Err(TotpError::Mismatch)
        );
        assert_eq!(
            verify(&secret, &p, &code(t - 1), now, 0, None),
            Err(TotpError::Mismatch)
        );
        assert_eq!(verify(&secret, &p, &code(t - 3), now, 3, None), Ok(t - 3));
        // Replay: once t is accepted, t and anything before it are refused.
        assert_eq!(
            verify(&secret, &p, &code(t), now, 1, Some(t)),
            Err(TotpError::Replayed)
        );
        assert_eq!(
            verify(&secret, &p, &code(t - 1), now, 1, Some(t)),
            Err(TotpError::Replayed)
        );
        assert_eq!(
            verify(&secret, &p, &code(t + 1), now, 1, Some(t)),
            Ok(t + 1)
        );
        // A step accepted ahead (clock skew) blocks the codes behind it.
        assert_eq!(
            verify(&secret, &p, &code(t), now, 1, Some(t + 1)),
            Err(TotpError::Replayed)
        );
        // Parameters.
        assert!(matches!(
            verify(&secret, &p, &code(t), now, MAX_WINDOW + 1, None),
            Err(TotpError::InvalidParameter(_))
        ));
        // Near time zero, the window does not wrap.
        assert_eq!(verify(&secret, &p, &code(0), 5, 1, None), Ok(0));
        assert_eq!(
            verify(&secret, &p, &code(0), u64::MAX, 1, None),
            Err(TotpError::Mismatch)
        );
    }

    #[test]
    fn of_several_matching_steps_the_greatest_is_accepted() {
        // With the RFC 4226 secret, steps 153567 and 153569 share the code 468457 (found by a
        // search with Python's hmac): at step 153568 with window 1 the later step is taken,
        // so the code cannot be replayed for it.
        let secret = ascii("12345678901234567890");
        let p = Params::GOTRUE;
        let t = 153_568;
        let now = t * 30 + 1;
        assert_eq!(code_at(&secret, &p, t - 1), "468457");
        assert_eq!(code_at(&secret, &p, t + 1), "468457");
        assert_ne!(code_at(&secret, &p, t), "468457");
        assert_eq!(verify(&secret, &p, "468457", now, 1, None), Ok(t + 1));
        assert_eq!(
            verify(&secret, &p, "468457", now, 1, Some(t - 1)),
            Ok(t + 1)
        );
        assert_eq!(
            verify(&secret, &p, "468457", now, 1, Some(t + 1)),
            Err(TotpError::Replayed)
        );
    }

    #[test]
    fn malformed_codes() {
        let secret = Secret::generate();
        let p = Params::GOTRUE;
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            " 123456",
            "123456 ",
            "١٢٣٤٥٦",
            "+12345",
            "-12345",
            "12 456",
            "000000\0",
        ] {
            assert_eq!(
                verify(&secret, &p, bad, 1_750_000_000, 1, None),
                Err(TotpError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secrets() {
        let s = Secret::generate();
        assert_eq!(s.as_bytes().len(), 20);
        assert_ne!(s, Secret::generate());
        let b32 = s.to_base32();
        assert_eq!(b32.len(), 32);
        assert!(b32
            .bytes()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)));
        assert_eq!(Secret::from_base32(&b32).unwrap(), s);
        assert_eq!(Secret::from_base32(&b32.to_ascii_lowercase()).unwrap(), s);
        assert!(!format!("{s:?}").contains(&b32));
        // RFC 4648 §10: "foobar" → MZXW6YTBOI======; 16 bytes → 26 chars (+ 6 '=').
        let sixteen = Secret::from_bytes(b"foobarfoobarfoob").unwrap();
        let text = sixteen.to_base32();
        assert_eq!(text, "MZXW6YTBOJTG633CMFZGM33PMI");
        assert_eq!(
            Secret::from_base32(&format!("{text}======")).unwrap(),
            sixteen
        );
        for bad in [
            "MZXW6YTBOJTG633CMFZGM33PMI=", // padding that does not complete the block
            "MZXW6YTBOJTG633CMFZGM33PMI==============", // more padding than the block needs
            "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP========", // padding after a full block
            "MZXW6YTBOJTG633CMFZGM33PMJ",  // non-canonical trailing bits
            "MZXW6YTBOJTG633CMFZGM33PM1",  // not base32
            "MZXW 6YTBOJTG633CMFZGM33PMI", // space
            "MZXW6YTBOI",                  // 6 bytes: too short
            "",
        ] {
            assert!(Secret::from_base32(bad).is_err(), "{bad:?}");
        }
        assert!(Secret::from_base32(&"A".repeat(10_000)).is_err());
        assert!(Secret::from_bytes(&[0; 15]).is_err());
        assert!(Secret::from_bytes(&[0; 129]).is_err());
    }

    #[test]
    fn key_uri() {
        let secret = Secret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(
            otpauth_uri(&secret, &Params::GOTRUE, "Example Co", "alice+mfa@example.com").unwrap(),
            "otpauth://totp/Example%20Co:alice%2Bmfa%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Example%20Co&algorithm=SHA1&digits=6&period=30"
        );
        let p = Params::new(Algorithm::Sha512, 8, 60).unwrap();
        assert_eq!(
            otpauth_uri(&secret, &p, "Zürich & Co/~x", "b.b_b-b").unwrap(),
            "otpauth://totp/Z%C3%BCrich%20%26%20Co%2F~x:b.b_b-b?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Z%C3%BCrich%20%26%20Co%2F~x&algorithm=SHA512&digits=8&period=60"
        );
        for (issuer, account) in [
            ("", "a"),
            ("i", ""),
            ("a:b", "c"),
            ("i", "a:b"),
            ("i", "a\nb"),
        ] {
            assert!(otpauth_uri(&secret, &Params::GOTRUE, issuer, account).is_err());
        }
        assert!(otpauth_uri(&secret, &Params::GOTRUE, "i", &"a".repeat(257)).is_err());
    }

    #[test]
    fn errors_map_to_stable_codes() {
        let e: AuthError = TotpError::Replayed.into();
        assert_eq!(e.code, ErrorCode::InvalidCredentials);
        let e: AuthError = TotpError::InvalidParameter("x".into()).into();
        assert_eq!(e.code, ErrorCode::InvalidParameter);
    }

    proptest! {
        #[test]
        fn verify_never_panics(code in ".{0,12}", digits_code in "[0-9]{6,8}", now in any::<u64>(),
                               window in 0u32..12, last in proptest::option::of(any::<u64>())) {
            let secret = Secret::from_bytes(b"12345678901234567890").unwrap();
            for p in [Params::GOTRUE, Params::new(Algorithm::Sha512, 8, 300).unwrap()] {
                let _ = verify(&secret, &p, &code, now, window, last);
                let r = verify(&secret, &p, &digits_code, now, window, last);
                if let Ok(step) = r {
                    prop_assert!(last.is_none_or(|l| step > l));
                    prop_assert_eq!(code_at(&secret, &p, step), digits_code.clone());
                }
            }
        }

        #[test]
        fn base32_round_trip_and_garbage(bytes in proptest::collection::vec(any::<u8>(), 16..=128),
                                         garbage in ".{0,300}") {
            let s = Secret::from_bytes(&bytes).unwrap();
            prop_assert_eq!(Secret::from_base32(&s.to_base32()).unwrap(), s);
            let _ = Secret::from_base32(&garbage);
        }
    }
}
