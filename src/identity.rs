//! Binding a verified token to the current transaction, and the per-backend cache that makes
//! every helper call after the first a few integer comparisons.
//!
//! The cache is stamped with six generation counters: the token input (`auth.jwt` and the
//! PostgREST settings), the transaction, the key set, the policy GUCs, auth.users and
//! auth.sessions. Any change sends the next call down the slow path, which re-checks what can
//! have changed:
//! * same token, new transaction → exp/nbf/iat against the new transaction time, key still active;
//! * key set changed → full verification again, unless the rows are byte-identical;
//! * token or policy changed, `RESET`, `DISCARD ALL`, transaction end of a `SET LOCAL` →
//!   anonymous or a full verification of the new token;
//! * users or sessions changed → the bound account (roles, ban, deletion, session) is re-read.
//!
//! Results handed to PostgreSQL (uuid, text, jsonb, text[]) are built at most once per
//! identity and transaction, in the transaction's memory context: a datum returned earlier
//! in a query (an initPlan's Param, a cursor's) never dangles, and an identity that is
//! replaced is freed at once, so a batch job binding many tokens in one transaction keeps
//! only the few bytes of the results it was actually handed.

use crate::errors::{raise, OrRaise};
use crate::{gucs, invalidation, keys};
use auth_core::{claims, AuthError, Identity, KeyEntry, KeySet, Policy, TimeClaims};
use pgrx::prelude::*;
use pgrx::{pg_sys, IntoDatum, JsonB, PgMemoryContexts};
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::Relaxed;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
/// Claim paths remembered per identity and transaction; further paths are answered in the
/// caller's memory context, uncached, so no input can grow the cache.
const CLAIM_CACHE_ENTRIES: usize = 16;

/// A result datum and the transaction (`XACT_GEN`) whose memory holds it.
type Slot = Cell<Option<(u64, pg_sys::Datum)>>;
/// `(XACT_GEN, [(path, datum)])`: the claim paths answered in that transaction.
type ClaimCache = RefCell<(u64, Vec<(String, Option<pg_sys::Datum>)>)>;

/// The transaction timestamp in Unix seconds: all checks in one transaction agree.
pub fn transaction_now() -> f64 {
    // Key validity times are loaded as microseconds and converted the same way, so that
    // "retired at now()" compares equal to now, to the bit.
    let ts = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    unix_seconds_from_micros(ts + PG_EPOCH_UNIX_MICROS)
}

/// The one conversion from microseconds to the f64 seconds the core compares.
pub fn unix_seconds_from_micros(micros: i64) -> f64 {
    micros as f64 / 1e6
}

/// Which local account, if any, a token may act as: identity is (issuer, subject), and an
/// issuer's identities are asserted only by keys bound to that issuer (README "Identity").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Signed by one of our own keys: the account whose id is `sub`.
    Ours,
    /// Verified by a key bound to an issuer in `auth.account_issuers`, or PostgREST request
    /// claims the superuser chose to trust: the account whose id is `sub`.
    Declared,
    /// Verified by a key bound to this issuer: the account linked to (issuer, sub) in
    /// `auth.identities`, if any.
    Linked(String),
    /// Verified by a key bound to no issuer: no account.
    Nobody,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    token: u64,
    xact: u64,
    keys: u64,
    config: u64,
    users: u64,
    sessions: u64,
}

impl Stamp {
    #[inline]
    fn now() -> Stamp {
        Stamp {
            token: gucs::TOKEN_GEN.load(Relaxed),
            xact: invalidation::XACT_GEN.load(Relaxed),
            keys: keys::gen(),
            config: gucs::CONFIG_GEN.load(Relaxed),
            users: crate::account::accounts_gen(),
            sessions: invalidation::SESSIONS.gen(),
        }
    }
}

