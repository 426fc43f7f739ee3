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
