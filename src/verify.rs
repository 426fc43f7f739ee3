//! The SQL entry points that verify a token: `auth.authenticate(token)` (verify and bind),
//! `auth.verify(token)` (verify only, against the key set), `auth.verify(token, jwk)` and
//! `auth.verify_jws(token, key)` (against one given key, no key set).

use crate::binding::{self, Stamp};
use crate::errors::{raise, OrRaise};
use crate::identity::{verify_token, Bound};
use crate::{clock, gucs, invalidation};
use auth_core::{AuthError, KeyEntry, KeySet};
use pgrx::prelude::*;
use pgrx::{pg_sys, JsonB};
use serde_json::Value;

/// Verifies `token` now, binds it to the current transaction (as `SET LOCAL auth.jwt`), and
/// returns its claims: `auth.bind` for a token that must not be NULL.
#[pg_extern(volatile, parallel_unsafe)]
fn authenticate(token: &str) -> JsonB {
    bind(Some(token)).expect("a verified token has claims")
}

/// Verifies `token` now (NULL: anonymous) and binds it to the current transaction, marking
/// the binding as explicit (`auth.bound`); with Citus installed it also reaches every worker
/// the transaction uses (docs/citus.md), and must run inside a transaction block. Returns the
/// claims, or NULL when anonymous.
#[pg_extern(volatile, parallel_unsafe)]
fn bind(token: Option<&str>) -> Option<JsonB> {
    let verified = token.map(|t| {
        crate::stats::begin(crate::stats::VERIFICATIONS);
        let now = clock::transaction_now();
        let b = verify_token(t.as_bytes(), now, &gucs::policy()).or_raise();
        b.check_account(now);
        crate::stats::ok(crate::stats::VERIFICATIONS);
        b
    });
    let claims = verified
        .as_ref()
        .map(|b| JsonB(Value::Object(b.claims.clone())));
    if crate::citus::installed() {
        crate::citus::propagate(token);
    } else {
        let value = std::ffi::CString::new(token.unwrap_or(""))
            .unwrap_or_else(|_| raise(AuthError::invalid_token("token contains a NUL byte")));
        gucs::set(
            &[(c"auth.jwt", value.as_c_str()), (c"auth.bound", c"on")],
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
        );
    }
    // Anonymous needs no priming: the setting changed, so the next helper call re-reads it.
    if let Some(b) = verified {
        binding::bind(b);
    }
    claims
}

/// The token `auth.verify(token)` verified last, and the state it was verified in.
struct LastVerified {
    stamp: Stamp,
    bound: Box<Bound>,
}

static mut LAST_VERIFIED: Option<LastVerified> = None;

/// `auth.verify(token)` (a C function, `sql/020_rls.sql`): the claims of `token` verified
/// against the key set, binding nothing. The same token again in the same transaction, with
/// no key, policy, user or session change since, answers the claims built once; a new token
/// builds its result in the caller's memory, so many distinct tokens leave nothing behind.
#[allow(static_mut_refs)]
pub fn verify_claims(token: &[u8]) -> pg_sys::Datum {
    invalidation::statement_tick();
    // SAFETY: backends are single-threaded; the reference does not outlive this call.
    let last = unsafe { &mut LAST_VERIFIED };
    if let Some(v) = last.as_ref() {
        if v.bound.source == token && v.stamp.same_but_token(Stamp::now()) {
            crate::stats::bump(crate::stats::VERIFY_CACHE_HIT);
            return v.bound.jwt_datum();
        }
    }
    crate::stats::bump(crate::stats::VERIFY_CACHE_MISS);
    crate::stats::begin(crate::stats::VERIFICATIONS);
    let now = clock::transaction_now();
    let b = verify_token(token, now, &gucs::policy()).or_raise();
    b.check_account(now);
    crate::stats::ok(crate::stats::VERIFICATIONS);
    let claims = b.claims_jsonb();
    *last = Some(LastVerified {
        stamp: Stamp::now(),
        bound: Box::new(b),
    });
    claims
}

/// Verifies `token` against one given JWK (no key set, no issuer/audience binding).
#[pg_extern(stable, parallel_safe, name = "verify")]
fn verify_with_key(token: &str, key: JsonB) -> JsonB {
    let jwk = auth_core::Jwk::parse(&key.0).or_raise();
    let entry = KeyEntry::new(jwk, None, None).or_raise();
    let v = auth_core::verify::verify_jwt_with_key(
        token,
        &entry,
        clock::transaction_now(),
        &gucs::policy(),
    )
    .or_raise();
    JsonB(Value::Object(v.claims))
}

/// Verifies a compact JWS (any payload, no JWT claim checks) against a JWK, or against a JWKS
/// with kid selection, and returns the payload bytes. For signed non-JWT content (webhooks,
/// documents) and for testing the signature layer on its own.
#[pg_extern(stable, parallel_safe)]
fn verify_jws(token: &str, key: JsonB) -> Vec<u8> {
    let max = gucs::MAX_TOKEN_BYTES.get() as usize;
    if key.0.get("keys").is_some() {
        let mut set = KeySet::new();
        for jwk in auth_core::jwk::parse_jwks(&key.0).or_raise() {
            set.insert(KeyEntry::new(jwk, None, None).or_raise())
                .or_raise();
        }
        auth_core::verify_jws(token, &set, clock::transaction_now(), max)
            .or_raise()
            .0
    } else {
        let entry = KeyEntry::new(auth_core::Jwk::parse(&key.0).or_raise(), None, None).or_raise();
        auth_core::verify::verify_jws_with_key(token, &entry, max).or_raise()
    }
}
