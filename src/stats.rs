//! Counters a DBA graphs (`auth.stats`, docs/operations.md "Monitoring"): verifications by
//! outcome, the identity caches' hits and misses, sign-ins, refreshes and revocations.
//!
//! Counting is a plain increment of a per-backend array (`bump`, `count`, `begin`/`ok`): no
//! lock, no atomic, nothing shared on the paths that count. Where the numbers are read:
//! * without `shared_preload_libraries`, `auth.stats` shows this backend's counters (scope
//!   `backend`);
//! * with the library preloaded, a shared-memory array of atomic counters is allocated at
//!   server start and every backend adds its counters to it at transaction end, commit and
//!   abort alike (a failed sign-in raises and aborts, and still counts): `auth.stats` shows
//!   the cluster-wide totals (scope `cluster`), plus this backend's not yet added counts.
//!
//! An operation with several outcomes is opened with [`begin`]; the first stable error code
//! raised while it is open (`errors::raise` calls [`failed`]) is its outcome, [`ok`] closes it
//! successfully, and an operation still open at transaction end, or opened again, ended in an
//! error that was not ours (cancellation, timeout, out of memory): outcome `other`.
//!
//! Revocations are counted by a row trigger on `auth.sessions` (a session's `revoked_at` set),
//! whichever path set it (sign-out, `auth.revoke_session`, `auth.ban_user`), when the
//! transaction commits. The bookkeeping worker counts nothing: the session it revokes for a
//! reused refresh token is counted by the backend that asked for it, once the worker committed.
//!
//! This module knows no other module of the crate (`errors` calls into it).

use auth_core::ErrorCode;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, pg_sys, PgAtomic};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

const VERIFICATION_OUTCOMES: &[&str] = &[
    "ok",
    "INVALID_TOKEN",
    "TOKEN_EXPIRED",
    "TOKEN_NOT_YET_VALID",
    "INVALID_CLAIMS",
    "TOKEN_REVOKED",
    "other",
];
const CACHE_OUTCOMES: &[&str] = &["hit", "miss"];
const SIGN_IN_OUTCOMES: &[&str] = &[
    "ok",
    "INVALID_CREDENTIALS",
    "ACCOUNT_LOCKED",
    "EMAIL_NOT_CONFIRMED",
    "READ_ONLY",
    "TEMPORARILY_UNAVAILABLE",
    "NOT_CONFIGURED",
    "other",
];
/// auth.verify_otp and auth.verify_phone_otp.
const OTP_OUTCOMES: &[&str] = &[
    "ok",
    "INVALID_OTP",
    "INVALID_PARAMETER",
    "READ_ONLY",
    "TEMPORARILY_UNAVAILABLE",
    "NOT_CONFIGURED",
    "other",
];
/// auth.mfa_verify.
const MFA_OUTCOMES: &[&str] = &[
    "ok",
    "INVALID_OTP",
    "ACCOUNT_LOCKED",
    "INVALID_PARAMETER",
    "READ_ONLY",
    "TEMPORARILY_UNAVAILABLE",
    "NOT_CONFIGURED",
    "other",
];
const REFRESH_OUTCOMES: &[&str] = &[
    "ok",
    "INVALID_TOKEN",
    "TOKEN_EXPIRED",
    "TOKEN_REVOKED",
    "reuse_detected",
    "READ_ONLY",
    "TEMPORARILY_UNAVAILABLE",
    "NOT_CONFIGURED",
    "other",
];
const REVOCATION_KINDS: &[&str] = &[
    "sign_out",
    "revoke_session",
    "ban_user",
    "refresh_reuse",
    "other",
];

/// Every metric and its outcomes, in the order `auth.stats` lists them.
const METRICS: [(&str, &[&str]); 8] = [
    ("verifications", VERIFICATION_OUTCOMES),
    ("identity_cache", CACHE_OUTCOMES),
    ("verify_cache", CACHE_OUTCOMES),
    ("sign_ins", SIGN_IN_OUTCOMES),
    ("refreshes", REFRESH_OUTCOMES),
    ("revocations", REVOCATION_KINDS),
    ("otp_verifications", OTP_OUTCOMES),
    ("mfa_verifications", MFA_OUTCOMES),
];

