//! Credentials: `auth.hash_password`, `auth.verify_password`, `auth.password_needs_rehash`,
//! `auth.sign_up`, `auth.sign_in` with lockout, and `auth.ensure_user` for external IdPs.

use crate::account::Owner;
use crate::autonomous::{self, Op};
use crate::binding;
use crate::errors::{invalid_parameter, raise, OrRaise};
use crate::gucs;
use crate::spi::{self, OrFail};
use auth_core::password::{self, Argon2Params};
use auth_core::{AuthError, ErrorCode, Uid};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

pub const MAX_EMAIL_LEN: usize = 320;

/// Hashes `password` with argon2id (PHC string) using the `auth.argon2_*` parameters.
#[pg_extern(volatile, strict, parallel_safe)]
fn hash_password(password: &str) -> String {
    password::hash(password.as_bytes(), gucs::argon2_params()).or_raise()
}

/// Verifies `password` against an argon2 PHC string or a bcrypt `$2a$/$2b$/$2y$` hash.
/// A malformed or unsupported hash is an INVALID_PARAMETER error, not `false`.
// STABLE, not IMMUTABLE: an IMMUTABLE call with constant arguments would run an argon2
// verification inside the planner.
#[pg_extern(stable, strict, parallel_safe)]
fn verify_password(password: &str, hash: &str) -> bool {
    password::verify_with_limits(password.as_bytes(), hash, &gucs::verify_limits()).or_raise()
}

/// True for bcrypt hashes and argon2 hashes weaker than the current `auth.argon2_*` settings.
#[pg_extern(stable, strict, parallel_safe)]
fn password_needs_rehash(hash: &str) -> bool {
    password::needs_rehash_with_limits(hash, gucs::argon2_params(), &gucs::verify_limits())
        .or_raise()
}

/// A hash of a random password with the current parameters, verified when the email is
/// unknown so that such sign-ins cost what a wrong password costs.
fn dummy_hash(params: Argon2Params) -> String {
    static mut DUMMY: Option<(Argon2Params, String)> = None;
    // SAFETY: backends are single-threaded.
    #[allow(static_mut_refs)]
    unsafe {
        if let Some((p, h)) = &DUMMY {
            if *p == params {
                return h.clone();
            }
        }
        let h = password::hash(&auth_core::random::bytes(32), params).or_raise();
        DUMMY = Some((params, h.clone()));
        h
    }
}

pub fn check_email(email: &str) {
    let ok = email.len() <= MAX_EMAIL_LEN
        && email.chars().all(|c| !c.is_whitespace() && !c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !ok {
        invalid_parameter(format!(
            "email must look like name@domain, without spaces, at most {MAX_EMAIL_LEN} bytes"
        ));
    }
}

fn check_new_password(password: &str) {
    let min = gucs::MIN_PASSWORD_LENGTH.get() as usize;
    if password.chars().count() < min {
        invalid_parameter(format!(
            "password must be at least {min} characters (auth.min_password_length)"
        ));
    }
    if password.len() > password::MAX_PASSWORD_BYTES {
        invalid_parameter(format!(
            "password is longer than {} bytes",
            password::MAX_PASSWORD_BYTES
        ));
    }
}

/// Creates a user with an email and password; returns the user's id.
///
/// With `auth.require_email_confirmation` (the default) the user must confirm the email before
/// signing in: a confirmation goes to the outbox. A taken email then looks exactly like a new
/// sign-up to the caller (a fresh id that names no user; the same work is done), and the
/// outbox tells the address's owner instead: nobody learns which emails have accounts.
/// Without it, a taken email is INVALID_PARAMETER.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign_up(email: &str, password: &str, user_metadata: default!(JsonB, "'{}'")) -> Uuid {
    crate::errors::require_writable("auth.sign_up");
    check_email(email);
    check_new_password(password);
    if !user_metadata.0.is_object() {
        invalid_parameter("user_metadata must be a JSON object");
    }
    let hash = password::hash(password.as_bytes(), gucs::argon2_params()).or_raise();
    let created = create_user(email, Some(&hash), &user_metadata.0);
    if !gucs::REQUIRE_EMAIL_CONFIRMATION.get() {
        return created
            .unwrap_or_else(|| invalid_parameter("a user with this email already exists"));
    }
    match created {
        Some(id) => {
            crate::one_time::send_confirmation(email);
            id
        }
        None => {
            crate::one_time::notify_already_registered(email);
            Uuid::from_bytes(auth_core::random::bytes(16).try_into().expect("16 bytes"))
        }
    }
}

