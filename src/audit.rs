//! `auth.audit_log`: the one writer, used in the caller's transaction (events that happened)
//! and by the bookkeeping worker (failures, which must survive the caller's rollback).
//! Details never hold a password, a token, a token hash or key material.

use crate::spi;
use pgrx::datum::Uuid;
use pgrx::spi::SpiClient;
use serde_json::Value;

/// Writes one row through `client`. Ids are text so that the worker, which receives them
/// serialised, and SQL callers share this.
pub fn write(
    client: &mut SpiClient<'_>,
    event: &str,
    user_id: Option<&str>,
    session_id: Option<&str>,
    details: &Value,
) -> pgrx::spi::Result<()> {
    client.update(
        "INSERT INTO auth.audit_log (event, user_id, session_id, details) VALUES ($1, $2::pg_catalog.uuid, $3::pg_catalog.uuid, $4)",
        None,
        &[
            event.into(),
            user_id.into(),
            session_id.into(),
            pgrx::JsonB(details.clone()).into(),
        ],
    )?;
    Ok(())
}

/// Writes one row in the current transaction.
pub fn record(event: &str, user_id: Option<Uuid>, session_id: Option<Uuid>, details: Value) {
    let (user_id, session_id) = (
        user_id.map(|u| u.to_string()),
        session_id.map(|s| s.to_string()),
    );
    spi::run(|c| {
        write(
            c,
            event,
            user_id.as_deref(),
            session_id.as_deref(),
            &details,
        )
    });
}
