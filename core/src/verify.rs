//! The verification pipeline: size → structure → header → key by kid (alg bound to the key) →
//! signature → strict claims JSON → time claims → issuer/audience of the key that verified.

use crate::claims::{self, Policy, TimeClaims};
use crate::error::{AuthError, Result};
use crate::json;
use crate::jws::{self, Compact};
use crate::keyset::{KeyEntry, KeySet};
use serde_json::{Map, Value};

/// A token whose signature and claims passed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub times: TimeClaims,
    /// The kid of the key that verified the signature.
    pub kid: String,
}

fn first_verifying<'k>(
    compact: &Compact<'_>,
    candidates: impl IntoIterator<Item = &'k KeyEntry>,
) -> Result<&'k KeyEntry> {
    candidates
        .into_iter()
        .find(|e| e.verify_signature(compact.signing_input.as_bytes(), &compact.signature))
        .ok_or_else(|| AuthError::invalid_token("signature does not verify"))
}

/// Verifies a compact JWS against the key set and returns its payload bytes (no JWT claim
/// processing: for JWS test vectors and non-JWT payloads).
pub fn verify_jws<'k>(
    token: &str,
    keys: &'k KeySet,
    now: f64,
    max_token_bytes: usize,
) -> Result<(Vec<u8>, &'k KeyEntry)> {
    let compact = jws::parse_compact(token, max_token_bytes)?;
    let entry = first_verifying(&compact, keys.candidates(&compact.header, now)?)?;
    Ok((jws::decode_payload(&compact)?, entry))
}

fn finish(payload: &[u8], entry: &KeyEntry, now: f64, policy: &Policy) -> Result<Verified> {
    let claims = json::parse_object(payload)
        .map_err(|e| AuthError::invalid_token(format!("claims {}", e.describe())))?;
    let times = claims::time_claims(&claims)?;
    claims::check_times(&times, now, policy)?;
    claims::check_issuer_audience(&claims, entry.issuer.as_deref(), entry.audience.as_deref())?;
    Ok(Verified {
        claims,
        times,
        kid: entry.jwk.kid.clone(),
    })
}

/// Verifies a JWT: signature, then claims, then the policy and the key's issuer/audience.
pub fn verify_jwt(token: &str, keys: &KeySet, now: f64, policy: &Policy) -> Result<Verified> {
    let (payload, entry) = verify_jws(token, keys, now, policy.max_token_bytes)?;
    finish(&payload, entry, now, policy)
}

/// Verifies a compact JWS against one given key and returns its payload: the token's kid is
/// not consulted, its alg must be the key's.
pub fn verify_jws_with_key(
    token: &str,
    entry: &KeyEntry,
    max_token_bytes: usize,
) -> Result<Vec<u8>> {
    let compact = jws::parse_compact(token, max_token_bytes)?;
    if compact.header.alg != entry.jwk.alg {
        return Err(AuthError::invalid_token(format!(
            "token alg {} is not the key's alg {}",
            compact.header.alg.name(),
            entry.jwk.alg.name()
        )));
    }
    first_verifying(&compact, [entry])?;
    jws::decode_payload(&compact)
}

/// Verifies a JWT against one given key (see `verify_jws_with_key`).
pub fn verify_jwt_with_key(
    token: &str,
    entry: &KeyEntry,
    now: f64,
    policy: &Policy,
) -> Result<Verified> {
    let payload = verify_jws_with_key(token, entry, policy.max_token_bytes)?;
    finish(&payload, entry, now, policy)
}
