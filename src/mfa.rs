//! TOTP multi-factor authentication (docs/mfa.md), Supabase-compatible: `auth.mfa_enroll`,
//! `auth.mfa_challenge`, `auth.mfa_verify` (raises the session to aal2 and returns new
//! tokens), `auth.mfa_unenroll`, `auth.mfa_list_factors`. Stricter than GoTrue:
//! * a code is accepted at most once per factor: the accepted time step is stored with a
//!   compare-and-set, so a replayed or concurrently presented code fails;
//! * each verification is counted by the bookkeeping worker before the code is judged, at most
//!   `auth.mfa_max_failures` per factor per `auth.mfa_failure_window_seconds`.

use crate::autonomous::{self, Op};
use crate::errors::{invalid_parameter, raise, OrRaise};
use crate::spi::{self, OrFail};
use crate::{audit, binding, clock, gucs, sessions};
use auth_core::totp::{self, Params, Secret, TotpError};
use auth_core::{AuthError, ErrorCode};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

/// How long a challenge may be answered (GoTrue's 300 s).
const CHALLENGE_SECONDS: f64 = 300.0;
/// Factors per user (GoTrue's limit), so that enrolling cannot grow a table without bound.
const MAX_FACTORS: i64 = 10;
/// Longest friendly name, in bytes.
const MAX_FRIENDLY_NAME: usize = 100;
/// Steps either side of now that a code may come from (±30 s with the default step).
const WINDOW: u32 = 1;