/// A verified (or, in PostgREST compatibility mode, trusted) identity.
pub struct Bound {
    /// The exact input it was built from (token or claims text), to recognise it again.
    source: Vec<u8>,
    trusted_request_claims: bool,
    pub claims: Map<String, Value>,
    times: TimeClaims,
    pub ident: Identity,
    kid: Option<String>,
    keys_fingerprint: u64,
    config_gen: u64,
    uid: Slot,
    user_id: Slot,
    role: Slot,
    email: Slot,
    jwt: Slot,
    roles: Slot,
    claim_cache: ClaimCache,
    /// The account as last read, and what it depended on then.
    account: RefCell<crate::account::Account>,
    account_stamp: Cell<Option<crate::account::Stamp>>,
    /// The `session_id` of a token signed by one of our own keys.
    our_session: Option<pgrx::datum::Uuid>,
    pub owner: Owner,
}

impl Bound {
    fn new(
        source: &[u8],
        trusted: bool,
        claims: Map<String, Value>,
        times: TimeClaims,
        kid: Option<String>,
        keys_fingerprint: u64,
    ) -> auth_core::Result<Bound> {
        let ident = Identity::from_claims(&claims, &gucs::roles_claim())?;
        Ok(Bound {
            source: source.to_vec(),
            trusted_request_claims: trusted,
            claims,
            times,
            ident,
            kid,
            keys_fingerprint,
            config_gen: gucs::CONFIG_GEN.load(Relaxed),
            uid: Slot::default(),
            user_id: Slot::default(),
            role: Slot::default(),
            email: Slot::default(),
            jwt: Slot::default(),
            roles: Slot::default(),
            claim_cache: RefCell::new((0, Vec::new())),
            account: RefCell::new(Default::default()),
            account_stamp: Cell::new(None),
            our_session: None,
            owner: Owner::Declared,
        })
    }

    fn cached(&self, cell: &Slot, build: impl FnOnce() -> pg_sys::Datum) -> pg_sys::Datum {
        let xact = invalidation::XACT_GEN.load(Relaxed);
        if let Some((x, d)) = cell.get() {
            if x == xact {
                return d;
            }
        }
        let d = unsafe { PgMemoryContexts::TopTransactionContext.switch_to(|_| build()) };
        cell.set(Some((xact, d)));
        d
    }

