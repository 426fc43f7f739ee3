//! Tokens and sessions: our signing keys (`auth.generate_signing_key`, `auth.sign`), sessions
//! with rotating refresh tokens (`auth.refresh`) and `auth.sign_out`. The privileged
//! operations that need no Rust (`auth.jwks`, `auth.revoke_session`, `auth.ban_user`,
//! `auth.purge_expired`) are SQL in `sql/060_session_admin.sql`.
//!
//! Refresh tokens are opaque 256-bit values stored as SHA-256. A token's successor is
//! HMAC(secret, token), so presenting a just-rotated token again within
//! `auth.refresh_reuse_interval_seconds` (a client retrying) yields the same successor without
//! storing any token; presenting it later is reuse, and revokes the whole session.

use crate::autonomous::{self, Op};
use crate::errors::{invalid_parameter, raise, spi_failed, OrRaise};
use crate::{audit, gucs, identity};
use auth_core::signing::{self, Signer};
use auth_core::{Alg, AuthError, ErrorCode};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Signing keys

/// The private halves of our signing keys. Which of them is active, and for which issuer,
/// is the verification key set's business (`keys::current()`): one source of truth.
struct SignerCache {
    keys_gen: u64,
    trust_until_xact: Option<u64>,
    /// Oldest first.
    signers: Vec<Signer>,
}

static mut SIGNERS: Option<SignerCache> = None;

/// Our signing keys, loaded as the owner (callers are SECURITY DEFINER functions) when the
/// key store changes, like the verification keys.
#[allow(static_mut_refs)]
fn signers() -> &'static [Signer] {
    use crate::invalidation::{KEY_STORE, XACT_GEN};
    let xact = XACT_GEN.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: backends are single-threaded.
    unsafe {
        let fresh = SIGNERS.as_ref().is_some_and(|s| {
            s.keys_gen == KEY_STORE.gen() && s.trust_until_xact.is_none_or(|x| x == xact)
        });
        if !fresh {
            // Watch the key store from now on, so that a key made later is seen.
            KEY_STORE.watch();
            let (keys_gen, trust_until_xact) = (KEY_STORE.gen(), KEY_STORE.trust_until_xact());
            let rows: Vec<(String, String, Vec<u8>)> = Spi::connect(|c| {
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
            })
            .unwrap_or_else(|e| spi_failed(e));
            let signers = rows
                .into_iter()
                .map(|(kid, alg, private)| {
                    let alg = Alg::from_name(&alg)
                        .unwrap_or_else(|| invalid_parameter("unknown signing key alg"));
                    Signer::new(&kid, alg, &private).or_raise()
                })
                .collect();
            SIGNERS = Some(SignerCache {
                keys_gen,
                trust_until_xact,
                signers,
            });
        }
        &SIGNERS.as_ref().unwrap().signers
    }
}

/// `signer` with the issuer its key verifies, if the key is active at the transaction time.
fn if_active(signer: &'static Signer) -> Option<(&'static Signer, String)> {
    let entry = crate::keys::current().set.get(&signer.kid)?;
    entry
        .active_at(identity::transaction_now())
        .then(|| (signer, entry.issuer.clone().unwrap_or_default()))
}

/// The newest active signing key.
fn current_signer() -> Option<(&'static Signer, String)> {
    signers().iter().rev().find_map(if_active)
}

