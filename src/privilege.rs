//! The one door to the extension owner's privileges from Rust. The RLS helpers, `auth.verify`
//! and the role-sync triggers run as the calling role, which may not read `auth.key_store` or
//! `auth.users`; like a SECURITY DEFINER function with `SET search_path = pg_catalog, pg_temp`,
//! [`as_owner`] switches the current user to the extension owner *and* pins the search path for
//! its whole duration, so that no name in the SQL it runs (type in a cast, function, operator)
//! can resolve to an object the caller planted in `pg_temp`, in a schema of its own, or through
//! `ALTER DATABASE/ROLE … SET search_path` (docs/security.md, "Trust boundaries"). SECURITY DEFINER functions get the
//! same guarantee from their SET clause.

use pgrx::pg_sys;

/// Settings for the duration of a scope, like a function's SET clause: restored when the scope
/// ends normally; on an error the transaction abort restores them.
pub struct GucScope(i32);

impl GucScope {
    pub fn new(settings: &[(&std::ffi::CStr, &std::ffi::CStr)]) -> GucScope {
        let level = unsafe { pg_sys::NewGUCNestLevel() };
        crate::gucs::set(
            settings,
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
        );
        GucScope(level)
    }
}

impl Drop for GucScope {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.0) };
        }
    }
}

/// The only search path privileged code runs with: builtins first; the temporary schema last
/// (for types and relations only; PostgreSQL never looks there for functions or operators).
pub const PINNED_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Runs `f` as the owner of the extension's tables with `search_path` pinned to
/// [`PINNED_SEARCH_PATH`]; both are restored afterwards, also when `f` raises.
pub fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = crate::invalidation::watch_all();
    // Also the one setting that changes how our queries' numbers read back as text, and the
    // one that would re-plan our kept plans at every call (the caller's plan_cache_mode).
    let _path = GucScope::new(&[
        (c"search_path", PINNED_SEARCH_PATH),
        (c"extra_float_digits", c"3"),
        (c"plan_cache_mode", c"force_generic_plan"),
    ]);
    as_role(owner, f)
}

/// Runs `f` with `role` as the current user (SECURITY_LOCAL_USERID_CHANGE, as fmgr does for
/// SECURITY DEFINER), restoring the caller's identity afterwards, also when `f` raises.
fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    let (mut user, mut ctx) = (pg_sys::InvalidOid, 0i32);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut ctx);
        pg_sys::SetUserIdAndSecContext(role, ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let _restore = Restore(user, ctx);
    f()
}
