//! Password hashing: argon2id PHC strings for new hashes; verification of argon2id/argon2i/
//! argon2d PHC strings and of bcrypt `$2a$`/`$2b$`/`$2y$` hashes imported from GoTrue or
//! pgcrypto's `crypt()`. Comparisons are constant-time (the argon2 and bcrypt crates compare
//! with `subtle`). A malformed or unsupported hash is an error, never `false`.
//!
//! Limits, so that no request can make the server allocate gigabytes or spin for minutes:
//! passwords up to 1024 bytes; a stored hash is verified only within [`VerifyLimits`] (by
//! default argon2 m ≤ 256 MiB and m × t ≤ [`DEFAULT_MAX_MEMORY_PASSES`], bcrypt cost ≤ 15),
//! which can tighten but never loosen the absolute ceilings (GoTrue's import bounds m ≤ 1 GiB,
//! t ≤ 20, p ≤ 16; bcrypt cost ≤ 15). A hash beyond a limit is refused before any memory is
//! allocated or any hashing done. bcrypt uses only the first 72 bytes of a password
//! (as the original crypt_blowfish and pgcrypto do): a longer password verifies against an
//! imported bcrypt hash by its first 72 bytes, exactly as it did in the system it came from,
//! and is rehashed to argon2id with all its bytes on the next successful sign-in.

use crate::error::{AuthError, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MAX_PASSWORD_BYTES: usize = 1024;
/// GoTrue's argon2 import bounds: absolute ceilings, whatever the [`VerifyLimits`].
pub const MAX_VERIFY_MEMORY_KIB: u32 = 1024 * 1024;
pub const MAX_VERIFY_ITERATIONS: u32 = 20;
pub const MAX_VERIFY_PARALLELISM: u32 = 16;
/// bcrypt cost 15 already takes seconds; higher would let one request hold a core for minutes.
/// Absolute ceiling and default cap.
pub const MAX_BCRYPT_COST: u32 = 15;
/// Default cap on the argon2 memory of a stored hash: 256 MiB, the most `auth.argon2_memory_kib`
/// lets a new hash use.
pub const DEFAULT_MAX_MEMORY_KIB: u32 = 256 * 1024;
/// Default cap on argon2 m × t (KiB × passes), the work of one verification: its time, since
/// this crate runs all p lanes on one thread. 2 GiB-passes: on the reference machine (2-core
/// x86-64, release build) one GiB-pass takes 1.0-1.5 s, and the worst hashes accepted by
/// default (m = 256 MiB with t = 8, m = 128 MiB with t = 16) verify in 2.2-2.5 s, about what
/// the bcrypt cap (cost 15) costs; common parameters are far below (OWASP 19 MiB × 2: 0.04 s,
/// RFC 9106's 64 MiB × 3: 0.2 s). `measure_verify_cost` (an ignored test) re-measures.
pub const DEFAULT_MAX_MEMORY_PASSES: u64 = 2 * 1024 * 1024;

/// Caps on the cost of verifying a stored hash (bounded cost for every input, docs/security.md "Trust boundaries").
/// Each cap tightens the absolute ceilings above; a value beyond a ceiling acts as the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyLimits {
    /// Largest argon2 memory (m, KiB) a stored hash may ask for: what one verification allocates.
    pub max_memory_kib: u32,
    /// Largest argon2 m × t (KiB × iterations): the work, hence the time, of one verification
    /// (independent of p: the lanes run on one thread).
    pub max_memory_passes: u64,
    /// Largest bcrypt cost (log2 of the rounds).
    pub max_bcrypt_cost: u32,
}

impl VerifyLimits {
    pub const DEFAULT: VerifyLimits = VerifyLimits {
        max_memory_kib: DEFAULT_MAX_MEMORY_KIB,
        max_memory_passes: DEFAULT_MAX_MEMORY_PASSES,
        max_bcrypt_cost: MAX_BCRYPT_COST,
    };