    pub fn uid_datum(&self, bytes: &[u8; 16]) -> pg_sys::Datum {
        self.cached(&self.uid, || unsafe {
            let p = pg_sys::palloc(16) as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, 16);
            pg_sys::Datum::from(p)
        })
    }

    fn text(&self, cell: &Slot, s: &Option<String>) -> Option<pg_sys::Datum> {
        let s = s.as_deref()?;
        Some(self.cached(cell, || s.into_datum().expect("text datum")))
    }

    pub fn user_id_datum(&self) -> Option<pg_sys::Datum> {
        self.text(&self.user_id, &self.ident.sub)
    }
    pub fn role_datum(&self) -> Option<pg_sys::Datum> {
        self.text(&self.role, &self.ident.role)
    }
    pub fn email_datum(&self) -> Option<pg_sys::Datum> {
        self.text(&self.email, &self.ident.email)
    }
    pub fn jwt_datum(&self) -> pg_sys::Datum {
        self.cached(&self.jwt, || {
            JsonB(Value::Object(self.claims.clone()))
                .into_datum()
                .expect("jsonb datum")
        })
    }
    /// Application roles as the helpers answer them: the user row's when one exists (so a
    /// revoked role is gone at once), else the token's own claim.
    fn with_roles<R>(&self, f: impl FnOnce(&[String]) -> R) -> R {
        f(self
            .account
            .borrow()
            .roles
            .as_deref()
            .unwrap_or(&self.ident.roles))
    }

    pub fn roles_datum(&self) -> pg_sys::Datum {
        self.cached(&self.roles, || {
            self.with_roles(|r| r.to_vec().into_datum().expect("text[] datum"))
        })
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.with_roles(|r| r.binary_search_by(|x| x.as_str().cmp(role)).is_ok())
    }

    /// Re-reads the account (roles, ban, deletion, session) if auth.users or auth.sessions
    /// changed since it was read, then raises TOKEN_REVOKED if it no longer stands.
    fn check_account(&self, now: f64) {
        self.refresh_account();
        self.check_revocation(now).or_raise();
    }

    fn refresh_account(&self) {
        if self.account_stamp.get().is_some_and(|s| s.is_fresh()) {
            return;
        }
        let stamp = crate::account::Stamp::now();
        let account = crate::account::load(&self.ident, &self.owner, self.our_session);
        let roles_changed =
            self.with_roles(|r| r != account.roles.as_deref().unwrap_or(&self.ident.roles));
        let id_changed = self.account.borrow().id != account.id;
        *self.account.borrow_mut() = account;
        // Old datums stay in the transaction's memory: a caller may hold them.
        if roles_changed {
            self.roles.set(None);
        }
        if id_changed {
            self.uid.set(None);
        }
        self.account_stamp.set(Some(stamp));
    }

    /// The session of a token this database issued (signed by its own key).
    pub fn our_session(&self) -> Option<pgrx::datum::Uuid> {
        self.our_session
    }

    /// The id of the local account this token acts as (what `auth.uid()` returns), `Ok(None)`
    /// when the token has no `sub`, or why it acts as no account.
    pub fn local_id(&self) -> Result<Option<[u8; 16]>, LocalId> {
        match (&self.owner, self.ident.uid) {
            (_, auth_core::Uid::Absent) => Ok(None),
            (Owner::Ours | Owner::Declared, auth_core::Uid::Uuid(b)) => Ok(Some(b)),
            (Owner::Ours | Owner::Declared, auth_core::Uid::NotUuid) => Err(LocalId::NotUuid),
            (Owner::Linked(_), _) => self.account.borrow().id.map(Some).ok_or(LocalId::NotLinked),
            (Owner::Nobody, _) => Err(LocalId::UnboundKey),
        }
    }

    /// TOKEN_REVOKED when the account is banned (at `now`), deleted, or the session revoked.
    fn check_revocation(&self, now: f64) -> auth_core::Result<()> {
        if !gucs::REVOCATION_CHECKS.get() {
            return Ok(());
        }
        let a = self.account.borrow();
        let why = if a.deleted {
            "the user has been deleted"
        } else if a.banned_until.is_some_and(|u| u > now) {
            "the user is banned"
        } else if a.session_revoked || a.session_not_after.is_some_and(|t| t <= now) {
            "the session has been revoked (signed out, reused refresh token, or ended)"
        } else {
            return Ok(());
        };
        Err(AuthError::new(auth_core::ErrorCode::TokenRevoked, why))
    }

    /// One claim by dotted path as jsonb; the last few paths asked for are remembered.
    pub fn claim_datum(&self, path: &str) -> Option<pg_sys::Datum> {
        let xact = invalidation::XACT_GEN.load(Relaxed);
        let mut cache = self.claim_cache.borrow_mut();
        if cache.0 != xact {
            *cache = (xact, Vec::new());
        }
        if let Some((_, d)) = cache.1.iter().find(|(p, _)| p == path) {
            return *d;
        }
        let value = auth_core::identity::lookup(&self.claims, path);
        let build = || value.map(|v| JsonB(v.clone()).into_datum().expect("jsonb datum"));
        if cache.1.len() < CLAIM_CACHE_ENTRIES {
            let d = unsafe { PgMemoryContexts::TopTransactionContext.switch_to(|_| build()) };
            cache.1.push((path.to_string(), d));
            d
        } else {
            build()
        }
    }
}

/// Why a token acts as no local account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalId {
    /// Its issuer owns accounts by id, but `sub` is not a uuid.
    NotUuid,
    /// Its issuer's subject is linked to no account.
    NotLinked,
    /// The key that verified it is bound to no issuer.
    UnboundKey,
}

