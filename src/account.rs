//! The bound identity's account, read (as the tables' owner) when the identity is bound and
//! again whenever auth.users, auth.identities or auth.sessions changes: the source of truth
//! for roles, bans, deletion and session revocation. Which account a token may act as is
//! decided by its issuer (`identity::Owner`): never by its `sub` alone.

use crate::identity::Owner;
use crate::privilege;
use auth_core::{Identity, Uid};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

/// What the database says about a bound identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Account {
    /// The account's id, when the token acts as one that exists.
    pub id: Option<[u8; 16]>,
    /// The user row's roles at `auth.roles_claim`, or `None` when there is no user row (or the
    /// roles claim does not live in app_metadata): then the token's claim applies.
    pub roles: Option<Vec<String>>,
    /// `banned_until` in Unix seconds.
    pub banned_until: Option<f64>,
    pub deleted: bool,
    /// The token names a session of ours that is revoked, expired or gone.
    pub session_revoked: bool,
    /// The session's timebox (`auth.sessions.not_after`) in Unix seconds: compared with each
    /// transaction's time, since its passing is no write that would invalidate this.
    pub session_not_after: Option<f64>,
}

fn roles_of(v: &Value) -> Vec<String> {
    let mut roles: Vec<String> = match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    };
    roles.sort();
    roles.dedup();
    roles
}

/// Reads the account `ident` acts as under `owner`. `our_session` is the `session_id` claim of
/// a token signed by one of our own keys (sessions of other issuers are theirs to revoke).
pub fn load(ident: &Identity, owner: &Owner, our_session: Option<Uuid>) -> Account {
    let claim = crate::gucs::roles_claim();
    let path: Option<Vec<String>> = claim
        .strip_prefix("app_metadata.")
        .map(|p| p.split('.').map(String::from).collect());
    // By id for issuers that own accounts by id; through the (issuer, subject) link for
    // others. At most one row either way: users.id and identities (provider, provider_id)
    // are unique.
    let (by_id, link): (Option<Uuid>, Option<(&str, &str)>) = match (owner, ident.uid) {
        (Owner::Ours | Owner::Declared, Uid::Uuid(bytes)) => (Some(Uuid::from_bytes(bytes)), None),
        (Owner::Linked(issuer), _) => (None, ident.sub.as_deref().map(|s| (issuer.as_str(), s))),
        _ => (None, None),
    };
    if by_id.is_none() && link.is_none() {
        return Account {
            session_revoked: our_session.is_some(),
            ..Account::default()
        };
    }
    for w in [
        &crate::invalidation::USERS,
        &crate::invalidation::IDENTITIES,
    ] {
        let (oid, _) = privilege::locate(w.relname);
        w.set_oid(oid);
    }
    if our_session.is_some() {
        let (oid, _) = privilege::locate(crate::invalidation::SESSIONS.relname);
        crate::invalidation::SESSIONS.set_oid(oid);
    }
    let (issuer, subject) = link.unzip();
    // Times as numeric (exact in jsonb, whatever the caller's extra_float_digits).
    let row = privilege::as_owner(|| {
        Spi::connect(|c| {
            let t = c.select(
                "SELECT pg_catalog.jsonb_build_object(
                        'id', u.id,
                        'roles', u.raw_app_meta_data OPERATOR(pg_catalog.#>) $1,
                        'banned_until', EXTRACT(EPOCH FROM u.banned_until),
                        'deleted', u.deleted_at IS NOT NULL,
                        'session_revoked', $5::pg_catalog.uuid IS NOT NULL AND NOT EXISTS (
                            SELECT 1 FROM auth.sessions s
                             WHERE s.id OPERATOR(pg_catalog.=) $5 AND s.user_id OPERATOR(pg_catalog.=) u.id
                               AND s.revoked_at IS NULL),
                        'session_not_after', (SELECT EXTRACT(EPOCH FROM s.not_after) FROM auth.sessions s
                                               WHERE s.id OPERATOR(pg_catalog.=) $5))
                   FROM auth.users u
                  WHERE u.id OPERATOR(pg_catalog.=) coalesce($2, (
                          SELECT i.user_id FROM auth.identities i
                           WHERE i.provider OPERATOR(pg_catalog.=) $3
                             AND i.provider_id OPERATOR(pg_catalog.=) $4))",
                Some(1),
                &[path.clone().unwrap_or_default().into(), by_id.into(), issuer.into(), subject.into(), our_session.into()],
            )?;
            if t.is_empty() {
                return Ok(None);
            }
            t.first().get::<JsonB>(1)
        })
    })
    .unwrap_or_else(|e: pgrx::spi::Error| pgrx::error!("auth_ext: cannot read auth.users: {e}"));
    let Some(JsonB(row)) = row else {
        // No user row: a session of ours without its user is gone too.
        return Account {
            session_revoked: our_session.is_some(),
            ..Account::default()
        };
    };
    let deleted = row["deleted"] == Value::Bool(true);
    Account {
        id: row["id"].as_str().and_then(auth_core::identity::parse_uuid),
        roles: path.map(|_| {
            if deleted {
                Vec::new()
            } else {
                roles_of(&row["roles"])
            }
        }),
        banned_until: row["banned_until"].as_f64(),
        deleted,
        session_revoked: row["session_revoked"] == Value::Bool(true),
        session_not_after: row["session_not_after"].as_f64(),
    }
}