/// The assurance level of the bound token.
fn current_aal() -> String {
    binding::current()
        .and_then(|b| {
            b.claims
                .get("aal")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_else(|| "aal1".into())
}

fn require_aal2(what: &str) {
    if current_aal() != "aal2" {
        raise(AuthError::new(
            ErrorCode::InsufficientPermissions,
            format!("{what} needs a session at aal2: verify a factor first (auth.mfa_verify)"),
        ));
    }
}

struct Factor {
    secret: Option<String>,
    verified: bool,
    last_step: Option<i64>,
}

/// The bound user's factor `id`; INVALID_PARAMETER when the user has no such factor.
fn own_factor(user_id: Uuid, id: Uuid) -> Factor {
    let row = Spi::get_three_with_args::<String, bool, i64>(
        "SELECT secret, status = 'verified', last_accepted_step FROM auth.mfa_factors
          WHERE id = $1 AND user_id = $2 AND factor_type = 'totp'",
        &[id.into(), user_id.into()],
    );
    match row {
        Ok((secret, Some(verified), last_step)) => Factor {
            secret,
            verified,
            last_step,
        },
        _ => invalid_parameter("no such factor for this user"),
    }
}

/// Enrolls a new, unverified TOTP factor for the bound user and returns
/// `{id, type, friendly_name, totp: {secret, uri, qr_code}}`: the secret is shown this once.
/// A user who already has a verified factor enrolls another only at aal2.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn mfa_enroll(
    factor_type: default!(&str, "'totp'"),
    friendly_name: default!(Option<&str>, "NULL"),
) -> JsonB {
    crate::errors::require_writable("auth.mfa_enroll");
    if factor_type != "totp" {
        invalid_parameter("factor_type must be 'totp'");
    }
    if friendly_name.is_some_and(|n| n.len() > MAX_FRIENDLY_NAME) {
        invalid_parameter(format!(
            "friendly_name must be at most {MAX_FRIENDLY_NAME} bytes"
        ));
    }
    let (user_id, _) = sessions::bound_session();
    let (factors, verified, email) = Spi::get_three_with_args::<i64, i64, String>(
        "SELECT (SELECT count(*) FROM auth.mfa_factors WHERE user_id = u.id),
                (SELECT count(*) FROM auth.mfa_factors WHERE user_id = u.id AND status = 'verified'),
                u.email
           FROM auth.users u WHERE u.id = $1",
        &[user_id.into()],
    )
    .or_fail();
    if verified.unwrap_or(0) > 0 {
        require_aal2("enrolling another factor");
    }
    if factors.unwrap_or(0) >= MAX_FACTORS {
        invalid_parameter(format!(
            "a user has at most {MAX_FACTORS} factors; remove one first"
        ));
    }
    let secret = Secret::generate();
    let params = Params::default();
    let issuer = gucs::raw_str(&gucs::MFA_TOTP_ISSUER)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("auth_ext")
        .to_string();
    let account = email.unwrap_or_else(|| user_id.to_string());
    let uri = totp::otpauth_uri(&secret, &params, &issuer, &account.replace(':', "_"))
        .map_err(AuthError::from)
        .or_raise();
    let id = spi::run(|c| {
        let t = c.update(
            "INSERT INTO auth.mfa_factors (user_id, friendly_name, factor_type, status, secret)
             VALUES ($1, $2, 'totp', 'unverified', $3)
             ON CONFLICT (friendly_name, user_id) WHERE pg_catalog.btrim(friendly_name) OPERATOR(pg_catalog.<>) ''
             DO NOTHING RETURNING id",
            None,
            &[
                user_id.into(),
                friendly_name.into(),
                secret.to_base32().into(),
            ],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        t.first().get_one::<Uuid>()
    });
    let Some(id) = id else {
        invalid_parameter("the user already has a factor with this friendly_name");
    };
    audit::record(
        "mfa_factor_enrolled",
        Some(user_id),
        None,
        json!({"factor_id": id.to_string()}),
    );
    JsonB(json!({
        "id": id.to_string(),
        "type": "totp",
        "friendly_name": friendly_name,
        "totp": {"secret": secret.to_base32(), "uri": uri, "qr_code": null},
    }))
}

/// A challenge for one of the bound user's factors: `{id, type, expires_at}` (unix seconds);
/// answer it with auth.mfa_verify within 300 s.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn mfa_challenge(factor_id: Uuid) -> JsonB {
    crate::errors::require_writable("auth.mfa_challenge");
    let (user_id, _) = sessions::bound_session();
    own_factor(user_id, factor_id);
    let (id, expires_at) = spi::run(|c| {
        c.update(
            "UPDATE auth.mfa_factors SET last_challenged_at = now() WHERE id = $1",
            None,
            &[factor_id.into()],
        )?;
        // created_at is now() (the transaction's start), so it expires then + 300 s; computed
        // here, as Citus allows only immutable functions in RETURNING on reference tables.
        let t = c.update(
            "INSERT INTO auth.mfa_challenges (factor_id) VALUES ($1) RETURNING id",
            None,
            &[factor_id.into()],
        )?;
        Ok::<_, pgrx::spi::Error>((
            t.first().get::<Uuid>(1)?.expect("id"),
            clock::transaction_now_secs() + CHALLENGE_SECONDS as i64,
        ))
    });
    JsonB(json!({"id": id.to_string(), "type": "totp", "expires_at": expires_at}))
}

fn refused(user_id: Uuid, factor_id: Uuid, detail: &str) -> ! {
    // Survives the caller's rollback; if it cannot be recorded the attempt is refused anyway.
    autonomous::run_or_log(
        &[Op::Audit {
            event: "mfa_verification_failed".into(),
            user_id: Some(user_id.to_string()),
            details: json!({"factor_id": factor_id.to_string(), "reason": detail}),
        }],
        "audit of a failed MFA verification lost",
    );
    raise(AuthError::new(ErrorCode::InvalidOtp, detail))
}

/// Verifies a TOTP code for a challenge of the bound user's factor. On success the factor is
/// verified, the session is raised to aal2 (amr gains `totp`), and new tokens are returned
/// (the shape auth.sign_in returns). A code is accepted at most once per factor.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn mfa_verify(factor_id: Uuid, challenge_id: Uuid, code: &str) -> JsonB {
    crate::stats::begin(crate::stats::MFA_VERIFICATIONS);
    crate::errors::require_writable("auth.mfa_verify");
    crate::signing_keys::require_signing_key();
    let (user_id, session_id) = sessions::bound_session();
    let factor = own_factor(user_id, factor_id);
    let live = Spi::get_one_with_args::<bool>(
        "SELECT verified_at IS NULL AND created_at > now() - make_interval(secs => $3)
           FROM auth.mfa_challenges WHERE id = $1 AND factor_id = $2",
        &[
            challenge_id.into(),
            factor_id.into(),
            CHALLENGE_SECONDS.into(),
        ],
    )
    .or_fail()
    .unwrap_or(false);
    if !live {
        refused(
            user_id,
            factor_id,
            "the challenge is unknown, used or expired",
        );
    }
    // Counted (committed by the worker) before the code is judged: fail closed.
    let allowed = autonomous::run_or_refuse(&[Op::ReserveMfa {
        factor_id: factor_id.to_string(),
        user_id: user_id.to_string(),
        max_failures: gucs::MFA_MAX_FAILURES.get(),
        window_seconds: gucs::MFA_FAILURE_WINDOW_SECONDS.get(),
    }]);
    if allowed.first() != Some(&json!(true)) {
        raise(AuthError::new(
            ErrorCode::AccountLocked,
            "too many failed verifications of this factor; try again later",
        ));
    }
    let secret = factor
        .secret
        .as_deref()
        .and_then(|s| Secret::from_base32(s).ok())
        .unwrap_or_else(|| pgrx::error!("auth_ext: factor {factor_id} has an unusable secret"));
    let now = clock::transaction_now_secs().max(0) as u64;
    let last = factor.last_step.map(|s| s.max(0) as u64);
    let step = match totp::verify(&secret, &Params::default(), code, now, WINDOW, last) {
        Ok(step) => step,
        Err(TotpError::Replayed) => refused(user_id, factor_id, "the code was already used"),
        Err(_) => refused(user_id, factor_id, "wrong code"),
    };
    let accepted = spi::run(|c| {
        // Compare-and-set: of two verifications of one code, only one moves the step.
        let moved = c.update(
            "UPDATE auth.mfa_factors
                SET last_accepted_step = $2, status = 'verified', updated_at = now()
              WHERE id = $1 AND (last_accepted_step IS NULL OR last_accepted_step < $2)
             RETURNING 1",
            None,
            &[factor_id.into(), (step as i64).into()],
        )?;
        let used = c.update(
            "UPDATE auth.mfa_challenges SET verified_at = now()
              WHERE id = $1 AND verified_at IS NULL RETURNING 1",
            None,
            &[challenge_id.into()],
        )?;
        if moved.is_empty() || used.is_empty() {
            return Ok(false);
        }
        c.update(
            "DELETE FROM auth.mfa_failed_verifications WHERE factor_id = $1",
            None,
            &[factor_id.into()],
        )?;
        c.update(
            "UPDATE auth.sessions SET aal = 'aal2', factor_id = $2 WHERE id = $1",
            None,
            &[session_id.into(), factor_id.into()],
        )?;
        sessions::record_method(c, session_id, "totp")?;
        Ok::<_, pgrx::spi::Error>(true)
    });
    if !accepted {
        refused(user_id, factor_id, "the code or challenge was already used");
    }
    audit::record(
        "mfa_verified",
        Some(user_id),
        Some(session_id),
        json!({"factor_id": factor_id.to_string(), "was_verified": factor.verified}),
    );
    let r = sessions::reissue(user_id, session_id);
    crate::stats::ok(crate::stats::MFA_VERIFICATIONS);
    r
}