/// A metric: its index in `METRICS`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Metric(usize);
pub const VERIFICATIONS: Metric = Metric(0);
pub const SIGN_INS: Metric = Metric(3);
pub const REFRESHES: Metric = Metric(4);
pub const REVOCATIONS: Metric = Metric(5);
pub const OTP_VERIFICATIONS: Metric = Metric(6);
pub const MFA_VERIFICATIONS: Metric = Metric(7);

/// Where metric `m`'s counters start in the flat array.
const fn base(m: usize) -> usize {
    let mut b = 0;
    let mut i = 0;
    while i < m {
        b += METRICS[i].1.len();
        i += 1;
    }
    b
}

const N: usize = base(METRICS.len());
/// The hot-path counters (constant indexes: one add, no bounds check).
pub const IDENTITY_CACHE_HIT: usize = base(1);
pub const IDENTITY_CACHE_MISS: usize = base(1) + 1;
pub const VERIFY_CACHE_HIT: usize = base(2);
pub const VERIFY_CACHE_MISS: usize = base(2) + 1;

/// This backend's counts not yet added to shared memory (all of them without preload).
static mut LOCAL: [u64; N] = [0; N];
/// Revocations of the running transaction, counted at its commit.
static mut XACT_REVOCATIONS: [u64; REVOCATION_KINDS.len()] = [0; REVOCATION_KINDS.len()];
/// Operations begun and not yet settled, one bit per metric.
static mut OPEN: u8 = 0;

static PRELOADED: AtomicBool = AtomicBool::new(false);
static SHARED: PgAtomic<[AtomicU64; N]> = unsafe { PgAtomic::new(c"auth_ext stats") };

#[allow(static_mut_refs)]
fn local() -> &'static mut [u64; N] {
    // SAFETY: backends are single-threaded; no reference outlives the call that took it.
    unsafe { &mut LOCAL }
}

/// Counts one at a constant index: the hot path's only cost.
#[inline(always)]
pub fn bump(i: usize) {
    // SAFETY: as `local`; `i` is one of the constants above.
    unsafe { LOCAL[i] += 1 }
}

fn index(m: Metric, outcome: &str) -> usize {
    let outcomes = METRICS[m.0].1;
    let i = outcomes
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or(outcomes.len() - 1); // "other"
    base(m.0) + i
}

/// Counts `n` for `outcome` (an outcome of `m`; anything else counts as `other`).
pub fn count(m: Metric, outcome: &str, n: u64) {
    local()[index(m, outcome)] += n;
}

#[allow(static_mut_refs)]
fn open() -> &'static mut u8 {
    // SAFETY: as `local`.
    unsafe { &mut OPEN }
}

/// Opens an operation of metric `m`, whose outcome is settled by [`ok`], [`settle`] or the
/// first stable error raised meanwhile.
pub fn begin(m: Metric) {
    let bit = 1u8 << m.0;
    if *open() & bit != 0 {
        count(m, "other", 1);
    }
    *open() |= bit;
}

/// Settles the open operation of `m` with `outcome`; nothing when none is open.
pub fn settle(m: Metric, outcome: &str) {
    let bit = 1u8 << m.0;
    if *open() & bit != 0 {
        *open() &= !bit;
        count(m, outcome, 1);
    }
}

/// The open operation of `m` succeeded.
pub fn ok(m: Metric) {
    settle(m, "ok")
}

/// A stable error is being raised: it is the outcome of every open operation.
pub fn failed(code: ErrorCode) {
    let bits = std::mem::take(open());
    if bits != 0 {
        for m in 0..METRICS.len() {
            if bits & (1 << m) != 0 {
                count(Metric(m), code.as_str(), 1);
            }
        }
    }
}

