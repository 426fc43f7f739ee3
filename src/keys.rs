//! The trusted key set: `auth.add_key`, `auth.import_jwks`, `auth.retire_key` write
//! `auth.key_store` (readable by its owner only); every backend keeps a parsed copy that is
//! reloaded when a relcache invalidation for the table arrives.

use crate::errors::{invalid_parameter, OrRaise};
use crate::invalidation::{Freshness, Watched, ACCOUNT_ISSUERS, KEY_STORE};
use crate::spi::{self, OrFail};
use crate::{audit, clock, privilege};
use auth_core::jwk::{parse_jwks, Jwk};
use auth_core::{KeyEntry, KeySet};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;
use std::hash::{DefaultHasher, Hash, Hasher};

pub struct LoadedKeys {
    pub set: KeySet,
    /// Kids of our own signing keys (auth.generate_signing_key).
    pub generated: std::collections::HashSet<String>,
    /// Issuers declared to own local accounts by id (`auth.account_issuers`).
    pub account_issuers: std::collections::HashSet<String>,
    /// Hash of the rows the set was built from: identities verified against an identical set
    /// stay valid across reloads.
    pub fingerprint: u64,
    loaded: Freshness,
}

static mut LOADED: Option<LoadedKeys> = None;

// Runs as the owner with the search path pinned (privilege::as_owner); qualified anyway.
// Times as integer microseconds since the Unix epoch (exact through jsonb), converted exactly
// as `clock::transaction_now` converts the transaction time. The tables are named by where
// this node keeps their rows (under Citus, the local placements: `citus::local_placement`).
fn load_query(key_store: &str, account_issuers: &str) -> String {
    format!(
        "SELECT pg_catalog.jsonb_build_array(\
         (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(kid, jwk, issuer, audience, \
           (EXTRACT(EPOCH FROM valid_from) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8, \
           (EXTRACT(EPOCH FROM valid_until) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8, source) ORDER BY kid) \
          FROM {key_store}), \
         (SELECT pg_catalog.jsonb_agg(issuer ORDER BY issuer) FROM {account_issuers}))"
    )
}

/// The audience that accepts any `aud` (or none): a choice made explicitly at `add_key`.
pub const ANY_AUDIENCE: &str = "*";

/// Together with the key store, the declared account issuers decide what a token may act as.
pub const TABLES: [&Watched; 2] = [&KEY_STORE, &ACCOUNT_ISSUERS];

/// The current key set, reloaded if a key changed since it was loaded.
#[allow(static_mut_refs)]
pub fn current() -> &'static LoadedKeys {
    // SAFETY: a backend is single-threaded; the reference is not held across a reload.
    unsafe {
        if !LOADED.as_ref().is_some_and(|k| k.loaded.is_fresh(&TABLES)) {
            LOADED = Some(load());
        }
        LOADED.as_ref().unwrap()
    }
}

fn load() -> LoadedKeys {
    crate::invalidation::watch_all();
    let fresh = Freshness::take(&TABLES);
    let query = load_query(
        &crate::citus::local_placement(&KEY_STORE).qualified(KEY_STORE.relname),
        &crate::citus::local_placement(&ACCOUNT_ISSUERS).qualified(ACCOUNT_ISSUERS.relname),
    );
    let rows: Option<JsonB> = privilege::as_owner(|| {
        Spi::connect(|client| {
            client
                .select(&query, Some(1), &[])?
                .first()
                .get_one::<JsonB>()
        })
    })
    .unwrap_or_else(|e| pgrx::error!("auth_ext: cannot read auth.key_store: {e}"));
    let loaded = rows.map(|j| j.0).unwrap_or(Value::Null);
    let mut hasher = DefaultHasher::new();
    loaded.to_string().hash(&mut hasher);
    let rows = loaded[0].clone();
    let account_issuers = loaded[1]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let mut set = KeySet::new();
    let mut generated = std::collections::HashSet::new();
    for row in rows.as_array().into_iter().flatten() {
        let kid = row[0].as_str().unwrap_or("?");
        if row[6] == "generated" {
            generated.insert(kid.to_string());
        }
        let entry = Jwk::parse(&row[1]).and_then(|jwk| {
            let audience = audience_binding(&row[3])?;
            KeyEntry::new(jwk, row[2].as_str().map(String::from), audience)
        });
        match entry {
            Ok(e) => {
                let e = e.with_validity(micros_to_unix(&row[4]), micros_to_unix(&row[5]));
                if let Err(err) = set.insert(e) {
                    crate::errors::log_server_only(&format!(
                        "auth_ext: key {kid} in auth.key_store ignored: {}",
                        err.detail
                    ));
                }
            }
            // Rows written by hand bypass add_key's checks; refuse them without breaking auth.
            Err(err) => crate::errors::log_server_only(&format!(
                "auth_ext: key {kid} in auth.key_store ignored: {}",
                err.detail
            )),
        }
    }
    LoadedKeys {
        set,
        generated,
        account_issuers,
        fingerprint: hasher.finish(),
        loaded: fresh,
    }
}

/// The stored audience as the core's binding: `{*}` is any audience (`None`); a row without
/// an audience (written by hand; the 0.2.0 upgrade gave 0.1.0's keys `{*}`) is refused rather than
/// taken as "any".
fn audience_binding(v: &Value) -> auth_core::Result<Option<Vec<String>>> {
    let list: Vec<String> = v
        .as_array()
        .ok_or_else(|| auth_core::AuthError::invalid_parameter("the key has no audience binding"))?
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    Ok((list != [ANY_AUDIENCE]).then_some(list))
}

