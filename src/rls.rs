//! The RLS helpers: `auth.uid()`, `auth.user_id()`, `auth.role()`, `auth.email()`,
//! `auth.jwt()`, `auth.claim(path)`, `auth.roles()`, `auth.has_role(role)`,
//! `auth.require_role(role)`; and `auth.verify(token)`, whose repeated calls are as cheap.
//!
//! They are plain C-ABI functions (declared in `sql/020_rls.sql`) rather than generated
//! wrappers, because they run once per row: after the first call in a transaction each is a
//! stamp comparison that returns a datum cached for the token, with no allocation.

use crate::binding;
use crate::errors::raise_with_hint;
use crate::identity::{Bound, LocalId};
use auth_core::{AuthError, ErrorCode};
use pgrx::pg_sys;
use pgrx::IntoDatum;

/// Declares `fn $name(fcinfo) -> Datum` as a version-1 PostgreSQL function with pgrx's panic
/// and error guard.
macro_rules! sql_function {
    ($name:ident, $finfo:ident, |$fcinfo:ident| $body:block) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[unsafe(no_mangle)]
        #[doc(hidden)]
        #[allow(unused_variables)]
        pub unsafe extern "C-unwind" fn $name($fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            unsafe { pg_sys::submodules::panic::pgrx_extern_c_guard(|| $body) }
        }
    };
}

#[inline]
fn null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe { (*fcinfo).isnull = true };
    pg_sys::Datum::from(0)
}

#[inline]
fn or_null(fcinfo: pg_sys::FunctionCallInfo, d: Option<pg_sys::Datum>) -> pg_sys::Datum {
    d.unwrap_or_else(|| null(fcinfo))
}

/// The first argument as text (the functions taking one are STRICT).
fn text_arg<'a>(fcinfo: pg_sys::FunctionCallInfo) -> &'a str {
    unsafe { pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0) }.unwrap_or("")
}

/// `auth.uid()`: the id of the local account the token acts as — `sub` for issuers that own
/// accounts by id, the linked account for others — and an error, never another account's id,
/// when it acts as none.
fn uid_of(b: &Bound) -> Option<pg_sys::Datum> {
    let (detail, hint) = match b.local_id() {
        Ok(id) => return id.map(|bytes| b.uid_datum(&bytes)),
        Err(LocalId::NotUuid) => (
            "sub is not a uuid, so auth.uid() cannot return it",
            "Use auth.user_id(), which returns sub as text, for identity providers whose user ids are not uuids.",
        ),
        Err(LocalId::NotLinked) => (
            "the token's issuer and subject are linked to no account of this database",
            "auth.user_id() returns the issuer's subject; auth.ensure_user() links it to an account; auth.add_account_issuer(issuer) declares an issuer whose subjects are this database's user ids.",
        ),
        Err(LocalId::UnboundKey) => (
            "the key that verified the token is bound to no issuer, so the token names no account of this database",
            "auth.user_id() returns the subject; bind the key to its issuer (auth.add_key(jwk, issuer, audience)) to link or declare its accounts.",
        ),
    };
    raise_with_hint(AuthError::invalid_claims(detail), hint)
}

sql_function!(auth_verify, pg_finfo_auth_verify, |fcinfo| {
    crate::verify::verify_claims(text_arg(fcinfo).as_bytes())
});

sql_function!(auth_uid, pg_finfo_auth_uid, |fcinfo| {
    let d = binding::current().and_then(uid_of);
    or_null(fcinfo, d)
});

sql_function!(auth_user_id, pg_finfo_auth_user_id, |fcinfo| {
    or_null(fcinfo, binding::current().and_then(Bound::user_id_datum))
});

sql_function!(auth_role, pg_finfo_auth_role, |fcinfo| {
    or_null(fcinfo, binding::current().and_then(Bound::role_datum))
});

sql_function!(auth_email, pg_finfo_auth_email, |fcinfo| {
    or_null(fcinfo, binding::current().and_then(Bound::email_datum))
});

sql_function!(auth_aal, pg_finfo_auth_aal, |fcinfo| {
    // The claim as issued: sessions raise it by minting a new token (auth.mfa_verify).
    let aal = binding::current()
        .and_then(|b| b.claims.get("aal").and_then(|v| v.as_str()))
        .and_then(|a| a.into_datum());
    or_null(fcinfo, aal)
});

sql_function!(auth_jwt, pg_finfo_auth_jwt, |fcinfo| {
    or_null(fcinfo, binding::current().map(Bound::jwt_datum))
});

sql_function!(auth_claim, pg_finfo_auth_claim, |fcinfo| {
    let path = text_arg(fcinfo);
    or_null(fcinfo, binding::current().and_then(|b| b.claim_datum(path)))
});

sql_function!(auth_roles, pg_finfo_auth_roles, |fcinfo| {
    match binding::current() {
        Some(b) => b.roles_datum(),
        None => Vec::<String>::new().into_datum().expect("empty text[]"),
    }
});

fn has_role(role: &str) -> bool {
    binding::current().is_some_and(|b| b.has_role(role))
}

sql_function!(auth_has_role, pg_finfo_auth_has_role, |fcinfo| {
    pg_sys::Datum::from(has_role(text_arg(fcinfo)))
});

sql_function!(auth_require_role, pg_finfo_auth_require_role, |fcinfo| {
    let role = text_arg(fcinfo);
    if !has_role(role) {
        let who = if binding::current().is_some() {
            "the current user"
        } else {
            "an anonymous request"
        };
        crate::errors::raise(AuthError::new(
            ErrorCode::InsufficientPermissions,
            format!(
                "{who} does not have role {}",
                auth_core::jws::printable(role)
            ),
        ));
    }
    null(fcinfo)
});
