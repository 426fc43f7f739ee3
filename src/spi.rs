//! The one way our own queries run through SPI: a failure there is not the caller's doing, so
//! it carries no stable code; the message names the extension.

use pgrx::spi::{self, SpiClient};
use pgrx::Spi;

/// Runs `f` with an SPI connection; an SPI error is raised.
pub fn run<R>(f: impl FnOnce(&mut SpiClient<'_>) -> spi::Result<R>) -> R {
    Spi::connect_mut(f).or_fail()
}

/// Unwraps the result of an SPI call, raising its error.
pub trait OrFail<T> {
    fn or_fail(self) -> T;
}

impl<T> OrFail<T> for spi::Result<T> {
    fn or_fail(self) -> T {
        self.unwrap_or_else(|e| pgrx::error!("auth_ext: {e}"))
    }
}

/// Runs `f` in a subtransaction, then keeps what it did (its locks included) when `keep` says
/// so, else rolls it back, which releases the locks it took. An error inside aborts the
/// caller's transaction as usual. `f`'s result must not point into transaction memory that
/// the rollback frees (plain Rust values only).
pub fn in_subtransaction<R>(f: impl FnOnce() -> R, keep: impl FnOnce(&R) -> bool) -> R {
    // SAFETY: the pattern of PL/pgSQL's exception blocks: begin an internal subtransaction,
    // then end it and restore the caller's memory context and resource owner.
    unsafe {
        let context = pgrx::pg_sys::CurrentMemoryContext;
        let owner = pgrx::pg_sys::CurrentResourceOwner;
        pgrx::pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pgrx::pg_sys::MemoryContextSwitchTo(context);
        let r = f();
        if keep(&r) {
            pgrx::pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pgrx::pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pgrx::pg_sys::MemoryContextSwitchTo(context);
        pgrx::pg_sys::CurrentResourceOwner = owner;
        r
    }
}
