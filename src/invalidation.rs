//! Freshness without shared_preload_libraries: per-backend generation counters driven by
//! PostgreSQL's own invalidation machinery.
//!
//! * Transaction end (xact callback) bumps `XACT_GEN`: cached identities re-check time claims
//!   and key validity against the new transaction's timestamp.
//! * Changes to a watched table (`auth.key_store`, …) send a relcache invalidation from a
//!   statement trigger; every backend receives it at its next transaction start or lock, or at
//!   its next helper call in a new statement (`statement_tick`), and bumps that table's counter.
//! * [`Freshness`] is the one test of whether data loaded from watched tables may still be used.
//!
//! This module knows no cache: caches compare counters, so nothing here calls back up.

use pgrx::pg_sys;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

pub static XACT_GEN: AtomicU64 = AtomicU64::new(1);
static LAST_STATEMENT: AtomicI64 = AtomicI64::new(i64::MIN);

/// A table whose changes must reach every backend's cache.
pub struct Watched {
    pub relname: &'static str,
    /// The table's oid and owner once looked up; cleared by its invalidation (the table may
    /// have been dropped, recreated or given to another owner) and looked up again on use.
    oid: AtomicU32,
    owner: AtomicU32,
    gen: AtomicU64,
    /// `XACT_GEN` when the last invalidation arrived: data loaded in that same transaction may
    /// predate the change (older snapshot), so it is trusted only until the transaction ends.
    inval_xact: AtomicU64,
}

impl Watched {
    pub const fn new(relname: &'static str) -> Self {
        Watched {
            relname,
            oid: AtomicU32::new(0),
            owner: AtomicU32::new(0),
            gen: AtomicU64::new(1),
            inval_xact: AtomicU64::new(0),
        }
    }
    #[inline]
    fn gen(&self) -> u64 {
        self.gen.load(Relaxed)
    }
    /// Starts watching the table (from now on its changes bump `gen`) and returns its oid and
    /// owner. Raises when the extension is not installed in this database.
    fn watch(&self) -> (pg_sys::Oid, pg_sys::Oid) {
        let oid = pg_sys::Oid::from(self.oid.load(Relaxed));
        if oid != pg_sys::InvalidOid {
            return (oid, pg_sys::Oid::from(self.owner.load(Relaxed)));
        }
        let (oid, owner) = locate(self.relname);
        self.owner.store(owner.to_u32(), Relaxed);
        self.oid.store(oid.to_u32(), Relaxed);
        (oid, owner)
    }
    /// The table's oid (watching it from now on).
    pub fn relid(&self) -> pg_sys::Oid {
        self.watch().0
    }
    /// The transaction (by `XACT_GEN`) until which data loaded now may be trusted, or `None`
    /// when it is good until the next invalidation.
    fn trust_until_xact(&self) -> Option<u64> {
        let x = XACT_GEN.load(Relaxed);
        (self.inval_xact.load(Relaxed) == x).then_some(x)
    }
    fn invalidate(&self) {
        self.oid.store(0, Relaxed);
        self.gen.fetch_add(1, Relaxed);
        self.inval_xact.store(XACT_GEN.load(Relaxed), Relaxed);
    }
}

pub static KEY_STORE: Watched = Watched::new("key_store");
/// auth.users: roles, bans and deletions that the helpers must see.
pub static USERS: Watched = Watched::new("users");
/// auth.sessions: revocations.
pub static SESSIONS: Watched = Watched::new("sessions");
/// auth.account_issuers: which issuers own accounts by id (part of the key cache).
pub static ACCOUNT_ISSUERS: Watched = Watched::new("account_issuers");
/// auth.identities: links from (issuer, subject) to accounts.
pub static IDENTITIES: Watched = Watched::new("identities");
/// Every watched table, registered here and nowhere else.
static WATCHED: [&Watched; 5] = [&KEY_STORE, &USERS, &SESSIONS, &ACCOUNT_ISSUERS, &IDENTITIES];