struct State {
    stamp: Option<Stamp>,
    current: Option<Box<Bound>>,
    /// The identity replaced last, kept until the next replacement or the transaction's end:
    /// a helper that took `current()` may still hold it while a nested call rebinds. The
    /// datums it handed out live in transaction memory, not here.
    previous: Option<Box<Bound>>,
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

/// Frees the identity replaced during the transaction that just ended.
pub fn end_of_transaction() {
    state().previous = None;
}

fn replace(new: Option<Box<Bound>>) {
    let st = state();
    st.previous = std::mem::replace(&mut st.current, new);
}

/// The identity bound to the current transaction, or `None` when anonymous. Raises when the
/// bound token is invalid. This is the hot path of every RLS helper.
#[inline]
pub fn current() -> Option<&'static Bound> {
    invalidation::statement_tick();
    let s = Stamp::now();
    let st = state();
    if st.stamp == Some(s) {
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

/// Fully verifies `token` against the key set.
pub fn verify_token(token: &[u8], now: f64, policy: &Policy) -> auth_core::Result<Bound> {
    let token =
        std::str::from_utf8(token).map_err(|_| AuthError::invalid_token("token is not UTF-8"))?;
    let keys = keys::current();
    let v = auth_core::verify_jwt(token, &keys.set, now, policy)?;
    let ours = keys.generated.contains(&v.kid);
    let owner = match keys.set.get(&v.kid).and_then(|e| e.issuer.as_ref()) {
        _ if ours => Owner::Ours,
        Some(i) if keys.account_issuers.contains(i) => Owner::Declared,
        Some(i) => Owner::Linked(i.clone()),
        None => Owner::Nobody,
    };
    // Sessions are checked only for tokens our own keys signed: other issuers' session ids
    // mean nothing here.
    let our_session = if ours {
        v.claims
            .get("session_id")
            .and_then(Value::as_str)
            .and_then(auth_core::identity::parse_uuid)
            .map(pgrx::datum::Uuid::from_bytes)
    } else {
        None
    };
    let mut b = Bound::new(
        token.as_bytes(),
        false,
        v.claims,
        v.times,
        Some(v.kid),
        keys.fingerprint,
    )?;
    b.our_session = our_session;
    b.owner = owner;
    Ok(b)
}

#[cold]
fn refresh(s: Stamp) -> Option<&'static Bound> {
    let st = state();
    st.stamp = None;
    match read_input() {
        Input::Anonymous => replace(None),
        Input::Token(token) => {
            let now = transaction_now();
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
        b.check_account(transaction_now());
    }
    // Stamp with the counters as they are now: loading keys may itself have processed
    // invalidations, which must not be mistaken for later changes.
    st.stamp = Some(Stamp::now());
    st.current.as_deref()
}

/// Verifies `token` now, binds it to the current transaction (as `SET LOCAL auth.jwt`), and
/// returns its claims.
#[pg_extern(volatile, parallel_unsafe)]
fn authenticate(token: &str) -> JsonB {
    let now = transaction_now();
    let b = verify_token(token.as_bytes(), now, &gucs::policy()).or_raise();
    b.check_account(now);
    let claims = JsonB(Value::Object(b.claims.clone()));
    let value = std::ffi::CString::new(token)
        .unwrap_or_else(|_| raise(AuthError::invalid_token("token contains a NUL byte")));
    gucs::set(
        c"auth.jwt",
        &value,
        pg_sys::GucContext::PGC_USERSET,
        pg_sys::GucSource::PGC_S_SESSION,
        pg_sys::GucAction::GUC_ACTION_LOCAL,
    );
    replace(Some(Box::new(b)));
    state().stamp = Some(Stamp::now());
    claims
}

/// The token `auth.verify(token)` verified last, and the state it was verified in.
struct LastVerified {
    stamp: Stamp,
    bound: Box<Bound>,
}

static mut LAST_VERIFIED: Option<LastVerified> = None;

/// Nothing but the token input changed between `a` and `b`.
fn same_state(a: Stamp, b: Stamp) -> bool {
    Stamp { token: 0, ..a } == Stamp { token: 0, ..b }
}

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
        if v.bound.source == token && same_state(v.stamp, Stamp::now()) {
            return v.bound.jwt_datum();
        }
    }
    let now = transaction_now();
    let b = verify_token(token, now, &gucs::policy()).or_raise();
    b.check_account(now);
    let claims = JsonB(Value::Object(b.claims.clone()))
        .into_datum()
        .expect("jsonb datum");
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
    let v =
        auth_core::verify::verify_jwt_with_key(token, &entry, transaction_now(), &gucs::policy())
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
        auth_core::verify_jws(token, &set, transaction_now(), max)
            .or_raise()
            .0
    } else {
        let entry = KeyEntry::new(auth_core::Jwk::parse(&key.0).or_raise(), None, None).or_raise();
        auth_core::verify::verify_jws_with_key(token, &entry, max).or_raise()
    }
}