fn generate(alg: Alg) -> String {
    let k = signing::generate(alg).or_raise();
    let kid = k.public.kid.clone();
    Spi::connect_mut(|c| {
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
    })
    .unwrap_or_else(|e| spi_failed(e));
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
fn signer(kid: Option<&str>) -> (&'static Signer, String) {
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

fn now_secs() -> i64 {
    identity::transaction_now().floor() as i64
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
    let now = now_secs();
    let (signer, issuer) = signer(kid);
    claims.entry("iss").or_insert(json!(issuer));
    claims.entry("iat").or_insert_with(|| json!(now));
    claims
        .entry("exp")
        .or_insert_with(|| json!(now + gucs::ACCESS_TOKEN_SECONDS.get() as i64));
    signer.sign(&claims).or_raise()
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// The secret of the refresh-token chain, made on first use.
fn refresh_secret() -> Vec<u8> {
    const READ: &str = "SELECT value FROM auth.secrets WHERE name = 'refresh_chain'";
    Spi::connect_mut(|c| {
        let t = c.update(READ, None, &[])?;
        if !t.is_empty() {
            return t.first().get_one::<Vec<u8>>();
        }
        // A concurrent first use waits on the conflict; the re-read sees the winner's secret.
        c.update(
            "INSERT INTO auth.secrets (name, value) VALUES ('refresh_chain', $1) ON CONFLICT (name) DO NOTHING",
            None,
            &[signing::random_bytes(32).into()],
        )?;
        c.update(READ, None, &[])?.first().get_one::<Vec<u8>>()
    })
    .unwrap_or_else(|e| spi_failed(e))
    .expect("the secret was just ensured")
}

/// The user as token claims and as the `user` of a token response.
fn user_json(user_id: Uuid) -> Value {
    Spi::get_one_with_args::<JsonB>(
        "SELECT jsonb_build_object('id', id, 'email', email, 'phone', phone,
                'email_confirmed_at', email_confirmed_at, 'last_sign_in_at', last_sign_in_at,
                'created_at', created_at, 'updated_at', updated_at,
                'app_metadata', '{\"provider\": \"email\", \"providers\": [\"email\"]}'::pg_catalog.jsonb || raw_app_meta_data,
                'user_metadata', raw_user_meta_data)
           FROM auth.users WHERE id = $1",
        &[user_id.into()],
    )
    .unwrap_or_else(|e| spi_failed(e))
    .map(|j| j.0)
    .unwrap_or(Value::Null)
}

/// `{access_token, token_type, expires_in, expires_at, refresh_token, user}` for a session.
fn token_response(user_id: Uuid, session_id: Uuid, refresh_token: &str, method: &str) -> JsonB {
    let user = user_json(user_id);
    let (signer, issuer) = signer(None);
    let now = now_secs();
    let ttl = gucs::ACCESS_TOKEN_SECONDS.get() as i64;
    let mut claims = Map::new();
    claims.insert("aud".into(), json!("authenticated"));
    claims.insert("exp".into(), json!(now + ttl));
    claims.insert("iat".into(), json!(now));
    claims.insert("iss".into(), json!(issuer));
    claims.insert("sub".into(), json!(user_id.to_string()));
    claims.insert("email".into(), user["email"].clone());
    claims.insert("phone".into(), json!(user["phone"].as_str().unwrap_or("")));
    claims.insert("app_metadata".into(), user["app_metadata"].clone());
    claims.insert("user_metadata".into(), user["user_metadata"].clone());
    claims.insert("role".into(), json!("authenticated"));
    claims.insert("aal".into(), json!("aal1"));
    claims.insert("amr".into(), json!([{"method": method, "timestamp": now}]));
    claims.insert("session_id".into(), json!(session_id.to_string()));
    claims.insert("is_anonymous".into(), json!(false));
    claims.insert(
        "jti".into(),
        json!(
            Uuid::from_bytes(signing::random_bytes(16).try_into().expect("16 bytes")).to_string()
        ),
    );
    let access = signer.sign(&claims).or_raise();
    JsonB(json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": ttl,
        "expires_at": now + ttl,
        "refresh_token": refresh_token,
        "user": user,
    }))
}

fn new_refresh_row(
    c: &mut pgrx::spi::SpiClient<'_>,
    session_id: Uuid,
    token: &str,
    parent: Option<i64>,
) -> pgrx::spi::Result<()> {
    c.update(
        "INSERT INTO auth.refresh_tokens (session_id, token_hash, parent_id, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        None,
        &[
            session_id.into(),
            signing::token_hash(token).into(),
            parent.into(),
            (gucs::REFRESH_TOKEN_SECONDS.get() as f64).into(),
        ],
    )?;
    Ok(())
}

