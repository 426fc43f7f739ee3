//! Password hashing: argon2id PHC strings for new hashes; verification of argon2id/argon2i/
//! argon2d PHC strings and of bcrypt `$2a$`/`$2b$`/`$2y$` hashes imported from GoTrue or
//! pgcrypto's `crypt()`. Comparisons are constant-time (the argon2 and bcrypt crates compare
//! with `subtle`). A malformed or unsupported hash is an error, never `false`.
//!
//! Limits, so that no request can make the server allocate gigabytes or spin for minutes:
//! passwords up to 1024 bytes; argon2 hashes verified up to GoTrue's import bounds (m ≤ 1 GiB,
//! t ≤ 20, p ≤ 16); bcrypt cost up to 15. bcrypt uses only the first 72 bytes of a password
//! (as the original crypt_blowfish and pgcrypto do): a longer password verifies against an
//! imported bcrypt hash by its first 72 bytes, exactly as it did in the system it came from,
//! and is rehashed to argon2id with all its bytes on the next successful sign-in.

use crate::error::{AuthError, Result};
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MAX_PASSWORD_BYTES: usize = 1024;
/// GoTrue's argon2 import bounds; also what we accept to verify.
pub const MAX_VERIFY_MEMORY_KIB: u32 = 1024 * 1024;
pub const MAX_VERIFY_ITERATIONS: u32 = 20;
pub const MAX_VERIFY_PARALLELISM: u32 = 16;
/// bcrypt cost 15 already takes seconds; higher would let one request hold a core for minutes.
pub const MAX_BCRYPT_COST: u32 = 15;

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
    let salt = SaltString::generate(&mut OsRng);
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_params()?);
    hasher
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::invalid_parameter(format!("argon2 hashing failed: {e}")))
}

const BCRYPT_ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Identifies the scheme of a stored hash and checks its shape and limits.
pub fn scheme(stored: &str) -> Result<Scheme> {
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
        if cost > MAX_BCRYPT_COST {
            return Err(bad_hash(&format!(
                "has bcrypt cost {cost}; at most {MAX_BCRYPT_COST} is accepted"
            )));
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
        if p.memory_kib > MAX_VERIFY_MEMORY_KIB
            || p.iterations > MAX_VERIFY_ITERATIONS
            || p.parallelism > MAX_VERIFY_PARALLELISM
        {
            return Err(bad_hash(&format!(
                "has argon2 parameters beyond m={MAX_VERIFY_MEMORY_KIB}, t={MAX_VERIFY_ITERATIONS}, p={MAX_VERIFY_PARALLELISM}"
            )));
        }
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

/// Verifies `password` against a stored hash. `Ok(false)` only for a wrong password.
pub fn verify(password: &[u8], stored: &str) -> Result<bool> {
    check_password(password)?;
    match scheme(stored)? {
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

/// True when the stored hash should be replaced by a hash made with `current`: any bcrypt hash,
/// any argon2 variant other than argon2id or version other than 0x13, and argon2id with less
/// memory, fewer iterations or less parallelism than `current`.
pub fn needs_rehash(stored: &str, current: Argon2Params) -> Result<bool> {
    Ok(match scheme(stored)? {
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
