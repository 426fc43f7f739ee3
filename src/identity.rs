//! A verified token (or, in PostgREST compatibility mode, trusted request claims) as the
//! helpers answer it: its claims, which account it acts as, and the result datums handed to
//! PostgreSQL.
//!
//! Results handed to PostgreSQL (uuid, text, jsonb, text[]) are built at most once per
//! identity and transaction, in the transaction's memory context: a datum returned earlier
//! in a query (an initPlan's Param, a cursor's) never dangles, and an identity that is
//! replaced is freed at once, so a batch job binding many tokens in one transaction keeps
//! only the few bytes of the results it was actually handed.

use crate::account::{self, Account, Owner};
use crate::errors::OrRaise;
use crate::invalidation::{self, Freshness};
use crate::{gucs, keys};
use auth_core::{AuthError, Identity, Policy, TimeClaims};
use pgrx::{pg_sys, IntoDatum, PgMemoryContexts};
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering::Relaxed;

/// Claim paths remembered per identity and transaction; further paths are answered in the
/// caller's memory context, uncached, so no input can grow the cache.
const CLAIM_CACHE_ENTRIES: usize = 16;

/// A result datum and the transaction (`XACT_GEN`) whose memory holds it.
type Slot = Cell<Option<(u64, pg_sys::Datum)>>;
/// `(XACT_GEN, [(path, datum)])`: the claim paths answered in that transaction.
type ClaimCache = RefCell<(u64, Vec<(String, Option<pg_sys::Datum>)>)>;

/// A verified (or, in PostgREST compatibility mode, trusted) identity.
pub struct Bound {
    /// The exact input it was built from (token or claims text), to recognise it again.
    pub source: Vec<u8>,
    pub trusted_request_claims: bool,
    pub claims: Map<String, Value>,
    pub times: TimeClaims,
    pub ident: Identity,
    pub kid: Option<String>,
    /// The key set it was verified against (`keys::LoadedKeys::fingerprint`).
    pub keys_fingerprint: u64,
    /// `gucs::CONFIG_GEN` when it was built.
    pub config_gen: u64,
    uid: Slot,
    user_id: Slot,
    role: Slot,
    email: Slot,
    jwt: Slot,
    roles: Slot,
    claim_cache: ClaimCache,
    /// The account as last read, and what it depended on then.
    account: RefCell<Account>,
    account_read: Cell<Option<Freshness>>,
    /// The `session_id` of a token signed by one of our own keys.
    our_session: Option<pgrx::datum::Uuid>,
    pub owner: Owner,
}

impl Bound {
    pub fn new(
        source: &[u8],
        trusted: bool,
        claims: Map<String, Value>,
        times: TimeClaims,
        kid: Option<String>,
        keys_fingerprint: u64,
    ) -> auth_core::Result<Bound> {
        let ident = Identity::from_claims(&claims, gucs::roles_claim())?;
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
            account_read: Cell::new(None),
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
        self.cached(&self.jwt, || self.claims_jsonb())
    }

    /// The claims as a new jsonb datum in the current memory context.
    pub fn claims_jsonb(&self) -> pg_sys::Datum {
        crate::jsonb::from_object(&self.claims)
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
    pub fn check_account(&self, now: f64) {
        self.refresh_account();
        self.check_revocation(now).or_raise();
    }

    fn refresh_account(&self) {
        if self
            .account_read
            .get()
            .is_some_and(|f| f.is_fresh(&account::TABLES))
        {
            return;
        }
        let read = Freshness::take(&account::TABLES);
        let account = account::load(&self.ident, &self.owner, self.our_session);
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
        self.account_read.set(Some(read));
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
        let build = || value.map(crate::jsonb::from_value);
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