/// Removes one of the bound user's factors (a verified one only from an aal2 session).
/// Sessions it raised go back to aal1. Returns `{id}`.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn mfa_unenroll(factor_id: Uuid) -> JsonB {
    crate::errors::require_writable("auth.mfa_unenroll");
    let (user_id, session_id) = sessions::bound_session();
    if own_factor(user_id, factor_id).verified {
        require_aal2("removing a verified factor");
    }
    spi::run(|c| {
        c.update(
            "DELETE FROM auth.mfa_amr_claims
              WHERE authentication_method = 'totp'
                AND session_id IN (SELECT id FROM auth.sessions WHERE factor_id = $1)",
            None,
            &[factor_id.into()],
        )?;
        c.update(
            "UPDATE auth.sessions SET aal = 'aal1', factor_id = NULL WHERE factor_id = $1",
            None,
            &[factor_id.into()],
        )?;
        c.update(
            "DELETE FROM auth.mfa_factors WHERE id = $1",
            None,
            &[factor_id.into()],
        )?;
        c.update(
            "DELETE FROM auth.mfa_failed_verifications WHERE factor_id = $1",
            None,
            &[factor_id.into()],
        )?;
        Ok::<_, pgrx::spi::Error>(())
    });
    audit::record(
        "mfa_factor_removed",
        Some(user_id),
        Some(session_id),
        json!({"factor_id": factor_id.to_string()}),
    );
    JsonB(json!({"id": factor_id.to_string()}))
}

/// The bound user's factors, oldest first: `[{id, friendly_name, factor_type, status,
/// created_at, updated_at}]` (never a secret).
#[pg_extern(stable, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn mfa_list_factors() -> JsonB {
    let (user_id, _) = sessions::bound_session();
    let list = Spi::get_one_with_args::<JsonB>(
        "SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'id', id, 'friendly_name', friendly_name, 'factor_type', factor_type,
                    'status', status, 'created_at', created_at, 'updated_at', updated_at)
                  ORDER BY created_at, id), '[]'::pg_catalog.jsonb)
           FROM auth.mfa_factors WHERE user_id = $1",
        &[user_id.into()],
    )
    .or_fail()
    .map(|j| j.0)
    .unwrap_or_else(|| json!([]));
    JsonB(list)
}