    /// The absolute ceilings themselves (what `scheme` enforces).
    pub const CEILING: VerifyLimits = VerifyLimits {
        max_memory_kib: MAX_VERIFY_MEMORY_KIB,
        max_memory_passes: MAX_VERIFY_MEMORY_KIB as u64 * MAX_VERIFY_ITERATIONS as u64,
        max_bcrypt_cost: MAX_BCRYPT_COST,
    };

    /// `Ok` when a hash with these argon2 parameters may be verified under these limits; the
    /// error names the cap that is exceeded. Also for checking that the parameters of new
    /// hashes stay verifiable.
    pub fn check_argon2(&self, p: Argon2Params) -> Result<()> {
        if p.iterations > MAX_VERIFY_ITERATIONS {
            return Err(bad_hash(&format!(
                "has argon2 t={}; at most {MAX_VERIFY_ITERATIONS} iterations are accepted",
                p.iterations
            )));
        }
        if p.parallelism > MAX_VERIFY_PARALLELISM {
            return Err(bad_hash(&format!(
                "has argon2 p={}; at most {MAX_VERIFY_PARALLELISM} lanes are accepted",
                p.parallelism
            )));
        }
        let max_m = self.max_memory_kib.min(MAX_VERIFY_MEMORY_KIB);
        if p.memory_kib > max_m {
            return Err(bad_hash(&format!(
                "has argon2 m={} KiB, above the memory cap of {max_m} KiB (max_memory_kib)",
                p.memory_kib
            )));
        }
        let work = p.memory_kib as u64 * p.iterations as u64;
        let max_work = self.max_memory_passes.min(Self::CEILING.max_memory_passes);
        if work > max_work {
            return Err(bad_hash(&format!(
                "has argon2 m*t={work} KiB-passes (m={}, t={}), above the time cap of {max_work} (max_memory_passes)",
                p.memory_kib, p.iterations
            )));
        }
        Ok(())
    }

    /// `Ok` when a bcrypt hash of this cost may be verified under these limits.
    pub fn check_bcrypt(&self, cost: u32) -> Result<()> {
        let max = self.max_bcrypt_cost.min(MAX_BCRYPT_COST);
        if cost > max {
            return Err(bad_hash(&format!(
                "has bcrypt cost {cost}, above the cap of {max} (max_bcrypt_cost)"
            )));
        }
        Ok(())
    }

    /// `Ok` when a hash of this scheme may be verified under these limits.
    pub fn check(&self, scheme: &Scheme) -> Result<()> {
        match *scheme {
            Scheme::Bcrypt { cost } => self.check_bcrypt(cost),
            Scheme::Argon2 { params, .. } => self.check_argon2(params),
        }
    }
}

impl Default for VerifyLimits {
    fn default() -> Self {
        VerifyLimits::DEFAULT
    }
}

/// argon2id parameters for new hashes (`auth.argon2_*` GUCs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Params {
    /// OWASP's recommendation for argon2id: m = 19 MiB, t = 2, p = 1.
    pub const OWASP: Argon2Params = Argon2Params {
        memory_kib: 19456,
        iterations: 2,
        parallelism: 1,
    };

    fn to_params(self) -> Result<Params> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| AuthError::invalid_parameter(format!("argon2 parameters rejected: {e}")))
    }
}

/// What a stored hash is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Argon2 {
        algorithm: Algorithm,
        version: u32,
        params: Argon2Params,
    },
    Bcrypt {
        cost: u32,
    },
}

fn bad_hash(detail: &str) -> AuthError {
    AuthError::invalid_parameter(format!("password hash {detail}"))
}

fn check_password(password: &[u8]) -> Result<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::invalid_parameter(format!(
            "password is longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Hashes `password` with argon2id and a fresh 16-byte random salt; returns a PHC string.
pub fn hash(password: &[u8], params: Argon2Params) -> Result<String> {
    check_password(password)?;
    let salt = SaltString::encode_b64(&crate::random::bytes(16))
        .map_err(|e| AuthError::invalid_parameter(format!("argon2 salt failed: {e}")))?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_params()?);
    hasher
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::invalid_parameter(format!("argon2 hashing failed: {e}")))
}