/// Creates a user with an email (unconfirmed) and optionally a password hash, with its 'email'
/// identity; `None` when the email is taken.
pub fn create_user(
    email: &str,
    hash: Option<&str>,
    user_metadata: &serde_json::Value,
) -> Option<Uuid> {
    spi::run(|c| {
        let id = c
            .update(
                "INSERT INTO auth.users (email, encrypted_password, raw_user_meta_data)
                 VALUES ($1, $2, $3) ON CONFLICT ((lower(email))) DO NOTHING RETURNING id",
                None,
                &[
                    email.into(),
                    hash.into(),
                    JsonB(user_metadata.clone()).into(),
                ],
            )?
            .first()
            .get_one::<Uuid>()
            .unwrap_or(None);
        if let Some(id) = id {
            c.update(
                "INSERT INTO auth.identities (user_id, provider, provider_id, identity_data)
                 VALUES ($1, 'email', $1::pg_catalog.text, jsonb_build_object('sub', $1::pg_catalog.text, 'email', $2::pg_catalog.text))",
                None,
                &[id.into(), email.into()],
            )?;
        }
        Ok::<_, pgrx::spi::Error>(id)
    })
}

/// Sets a user's password (checked like a new one), as a fresh argon2id hash.
pub fn set_password(user_id: Uuid, new_password: &str) {
    check_new_password(new_password);
    let hash = password::hash(new_password.as_bytes(), gucs::argon2_params()).or_raise();
    spi::run(|c| {
        c.update(
            "UPDATE auth.users SET encrypted_password = $2, updated_at = now() WHERE id = $1",
            None,
            &[user_id.into(), hash.as_str().into()],
        )?;
        Ok::<_, pgrx::spi::Error>(())
    });
}

struct StoredCredential {
    id: Uuid,
    hash: Option<String>,
    usable: bool,
    confirmed: bool,
}

fn invalid_credentials() -> ! {
    raise(AuthError::new(
        ErrorCode::InvalidCredentials,
        "unknown email, wrong password, or an account that cannot sign in",
    ))
}

/// Reserves this attempt (autonomous::Op::ReserveSignIn) before any password is judged:
/// ACCOUNT_LOCKED when the email is locked, TEMPORARILY_UNAVAILABLE when the attempt cannot
/// be recorded — never a verification that is not counted.
fn reserve_attempt(email: &str) -> autonomous::Reservation {
    let answer = autonomous::run_or_refuse(&[Op::ReserveSignIn {
        email: email.to_string(),
        max_failures: gucs::MAX_FAILED_SIGN_INS.get(),
        lockout_seconds: gucs::LOCKOUT_SECONDS.get(),
    }]);
    let r: autonomous::Reservation = answer
        .into_iter()
        .next()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_else(|| autonomous::Failure::Failed.refuse());
    if !r.allowed {
        raise(AuthError::new(
            ErrorCode::AccountLocked,
            format!(
                "too many failed sign-ins; locked until {}",
                r.locked_until.as_deref().unwrap_or("later")
            ),
        ));
    }
    r
}

