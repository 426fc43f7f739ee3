//! auth_core: the PostgreSQL-independent heart of auth_ext.
//!
//! Everything here is plain Rust, tested with `cargo test -p auth_core` and fuzzable; the
//! extension crate maps it to SQL functions, GUCs and errors.

pub mod alg;
pub mod b64;
pub mod claims;
pub mod error;
pub mod identity;
pub mod json;
pub mod jwk;
pub mod jws;
pub mod keyset;
pub mod otp;
pub mod parsed_key;
pub mod password;
pub mod random;
pub mod roles;
pub mod signing;
pub mod totp;
pub mod verify;

pub use alg::Alg;
pub use claims::{Policy, TimeClaims};
pub use error::{AuthError, ErrorCode, Result};
pub use identity::{Identity, Uid};
pub use jwk::Jwk;
pub use keyset::{KeyEntry, KeySet};
pub use totp::TotpError;
pub use verify::{verify_jws, verify_jwt, Verified};