const BCRYPT_ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Identifies the scheme of a stored hash and checks its shape and the absolute ceilings
/// ([`VerifyLimits::CEILING`]).
pub fn scheme(stored: &str) -> Result<Scheme> {
    let s = parse_scheme(stored)?;
    VerifyLimits::CEILING.check(&s)?;
    Ok(s)
}

/// The scheme and parameters of a stored hash, its shape checked; no limit applied. Allocates
/// nothing beyond the parse.
fn parse_scheme(stored: &str) -> Result<Scheme> {
    if let Some(rest) = stored.strip_prefix("$2") {
        // $2b$10$ + 22 salt chars + 31 hash chars = 60 characters.
        let b = stored.as_bytes();
        if stored.len() != 60 || b[3] != b'$' || b[6] != b'$' {
            return Err(bad_hash("is not a well-formed bcrypt hash"));
        }
        match rest.as_bytes()[0] {
            b'a' | b'b' | b'y' => {}
            b'x' => {
                return Err(bad_hash(
                    "uses $2x$ (the buggy pre-2011 crypt_blowfish variant), which is not supported",
                ))
            }
            _ => return Err(bad_hash("has an unknown bcrypt variant")),
        }
        let cost: u32 = std::str::from_utf8(&b[4..6])
            .ok()
            .filter(|c| c.bytes().all(|d| d.is_ascii_digit()))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad_hash("has a malformed bcrypt cost"))?;
        if !(4..=31).contains(&cost) {
            return Err(bad_hash("has a bcrypt cost outside 4..31"));
        }
        if !b[7..].iter().all(|c| BCRYPT_ALPHABET.contains(c)) {
            return Err(bad_hash("is not a well-formed bcrypt hash"));
        }
        return Ok(Scheme::Bcrypt { cost });
    }
    if stored.starts_with("$argon2") {
        let parsed = PasswordHash::new(stored)
            .map_err(|_| bad_hash("is not a well-formed argon2 PHC string"))?;
        let algorithm = Algorithm::try_from(parsed.algorithm)
            .map_err(|_| bad_hash("names an unknown argon2 variant"))?;
        let version = parsed.version.unwrap_or(0x10);
        if version != 0x10 && version != 0x13 {
            return Err(bad_hash("has an unknown argon2 version"));
        }
        let params =
            Params::try_from(&parsed).map_err(|_| bad_hash("has invalid argon2 parameters"))?;
        let p = Argon2Params {
            memory_kib: params.m_cost(),
            iterations: params.t_cost(),
            parallelism: params.p_cost(),
        };
        let output = match (parsed.salt, parsed.hash) {
            (Some(_), Some(output)) => output,
            _ => return Err(bad_hash("has no salt or no hash")),
        };
        // A truncated hash usually shows as a non-canonical or implausibly short encoding;
        // refusing those keeps truncation from looking like a wrong password.
        let encoded = stored.rsplit('$').next().unwrap_or("");
        if !(16..=64).contains(&output.len()) || output.to_string() != encoded {
            return Err(bad_hash("has a truncated or non-canonical argon2 output"));
        }
        return Ok(Scheme::Argon2 {
            algorithm,
            version,
            params: p,
        });
    }
    Err(bad_hash(
        "uses an unsupported scheme (expected argon2 PHC or bcrypt $2a$/$2b$/$2y$)",
    ))
}

/// Verifies `password` against a stored hash under the default [`VerifyLimits`]. `Ok(false)`
/// only for a wrong password.
pub fn verify(password: &[u8], stored: &str) -> Result<bool> {
    verify_with_limits(password, stored, &VerifyLimits::DEFAULT)
}

