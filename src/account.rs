//! The bound identity's account, read (as the tables' owner) when the identity is bound and
//! again whenever auth.users, auth.identities or auth.sessions changes: the source of truth
//! for roles, bans, deletion and session revocation. Which account a token may act as is
//! decided by its issuer ([`Owner`]): never by its `sub` alone.

use crate::invalidation::{Freshness, Watched, IDENTITIES, SESSIONS, USERS};
use crate::privilege;
use auth_core::{Identity, Uid};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

/// Which local account, if any, a token may act as: identity is (issuer, subject), and an
/// issuer's identities are asserted only by keys bound to that issuer (docs/keys.md, "Identity: issuer and subject").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Signed by one of our own keys: the account whose id is `sub`.
    Ours,
    /// Verified by a key bound to an issuer in `auth.account_issuers`, or PostgREST request
    /// claims the superuser chose to trust: the account whose id is `sub`.
    Declared,
    /// Verified by a key bound to this issuer: the account linked to (issuer, sub) in
    /// `auth.identities`, if any.
    Linked(String),
    /// Verified by a key bound to no issuer: no account.
    Nobody,
}

/// What an account read depends on: which account (auth.users, auth.identities), its roles,
/// ban and deletion (auth.users), and its session's revocation (auth.sessions).
pub const TABLES: [&Watched; 3] = [&USERS, &IDENTITIES, &SESSIONS];

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

/// One account read: which account (by id or by link), which session, which roles path.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    by_id: Option<[u8; 16]>,
    link: Option<(String, String)>,
    session: Option<[u8; 16]>,
    path: Option<Vec<String>>,
}

/// Accounts read in this backend, so that a new token of a known user costs no query: each
/// entry is used only while its stamp is fresh. Bounded: emptied when full.
const CACHE_ENTRIES: usize = 4096;
static mut CACHE: Option<std::collections::HashMap<Key, (Freshness, Account)>> = None;
/// The account query, planned once per backend (as the owner, with the pinned search path,
/// which the plan cache keeps for any re-planning).
static mut PLAN: Option<pgrx::spi::OwnedPreparedStatement> = None;

// By id for issuers that own accounts by id; through the (issuer, subject) link for others.
// At most one row either way: users.id and identities (provider, provider_id) are unique.
// Times as numeric (exact in jsonb, whatever the caller's extra_float_digits).
const QUERY: &str = "SELECT pg_catalog.jsonb_build_object(
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
             AND i.provider_id OPERATOR(pg_catalog.=) $4))";

/// Reads the account `ident` acts as under `owner`. `our_session` is the `session_id` claim of
/// a token signed by one of our own keys (sessions of other issuers are theirs to revoke).
pub fn load(ident: &Identity, owner: &Owner, our_session: Option<Uuid>) -> Account {
    let claim = crate::gucs::roles_claim();
    let path: Option<Vec<String>> = claim
        .strip_prefix("app_metadata.")
        .map(|p| p.split('.').map(String::from).collect());
    let key = Key {
        by_id: match (owner, ident.uid) {
            (Owner::Ours | Owner::Declared, Uid::Uuid(bytes)) => Some(bytes),
            _ => None,
        },
        link: match owner {
            Owner::Linked(issuer) => ident.sub.clone().map(|s| (issuer.clone(), s)),
            _ => None,
        },
        session: our_session.map(|s| *s.as_bytes()),
        path,
    };
    if key.by_id.is_none() && key.link.is_none() {
        return Account {
            session_revoked: our_session.is_some(),
            ..Account::default()
        };
    }
    // SAFETY: backends are single-threaded; no reference outlives this function.
    #[allow(static_mut_refs)]
    let cache = unsafe { CACHE.get_or_insert_with(Default::default) };
    if let Some((read_at, account)) = cache.get(&key) {
        if read_at.is_fresh(&TABLES) {
            return account.clone();
        }
    }
    crate::invalidation::watch_all();
    let read_at = Freshness::take(&TABLES);
    let account = read(&key);
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, (read_at, account.clone()));
    account
}

fn read(key: &Key) -> Account {
    use pgrx::{PgBuiltInOids, PgOid};
    let (issuer, subject) = key
        .link
        .as_ref()
        .map(|(i, s)| (i.as_str(), s.as_str()))
        .unzip();
    let row = privilege::as_owner(|| {
        Spi::connect(|c| {
            // SAFETY: backends are single-threaded; the plan is not freed while used.
            #[allow(static_mut_refs)]
            let plan = unsafe {
                if PLAN.is_none() {
                    let types = [
                        PgOid::BuiltIn(PgBuiltInOids::TEXTARRAYOID),
                        PgOid::BuiltIn(PgBuiltInOids::UUIDOID),
                        PgOid::BuiltIn(PgBuiltInOids::TEXTOID),
                        PgOid::BuiltIn(PgBuiltInOids::TEXTOID),
                        PgOid::BuiltIn(PgBuiltInOids::UUIDOID),
                    ];
                    PLAN = Some(c.prepare(QUERY, &types)?.keep());
                }
                PLAN.as_ref().expect("just prepared")
            };
            let t = c.select(
                plan,
                Some(1),
                &[
                    key.path.clone().unwrap_or_default().into(),
                    key.by_id.map(Uuid::from_bytes).into(),
                    issuer.into(),
                    subject.into(),
                    key.session.map(Uuid::from_bytes).into(),
                ],
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
            session_revoked: key.session.is_some(),
            ..Account::default()
        };
    };
    let deleted = row["deleted"] == Value::Bool(true);
    Account {
        id: row["id"].as_str().and_then(auth_core::identity::parse_uuid),
        roles: key.path.as_ref().map(|_| {
            if deleted {
                Vec::new()
            } else {
                auth_core::roles::of_value(Some(&row["roles"]))
            }
        }),
        banned_until: row["banned_until"].as_f64(),
        deleted,
        session_revoked: row["session_revoked"] == Value::Bool(true),
        session_not_after: row["session_not_after"].as_f64(),
    }
}
