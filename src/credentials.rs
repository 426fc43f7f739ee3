//! Credentials: `auth.hash_password`, `auth.verify_password`, `auth.password_needs_rehash`,
//! `auth.sign_up`, `auth.sign_in` with lockout, and `auth.ensure_user` for external IdPs.

use crate::autonomous::{self, Op};
use crate::errors::{invalid_parameter, raise, spi_failed, OrRaise};
use crate::gucs;
use crate::identity;
use auth_core::password::{self, Argon2Params};
use auth_core::{AuthError, ErrorCode, Uid};
use pgrx::datum::{TimestampWithTimeZone, Uuid};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

const MAX_EMAIL_LEN: usize = 320;

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
        let mut random = [0u8; 32];
        getrandom_bytes(&mut random);
        let h = password::hash(&random, params).or_raise();
        DUMMY = Some((params, h.clone()));
        h
    }
}

fn getrandom_bytes(buf: &mut [u8]) {
    if !unsafe { pg_sys::pg_strong_random(buf.as_mut_ptr().cast(), buf.len()) } {
        pgrx::error!("auth_ext: no strong random source");
    }
}

fn check_email(email: &str) {
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
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign_up(email: &str, password: &str, user_metadata: default!(JsonB, "'{}'")) -> Uuid {
    check_email(email);
    check_new_password(password);
    if !user_metadata.0.is_object() {
        invalid_parameter("user_metadata must be a JSON object");
    }
    let hash = password::hash(password.as_bytes(), gucs::argon2_params()).or_raise();
    let id: Option<Uuid> = Spi::connect_mut(|c| {
        let id = c
            .update(
                "INSERT INTO auth.users (email, encrypted_password, raw_user_meta_data)
                 VALUES ($1, $2, $3) ON CONFLICT ((lower(email))) DO NOTHING RETURNING id",
                None,
                &[email.into(), hash.as_str().into(), user_metadata.into()],
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
    .unwrap_or_else(|e| spi_failed(e));
    id.unwrap_or_else(|| invalid_parameter("a user with this email already exists"))
}

struct Account {
    id: Uuid,
    hash: Option<String>,
    usable: bool,
}

fn invalid_credentials() -> ! {
    raise(AuthError::new(
        ErrorCode::InvalidCredentials,
        "unknown email, wrong password, or an account that cannot sign in",
    ))
}

/// Signs in with email (case-insensitive) and password, starts a session and returns
/// `{access_token, token_type, expires_in, expires_at, refresh_token, user}`. One error, INVALID_CREDENTIALS, for an
/// unknown email, a wrong password, a banned or deleted user — at about the same cost, since
/// unknown emails are checked against a dummy hash. `auth.max_failed_sign_ins` consecutive
/// failures lock the email for `auth.lockout_seconds` (ACCOUNT_LOCKED); the count is committed
/// by a worker of its own, so it survives the failing transaction.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign_in(email: &str, password: &str) -> JsonB {
    if password.len() > password::MAX_PASSWORD_BYTES || email.len() > MAX_EMAIL_LEN {
        invalid_credentials();
    }
    let key = auth_core::lockout::email_key(email);
    let (failed, locked_until) = Spi::connect(|c| {
        let t = c.select(
            "SELECT failed_count, CASE WHEN locked_until > now() THEN locked_until END
               FROM auth.failed_sign_ins WHERE email_hash = $1",
            Some(1),
            &[key.as_str().into()],
        )?;
        if t.is_empty() {
            return Ok((0, None));
        }
        let row = t.first();
        Ok::<_, pgrx::spi::Error>((
            row.get::<i32>(1)?.unwrap_or(0),
            row.get::<TimestampWithTimeZone>(2)?,
        ))
    })
    .unwrap_or_else(|e| spi_failed(e));
    if let Some(until) = locked_until {
        let _ = autonomous::run(&[Op::Audit {
            event: "sign_in_locked".into(),
            user_id: None,
            details: json!({"until": until.to_string()}),
        }]);
        raise(AuthError::new(
            ErrorCode::AccountLocked,
            format!("too many failed sign-ins; locked until {until}"),
        ));
    }

    let account = Spi::connect(|c| {
        let t = c.select(
            "SELECT id, encrypted_password,
                    deleted_at IS NULL AND (banned_until IS NULL OR banned_until <= now())
               FROM auth.users WHERE lower(email) = lower($1) LIMIT 1",
            Some(1),
            &[email.into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        let row = t.first();
        Ok::<_, pgrx::spi::Error>(Some(Account {
            id: row.get::<Uuid>(1)?.expect("id is not null"),
            hash: row.get::<String>(2)?,
            usable: row.get::<bool>(3)?.unwrap_or(false),
        }))
    })
    .unwrap_or_else(|e| spi_failed(e));

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
            // No account (or no password): spend what a real verification costs.
            pgrx::debug1!("auth_ext: sign-in without a stored hash: verifying a dummy hash");
            let _ = password::verify(password.as_bytes(), &dummy_hash(params));
            false
        }
    };
    let account = match account {
        Some(a) if verified && a.usable => a,
        _ => {
            let user_id = account.as_ref().map(|a| a.id.to_string());
            let _ = autonomous::run(&[Op::RecordFailedSignIn {
                email_hash: key,
                user_id,
                max_failures: gucs::MAX_FAILED_SIGN_INS.get(),
                lockout_seconds: gucs::LOCKOUT_SECONDS.get(),
            }]);
            invalid_credentials();
        }
    };

    if failed > 0 {
        let _ = autonomous::run(&[Op::ResetFailedSignIns { email_hash: key }]);
    }
    let stored = stored.expect("verified against a stored hash");
    Spi::connect_mut(|c| {
        if password::needs_rehash_with_limits(&stored, params, &gucs::verify_limits()).unwrap_or(false) {
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
        c.update("UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1", None, &[account.id.into()])?;
        Ok::<_, pgrx::spi::Error>(())
    })
    .unwrap_or_else(|e| spi_failed(e));
    crate::tokens::start_session(account.id, "password")
}

/// The user row of the bound token's identity, created on first sight: external IdPs (Clerk,
/// Auth0, SuperTokens, Supabase) are keyed by (issuer, subject) in `auth.identities`. Returns
/// NULL when anonymous. Concurrent first requests for the same identity create one user.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn ensure_user() -> Option<Uuid> {
    let b = identity::current()?;
    let issuer = match b.claims.get("iss") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => raise(AuthError::invalid_claims(
            "the token has no iss, which keys external identities",
        )),
    };
    let subject = b
        .ident
        .sub
        .clone()
        .unwrap_or_else(|| raise(AuthError::invalid_claims("the token has no sub")));
    let email = b.ident.email.clone();
    let user_metadata = match b.claims.get("user_metadata") {
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    };
    let uuid_sub = match b.ident.uid {
        Uid::Uuid(bytes) => Some(Uuid::from_bytes(bytes)),
        _ => None,
    };
    let claims = Value::Object(b.claims.clone());
    Spi::connect_mut(|c| {
        // Serialise first sights of the same identity across backends.
        c.update(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || E'\\n' || $2, 7146))",
            None,
            &[issuer.as_str().into(), subject.as_str().into()],
        )?;
        let existing = c
            .update(
                "SELECT user_id FROM auth.identities WHERE provider = $1 AND provider_id = $2",
                Some(1),
                &[issuer.as_str().into(), subject.as_str().into()],
            )?
            .first()
            .get_one::<Uuid>()
            .unwrap_or(None);
        if let Some(id) = existing {
            return Ok(Some(id));
        }
        // Keep the IdP's id when it is a free uuid (auth.uid() then equals users.id); never
        // link to an existing account by email (an IdP that does not verify emails could take
        // it over): a taken email is kept in identity_data only.
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
    .unwrap_or_else(|e| spi_failed(e))
}