/// Verifies `password` against a stored hash. `Ok(false)` only for a wrong password; a hash
/// that is malformed or beyond `limits` is an INVALID_PARAMETER error, returned before any
/// memory is allocated for it or any hashing is done.
pub fn verify_with_limits(password: &[u8], stored: &str, limits: &VerifyLimits) -> Result<bool> {
    check_password(password)?;
    let scheme = parse_scheme(stored)?;
    limits.check(&scheme)?;
    match scheme {
        Scheme::Bcrypt { .. } => bcrypt::verify(password, stored)
            .map_err(|_| bad_hash("is not a well-formed bcrypt hash")),
        Scheme::Argon2 { .. } => {
            let mut parsed = PasswordHash::new(stored)
                .map_err(|_| bad_hash("is not a well-formed argon2 PHC string"))?;
            // A PHC string without v= is version 0x10 (the argon2 crate would assume 0x13).
            parsed.version.get_or_insert(0x10);
            match Argon2::default().verify_password(password, &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(_) => Err(bad_hash(
                    "cannot be verified (invalid argon2 parameters or output)",
                )),
            }
        }
    }
}

/// `needs_rehash_with_limits` under the default [`VerifyLimits`].
pub fn needs_rehash(stored: &str, current: Argon2Params) -> Result<bool> {
    needs_rehash_with_limits(stored, current, &VerifyLimits::DEFAULT)
}

