//! The bound identity's account, read (as the tables' owner) when the identity is bound and
//! again whenever auth.users, auth.identities or auth.sessions changes: the source of truth
//! for roles, bans, deletion and session revocation. Which account a token may act as is
//! decided by its issuer ([`Owner`]): never by its `sub` alone.

use crate::clock;
use crate::invalidation::{Freshness, Watched, IDENTITIES, SESSIONS, USERS};
use crate::row_lookup::{self, KeyColumn, Lookup};
use auth_core::{Identity, Uid};
use pgrx::datum::Uuid;
use pgrx::pg_sys;
use std::ffi::CStr;

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

/// One account read: which account (by id or by link) and which session.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    by_id: Option<[u8; 16]>,
    link: Option<(String, String)>,
    session: Option<[u8; 16]>,
}

/// Accounts read in this backend, so that a new token of a known user costs no query: each
/// entry is used only while its stamp is fresh, and all of them only under the roles claim
/// they were read with. Bounded: emptied when full.
const CACHE_ENTRIES: usize = 4096;
struct Cache {
    /// `auth.roles_claim` when the entries were read (the roles they hold depend on it).
    roles_claim: String,
    /// Its path inside `raw_app_meta_data`, when the roles claim lives there.
    path: Option<Vec<String>>,
    entries: std::collections::HashMap<Key, (Freshness, Account)>,
}
static mut CACHE: Option<Cache> = None;

/// Reads the account `ident` acts as under `owner`. `our_session` is the `session_id` claim of
/// a token signed by one of our own keys (sessions of other issuers are theirs to revoke).
pub fn load(ident: &Identity, owner: &Owner, our_session: Option<Uuid>) -> Account {
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
    };
    if key.by_id.is_none() && key.link.is_none() {
        return Account {
            session_revoked: our_session.is_some(),
            ..Account::default()
        };
    }
    let claim = crate::gucs::roles_claim();
    // SAFETY: backends are single-threaded; no reference outlives this function.
    #[allow(static_mut_refs)]
    let cache = unsafe { CACHE.get_or_insert_with(|| Cache::new(claim)) };
    if cache.roles_claim != claim {
        *cache = Cache::new(claim);
    }
    if let Some((read_at, account)) = cache.entries.get(&key) {
        if read_at.is_fresh(&TABLES) {
            return account.clone();
        }
    }
    crate::invalidation::watch_all();
    let read_at = Freshness::take(&TABLES);
    let account = read(&key, cache.path.as_deref());
    if cache.entries.len() >= CACHE_ENTRIES {
        cache.entries.clear();
    }
    cache.entries.insert(key, (read_at, account.clone()));
    account
}

impl Cache {
    fn new(roles_claim: &str) -> Cache {
        Cache {
            roles_claim: roles_claim.to_string(),
            path: roles_claim
                .strip_prefix("app_metadata.")
                .map(|p| p.split('.').map(String::from).collect()),
            // Grown on demand (a backend that sees few users keeps a small table); clearing it
            // when full keeps the table, so a busy backend stops rehashing.
            entries: std::collections::HashMap::new(),
        }
    }
}

/// `banned_until` and `not_after` as Unix seconds (±infinity kept as such).
fn timestamp(d: Option<pg_sys::Datum>) -> Option<f64> {
    let micros = d?.value() as i64;
    Some(match micros {
        i64::MAX => f64::INFINITY,
        i64::MIN => f64::NEG_INFINITY,
        m => clock::unix_seconds_from_pg_micros(m),
    })
}

fn uuid_bytes(d: pg_sys::Datum) -> [u8; 16] {
    // SAFETY: a uuid datum points to its 16 bytes.
    unsafe { *(d.cast_mut_ptr::<[u8; 16]>()) }
}

const UUID_KEY: KeyColumn = KeyColumn {
    name: c"id",
    eq_proc: pg_sys::F_UUID_EQ,
    collation: pg_sys::InvalidOid,
};

const fn text_key(name: &'static CStr) -> KeyColumn {
    KeyColumn {
        name,
        eq_proc: pg_sys::F_TEXTEQ,
        // The columns' (and so the index's) collation.
        collation: pg_sys::DEFAULT_COLLATION_OID,
    }
}

static USER_BY_ID: Lookup = Lookup::new(
    &USERS,
    c"users_pkey",
    &[UUID_KEY],
    &[c"raw_app_meta_data", c"banned_until", c"deleted_at"],
);
static LINK_BY_ISSUER_SUBJECT: Lookup = Lookup::new(
    &IDENTITIES,
    c"identities_provider_provider_id_key",
    &[text_key(c"provider"), text_key(c"provider_id")],
    &[c"user_id"],
);
static SESSION_BY_ID: Lookup = Lookup::new(
    &SESSIONS,
    c"sessions_pkey",
    &[UUID_KEY],
    &[c"user_id", c"revoked_at", c"not_after"],
);

fn uuid_datum(bytes: &[u8; 16]) -> pg_sys::Datum {
    pg_sys::Datum::from(bytes.as_ptr())
}

fn text_datum(text: &str) -> pg_sys::Datum {
    // SAFETY: palloc'd in the current context, which outlives the lookup.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            text.as_ptr().cast(),
            text.len() as i32,
        ))
    }
}

/// The account `key` names, read by index probes (users by id, identities by (provider,
/// provider_id), sessions by id) in the caller's snapshot; its roles at `path` inside
/// `raw_app_meta_data` when the roles claim lives there.
fn read(key: &Key, path: Option<&[String]>) -> Account {
    let id = match (&key.by_id, &key.link) {
        (Some(id), _) => Some(*id),
        (None, Some((issuer, subject))) => row_lookup::by_unique_index(
            &LINK_BY_ISSUER_SUBJECT,
            &[text_datum(issuer), text_datum(subject)],
            |v| v[0].map(uuid_bytes),
        )
        .flatten(),
        (None, None) => None,
    };
    let user = id.and_then(|id| {
        row_lookup::by_unique_index(&USER_BY_ID, &[uuid_datum(&id)], |v| {
            let deleted = v[2].is_some();
            let roles = path.map(|path| {
                if deleted {
                    return Vec::new();
                }
                v[0].map_or_else(Vec::new, |d| crate::jsonb::roles_at(d, path))
            });
            (id, roles, timestamp(v[1]), deleted)
        })
    });
    let Some((id, roles, banned_until, deleted)) = user else {
        // No user row: a session of ours without its user is gone too.
        return Account {
            session_revoked: key.session.is_some(),
            ..Account::default()
        };
    };
    // (user_id, revoked, not_after) of the token's session.
    let session = key.session.as_ref().and_then(|sid| {
        row_lookup::by_unique_index(&SESSION_BY_ID, &[uuid_datum(sid)], |v| {
            (v[0].map(uuid_bytes), v[1].is_some(), timestamp(v[2]))
        })
    });
    Account {
        id: Some(id),
        roles,
        banned_until,
        deleted,
        session_revoked: key.session.is_some()
            && !session.is_some_and(|(owner, revoked, _)| owner == Some(id) && !revoked),
        session_not_after: session.and_then(|(_, _, not_after)| not_after),
    }
}