/// Starts a session for a user who just signed in; returns the token response.
pub fn start_session(user_id: Uuid, method: &str) -> JsonB {
    let token = signing::new_refresh_token();
    let session_id = Spi::connect_mut(|c| {
        let sid = c
            .update(
                "INSERT INTO auth.sessions (user_id) VALUES ($1) RETURNING id",
                None,
                &[user_id.into()],
            )?
            .first()
            .get_one::<Uuid>()?
            .expect("RETURNING id");
        new_refresh_row(c, sid, &token, None)?;
        Ok::<_, pgrx::spi::Error>(sid)
    })
    .unwrap_or_else(|e| spi_failed(e));
    audit::record(
        "signed_in",
        Some(user_id),
        Some(session_id),
        json!({"method": method}),
    );
    token_response(user_id, session_id, &token, method)
}

struct Presented {
    id: i64,
    session_id: Uuid,
    user_id: Uuid,
    expired: bool,
    rotated: bool,
    within_reuse: bool,
    session_dead: bool,
    user_blocked: bool,
}

fn revoked(detail: &str) -> ! {
    raise(AuthError::new(ErrorCode::TokenRevoked, detail))
}

/// Exchanges a refresh token for a new access token and a new refresh token.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn refresh(refresh_token: &str) -> JsonB {
    crate::errors::require_writable("auth.refresh");
    let hash = signing::token_hash(refresh_token);
    // The row lock makes concurrent refreshes of one token take turns: exactly one rotates.
    let p = Spi::connect_mut(|c| {
        let t = c.update(
            "SELECT rt.id, rt.session_id, s.user_id, rt.expires_at <= now(), rt.rotated_at IS NOT NULL,
                    rt.rotated_at > now() - make_interval(secs => $2),
                    s.revoked_at IS NOT NULL OR coalesce(s.not_after <= now(), false),
                    u.deleted_at IS NOT NULL OR coalesce(u.banned_until > now(), false)
               FROM auth.refresh_tokens rt
               JOIN auth.sessions s ON s.id = rt.session_id
               JOIN auth.users u ON u.id = s.user_id
              WHERE rt.token_hash = $1
              FOR UPDATE OF rt",
            Some(1),
            &[hash.into(), (gucs::REFRESH_REUSE_INTERVAL_SECONDS.get() as f64).into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        let r = t.first();
        Ok::<_, pgrx::spi::Error>(Some(Presented {
            id: r.get::<i64>(1)?.unwrap_or(0),
            session_id: r.get::<Uuid>(2)?.expect("not null"),
            user_id: r.get::<Uuid>(3)?.expect("not null"),
            expired: r.get::<bool>(4)?.unwrap_or(true),
            rotated: r.get::<bool>(5)?.unwrap_or(false),
            within_reuse: r.get::<bool>(6)?.unwrap_or(false),
            session_dead: r.get::<bool>(7)?.unwrap_or(true),
            user_blocked: r.get::<bool>(8)?.unwrap_or(true),
        }))
    })
    .unwrap_or_else(|e| spi_failed(e));
    let Some(p) = p else {
        raise(AuthError::invalid_token("unknown refresh token"))
    };
    if p.session_dead {
        revoked("the session has been revoked or has ended");
    }
    if p.user_blocked {
        revoked("the user is banned or deleted");
    }
    if p.rotated && !p.within_reuse {
        // Reuse of a rotated token: someone else may hold the chain. End the session, and make
        // that stick although this call fails; if that cannot be recorded, say so (the token
        // is refused either way, and the next presentation tries again).
        autonomous::run_or_refuse(&[Op::RevokeSession {
            session_id: p.session_id.to_string(),
            user_id: p.user_id.to_string(),
            reason: "refresh_token_reused".into(),
        }]);
        revoked("refresh token reused; the session has been revoked");
    }
    if p.expired {
        raise(AuthError::new(
            ErrorCode::TokenExpired,
            "the refresh token has expired",
        ));
    }
    let secret = refresh_secret();
    let mut next = signing::successor(&secret, refresh_token);
    if p.rotated {
        // A retry within the reuse interval: answer with the chain's live token. Usually the
        // direct successor; if that was refreshed meanwhile too, follow the chain (each link
        // is the HMAC of the previous one, so no token needs to be stored to find it).
        let mut live = false;
        for _ in 0..16 {
            let rotated: Option<bool> = Spi::connect(|c| {
                let t = c.select(
                    "SELECT rotated_at IS NOT NULL FROM auth.refresh_tokens WHERE token_hash = $1 AND session_id = $2",
                    None,
                    &[signing::token_hash(&next).into(), p.session_id.into()],
                )?;
                if t.is_empty() {
                    return Ok(None);
                }
                t.first().get_one::<bool>()
            })
            .unwrap_or_else(|e: pgrx::spi::Error| spi_failed(e));
            match rotated {
                Some(false) => {
                    live = true;
                    break;
                }
                Some(true) => next = signing::successor(&secret, &next),
                None => break,
            }
        }
        if !live {
            revoked("the refresh token's session has no live token; sign in again");
        }
    } else {
        Spi::connect_mut(|c| {
            c.update(
                "UPDATE auth.refresh_tokens SET rotated_at = now() WHERE id = $1",
                None,
                &[p.id.into()],
            )?;
            new_refresh_row(c, p.session_id, &next, Some(p.id))?;
            c.update(
                "UPDATE auth.sessions SET refreshed_at = now() WHERE id = $1",
                None,
                &[p.session_id.into()],
            )?;
            Ok::<_, pgrx::spi::Error>(())
        })
        .unwrap_or_else(|e| spi_failed(e));
        audit::record(
            "token_refreshed",
            Some(p.user_id),
            Some(p.session_id),
            json!({}),
        );
    }
    token_response(p.user_id, p.session_id, &next, "refresh")
}

/// The user and session of the bound token, which must be one this database issued: sessions
/// of other issuers are theirs to end, and their subjects are not our users.
fn bound_session() -> (Uuid, Uuid) {
    let b = identity::current()
        .unwrap_or_else(|| raise(AuthError::invalid_token("no token is bound (set auth.jwt)")));
    let sid = b.our_session().unwrap_or_else(|| {
        raise(AuthError::invalid_claims(
            "auth.sign_out needs a token this database issued (signed by its own key, with a session_id)",
        ))
    });
    let uid = match b.ident.uid {
        auth_core::Uid::Uuid(bytes) => Uuid::from_bytes(bytes),
        _ => raise(AuthError::invalid_claims(
            "sub is not a user id of this database",
        )),
    };
    (uid, sid)
}

/// Signs the bound user out: 'local' ends this session, 'global' all of the user's sessions,
/// 'others' all but this one. Their refresh tokens stop working and their access tokens are
/// TOKEN_REVOKED in every backend by the next statement.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign_out(scope: default!(&str, "'local'")) -> i64 {
    crate::errors::require_writable("auth.sign_out");
    let (uid, sid) = bound_session();
    let filter = match scope {
        "local" => "id = $2",
        "global" => "true",
        "others" => "id <> $2",
        _ => invalid_parameter("scope must be 'local', 'global' or 'others'"),
    };
    let n = Spi::connect_mut(|c| {
        c.update(
            &format!(
                "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'sign_out'
                  WHERE user_id = $1 AND revoked_at IS NULL AND {filter}"
            ),
            None,
            &[uid.into(), sid.into()],
        )
        .map(|t| t.len() as i64)
    })
    .unwrap_or_else(|e| spi_failed(e));
    audit::record(
        "signed_out",
        Some(uid),
        Some(sid),
        json!({"scope": scope, "sessions": n}),
    );
    n
}
