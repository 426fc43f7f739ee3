//! The one place where core errors become PostgreSQL errors: stable code first in the message,
//! the SQLSTATE of README "Errors", and a DETAIL that says why without any secret.

use auth_core::{AuthError, ErrorCode};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

pub fn sqlstate(code: ErrorCode) -> PgSqlErrorCode {
    match code {
        ErrorCode::InsufficientPermissions => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        ErrorCode::InvalidCredentials | ErrorCode::InvalidOtp => {
            PgSqlErrorCode::ERRCODE_INVALID_PASSWORD
        }
        ErrorCode::InvalidParameter => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        ErrorCode::ReadOnly => PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        ErrorCode::Unavailable => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
        ErrorCode::NotConfigured | ErrorCode::NotPropagated => {
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
        }
        _ => PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
    }
}

pub fn report(e: &AuthError) -> ErrorReport {
    ErrorReport::new(
        sqlstate(e.code),
        format!("{}: {}", e.code.as_str(), e.code.summary()),
        "auth_ext",
    )
    .set_detail(e.detail.clone())
}

/// Raises `e` as an ERROR. Never returns.
pub fn raise(e: AuthError) -> ! {
    crate::stats::failed(e.code);
    report(&e).report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises `e` with a HINT.
pub fn raise_with_hint(e: AuthError, hint: &str) -> ! {
    crate::stats::failed(e.code);
    report(&e)
        .set_hint(hint.to_string())
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwraps a core result, raising its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for auth_core::Result<T> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(e),
        }
    }
}

/// READ_ONLY (25006) before anything else when the transaction cannot write: `BEGIN READ
/// ONLY`, `default_transaction_read_only`, and every transaction of a hot standby (which
/// PostgreSQL starts read-only). `what` names the call.
pub fn require_writable(what: &str) {
    if unsafe { pg_sys::XactReadOnly } {
        raise(AuthError::new(
            ErrorCode::ReadOnly,
            format!("{what} writes; run it on the primary, in a read-write transaction"),
        ));
    }
}

pub fn invalid_parameter(detail: impl Into<String>) -> ! {
    raise(AuthError::invalid_parameter(detail))
}

/// A message for the server log only, never for a client (whatever its client_min_messages):
/// for what a DBA must see but a caller must not learn (account ids, table states).
pub fn log_server_only(message: &str) {
    pgrx::ereport!(
        PgLogLevel::LOG_SERVER_ONLY,
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        message
    );
}
