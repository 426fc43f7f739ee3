//! The set of keys a database trusts, with the constraints bound to each key: one algorithm,
//! optional issuer and audiences, and a validity window (for overlapping rotation).

use crate::alg::Alg;
use crate::error::{AuthError, Result};
use crate::jwk::Jwk;
use crate::jws::{printable, Header};
use jsonwebtoken::crypto::JwtVerifier;

pub struct KeyEntry {
    pub jwk: Jwk,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    /// Unix seconds; the key verifies tokens only while `valid_from <= now < valid_until`.
    pub valid_from: Option<f64>,
    pub valid_until: Option<f64>,
    verifier: Box<dyn JwtVerifier>,
}

impl KeyEntry {
    pub fn new(jwk: Jwk, issuer: Option<String>, audience: Option<Vec<String>>) -> Result<Self> {
        let verifier = jwk.verifier()?;
        Ok(KeyEntry {
            jwk,
            issuer,
            audience,
            valid_from: None,
            valid_until: None,
            verifier,
        })
    }

    pub fn with_validity(mut self, valid_from: Option<f64>, valid_until: Option<f64>) -> Self {
        self.valid_from = valid_from;
        self.valid_until = valid_until;
        self
    }

    pub fn active_at(&self, now: f64) -> bool {
        self.valid_from.is_none_or(|f| f <= now) && self.valid_until.is_none_or(|u| now < u)
    }

    /// Verifies `signature` over `message` with this key's one algorithm.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        // The signature crate's Verifier takes the signature by its associated type (Vec<u8>);
        // this one copy is far below the cost of the public-key operation.
        jsonwebtoken::signature::Verifier::verify(
            self.verifier.as_ref(),
            message,
            &signature.to_vec(),
        )
        .is_ok()
    }
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("jwk", &self.jwk)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Default, Debug)]
pub struct KeySet {
    entries: Vec<KeyEntry>,
}

impl KeySet {
    pub fn new() -> Self {
        KeySet::default()
    }

    pub fn insert(&mut self, entry: KeyEntry) -> Result<()> {
        if self.entries.iter().any(|e| e.jwk.kid == entry.jwk.kid) {
            return Err(AuthError::invalid_parameter(format!(
                "duplicate kid {}",
                printable(&entry.jwk.kid)
            )));
        }
        self.entries.push(entry);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, kid: &str) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| e.jwk.kid == kid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.entries.iter()
    }

    /// The keys that may verify a token with this header at `now`. With a `kid`, exactly that
    /// key, and only if its algorithm is the header's; without one, every active key of the
    /// header's algorithm (tokens from IdPs that omit kid, e.g. legacy HS256 secrets).
    pub fn candidates(&self, header: &Header, now: f64) -> Result<Vec<&KeyEntry>> {
        match &header.kid {
            Some(kid) => {
                let entry = self.get(kid).ok_or_else(|| {
                    AuthError::invalid_token(format!("unknown kid {}", printable(kid)))
                })?;
                check_alg(entry, header.alg)?;
                if !entry.active_at(now) {
                    return Err(AuthError::invalid_token(format!(
                        "key {} is retired or not yet active",
                        printable(kid)
                    )));
                }
                Ok(vec![entry])
            }
            None => {
                let found: Vec<&KeyEntry> = self
                    .entries
                    .iter()
                    .filter(|e| e.jwk.alg == header.alg && e.active_at(now))
                    .collect();
                if found.is_empty() {
                    return Err(AuthError::invalid_token(format!(
                        "no active key for alg {} and the token names no kid",
                        header.alg.name()
                    )));
                }
                Ok(found)
            }
        }
    }
}

fn check_alg(entry: &KeyEntry, alg: Alg) -> Result<()> {
    if entry.jwk.alg != alg {
        return Err(AuthError::invalid_token(format!(
            "token alg {} is not the alg of key {} ({})",
            alg.name(),
            printable(&entry.jwk.kid),
            entry.jwk.alg.name()
        )));
    }
    Ok(())
}