/// True when the stored hash should be replaced by a hash made with `current`: any hash beyond
/// `limits` (it cannot be verified any more, so it must be replaced, by a password reset), any
/// bcrypt hash, any argon2 variant other than argon2id or version other than 0x13, and argon2id
/// with less memory, fewer iterations or less parallelism than `current`. A malformed hash is
/// an error. Only parses: costs nothing whatever the hash's parameters.
pub fn needs_rehash_with_limits(
    stored: &str,
    current: Argon2Params,
    limits: &VerifyLimits,
) -> Result<bool> {
    let scheme = parse_scheme(stored)?;
    if limits.check(&scheme).is_err() {
        return Ok(true);
    }
    Ok(match scheme {
        Scheme::Bcrypt { .. } => true,
        Scheme::Argon2 {
            algorithm,
            version,
            params,
        } => {
            algorithm != Algorithm::Argon2id
                || version != 0x13
                || params.memory_kib < current.memory_kib
                || params.iterations < current.iterations
                || params.parallelism < current.parallelism
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Argon2Params = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn round_trip_and_wrong_password() {
        let h = hash(b"correct horse", FAST).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(verify(b"correct horse", &h).unwrap());
        assert!(!verify(b"correct horsf", &h).unwrap());
        assert!(!verify(b"", &h).unwrap());
        assert_ne!(hash(b"correct horse", FAST).unwrap(), h, "salted");
    }

    #[test]
    fn owasp_defaults() {
        let h = hash(b"pw", Argon2Params::OWASP).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!needs_rehash(&h, Argon2Params::OWASP).unwrap());
        assert!(needs_rehash(
            &h,
            Argon2Params {
                memory_kib: 65536,
                ..Argon2Params::OWASP
            }
        )
        .unwrap());
    }

    #[test]
    fn malformed_hashes_are_errors_not_false() {
        let good = hash(b"pw", FAST).unwrap();
        for bad in [
            "",
            "plain",
            "$1$abc$def",
            "$argon2id$v=19$m=64,t=1,p=1$",
            // argon2-cffi output cut by 4 characters (29 bytes + 2 stray bits: non-canonical)
            "$argon2id$v=19$m=19456,t=2,p=1$2+mb4d5E1B0YUUS1CJTtjQ$kyEFCA/Cpe408ypOSIZKXozcUDOKu9Gb9oQ4UFN",
            &good[..good.rfind('$').unwrap()],
            "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ",
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ",
            "$argon2id$v=19$m=65536,t=99,p=1$c29tZXNhbHQ$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ",
            "$2b$10$abc",
            "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "$2b$xx$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe!",
        ] {
            let e = verify(b"pw", bad).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::InvalidParameter, "{bad:?}");
            assert!(!e.detail.contains("pw\""), "{e}");
        }
    }

    fn argon2(m: u32, t: u32) -> String {
        hash(
            b"pw",
            Argon2Params {
                memory_kib: m,
                iterations: t,
                parallelism: 1,
            },
        )
        .unwrap()
    }

    fn refused(got: Result<bool>, cap: &str) {
        let e = got.unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidParameter);
        assert!(e.detail.contains(cap), "{}", e.detail);
    }

    #[test]
    fn memory_cap_boundary() {
        let limits = VerifyLimits {
            max_memory_kib: 64,
            ..VerifyLimits::DEFAULT
        };
        let at = argon2(64, 1);
        assert!(verify_with_limits(b"pw", &at, &limits).unwrap());
        assert!(!verify_with_limits(b"px", &at, &limits).unwrap());
        refused(
            verify_with_limits(b"pw", &argon2(72, 1), &limits),
            "max_memory_kib",
        );
        // The same hash verifies under the default limits.
        assert!(verify(b"pw", &argon2(72, 1)).unwrap());
    }

    #[test]
    fn time_cap_boundary() {
        let limits = VerifyLimits {
            max_memory_kib: 1024,
            max_memory_passes: 128,
            ..VerifyLimits::DEFAULT
        };
        for (m, t) in [(64, 2), (128, 1), (8, 16)] {
            assert!(verify_with_limits(b"pw", &argon2(m, t), &limits).unwrap());
        }
        for (m, t) in [(64, 3), (136, 1), (72, 2)] {
            refused(
                verify_with_limits(b"pw", &argon2(m, t), &limits),
                "max_memory_passes",
            );
        }
        // p does not buy time: the lanes run on one thread, the cap is on m × t alone.
        let p4 = hash(
            b"pw",
            Argon2Params {
                memory_kib: 64,
                iterations: 3,
                parallelism: 4,
            },
        )
        .unwrap();
        refused(verify_with_limits(b"pw", &p4, &limits), "max_memory_passes");
    }

    #[test]
    fn bcrypt_cost_cap_boundary() {
        let limits = VerifyLimits {
            max_bcrypt_cost: 4,
            ..VerifyLimits::DEFAULT
        };
        let at = bcrypt::hash(b"pw", 4).unwrap();
        assert!(verify_with_limits(b"pw", &at, &limits).unwrap());
        let above = bcrypt::hash(b"pw", 5).unwrap();
        refused(
            verify_with_limits(b"pw", &above, &limits),
            "max_bcrypt_cost",
        );
        assert!(verify(b"pw", &above).unwrap());
        assert!(needs_rehash_with_limits(&above, FAST, &limits).unwrap());
    }

    /// Hashes that claim huge parameters are refused from their parameters alone: no
    /// allocation, no hashing (each of these would take seconds to minutes and up to 4 GiB).
    #[test]
    fn refusal_costs_nothing() {
        // A well-formed hash whose parameters are then edited: only the limits can refuse it.
        let real = argon2(8, 1);
        let salt_and_output = real.split_once("p=1$").unwrap().1;
        let cases = [
            (4_194_304, 1, "m=4194304"),        // beyond the 1 GiB ceiling
            (1_048_576, 1, "max_memory_kib"),   // GoTrue's bound, above the default cap
            (524_288, 2, "max_memory_kib"),     // 512 MiB
            (262_144, 20, "max_memory_passes"), // memory within the cap, ~5 GiB-passes
            (131_072, 20, "max_memory_passes"), // 128 MiB × 20
            (262_144, 9, "max_memory_passes"),  // one pass above the cap at 256 MiB
        ];
        let generous = VerifyLimits {
            max_memory_kib: u32::MAX,
            max_memory_passes: u64::MAX,
            max_bcrypt_cost: 31,
        };
        for (m, t, cap) in cases {
            let h = format!("$argon2id$v=19$m={m},t={t},p=1${salt_and_output}");
            let start = std::time::Instant::now();
            refused(verify(b"pw", &h), cap);
            assert!(needs_rehash(&h, FAST).unwrap(), "{h}");
            if m > MAX_VERIFY_MEMORY_KIB {
                // Limits beyond the ceilings act as the ceilings.
                refused(verify_with_limits(b"pw", &h, &generous), "max_memory_kib");
            }
            let took = start.elapsed();
            assert!(took.as_millis() < 50, "{h}: {took:?}");
        }
        let cost16 = "$2b$16$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        let start = std::time::Instant::now();
        refused(
            verify_with_limits(b"pw", cost16, &generous),
            "max_bcrypt_cost",
        );
        assert!(start.elapsed().as_millis() < 50);
        assert!(needs_rehash(cost16, FAST).unwrap());
        assert!(scheme(cost16).is_err());
    }

    #[test]
    fn limits_api() {
        assert_eq!(VerifyLimits::default(), VerifyLimits::DEFAULT);
        assert_eq!(VerifyLimits::DEFAULT.max_memory_kib, 262_144);
        assert_eq!(VerifyLimits::DEFAULT.max_bcrypt_cost, MAX_BCRYPT_COST);
        let d = VerifyLimits::DEFAULT;
        d.check_argon2(Argon2Params::OWASP).unwrap();
        // The default caps' boundary (checked, not run: it takes seconds).
        let at_cap = Argon2Params {
            memory_kib: 262_144,
            iterations: 8,
            parallelism: 16,
        };
        d.check_argon2(at_cap).unwrap();
        assert!(d
            .check_argon2(Argon2Params {
                iterations: 9,
                ..at_cap
            })
            .is_err());
        assert!(d
            .check_argon2(Argon2Params {
                memory_kib: 262_152,
                iterations: 1,
                ..at_cap
            })
            .is_err());
        // The largest hash the argon2 GUC ranges allow (256 MiB, t = 20) is not verifiable
        // under the default time cap: new-hash parameters must be checked against the limits.
        assert!(d
            .check_argon2(Argon2Params {
                memory_kib: 262_144,
                iterations: 20,
                parallelism: 1,
            })
            .is_err());
        assert!(d.check_bcrypt(MAX_BCRYPT_COST).is_ok());
        assert!(d.check_bcrypt(MAX_BCRYPT_COST + 1).is_err());
        // Malformed stays an error for needs_rehash, whatever the limits.
        assert!(needs_rehash_with_limits("plain", FAST, &d).is_err());
    }

    /// Measures verification time at a few (m, t) points (the basis of
    /// DEFAULT_MAX_MEMORY_PASSES):
    ///   cargo test -p auth_core --release --lib -- --ignored measure_verify_cost --nocapture
    #[test]
    #[ignore]
    fn measure_verify_cost() {
        let generous = VerifyLimits::CEILING;
        for (m, t) in [
            (19_456, 2),
            (65_536, 3),
            (262_144, 1),
            (262_144, 2),
            (262_144, 4),
            (65_536, 16),
            (262_144, 8),
            (131_072, 16),
            (1_048_576, 2),
        ] {
            let h = argon2(m, t);
            let start = std::time::Instant::now();
            assert!(verify_with_limits(b"pw", &h, &generous).unwrap());
            let took = start.elapsed().as_secs_f64();
            let gib_passes = (m as f64 * t as f64) / 1_048_576.0;
            println!(
                "argon2id m={m:>8} KiB t={t:>2}: {took:6.3} s  ({gib_passes:.3} GiB-passes, {:.3} s per GiB-pass)",
                took / gib_passes
            );
        }
        for cost in [10, 12, 14, 15] {
            let h = bcrypt::hash(b"pw", cost).unwrap();
            let start = std::time::Instant::now();
            assert!(verify(b"pw", &h).unwrap());
            println!("bcrypt cost {cost}: {:.3} s", start.elapsed().as_secs_f64());
        }
    }

    #[test]
    fn password_length_limit() {
        let long = vec![b'a'; MAX_PASSWORD_BYTES + 1];
        assert!(hash(&long, FAST).is_err());
        assert!(hash(&long[..MAX_PASSWORD_BYTES], FAST).is_ok());
    }

    #[test]
    fn bcrypt_uses_72_bytes() {
        let h = bcrypt::hash(vec![b'x'; 72], 4).unwrap();
        assert!(verify(&[b'x'; 72], &h).unwrap());
        assert!(
            verify(&[b'x'; 80], &h).unwrap(),
            "bytes after the 72nd are ignored, as in crypt_blowfish"
        );
        assert!(!verify(&[b'x'; 71], &h).unwrap());
        assert!(needs_rehash(&h, Argon2Params::OWASP).unwrap());
    }
}
