//! The identity bound to the current transaction, and the per-backend cache that makes every
//! helper call after the first a few integer comparisons.
//!
//! The cache is stamped with five generation counters: the token input (`auth.jwt` and the
//! PostgREST settings), the transaction, the key set (keys and account issuers), the policy
//! GUCs, and the account tables (auth.users, auth.identities, auth.sessions). Any change sends the next call down the slow path, which re-checks what
//! can have changed:
//! * same token, new transaction → exp/nbf/iat against the new transaction time, key still active;
//! * key set changed → full verification again, unless the rows are byte-identical;
//! * token or policy changed, `RESET`, `DISCARD ALL`, transaction end of a `SET LOCAL` →
//!   anonymous or a full verification of the new token;
//! * users or sessions changed → the bound account (roles, ban, deletion, session) is re-read.

use crate::errors::{raise, OrRaise};
use crate::identity::{verify_token, Bound};
use crate::invalidation;
use crate::{account, clock, gucs, keys};
use auth_core::{claims, AuthError, KeyEntry, KeySet, TimeClaims};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering::Relaxed;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    token: u64,
    xact: u64,
    keys: u64,
    config: u64,
    account: u64,
}

impl Stamp {
    /// Nothing but the token input changed between `self` and `other`.
    pub fn same_but_token(self, other: Stamp) -> bool {
        Stamp { token: 0, ..self } == Stamp { token: 0, ..other }
    }

    #[inline]
    pub fn now() -> Stamp {
        Stamp {
            token: gucs::TOKEN_GEN.load(Relaxed),
            xact: invalidation::XACT_GEN.load(Relaxed),
            keys: invalidation::generation(&keys::TABLES),
            config: gucs::CONFIG_GEN.load(Relaxed),
            account: invalidation::generation(&account::TABLES),
        }
    }
}

struct State {
    stamp: Option<Stamp>,
    current: Option<Box<Bound>>,
    /// The identity replaced last and the transaction (`XACT_GEN`) it was replaced in, kept
    /// while that transaction runs: a helper that took `current()` may still hold it while a
    /// nested call rebinds. The datums it handed out live in transaction memory, not here.
    previous: Option<(u64, Box<Bound>)>,
}

static mut STATE: State = State {
    stamp: None,
    current: None,
    previous: None,
};

#[allow(static_mut_refs)]
fn state() -> &'static mut State {
    // SAFETY: backends are single-threaded and no reference outlives a helper call.
    unsafe { &mut STATE }
}

fn replace(new: Option<Box<Bound>>) {
    let st = state();
    let xact = invalidation::XACT_GEN.load(Relaxed);
    st.previous = std::mem::replace(&mut st.current, new).map(|b| (xact, b));
}

/// Frees the identity replaced in a transaction that has ended (the slow path runs at the
/// first helper call of every transaction, so it is freed then).
fn free_retired() {
    let st = state();
    if st
        .previous
        .as_ref()
        .is_some_and(|(x, _)| *x != invalidation::XACT_GEN.load(Relaxed))
    {
        st.previous = None;
    }
}

/// Binds `b`, already verified and checked, to the current transaction.
pub fn bind(b: Bound) {
    replace(Some(Box::new(b)));
    state().stamp = Some(Stamp::now());
}

/// The identity bound to the current transaction, or `None` when anonymous. Raises when the
/// bound token is invalid. This is the hot path of every RLS helper.
#[inline]
pub fn current() -> Option<&'static Bound> {
    invalidation::statement_tick();
    let s = Stamp::now();
    let st = state();
    if st.stamp == Some(s) {
        crate::stats::bump(crate::stats::IDENTITY_CACHE_HIT);
        return st.current.as_deref();
    }
    refresh(s)
}

enum Input<'a> {
    Anonymous,
    Token(&'a [u8]),
    RequestClaims(&'a [u8]),
    RequestClaimParts,
}

fn read_input() -> Input<'static> {
    if let Some(t) = gucs::raw_str(&gucs::JWT) {
        return Input::Token(t.to_bytes());
    }
    if gucs::TRUST_REQUEST_CLAIMS.get() {
        if let Some(c) = gucs::raw_str(&gucs::REQUEST_CLAIMS) {
            return Input::RequestClaims(c.to_bytes());
        }
        if gucs::raw_str(&gucs::REQUEST_CLAIM_SUB).is_some() {
            return Input::RequestClaimParts;
        }
    }
    Input::Anonymous
}

fn key_is_active(keys: &KeySet, kid: &Option<String>, now: f64) -> bool {
    kid.as_ref()
        .is_none_or(|k| keys.get(k).is_some_and(|e: &KeyEntry| e.active_at(now)))
}

#[cold]
fn refresh(s: Stamp) -> Option<&'static Bound> {
    crate::stats::bump(crate::stats::IDENTITY_CACHE_MISS);
    crate::citus::check_binding_arrived();
    free_retired();
    let st = state();
    st.stamp = None;
    match read_input() {
        Input::Anonymous => replace(None),
        Input::Token(token) => {
            crate::stats::begin(crate::stats::VERIFICATIONS);
            let now = clock::transaction_now();
            let policy = gucs::policy();
            let reusable = st.current.as_deref().filter(|b| {
                !b.trusted_request_claims && b.source == token && b.config_gen == s.config
            });
            let keys = keys::current();
            match reusable {
                Some(b) if b.keys_fingerprint == keys.fingerprint => {
                    claims::check_times(&b.times, now, &policy).or_raise();
                    if !key_is_active(&keys.set, &b.kid, now) {
                        raise(AuthError::invalid_token(
                            "the key that signed the token has been retired",
                        ));
                    }
                }
                _ => {
                    let b = verify_token(token, now, &policy).or_raise();
                    replace(Some(Box::new(b)));
                }
            }
        }
        Input::RequestClaims(text) => {
            let same = st.current.as_deref().is_some_and(|b| {
                b.trusted_request_claims && b.source == text && b.config_gen == s.config
            });
            if !same {
                let claims = auth_core::json::parse_object(text)
                    .map_err(|e| {
                        AuthError::invalid_claims(format!("request.jwt.claims {}", e.describe()))
                    })
                    .or_raise();
                let b = Bound::new(text, true, claims, TimeClaims::default(), None, 0).or_raise();
                replace(Some(Box::new(b)));
            }
        }
        Input::RequestClaimParts => {
            let mut claims = Map::new();
            for (name, setting) in [
                ("sub", &gucs::REQUEST_CLAIM_SUB),
                ("role", &gucs::REQUEST_CLAIM_ROLE),
                ("email", &gucs::REQUEST_CLAIM_EMAIL),
            ] {
                if let Some(v) = gucs::raw_str(setting) {
                    claims.insert(
                        name.to_string(),
                        Value::String(v.to_string_lossy().into_owned()),
                    );
                }
            }
            let text = Value::Object(claims.clone()).to_string();
            let same = st.current.as_deref().is_some_and(|b| {
                b.trusted_request_claims && b.source == text.as_bytes() && b.config_gen == s.config
            });
            if !same {
                let b = Bound::new(
                    text.as_bytes(),
                    true,
                    claims,
                    TimeClaims::default(),
                    None,
                    0,
                )
                .or_raise();
                replace(Some(Box::new(b)));
            }
        }
    }
    if let Some(b) = st.current.as_deref() {
        b.check_account(clock::transaction_now());
    }
    crate::stats::ok(crate::stats::VERIFICATIONS);
    // Stamp with the counters as they are now: loading keys may itself have processed
    // invalidations, which must not be mistaken for later changes.
    st.stamp = Some(Stamp::now());
    st.current.as_deref()
}