/// Signs in with email (case-insensitive) and password, starts a session and returns
/// `{access_token, token_type, expires_in, expires_at, refresh_token, user}`. One error,
/// INVALID_CREDENTIALS, for an unknown email, a wrong password, a banned or deleted user — at
/// about the same cost, since unknown emails are checked against a dummy hash.
///
/// Fail closed: the attempt is reserved (committed by a worker of its own, so no rollback
/// or cancel undoes it) before the password is judged, and given back only on success; at
/// `auth.max_failed_sign_ins` the email is locked for `auth.lockout_seconds`
/// (ACCOUNT_LOCKED). An attempt that cannot be recorded is refused unjudged
/// (TEMPORARILY_UNAVAILABLE); a read-only transaction or a standby is refused before anything
/// (READ_ONLY).
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign_in(email: &str, password: &str) -> JsonB {
    crate::stats::begin(crate::stats::SIGN_INS);
    crate::errors::require_writable("auth.sign_in");
    if password.len() > password::MAX_PASSWORD_BYTES || email.len() > MAX_EMAIL_LEN {
        invalid_credentials();
    }
    // A sign-in that could only fail after judging the password must fail before.
    crate::signing_keys::require_signing_key();
    let reservation = reserve_attempt(email);

    let account = spi::run(|c| {
        let t = c.select(
            "SELECT id, encrypted_password,
                    deleted_at IS NULL AND (banned_until IS NULL OR banned_until <= now()),
                    email_confirmed_at IS NOT NULL
               FROM auth.users WHERE lower(email) = lower($1)",
            Some(1),
            &[email.into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        let row = t.first();
        Ok::<_, pgrx::spi::Error>(Some(StoredCredential {
            id: row.get::<Uuid>(1)?.expect("id is not null"),
            hash: row.get::<String>(2)?,
            usable: row.get::<bool>(3)?.unwrap_or(false),
            confirmed: row.get::<bool>(4)?.unwrap_or(false),
        }))
    });

    let params = gucs::argon2_params();
    let stored = account.as_ref().and_then(|a| a.hash.clone());
    let verified = match &stored {
        Some(h) => password::verify_with_limits(password.as_bytes(), h, &gucs::verify_limits())
            .unwrap_or_else(|e| {
                // A stored hash we cannot read is a data problem, not the caller's: log it (no
                // secret in it) and fail like a wrong password.
                crate::errors::log_server_only(&format!(
                    "auth_ext: user {} has an unusable password hash: {}",
                    account
                        .as_ref()
                        .map(|a| a.id.to_string())
                        .unwrap_or_default(),
                    e.detail
                ));
                false
            }),
        None => {
            // No account (or no password): spend what a real verification costs, and say
            // nothing that a client could see.
            let _ = password::verify(password.as_bytes(), &dummy_hash(params));
            false
        }
    };
    let account = match account {
        Some(a) if verified && a.usable => a,
        _ => {
            let user_id = account.as_ref().map(|a| a.id.to_string());
            let mut ops = vec![Op::Audit {
                event: "sign_in_failed".into(),
                user_id: user_id.clone(),
                details: json!({"email_hash": reservation.email_hash}),
            }];
            if reservation.locks {
                ops.push(Op::Audit {
                    event: "account_locked".into(),
                    user_id,
                    details: json!({"email_hash": reservation.email_hash, "seconds": gucs::LOCKOUT_SECONDS.get()}),
                });
            }
            // The attempt is already counted; only its audit rows can be lost here.
            autonomous::run_or_log(&ops, "audit of a failed sign-in lost");
            invalid_credentials();
        }
    };

    // Give the reservation back. If that cannot be recorded the attempt stays counted as a
    // failure: the safe side.
    autonomous::run_or_log(
        &[Op::ReleaseSignIn {
            email_hash: reservation.email_hash,
            run: reservation.run,
        }],
        "a successful sign-in stays counted as a failure",
    );
    // Only after the right password: an unconfirmed email says so (GoTrue's
    // email_not_confirmed); nobody without the password learns it.
    if gucs::REQUIRE_EMAIL_CONFIRMATION.get() && !account.confirmed {
        raise(AuthError::new(
            ErrorCode::EmailNotConfirmed,
            "confirm the email first (the code or link sent at sign-up; auth.resend(email, 'signup') sends it again)",
        ));
    }
    let stored = stored.expect("verified against a stored hash");
    spi::run(|c| {
        if password::needs_rehash_with_limits(&stored, params, &gucs::verify_limits())
            .unwrap_or(false)
        {
            let new = password::hash(password.as_bytes(), params).or_raise();
            c.update(
                "UPDATE auth.users SET encrypted_password = $2, updated_at = now() WHERE id = $1",
                None,
                &[account.id.into(), new.as_str().into()],
            )?;
        }
        c.update(
            "UPDATE auth.identities SET last_sign_in_at = now() WHERE user_id = $1 AND provider = 'email'",
            None,
            &[account.id.into()],
        )?;
        c.update(
            "UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1",
            None,
            &[account.id.into()],
        )?;
        Ok::<_, pgrx::spi::Error>(())
    });
    let response = crate::sessions::start_session(account.id, "password");
    crate::stats::ok(crate::stats::SIGN_INS);
    response
}

/// Signs in a new anonymous user (no email, no password; `is_anonymous` in the user and the
/// token, role `authenticated`) and returns its token response. Off unless
/// `auth.allow_anonymous_sign_ins`. `auth.update_user` later gives it an email and password,
/// keeping its id.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign_in_anonymously() -> JsonB {
    crate::errors::require_writable("auth.sign_in_anonymously");
    if !gucs::ALLOW_ANONYMOUS_SIGN_INS.get() {
        raise(AuthError::new(
            ErrorCode::NotConfigured,
            "anonymous sign-ins are disabled (auth.allow_anonymous_sign_ins)",
        ));
    }
    crate::signing_keys::require_signing_key();
    let id = spi::run(|c| {
        c.update(
            "INSERT INTO auth.users (is_anonymous, last_sign_in_at) VALUES (true, now()) RETURNING id",
            None,
            &[],
        )?
        .first()
        .get_one::<Uuid>()
    })
    .expect("RETURNING id");
    crate::sessions::start_session(id, "anonymous")
}

/// The user is anonymous (auth.sign_in_anonymously).
pub fn is_anonymous(user_id: Uuid) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT is_anonymous FROM auth.users WHERE id = $1",
        &[user_id.into()],
    )
    .or_fail()
    .unwrap_or(false)
}

