//! The one clock: every check in a transaction compares with the transaction's start time, in
//! the f64 Unix seconds the core compares.

use pgrx::pg_sys;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// The transaction timestamp in Unix seconds: all checks in one transaction agree.
pub fn transaction_now() -> f64 {
    // Key validity times are loaded as microseconds and converted the same way, so that
    // "retired at now()" compares equal to now, to the bit.
    unix_seconds_from_pg_micros(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() })
}

/// The transaction timestamp as a SQL parameter (what `now()` returns). Writes to Citus
/// reference tables take it as `$n`: Citus refuses `now()` next to a column there.
pub fn transaction_now_param() -> pgrx::datum::TimestampWithTimeZone {
    pgrx::datum::TimestampWithTimeZone::try_from(unsafe {
        pg_sys::GetCurrentTransactionStartTimestamp()
    })
    .expect("the transaction start is a finite timestamp")
}

/// A PostgreSQL timestamp (microseconds since 2000-01-01) in Unix seconds.
pub fn unix_seconds_from_pg_micros(ts: i64) -> f64 {
    unix_seconds_from_micros(ts + PG_EPOCH_UNIX_MICROS)
}

/// The transaction timestamp in whole Unix seconds, as `iat`/`exp` claims carry it.
pub fn transaction_now_secs() -> i64 {
    transaction_now().floor() as i64
}

/// The one conversion from microseconds to the f64 seconds the core compares.
pub fn unix_seconds_from_micros(micros: i64) -> f64 {
    micros as f64 / 1e6
}
