//! The bound identity's row in auth.users, read (as the table's owner) when the identity is
//! bound and again whenever auth.users changes: the row is the source of truth for roles.

use crate::privilege;
use auth_core::{Identity, Uid};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{Map, Value};

/// The user's application roles from `raw_app_meta_data` at `auth.roles_claim` (which must
/// start with `app_metadata.`), or `None` when there is no user row for this identity (or the
/// roles claim does not live in app_metadata), in which case the token's claim applies. A
/// deleted user has no roles.
pub fn roles(ident: &Identity, claims: &Map<String, Value>) -> Option<Vec<String>> {
    let claim = crate::gucs::roles_claim();
    let path: Vec<String> = claim
        .strip_prefix("app_metadata.")?
        .split('.')
        .map(String::from)
        .collect();
    let uid = match ident.uid {
        Uid::Uuid(bytes) => Some(Uuid::from_bytes(bytes)),
        _ => None,
    };
    let issuer = claims.get("iss").and_then(Value::as_str);
    let subject = ident.sub.as_deref();
    if uid.is_none() && (issuer.is_none() || subject.is_none()) {
        return None;
    }
    let (oid, owner) = privilege::locate(crate::invalidation::USERS.relname);
    crate::invalidation::USERS.set_oid(oid);
    // Our own users by id; external ones through their (issuer, subject) identity.
    let row = privilege::as_role(owner, || {
        Spi::connect(|c| {
            let t = c.select(
                "SELECT pg_catalog.jsonb_build_object('roles', u.raw_app_meta_data OPERATOR(pg_catalog.#>) $1,
                        'deleted', u.deleted_at IS NOT NULL)
                   FROM auth.users u
                  WHERE u.id OPERATOR(pg_catalog.=) $2
                     OR u.id OPERATOR(pg_catalog.=) (SELECT i.user_id FROM auth.identities i
                                WHERE i.provider OPERATOR(pg_catalog.=) $3 AND i.provider_id OPERATOR(pg_catalog.=) $4)
                  LIMIT 1",
                Some(1),
                &[path.into(), uid.into(), issuer.into(), subject.into()],
            )?;
            if t.is_empty() {
                return Ok(None);
            }
            t.first().get::<JsonB>(1)
        })
    })
    .unwrap_or_else(|e: pgrx::spi::Error| pgrx::error!("auth_ext: cannot read auth.users: {e}"))?;
    if row.0["deleted"] == Value::Bool(true) {
        return Some(Vec::new());
    }
    let mut roles: Vec<String> = match &row.0["roles"] {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    };
    roles.sort();
    roles.dedup();
    Some(roles)
}