/// Gives an anonymous user an email (unconfirmed: a confirmation is sent) and optionally a
/// password; it keeps its id. INVALID_PARAMETER when the email has an account.
pub fn convert_anonymous(user_id: Uuid, email: &str, password: Option<&str>) {
    check_email(email);
    let hash = password.map(|p| {
        check_new_password(p);
        password::hash(p.as_bytes(), gucs::argon2_params()).or_raise()
    });
    let converted = spi::run(|c| {
        let taken = c
            .select(
                "SELECT EXISTS (SELECT 1 FROM auth.users WHERE lower(email) = lower($1))",
                None,
                &[email.into()],
            )?
            .first()
            .get_one::<bool>()?
            .unwrap_or(true);
        if taken {
            return Ok(false);
        }
        let t = c.update(
            "UPDATE auth.users SET email = $2, encrypted_password = $3, is_anonymous = false, updated_at = now()
              WHERE id = $1 AND is_anonymous RETURNING id",
            None,
            &[user_id.into(), email.into(), hash.clone().into()],
        )?;
        if t.is_empty() {
            return Ok(false);
        }
        c.update(
            "INSERT INTO auth.identities (user_id, provider, provider_id, identity_data)
             VALUES ($1, 'email', $1::pg_catalog.text, jsonb_build_object('sub', $1::pg_catalog.text, 'email', $2::pg_catalog.text))",
            None,
            &[user_id.into(), email.into()],
        )?;
        Ok::<_, pgrx::spi::Error>(true)
    });
    if !converted {
        invalid_parameter(
            "this email cannot be used: it has an account, or the user is not anonymous",
        );
    }
}