/// Starts watching every table (once per backend, and again after an invalidation) and returns
/// the owner of the extension's tables (of `auth.users`). Raises when the extension is not
/// installed here.
pub fn watch_all() -> pg_sys::Oid {
    for w in WATCHED {
        w.watch();
    }
    USERS.watch().1
}

/// What data loaded from some watched tables depended on: their counters, and the transaction
/// until which a load made right after an invalidation may be trusted (it may predate the
/// change). Taken *before* loading, so that a change arriving during the load forces another.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Freshness {
    gen: u64,
    until: Option<u64>,
}

/// One counter for several tables: counters only ever grow, so their sum changes exactly when
/// one of them does.
#[inline]
pub fn generation(tables: &[&Watched]) -> u64 {
    tables.iter().map(|w| w.gen()).sum()
}

impl Freshness {
    pub fn take(tables: &[&Watched]) -> Freshness {
        Freshness {
            gen: generation(tables),
            until: tables.iter().find_map(|w| w.trust_until_xact()),
        }
    }

    /// Nothing in `tables` changed since `take`, and the load is still trusted.
    #[inline]
    pub fn is_fresh(&self, tables: &[&Watched]) -> bool {
        self.gen == generation(tables) && self.until.is_none_or(|x| x == XACT_GEN.load(Relaxed))
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PREPARE
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
    ) {
        XACT_GEN.fetch_add(1, Relaxed);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    for w in WATCHED {
        // InvalidOid means "everything" (e.g. after an invalidation-queue overflow).
        let oid = pg_sys::Oid::from(w.oid.load(Relaxed));
        if relid == pg_sys::InvalidOid || (oid != pg_sys::InvalidOid && relid == oid) {
            w.invalidate();
        }
    }
}

/// At the first helper call of each statement, take in invalidations other backends have
/// committed, so a retired key or revoked session is seen by the next statement even inside a
/// long transaction. Costs one timestamp comparison on every other call.
#[inline]
pub fn statement_tick() {
    let ts = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    if LAST_STATEMENT.load(Relaxed) != ts {
        LAST_STATEMENT.store(ts, Relaxed);
        unsafe { pg_sys::AcceptInvalidationMessages() };
    }
}

/// Sends a relcache invalidation for `relid` to every backend (delivered at commit).
pub fn broadcast(relid: pg_sys::Oid) {
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
}

/// Statement trigger on watched tables: any INSERT/UPDATE/DELETE/TRUNCATE invalidates caches.
#[pgrx::pg_trigger]
fn _invalidate_caches<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<pgrx::heap_tuple::PgHeapTuple<'a, pgrx::AllocatedByRust>>, pgrx::PgTriggerError>
{
    let rel = trigger.relation()?;
    broadcast(rel.oid());
    // Under Citus the trigger fires on each node's placement of a reference table
    // (auth.key_store_102008), while caches watch the table itself: invalidate that too.
    if let Some(w) = WATCHED
        .iter()
        .find(|w| is_placement_of(rel.name(), w.relname))
    {
        broadcast(w.relid());
    }
    Ok(None)
}

/// `name` is a Citus shard placement's name for the table `relname` (`relname_<shard id>`).
fn is_placement_of(name: &str, relname: &str) -> bool {
    name.strip_prefix(relname)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The oid and owner of `auth.<relname>`; raises when the extension is not installed.
fn locate(relname: &str) -> (pg_sys::Oid, pg_sys::Oid) {
    let name = std::ffi::CString::new(relname).expect("relation names have no NUL");
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"auth".as_ptr(), true);
        let oid = if nsp == pg_sys::InvalidOid {
            nsp
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), nsp)
        };
        if oid == pg_sys::InvalidOid {
            crate::errors::raise(auth_core::AuthError::new(
                auth_core::ErrorCode::NotConfigured,
                format!(
                    "table auth.{relname} does not exist: install the extension in this database, or run ALTER EXTENSION auth_ext UPDATE after installing a new version"
                ),
            ));
        }
        let rel = pg_sys::relation_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        (oid, owner)
    }
}

pub fn init() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0));
    }
}