/// Operations still open ended in an error that was not ours.
fn close_open() {
    let bits = std::mem::take(open());
    if bits != 0 {
        for m in 0..METRICS.len() {
            if bits & (1 << m) != 0 {
                count(Metric(m), "other", 1);
            }
        }
    }
}

#[allow(static_mut_refs)]
fn xact_revocations() -> &'static mut [u64; REVOCATION_KINDS.len()] {
    // SAFETY: as `local`.
    unsafe { &mut XACT_REVOCATIONS }
}

/// Adds this backend's counts to shared memory (when preloaded) and zeroes them.
fn flush() {
    if !PRELOADED.load(Relaxed) {
        return;
    }
    let shared = SHARED.get();
    for (s, l) in shared.iter().zip(local().iter_mut()) {
        if *l != 0 {
            s.fetch_add(std::mem::take(l), Relaxed);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            let base = base(REVOCATIONS.0);
            for (i, n) in xact_revocations().iter_mut().enumerate() {
                local()[base + i] += std::mem::take(n);
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            *xact_revocations() = [0; REVOCATION_KINDS.len()];
        }
        _ => return,
    }
    close_open();
    flush();
}

/// From `_PG_init`: the transaction callback, and the shared counters when the library is
/// being preloaded (shared memory can only be asked for then). (`pg_shmem_init!` tests the
/// `pg13`…`pg18` features of this crate, which has only `pg15`.)
#[allow(unexpected_cfgs)]
pub fn init() {
    unsafe {
        if pg_sys::process_shared_preload_libraries_in_progress {
            pg_shmem_init!(SHARED = [const { AtomicU64::new(0) }; N]);
            PRELOADED.store(true, Relaxed);
        }
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
    }
}

/// The rows of `auth.stats`: every (metric, outcome) pair, 0 when never counted.
#[pg_extern]
fn _stats() -> TableIterator<
    'static,
    (
        name!(metric, String),
        name!(outcome, String),
        name!(value, i64),
        name!(scope, String),
    ),
> {
    let preloaded = PRELOADED.load(Relaxed);
    let scope = if preloaded { "cluster" } else { "backend" };
    let mut rows = Vec::with_capacity(N);
    let mut i = 0;
    for (metric, outcomes) in METRICS {
        for outcome in outcomes {
            let mut v = local()[i];
            if preloaded {
                v += SHARED.get()[i].load(Relaxed);
            }
            rows.push((
                metric.to_string(),
                outcome.to_string(),
                v.min(i64::MAX as u64) as i64,
                scope.to_string(),
            ));
            i += 1;
        }
    }
    TableIterator::new(rows)
}

/// Sets every counter of `auth.stats` to zero: the cluster's when preloaded, else this
/// backend's.
#[pg_extern]
fn stats_reset() {
    *local() = [0; N];
    if PRELOADED.load(Relaxed) {
        for s in SHARED.get() {
            s.store(0, Relaxed);
        }
    }
}

/// Row trigger on `auth.sessions` (only when `revoked_at` becomes set): counts the revocation
/// by its reason at commit. Reads the new row only; runs no SQL.
#[pg_trigger]
fn _stats_revocation<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<pgrx::heap_tuple::PgHeapTuple<'a, pgrx::AllocatedByRust>>, pgrx::PgTriggerError>
{
    let reason = match trigger.new() {
        Some(row) => row.get_by_name::<String>("revoked_reason").ok().flatten(),
        None => None,
    };
    let kind = match reason.as_deref() {
        Some("sign_out") => "sign_out",
        Some("revoked") => "revoke_session",
        Some("banned") => "ban_user",
        // Revoked by the bookkeeping worker for the backend that asked: counted there.
        Some("refresh_token_reused") => return Ok(None),
        _ => "other",
    };
    let i = REVOCATION_KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("a listed kind");
    xact_revocations()[i] += 1;
    Ok(None)
}
