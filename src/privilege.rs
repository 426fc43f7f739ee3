//! Reading the extension's private tables on behalf of any caller. The RLS helpers run as the
//! calling role, which has no access to `auth.key_store`; like a SECURITY DEFINER function,
//! the read switches the current user to the table's owner for the duration of one query.

use pgrx::pg_sys;

/// The oid and owner of `auth.<relname>`; raises when the extension is not installed.
pub fn locate(relname: &str) -> (pg_sys::Oid, pg_sys::Oid) {
    let schema = c"auth";
    let name = std::ffi::CString::new(relname).expect("relation names have no NUL");
    unsafe {
        let nsp = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        let oid = if nsp == pg_sys::InvalidOid {
            nsp
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), nsp)
        };
        if oid == pg_sys::InvalidOid {
            pgrx::error!("auth_ext: table auth.{relname} does not exist; is the extension installed in this database?");
        }
        let rel = pg_sys::relation_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        (oid, owner)
    }
}

/// Settings for the duration of a scope, like a function's SET clause: restored when the scope
/// ends normally; on an error the transaction abort restores them.
pub struct GucScope(i32);

impl GucScope {
    pub fn new(settings: &[(&std::ffi::CStr, &std::ffi::CStr)]) -> GucScope {
        unsafe {
            let level = pg_sys::NewGUCNestLevel();
            for (name, value) in settings {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    0,
                    false,
                );
            }
            GucScope(level)
        }
    }
}

impl Drop for GucScope {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.0) };
        }
    }
}

/// Runs `f` with `role` as the current user (SECURITY_LOCAL_USERID_CHANGE, as fmgr does for
/// SECURITY DEFINER), restoring the caller's identity afterwards, also when `f` raises.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
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
