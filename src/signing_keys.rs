//! Our own signing keys: `auth.generate_signing_key` and `auth.sign`, and the signer every
//! token this database issues is signed with. The private halves live in `auth.signing_keys`
//! (owner only); which key is active, and for which issuer, is the verification key set's
//! business (`keys::current()`): one source of truth.

use crate::errors::{invalid_parameter, raise, OrRaise};
use crate::invalidation::{Freshness, KEY_STORE};
use crate::spi;
use crate::{audit, clock, gucs, keys};
use auth_core::signing::{self, Signer};
use auth_core::{Alg, AuthError, ErrorCode};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// The private halves of our signing keys, as loaded.
struct SignerCache {
    loaded: Freshness,
    /// Oldest first.
    signers: Vec<Signer>,
}

static mut SIGNERS: Option<SignerCache> = None;

/// Our signing keys, loaded as the owner (callers are SECURITY DEFINER functions) when the
/// key store changes, like the verification keys.
#[allow(static_mut_refs)]
fn signers() -> &'static [Signer] {
    // SAFETY: backends are single-threaded.
    unsafe {
        if !SIGNERS
            .as_ref()
            .is_some_and(|s| s.loaded.is_fresh(&[&KEY_STORE]))
        {
            // Watch the key store from now on, so that a key made later is seen.
            crate::invalidation::watch_all();
            let loaded = Freshness::take(&[&KEY_STORE]);
            let rows: Vec<(String, String, Vec<u8>)> = spi::run(|c| {
                c.select(
                    "SELECT kid, alg, private_key FROM auth.signing_keys ORDER BY created_at, kid",
                    None,
                    &[],
                )?
                .map(|r| {
                    Ok((
                        r.get::<String>(1)?.unwrap_or_default(),
                        r.get::<String>(2)?.unwrap_or_default(),
                        r.get::<Vec<u8>>(3)?.unwrap_or_default(),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
            });
            let signers = rows
                .into_iter()
                .map(|(kid, alg, private)| {
                    let alg = Alg::from_name(&alg)
                        .unwrap_or_else(|| invalid_parameter("unknown signing key alg"));
                    Signer::new(&kid, alg, &private).or_raise()
                })
                .collect();
            SIGNERS = Some(SignerCache { loaded, signers });
        }
        &SIGNERS.as_ref().unwrap().signers
    }
}

/// `signer` with the issuer its key verifies, if the key is active at the transaction time.
fn if_active(signer: &'static Signer) -> Option<(&'static Signer, String)> {
    let entry = keys::current().set.get(&signer.kid)?;
    entry
        .active_at(clock::transaction_now())
        .then(|| (signer, entry.issuer.clone().unwrap_or_default()))
}

/// The newest active signing key.
fn current_signer() -> Option<(&'static Signer, String)> {
    signers().iter().rev().find_map(if_active)
}

fn generate(alg: Alg) -> String {
    let k = signing::generate(alg).or_raise();
    let kid = k.public.kid.clone();
    spi::run(|c| {
        c.update(
            "INSERT INTO auth.key_store (kid, alg, kty, jwk, thumbprint, issuer, audience, source)
             VALUES ($1, $2, $3, $4, $5, $6, ARRAY['authenticated'], 'generated')",
            None,
            &[
                kid.as_str().into(),
                alg.name().into(),
                k.public.kty().into(),
                JsonB(k.public.to_json()).into(),
                k.public.thumbprint.as_str().into(),
                gucs::issuer().into(),
            ],
        )?;
        c.update(
            // clock_timestamp: of keys made in one transaction, the last one made signs.
            "INSERT INTO auth.signing_keys (kid, alg, private_key, created_at)
             VALUES ($1, $2, $3, clock_timestamp())",
            None,
            &[
                kid.as_str().into(),
                alg.name().into(),
                k.private.to_vec().into(),
            ],
        )?;
        Ok::<_, pgrx::spi::Error>(())
    });
    audit::record(
        "signing_key_generated",
        None,
        None,
        json!({"kid": kid, "alg": alg.name()}),
    );
    kid
}

/// The signer for `kid`, or the current one, with its issuer. Never makes a key: issuing
/// tokens is set up explicitly, by `auth.generate_signing_key()`.
pub fn signer(kid: Option<&str>) -> (&'static Signer, String) {
    if let Some(k) = kid {
        let Some(s) = signers().iter().find(|s| s.kid == k) else {
            invalid_parameter(format!("no signing key {}", auth_core::jws::printable(k)))
        };
        return if_active(s).unwrap_or_else(|| {
            invalid_parameter(format!(
                "signing key {} is retired or not yet valid",
                auth_core::jws::printable(k)
            ))
        });
    }
    current_signer().unwrap_or_else(|| {
        raise(AuthError::new(
            ErrorCode::NotConfigured,
            "no active signing key; the extension owner creates one with SELECT auth.generate_signing_key()",
        ))
    })
}

/// NOT_CONFIGURED unless a signing key is active: checked before a sign-in judges anything.
pub fn require_signing_key() {
    signer(None);
}

/// Generates a signing key (ES256, EdDSA, RS256 with 2048 bits, or HS256), trusts it for
/// verification (issuer `auth.issuer`, audience `authenticated`), and makes it the key that
/// signs from now on. Older keys keep verifying until retired. Returns its kid.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn generate_signing_key(alg: default!(&str, "'ES256'")) -> String {
    let alg = Alg::from_name(alg)
        .unwrap_or_else(|| invalid_parameter("alg must be ES256, EdDSA, RS256 or HS256"));
    generate(alg)
}

/// Signs `claims` with `kid` (default: the current signing key). Missing `iss`, `iat` and
/// `exp` are filled in (the key's issuer, now, now + auth.access_token_seconds). Whoever may call
/// this can mint any identity: owner only by default.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign(claims: JsonB, kid: default!(Option<&str>, "NULL")) -> String {
    let Value::Object(mut claims) = claims.0 else {
        invalid_parameter("claims must be a JSON object")
    };
    let now = clock::transaction_now_secs();
    let (signer, issuer) = signer(kid);
    claims.entry("iss").or_insert(json!(issuer));
    claims.entry("iat").or_insert_with(|| json!(now));
    claims
        .entry("exp")
        .or_insert_with(|| json!(now + gucs::ACCESS_TOKEN_SECONDS.get() as i64));
    signer.sign(&claims).or_raise()
}
