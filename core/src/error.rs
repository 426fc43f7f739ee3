//! Error codes shared by the core and the SQL layer. The code is the stable, machine-readable
//! part users match on; the detail explains why without echoing tokens, keys or passwords.

use std::fmt;

/// The stable codes of README "Errors". The SQL layer maps each to its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    InvalidClaims,
    TokenRevoked,
    InsufficientPermissions,
    InvalidCredentials,
    AccountLocked,
    InvalidParameter,
    /// A write (sign-in bookkeeping, sessions) asked of a read-only transaction or a standby.
    ReadOnly,
    /// What must be recorded first could not be (no worker slot, the worker timed out):
    /// nothing was checked; retrying later is safe.
    Unavailable,
    /// The database lacks what the call needs (e.g. an active signing key).
    NotConfigured,
    /// The right password for an account whose email is not confirmed yet
    /// (`auth.require_email_confirmation`).
    EmailNotConfirmed,
    /// A one-time code or link that is wrong, used, expired or voided (or an unknown email).
    InvalidOtp,
    /// On Citus, a worker evaluating a policy received no identity from the coordinator
    /// (the token was not bound with `auth.bind` inside a transaction block).
    NotPropagated,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::TokenNotYetValid => "TOKEN_NOT_YET_VALID",
            ErrorCode::InvalidClaims => "INVALID_CLAIMS",
            ErrorCode::TokenRevoked => "TOKEN_REVOKED",
            ErrorCode::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            ErrorCode::InvalidCredentials => "INVALID_CREDENTIALS",
            ErrorCode::AccountLocked => "ACCOUNT_LOCKED",
            ErrorCode::InvalidParameter => "INVALID_PARAMETER",
            ErrorCode::ReadOnly => "READ_ONLY",
            ErrorCode::Unavailable => "TEMPORARILY_UNAVAILABLE",
            ErrorCode::NotConfigured => "NOT_CONFIGURED",
            ErrorCode::InvalidOtp => "INVALID_OTP",
            ErrorCode::EmailNotConfirmed => "EMAIL_NOT_CONFIRMED",
            ErrorCode::NotPropagated => "IDENTITY_NOT_PROPAGATED",
        }
    }

    /// A one-line summary that follows the code in the error message.
    pub const fn summary(self) -> &'static str {
        match self {
            ErrorCode::InvalidToken => "the token is not a valid signed JWT for this database",
            ErrorCode::TokenExpired => "the token has expired",
            ErrorCode::TokenNotYetValid => "the token is not valid yet",
            ErrorCode::InvalidClaims => "the token's claims are not acceptable",
            ErrorCode::TokenRevoked => "the token has been revoked",
            ErrorCode::InsufficientPermissions => "not allowed",
            ErrorCode::InvalidCredentials => "invalid email or password",
            ErrorCode::AccountLocked => "the account is temporarily locked",
            ErrorCode::InvalidParameter => "invalid parameter",
            ErrorCode::ReadOnly => {
                "this writes and cannot run in a read-only transaction or on a standby"
            }
            ErrorCode::Unavailable => {
                "the attempt could not be recorded; nothing was checked; retry"
            }
            ErrorCode::NotConfigured => "the database is not set up for this",
            ErrorCode::InvalidOtp => "the code or link is invalid or has expired",
            ErrorCode::EmailNotConfirmed => "the email is not confirmed yet",
            ErrorCode::NotPropagated => "the identity did not reach this Citus node",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code and a human-readable detail. The detail must never contain a
/// secret: no token text, no key material, no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub code: ErrorCode,
    pub detail: String,
}

impl AuthError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        AuthError {
            code,
            detail: detail.into(),
        }
    }
    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidToken, detail)
    }
    pub fn invalid_claims(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClaims, detail)
    }
    pub fn invalid_parameter(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, detail)
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.code,
            self.code.summary(),
            self.detail
        )
    }
}

impl std::error::Error for AuthError {}

pub type Result<T> = std::result::Result<T, AuthError>;