fn micros_to_unix(v: &Value) -> Option<f64> {
    v.as_i64().map(clock::unix_seconds_from_micros)
}

/// Issuers that name local identities in `auth.identities` (provider column): a key bound to
/// one could assert those accounts.
const LOCAL_PROVIDERS: [&str; 3] = ["email", "phone", "anonymous"];

fn check_binding(issuer: Option<&str>, audience: &Option<Vec<String>>) {
    if let Some(i) = issuer {
        if i.is_empty() {
            invalid_parameter("issuer must not be empty (use NULL for no issuer check)");
        }
        if LOCAL_PROVIDERS.contains(&i) {
            invalid_parameter(format!(
                "issuer {i:?} names this database's own sign-in method; use the identity provider's issuer"
            ));
        }
        if i == crate::gucs::issuer() {
            invalid_parameter(
                "issuer is this database's own (auth.issuer); its keys are made by auth.generate_signing_key()",
            );
        }
    }
    match audience {
        None => invalid_parameter(
            "audience is required: the aud values this key's tokens must carry (e.g. ARRAY['authenticated']), or ARRAY['*'] to accept any aud",
        ),
        Some(a) if a.is_empty() || a.iter().any(|s| s.is_empty()) => {
            invalid_parameter("audience must be a non-empty array of non-empty strings")
        }
        Some(a) if a.len() > 1 && a.iter().any(|s| s == ANY_AUDIENCE) => {
            invalid_parameter("audience '*' (any) stands alone")
        }
        Some(_) => {}
    }
}

/// Inserts or refreshes one key. The same kid with different key material is refused: a
/// provider never reuses a kid, so that is a mistake or an attack.
fn upsert(jwk: &Jwk, issuer: Option<&str>, audience: &Option<Vec<String>>, source: &str) {
    let existing: Option<String> = spi::run(|c| {
        let t = c.select(
            "SELECT thumbprint FROM auth.key_store WHERE kid = $1",
            None,
            &[jwk.kid.as_str().into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        t.first().get_one::<String>()
    });
    let details = serde_json::json!({"kid": jwk.kid, "alg": jwk.alg.name(), "source": source, "issuer": issuer});
    match existing {
        Some(t) if t != jwk.thumbprint => invalid_parameter(format!(
            "kid {} already names a different key; retire it and use a new kid",
            auth_core::jws::printable(&jwk.kid)
        )),
        Some(_) => {
            // Only when something changes: a periodic re-import neither invalidates every
            // backend's key cache nor fills the audit log.
            let changed = spi::run(|c| {
                c.update(
                    "UPDATE auth.key_store SET issuer = $2, audience = $3, valid_until = NULL, valid_from = LEAST(valid_from, $4) \
                     WHERE kid = $1 AND (issuer IS DISTINCT FROM $2 OR audience IS DISTINCT FROM $3 \
                                         OR valid_until IS NOT NULL OR valid_from > $4)",
                    None,
                    &[
                        jwk.kid.as_str().into(),
                        issuer.into(),
                        audience.clone().into(),
                        // now(), as a parameter: Citus refuses now() next to a column in
                        // writes to a reference table.
                        crate::clock::transaction_now_param().into(),
                    ],
                )
                .map(|t| t.len())
            });
            if changed > 0 {
                audit::record("key_updated", None, None, details);
            }
        }
        None => {
            Spi::run_with_args(
                "INSERT INTO auth.key_store (kid, alg, kty, jwk, thumbprint, issuer, audience, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    jwk.kid.as_str().into(),
                    jwk.alg.name().into(),
                    jwk.kty().into(),
                    JsonB(jwk.to_json()).into(),
                    jwk.thumbprint.as_str().into(),
                    issuer.into(),
                    audience.clone().into(),
                    source.into(),
                ],
            )
            .or_fail();
            audit::record("key_added", None, None, details);
        }
    }
}

/// Adds a verification key (public JWK, or an `oct` secret) and returns its kid.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn add_key(
    jwk: JsonB,
    issuer: default!(Option<&str>, "NULL"),
    audience: default!(Option<Vec<String>>, "NULL"),
) -> String {
    let jwk = Jwk::parse(&jwk.0).or_raise();
    check_binding(issuer, &audience);
    upsert(&jwk, issuer, &audience, "add_key");
    jwk.kid
}

/// Adds or refreshes every key of a JWKS document; returns how many keys it holds.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn import_jwks(
    jwks: JsonB,
    issuer: default!(Option<&str>, "NULL"),
    audience: default!(Option<Vec<String>>, "NULL"),
) -> i32 {
    let keys = parse_jwks(&jwks.0).or_raise();
    check_binding(issuer, &audience);
    for jwk in &keys {
        upsert(jwk, issuer, &audience, "import_jwks");
    }
    keys.len() as i32
}

/// Stops accepting tokens signed with `kid` from `at` on (compared with transaction time).
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn retire_key(kid: &str, at: default!(pgrx::datum::TimestampWithTimeZone, "now()")) {
    // No row limit: SPI's count stops a DML statement early, and then its AFTER STATEMENT
    // trigger (the cache invalidation) never fires.
    let updated = spi::run(|c| {
        c.update(
            "UPDATE auth.key_store SET valid_until = $2 WHERE kid = $1",
            None,
            &[kid.into(), at.into()],
        )
        .map(|t| t.len())
    });
    if updated == 0 {
        invalid_parameter(format!(
            "no key with kid {}",
            auth_core::jws::printable(kid)
        ));
    }
    audit::record(
        "key_retired",
        None,
        None,
        serde_json::json!({"kid": kid, "at": at.to_string()}),
    );
}
