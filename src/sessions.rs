//! Sessions with rotating refresh tokens: the token response of a sign-in, `auth.refresh` and
//! `auth.sign_out`. The privileged operations that need no Rust (`auth.jwks`,
//! `auth.revoke_session`, `auth.ban_user`, `auth.purge_expired`) are SQL in
//! `sql/060_session_admin.sql`.
//!
//! Refresh tokens are opaque 256-bit values stored as SHA-256. A token's successor is
//! HMAC(secret, token), so presenting a just-rotated token again within
//! `auth.refresh_reuse_interval_seconds` (a client retrying) yields the same successor without
//! storing any token; presenting it later is reuse, and revokes the whole session.

use crate::autonomous::{self, Op};
use crate::errors::{invalid_parameter, raise, OrRaise};
use crate::spi::{self, OrFail};
use crate::{audit, binding, clock, gucs, signing_keys};
use auth_core::signing;
use auth_core::{AuthError, ErrorCode};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Map, Value};

/// The secret of the refresh-token chain, made on first use.
fn refresh_secret() -> Vec<u8> {
    crate::secrets::get("refresh_chain")
}

/// The user as token claims and as the `user` of a token response.
pub fn user_json(user_id: Uuid) -> Value {
    Spi::get_one_with_args::<JsonB>(
        "SELECT jsonb_build_object('id', id, 'email', email, 'phone', phone,
                'email_confirmed_at', email_confirmed_at, 'last_sign_in_at', last_sign_in_at,
                'created_at', created_at, 'updated_at', updated_at, 'is_anonymous', is_anonymous,
                'app_metadata', (CASE WHEN is_anonymous
                                      THEN '{\"provider\": \"anonymous\", \"providers\": [\"anonymous\"]}'
                                      ELSE '{\"provider\": \"email\", \"providers\": [\"email\"]}' END)::pg_catalog.jsonb
                                 || raw_app_meta_data,
                'user_metadata', raw_user_meta_data)
           FROM auth.users WHERE id = $1",
        &[user_id.into()],
    )
    .or_fail()
    .map(|j| j.0)
    .unwrap_or(Value::Null)
}

/// The session's assurance level and its `amr` claim: the methods that authenticated it,
/// newest first (`auth.mfa_amr_claims`; a session older than that table has none, and gets
/// `fallback` at `now`).
fn assurance(session_id: Uuid, fallback: &str, now: i64) -> (String, Value) {
    let row = Spi::get_two_with_args::<String, JsonB>(
        "SELECT s.aal::pg_catalog.text,
                (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                            'method', a.authentication_method,
                            'timestamp', EXTRACT(EPOCH FROM a.updated_at)::pg_catalog.int8)
                          ORDER BY a.updated_at DESC, a.authentication_method)
                   FROM auth.mfa_amr_claims a WHERE a.session_id = s.id)
           FROM auth.sessions s WHERE s.id = $1",
        &[session_id.into()],
    )
    .or_fail();
    let aal = row.0.unwrap_or_else(|| "aal1".into());
    let amr = row
        .1
        .map(|j| j.0)
        .unwrap_or_else(|| json!([{"method": fallback, "timestamp": now}]));
    (aal, amr)
}

/// `{access_token, token_type, expires_in, expires_at, refresh_token, user}` for a session.
pub fn token_response(user_id: Uuid, session_id: Uuid, refresh_token: &str, method: &str) -> JsonB {
    let user = user_json(user_id);
    let (signer, issuer) = signing_keys::signer(None);
    let now = clock::transaction_now_secs();
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
    let (aal, amr) = assurance(session_id, method, now);
    claims.insert("aal".into(), json!(aal));
    claims.insert("amr".into(), amr);
    claims.insert("session_id".into(), json!(session_id.to_string()));
    claims.insert(
        "is_anonymous".into(),
        json!(user["is_anonymous"].as_bool().unwrap_or(false)),
    );
    claims.insert(
        "jti".into(),
        json!(
            Uuid::from_bytes(auth_core::random::bytes(16).try_into().expect("16 bytes"))
                .to_string()
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

/// Records that `method` authenticated the session now (its `amr` claim).
// excluded.updated_at (the default now()), not now(): Citus refuses functions in DO UPDATE
// on reference tables.
pub fn record_method(
    c: &mut pgrx::spi::SpiClient<'_>,
    session_id: Uuid,
    method: &str,
) -> pgrx::spi::Result<()> {
    c.update(
        "INSERT INTO auth.mfa_amr_claims (session_id, authentication_method) VALUES ($1, $2)
         ON CONFLICT (session_id, authentication_method) DO UPDATE SET updated_at = excluded.updated_at",
        None,
        &[session_id.into(), method.into()],
    )?;
    Ok(())
}

/// A new token response for a live session whose assurance changed (auth.mfa_verify): a
/// new refresh token for the session, and an access token with its current aal and amr.
pub fn reissue(user_id: Uuid, session_id: Uuid) -> JsonB {
    let token = signing::new_refresh_token();
    spi::run(|c| new_refresh_row(c, session_id, &token, None));
    token_response(user_id, session_id, &token, "password")
}

/// Starts a session for a user who just signed in; returns the token response.
pub fn start_session(user_id: Uuid, method: &str) -> JsonB {
    let token = signing::new_refresh_token();
    let session_id = spi::run(|c| {
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
        record_method(c, sid, method)?;
        Ok::<_, pgrx::spi::Error>(sid)
    });
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
    crate::stats::begin(crate::stats::REFRESHES);
    crate::errors::require_writable("auth.refresh");
    let hash = signing::token_hash(refresh_token);
    // The row lock makes concurrent refreshes of one token take turns: exactly one rotates.
    // Taken in a subtransaction that is rolled back when the token is being reused: the
    // bookkeeping worker must then revoke the session, and under Citus the lock on a
    // refresh token also locks the sessions it references (a wait nobody would detect).
    let p = spi::in_subtransaction(
        || {
            spi::run(|c| {
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
        },
        |p| !p.as_ref().is_some_and(|p| p.rotated && !p.within_reuse),
    );
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
        crate::stats::count(crate::stats::REVOCATIONS, "refresh_reuse", 1);
        crate::stats::settle(crate::stats::REFRESHES, "reuse_detected");
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
            let rotated: Option<bool> = spi::run(|c| {
                let t = c.select(
                    "SELECT rotated_at IS NOT NULL FROM auth.refresh_tokens WHERE token_hash = $1 AND session_id = $2",
                    None,
                    &[signing::token_hash(&next).into(), p.session_id.into()],
                )?;
                if t.is_empty() {
                    return Ok(None);
                }
                t.first().get_one::<bool>()
            });
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
        spi::run(|c| {
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
        });
        audit::record(
            "token_refreshed",
            Some(p.user_id),
            Some(p.session_id),
            json!({}),
        );
    }
    let response = token_response(p.user_id, p.session_id, &next, "refresh");
    crate::stats::ok(crate::stats::REFRESHES);
    response
}

/// The user and session of the bound token, which must be one this database issued: sessions
/// of other issuers are theirs to end, and their subjects are not our users.
pub fn bound_session() -> (Uuid, Uuid) {
    let b = binding::current()
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
    let n = spi::run(|c| {
        c.update(
            &format!(
                "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'sign_out'
                  WHERE user_id = $1 AND revoked_at IS NULL AND {filter}"
            ),
            None,
            &[uid.into(), sid.into()],
        )
        .map(|t| t.len() as i64)
    });
    audit::record(
        "signed_out",
        Some(uid),
        Some(sid),
        json!({"scope": scope, "sessions": n}),
    );
    n
}