/// The user row of the bound token's identity. Identity is (issuer, subject):
/// * a token this database issued: its user, if it exists; nothing is created;
/// * an issuer declared in `auth.account_issuers` (or trusted PostgREST claims): the user whose
///   id is `sub`, created on first sight;
/// * any other issuer, through a key bound to it: the user linked to (issuer, subject) in
///   `auth.identities`, created and linked on first sight (Clerk, Auth0, SuperTokens, …);
/// * a key bound to no issuer asserts no identity: INVALID_CLAIMS.
///
/// Returns NULL when anonymous. Concurrent first requests for the same identity create one
/// user. A read-only transaction or standby gets READ_ONLY only when something must be created.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn ensure_user() -> Option<Uuid> {
    let b = binding::current()?;
    let subject = b
        .ident
        .sub
        .clone()
        .unwrap_or_else(|| raise(AuthError::invalid_claims("the token has no sub")));
    let uuid_sub = match b.ident.uid {
        Uid::Uuid(bytes) => Some(Uuid::from_bytes(bytes)),
        _ => None,
    };
    let email = b.ident.email.clone();
    let user_metadata = match b.claims.get("user_metadata") {
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    };
    let issuer = match &b.owner {
        Owner::Nobody => raise(AuthError::invalid_claims(
            "the key that verified the token is bound to no issuer, so its subject cannot be linked to an account",
        )),
        Owner::Linked(issuer) => issuer.clone(),
        // The issuer owns accounts by id: the account is sub.
        owner @ (Owner::Ours | Owner::Declared) => {
            let id = uuid_sub.unwrap_or_else(|| {
                raise(AuthError::invalid_claims(
                    "sub is not a uuid, so it cannot be a user id of this database",
                ))
            });
            let exists = Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM auth.users WHERE id = $1)",
                &[id.into()],
            )
            .or_fail()
            .unwrap_or(false);
            if exists {
                return Some(id);
            }
            // Our own users are made by sign-up, never by a token.
            if *owner == Owner::Ours {
                raise(AuthError::invalid_claims("the token's user does not exist"));
            }
            crate::errors::require_writable("auth.ensure_user");
            Spi::run_with_args(
                "INSERT INTO auth.users (id, email, raw_user_meta_data)
                 SELECT $1, CASE WHEN NOT EXISTS (SELECT 1 FROM auth.users WHERE lower(email) = lower($2)) THEN $2 END, $3
                 ON CONFLICT DO NOTHING",
                &[id.into(), email.as_deref().into(), JsonB(user_metadata).into()],
            )
            .or_fail();
            return Some(id);
        }
    };
    let claims = Value::Object(b.claims.clone());
    let linked = |c: &pgrx::spi::SpiClient<'_>| -> pgrx::spi::Result<Option<Uuid>> {
        let t = c.select(
            "SELECT user_id FROM auth.identities WHERE provider = $1 AND provider_id = $2",
            Some(1),
            &[issuer.as_str().into(), subject.as_str().into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        t.first().get_one::<Uuid>()
    };
    if let Some(id) = spi::run(|c| linked(c)) {
        return Some(id);
    }
    crate::errors::require_writable("auth.ensure_user");
    spi::run(|c| {
        // Serialise first sights of the same identity across backends, then look again.
        c.update(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || E'\\n' || $2, 7146))",
            None,
            &[issuer.as_str().into(), subject.as_str().into()],
        )?;
        if let Some(id) = linked(c)? {
            return Ok(Some(id));
        }
        // Keep the IdP's id when it is a free uuid (auth.uid() then equals sub); never link
        // to an existing account by email (an IdP that does not verify emails could take it
        // over): a taken email is kept in identity_data only.
        let id = c
            .update(
                "INSERT INTO auth.users (id, email, raw_user_meta_data)
                 SELECT CASE WHEN $1::pg_catalog.uuid IS NOT NULL
                              AND NOT EXISTS (SELECT 1 FROM auth.users WHERE id = $1::pg_catalog.uuid)
                             THEN $1::pg_catalog.uuid ELSE gen_random_uuid() END,
                        CASE WHEN NOT EXISTS (SELECT 1 FROM auth.users WHERE lower(email) = lower($2)) THEN $2 END,
                        $3
                 RETURNING id",
                None,
                &[uuid_sub.into(), email.as_deref().into(), JsonB(user_metadata).into()],
            )?
            .first()
            .get_one::<Uuid>()?
            .expect("INSERT … RETURNING returns the id");
        c.update(
            "INSERT INTO auth.identities (user_id, provider, provider_id, identity_data) VALUES ($1, $2, $3, $4)",
            None,
            &[id.into(), issuer.as_str().into(), subject.as_str().into(), JsonB(claims).into()],
        )?;
        Ok::<_, pgrx::spi::Error>(Some(id))
    })
}
