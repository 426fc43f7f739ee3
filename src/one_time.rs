//! One-time codes and magic links (docs/passwordless.md): `auth.sign_in_with_otp`,
//! `auth.verify_otp`, `auth.resend`, `auth.reset_password_for_email`. GoTrue's flows and token
//! types, stricter where GoTrue is weak:
//! * no enumeration: every request answers the same for known and unknown emails; only the
//!   outbox (readable by the delivery role) differs;
//! * guessing: each attempt is counted by the bookkeeping worker before the code is judged, so
//!   no rollback or concurrency gets past `auth.otp_max_attempts` per code (then it is void);
//! * one new code per `auth.otp_min_interval_seconds` per user; single use; expiring;
//! * only keyed hashes are stored (auth_core::otp), bound to the user and the token type.

use crate::autonomous::{self, Op, OtpCandidate};
use crate::errors::{invalid_parameter, raise, OrRaise};
use crate::spi::{self, OrFail};
use crate::{audit, gucs, secrets, sessions};
use auth_core::{otp, AuthError, ErrorCode};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

/// Name of the key of the stored hashes in `auth.secrets`.
const SECRET: &str = "one_time_tokens";

/// What a message is for: the outbox `kind` the sender picks its template by, and the token
/// type (GoTrue's) that a code of it is stored as.
#[derive(Clone, Copy)]
enum Purpose {
    /// Confirm the email of a new or unconfirmed account (and sign in).
    Signup,
    /// Sign in, for a confirmed account (GoTrue stores these as recovery tokens too).
    MagicLink,
    /// Reset the password (signs in; then `auth.update_user` sets the new password).
    Recovery,
    /// Confirm an email change at the current address.
    EmailChangeCurrent,
    /// Confirm an email change at the new address.
    EmailChangeNew,
    /// Confirm a phone (and sign in) by SMS.
    SmsConfirm,
    /// Sign in by SMS, for a confirmed phone.
    SmsSignIn,
}

impl Purpose {
    fn kind(self) -> &'static str {
        match self {
            Purpose::Signup => "signup",
            Purpose::MagicLink => "magiclink",
            Purpose::Recovery => "recovery",
            Purpose::EmailChangeCurrent => "email_change_current",
            Purpose::EmailChangeNew => "email_change_new",
            Purpose::SmsConfirm | Purpose::SmsSignIn => "sms",
        }
    }
    fn token_type(self) -> &'static str {
        match self {
            Purpose::Signup => "confirmation_token",
            Purpose::MagicLink | Purpose::Recovery => "recovery_token",
            Purpose::EmailChangeCurrent => "email_change_token_current",
            Purpose::EmailChangeNew => "email_change_token_new",
            Purpose::SmsConfirm => "confirmation_token",
            Purpose::SmsSignIn => "recovery_token",
        }
    }
}

/// The context a stored hash is bound to: the user, the token type and code vs link, so that
/// a value issued for one never matches another.
fn context<'a>(user_id: &'a str, token_type: &'a str, link: bool) -> [&'a [u8]; 3] {
    [
        user_id.as_bytes(),
        token_type.as_bytes(),
        if link { b"link" } else { b"code" },
    ]
}

/// The key of the stored hashes (`auth.secrets`, made on first use).
fn hash_key() -> otp::HashKey {
    otp::HashKey::new(&secrets::get(SECRET)).or_raise()
}

struct Account {
    id: Uuid,
    /// Where its messages go: the email (or the phone, for a phone account).
    address: String,
    confirmed: bool,
    usable: bool,
}

fn account_by_email(email: &str) -> Option<Account> {
    account_where(
        "lower(email) = lower($1)",
        email,
        "email",
        "email_confirmed_at",
    )
}

/// The account whose row matches `condition` on `value` ($1), with `address` (its email or
/// phone) and whether `confirmed_column` is set. Column names are ours, never a caller's.
fn account_where(
    condition: &str,
    value: &str,
    address: &str,
    confirmed_column: &str,
) -> Option<Account> {
    spi::run(|c| {
        let t = c.select(
            &format!(
                "SELECT id, {address}, {confirmed_column} IS NOT NULL,
                        deleted_at IS NULL AND (banned_until IS NULL OR banned_until <= now())
                   FROM auth.users WHERE {condition}"
            ),
            Some(1),
            &[value.into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        let r = t.first();
        Ok::<_, pgrx::spi::Error>(Some(Account {
            id: r.get::<Uuid>(1)?.expect("id is not null"),
            address: r.get::<String>(2)?.unwrap_or_default(),
            confirmed: r.get::<bool>(3)?.unwrap_or(false),
            usable: r.get::<bool>(4)?.unwrap_or(false),
        }))
    })
}

/// The account with a pending change to `email` (users.email_change).
fn account_by_pending_email(email: &str) -> Option<Account> {
    account_where(
        "lower(email_change) = lower($1)",
        email,
        "email",
        "email_confirmed_at",
    )
}

/// Starts changing the bound user's email to `new_email`: a code to the current address and
/// one to the new one; the change happens when both are verified (`verify_otp(…,
/// 'email_change')`). A new address that has an account looks the same to the caller; its
/// owner is told instead (no enumeration).
pub fn start_email_change(user_id: Uuid, new_email: &str) {
    crate::credentials::check_email(new_email);
    let current = Spi::get_one_with_args::<String>(
        "SELECT email FROM auth.users WHERE id = $1",
        &[user_id.into()],
    )
    .or_fail();
    let Some(account) = current.and_then(|e| account_by_email(&e)) else {
        invalid_parameter("the user has no email to change");
    };
    let taken_by_other = |a: Option<Account>| a.is_some_and(|a| a.id != user_id);
    if account_by_email(new_email).is_some() || taken_by_other(account_by_pending_email(new_email))
    {
        notify_already_registered(new_email);
        return;
    }
    spi::run(|c| {
        c.update(
            "UPDATE auth.users SET email_change = $2, updated_at = now() WHERE id = $1",
            None,
            &[user_id.into(), new_email.into()],
        )?;
        Ok::<_, pgrx::spi::Error>(())
    });
    if issue_to(
        &account,
        Purpose::EmailChangeCurrent,
        &account.address,
        true,
    ) {
        issue_to(&account, Purpose::EmailChangeNew, new_email, false);
    }
}

/// One of an email change's two codes was right: consumes it; when the other is used too,
/// the email changes (confirmed) and the user is signed in. Until then answers
/// `{"msg": …}` saying the other address must confirm too.
fn confirm_email_change(account: &Account, token_id: &str) -> JsonB {
    let done = spi::run(|c| {
        let t = c.update(
            "DELETE FROM auth.one_time_tokens WHERE id = $1::pg_catalog.uuid RETURNING 1",
            None,
            &[token_id.into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        let pending = c
            .select(
                "SELECT count(*) FROM auth.one_time_tokens
                  WHERE user_id = $1
                    AND token_type IN ('email_change_token_current', 'email_change_token_new')",
                None,
                &[account.id.into()],
            )?
            .first()
            .get_one::<i64>()?
            .unwrap_or(0);
        if pending > 0 {
            return Ok(Some(false));
        }
        let t = c.update(
            "UPDATE auth.users SET email = email_change, email_change = NULL,
                    email_confirmed_at = now(), updated_at = now()
              WHERE id = $1 AND email_change IS NOT NULL RETURNING email",
            None,
            &[account.id.into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        let email = t.first().get_one::<String>()?.unwrap_or_default();
        c.update(
            // The new value built here: Citus refuses a STABLE function (jsonb_build_object)
            // next to a column in writes to a reference table.
            "UPDATE auth.identities SET identity_data = identity_data || $2, updated_at = now()
              WHERE user_id = $1 AND provider = 'email'",
            None,
            &[account.id.into(), JsonB(json!({"email": email})).into()],
        )?;
        Ok::<_, pgrx::spi::Error>(Some(true))
    });
    match done {
        None => invalid_otp(),
        Some(false) => JsonB(json!({
            "msg": "Confirmation accepted. Confirm the code sent to the other address too."
        })),
        Some(true) => {
            audit::record("email_changed", Some(account.id), None, json!({}));
            sessions::start_session(account.id, "email_change")
        }
    }
}

/// Issues a code and a link token for `purpose` to the account, replacing its outstanding
/// token of that type, and queues the message. Returns false (and sends nothing) when the
/// user was sent one less than `auth.otp_min_interval_seconds` ago.
fn issue(account: &Account, purpose: Purpose) -> bool {
    issue_to(account, purpose, &account.address, true)
}

/// [`issue`] to `recipient`; `throttle` false for the second message of one request (an email
/// change writes to both addresses).
fn issue_to(account: &Account, purpose: Purpose, recipient: &str, throttle: bool) -> bool {
    let key = hash_key();
    let code = otp::numeric_code(gucs::OTP_LENGTH.get() as u32).or_raise();
    let link = otp::link_token();
    let id = account.id.to_string();
    let token_type = purpose.token_type();
    let code_hash = hex(&otp::hash(&code, &context(&id, token_type, false), &key));
    let link_hash = hex(&otp::hash(&link, &context(&id, token_type, true), &key));
    let sent = spi::run(|c| {
        lock_user(c, account.id)?;
        let recent = c
            .update(
                "SELECT EXISTS (SELECT 1 FROM auth.one_time_tokens
                                 WHERE user_id = $1
                                   AND updated_at > now() - make_interval(secs => $2))",
                None,
                &[
                    account.id.into(),
                    (gucs::OTP_MIN_INTERVAL_SECONDS.get() as f64).into(),
                ],
            )?
            .first()
            .get_one::<bool>()?
            .unwrap_or(true);
        if recent && throttle {
            return Ok(false);
        }
        let expiry = gucs::OTP_EXPIRY_SECONDS.get() as f64;
        c.update(
            // excluded.*, not now(): Citus refuses functions in DO UPDATE on reference tables.
            "INSERT INTO auth.one_time_tokens AS o
                    (user_id, token_type, token_hash, link_hash, relates_to, expires_at)
             VALUES ($1, $2::auth.one_time_token_type, $3, $4, $5, now() + make_interval(secs => $6))
             ON CONFLICT (user_id, token_type) DO UPDATE
                SET token_hash = excluded.token_hash, link_hash = excluded.link_hash,
                    relates_to = excluded.relates_to, expires_at = excluded.expires_at,
                    created_at = excluded.created_at, updated_at = excluded.updated_at, attempts = 0",
            None,
            &[
                account.id.into(),
                token_type.into(),
                code_hash.as_str().into(),
                link_hash.as_str().into(),
                recipient.into(),
                expiry.into(),
            ],
        )?;
        queue(
            c,
            purpose.kind(),
            recipient,
            account.id,
            Some((code.as_str(), link.as_str())),
        )?;
        Ok::<_, pgrx::spi::Error>(true)
    });
    audit::record(
        if sent {
            "one_time_token_sent"
        } else {
            "one_time_token_throttled"
        },
        Some(account.id),
        None,
        json!({"kind": purpose.kind()}),
    );
    sent
}

/// One message request per user at a time: the user row's lock orders concurrent requests, so
/// an interval check made after it sees the request before.
fn lock_user(c: &mut pgrx::spi::SpiClient<'_>, user_id: Uuid) -> pgrx::spi::Result<()> {
    c.update(
        "SELECT 1 FROM auth.users WHERE id = $1 FOR UPDATE",
        None,
        &[user_id.into()],
    )?;
    Ok(())
}

/// Queues a message in auth.outbox (in the caller's transaction: a rollback sends nothing) and
/// announces it with NOTIFY auth_outbox; `code_and_link` is None for a notice without a code.
fn queue(
    c: &mut pgrx::spi::SpiClient<'_>,
    kind: &str,
    recipient: &str,
    user_id: Uuid,
    code_and_link: Option<(&str, &str)>,
) -> pgrx::spi::Result<()> {
    let (code, link) = code_and_link.unzip();
    c.update(
        "WITH m AS (
            INSERT INTO auth.outbox (kind, recipient, user_id, code, link_token, expires_at)
            VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
            RETURNING id)
         SELECT pg_catalog.pg_notify('auth_outbox', id::pg_catalog.text) FROM m",
        None,
        &[
            kind.into(),
            recipient.into(),
            user_id.into(),
            code.into(),
            link.into(),
            (gucs::OTP_EXPIRY_SECONDS.get() as f64).into(),
        ],
    )?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn check_email(email: &str) {
    crate::credentials::check_email(email);
}

/// Sends a sign-in code and magic link to `email`: to confirm a new or unconfirmed account,
/// created here on first use when `create_user` and `auth.allow_sign_up` allow, or to sign a
/// confirmed account in. Answers nothing, the same for every email.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign_in_with_otp(email: &str, create_user: default!(bool, true)) {
    crate::errors::require_writable("auth.sign_in_with_otp");
    check_email(email);
    let account = match account_by_email(email) {
        Some(a) => Some(a),
        None if create_user && gucs::ALLOW_SIGN_UP.get() => {
            crate::credentials::create_user(email, None, &json!({}));
            // (A concurrent request may have created it: the lookup finds either.)
            account_by_email(email)
        }
        None => None,
    };
    if let Some(a) = account.filter(|a| a.usable) {
        let purpose = if a.confirmed {
            Purpose::MagicLink
        } else {
            Purpose::Signup
        };
        issue(&a, purpose);
    }
}

/// Sends the sign-up confirmation to a just-created account (auth.sign_up).
pub fn send_confirmation(email: &str) {
    if let Some(a) = account_by_email(email).filter(|a| a.usable && !a.confirmed) {
        issue(&a, Purpose::Signup);
    }
}

/// Tells the owner of `email` that someone tried to sign up with it (auth.sign_up of a taken
/// email, which answers the caller like a new sign-up): an outbox row of kind
/// `already_registered`, with no code, at most one per `auth.otp_min_interval_seconds`.
pub fn notify_already_registered(email: &str) {
    let Some(a) = account_by_email(email).filter(|a| a.usable) else {
        return;
    };
    let sent = spi::run(|c| {
        lock_user(c, a.id)?;
        let recent = c
            .update(
                "SELECT EXISTS (SELECT 1 FROM auth.audit_log
                                 WHERE user_id = $1 AND event = 'sign_up_existing_email'
                                   AND created_at > now() - make_interval(secs => $2))",
                None,
                &[
                    a.id.into(),
                    (gucs::OTP_MIN_INTERVAL_SECONDS.get() as f64).into(),
                ],
            )?
            .first()
            .get_one::<bool>()?
            .unwrap_or(true);
        if recent {
            return Ok(false);
        }
        queue(c, "already_registered", &a.address, a.id, None)?;
        Ok::<_, pgrx::spi::Error>(true)
    });
    if sent {
        audit::record("sign_up_existing_email", Some(a.id), None, json!({}));
    }
}

/// Sends a password-recovery code and link to `email` if it has a usable account. Answers
/// nothing, the same for every email.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn reset_password_for_email(email: &str) {
    crate::errors::require_writable("auth.reset_password_for_email");
    check_email(email);
    if let Some(a) = account_by_email(email).filter(|a| a.usable) {
        issue(&a, Purpose::Recovery);
    }
}

/// Sends a message again: `type` 'signup', the confirmation of an unconfirmed account;
/// 'email_change', both codes of the account's pending email change (`email` is its current
/// address). Answers nothing, the same for every email.
// SQL in sql/090_one_time_tokens.sql: its argument is named `type`, a Rust keyword.
#[pg_extern(volatile, security_definer, parallel_unsafe, sql = false)]
fn resend(email: &str, kind: &str) {
    crate::errors::require_writable("auth.resend");
    check_email(email);
    match kind {
        "signup" => {
            if let Some(a) = account_by_email(email).filter(|a| a.usable && !a.confirmed) {
                issue(&a, Purpose::Signup);
            }
        }
        "email_change" => {
            let Some(a) = account_by_email(email).filter(|a| a.usable) else {
                return;
            };
            let pending = Spi::get_one_with_args::<String>(
                "SELECT email_change FROM auth.users WHERE id = $1",
                &[a.id.into()],
            )
            .or_fail();
            if let Some(new_email) = pending {
                start_email_change(a.id, &new_email);
            }
        }
        _ => invalid_parameter("type must be 'signup' or 'email_change'"),
    }
}

fn invalid_otp() -> ! {
    raise(AuthError::new(
        ErrorCode::InvalidOtp,
        "wrong, used, expired or voided code or link, or unknown email",
    ))
}

/// Verifies a code or link token sent to `email` and signs the user in: `type` 'email'
/// (either kind of code), 'signup', 'magiclink' or 'recovery'. Confirms the email on
/// success. One error, INVALID_OTP, for everything that fails.
// SQL in sql/090_one_time_tokens.sql: its argument is named `type`, a Rust keyword.
#[pg_extern(volatile, security_definer, parallel_unsafe, sql = false)]
fn verify_otp(email: &str, token: &str, kind: &str) -> JsonB {
    crate::stats::begin(crate::stats::OTP_VERIFICATIONS);
    crate::errors::require_writable("auth.verify_otp");
    let token_types: &[&str] = match kind {
        "email" => &["confirmation_token", "recovery_token"],
        "signup" => &["confirmation_token"],
        "magiclink" | "recovery" => &["recovery_token"],
        "email_change" => &["email_change_token_current", "email_change_token_new"],
        _ => invalid_parameter(
            "type must be one of 'email', 'signup', 'magiclink', 'recovery', 'email_change'",
        ),
    };
    crate::signing_keys::require_signing_key();
    if token.len() > 256 || email.len() > crate::credentials::MAX_EMAIL_LEN {
        invalid_otp();
    }
    // An email change's code for the new address is verified with the new address, and each
    // of its two codes with the address it was sent to.
    let (account, recipient) = if kind == "email_change" {
        (
            account_by_email(email).or_else(|| account_by_pending_email(email)),
            Some(email),
        )
    } else {
        (account_by_email(email), None)
    };
    let (account, token_id) = judged(account, token_types, token, recipient, kind);
    if kind == "email_change" {
        let r = confirm_email_change(&account, &token_id);
        crate::stats::ok(crate::stats::OTP_VERIFICATIONS);
        return r;
    }
    // Receiving the message proves the address: confirm it.
    consume(&token_id, account.id, "email_confirmed_at");
    let link = !token.bytes().all(|b| b.is_ascii_digit());
    let method = match (kind, link) {
        ("recovery", _) => "recovery",
        (_, true) => "magiclink",
        _ => "otp",
    };
    let r = sessions::start_session(account.id, method);
    crate::stats::ok(crate::stats::OTP_VERIFICATIONS);
    r
}

/// The usable account and the id of its outstanding token that `token` matches, judged as
/// [`judge`] does; every failure (no usable account, no match) is audited (surviving the
/// caller's rollback) and raised as INVALID_OTP.
fn judged(
    account: Option<Account>,
    token_types: &[&str],
    token: &str,
    recipient: Option<&str>,
    kind: &str,
) -> (Account, String) {
    let account = account.filter(|a| a.usable);
    let matched = account
        .as_ref()
        .and_then(|a| judge(a, token_types, token, recipient));
    match (account, matched) {
        (Some(a), Some(id)) => (a, id),
        (a, _) => {
            autonomous::run_or_refuse(&[Op::Audit {
                event: "one_time_token_failed".into(),
                user_id: a.map(|a| a.id.to_string()),
                details: json!({"type": kind}),
            }]);
            invalid_otp();
        }
    }
}

/// Uses up the token (single use: of concurrent verifications of one code, only the one that
/// deletes the row goes on), confirms the address it was sent to (`confirmed_column` of
/// auth.users) and records the sign-in. INVALID_OTP when another verification used it first.
fn consume(token_id: &str, user_id: Uuid, confirmed_column: &str) {
    let consumed = spi::run(|c| {
        let t = c.update(
            "DELETE FROM auth.one_time_tokens WHERE id = $1::pg_catalog.uuid RETURNING 1",
            None,
            &[token_id.into()],
        )?;
        if t.is_empty() {
            return Ok(false);
        }
        // No now() inside CASE or COALESCE: Citus refuses that in writes to a reference table.
        c.update(
            &format!(
                "UPDATE auth.users SET {col} = now(), updated_at = now() WHERE id = $1 AND {col} IS NULL",
                col = pgrx::spi::quote_identifier(confirmed_column)
            ),
            None,
            &[user_id.into()],
        )?;
        c.update(
            "UPDATE auth.users SET last_sign_in_at = now() WHERE id = $1",
            None,
            &[user_id.into()],
        )?;
        Ok::<_, pgrx::spi::Error>(true)
    });
    if !consumed {
        invalid_otp();
    }
}

/// The user's own attributes, for the bound token's user (a token this database issued):
/// `password` (ends the user's other sessions) and `data` (merged into user_metadata).
/// Returns the user.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn update_user(attributes: JsonB) -> JsonB {
    crate::errors::require_writable("auth.update_user");
    let Some(attrs) = attributes.0.as_object() else {
        invalid_parameter("attributes must be a JSON object");
    };
    for k in attrs.keys() {
        if !matches!(k.as_str(), "password" | "data" | "email") {
            invalid_parameter(format!(
                "attribute {k:?} cannot be changed here (email, password, data)"
            ));
        }
    }
    let (user_id, session_id) = sessions::bound_session();
    if let Some(e) = attrs.get("email") {
        // An anonymous user becomes an email account, keeping its id (and so its rows).
        let Some(e) = e.as_str() else {
            invalid_parameter("email must be a string");
        };
        let password = attrs.get("password").map(|p| {
            p.as_str()
                .unwrap_or_else(|| invalid_parameter("password must be a string"))
        });
        if crate::credentials::is_anonymous(user_id) {
            crate::credentials::convert_anonymous(user_id, e, password);
            if let Some(a) = account_by_email(e) {
                issue(&a, Purpose::Signup);
            }
            audit::record(
                "anonymous_converted",
                Some(user_id),
                Some(session_id),
                json!({}),
            );
            return JsonB(sessions::user_json(user_id));
        }
        start_email_change(user_id, e);
        if password.is_none() {
            return JsonB(sessions::user_json(user_id));
        }
    }
    if let Some(p) = attrs.get("password") {
        let Some(p) = p.as_str() else {
            invalid_parameter("password must be a string");
        };
        crate::credentials::set_password(user_id, p);
        spi::run(|c| {
            c.update(
                "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = 'password_changed'
                  WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
                None,
                &[user_id.into(), session_id.into()],
            )?;
            Ok::<_, pgrx::spi::Error>(())
        });
        audit::record(
            "password_changed",
            Some(user_id),
            Some(session_id),
            json!({}),
        );
    }
    if let Some(d) = attrs.get("data") {
        if !d.is_object() {
            invalid_parameter("data must be a JSON object");
        }
        spi::run(|c| {
            c.update(
                "UPDATE auth.users SET raw_user_meta_data = raw_user_meta_data || $2, updated_at = now()
                  WHERE id = $1",
                None,
                &[user_id.into(), JsonB(d.clone()).into()],
            )?;
            Ok::<_, pgrx::spi::Error>(())
        });
    }
    JsonB(sessions::user_json(user_id))
}

/// The account whose phone is `phone`, with `confirmed` meaning its phone is confirmed.
fn account_by_phone(phone: &str) -> Option<Account> {
    account_where("phone = $1", phone, "phone", "phone_confirmed_at")
}

/// A phone number in E.164 form (`+` and 7 to 15 digits, no leading zero).
fn check_phone(phone: &str) {
    let digits = phone.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        invalid_parameter("phone must be in E.164 form: + and 7 to 15 digits, e.g. +14155550100");
    }
}

/// Sends a sign-in code by SMS (an outbox row of kind `sms`, delivered by the DBA's SMS
/// sender) to `phone`, creating the account on first use when `create_user` and
/// `auth.allow_sign_up` allow. Answers nothing, the same for every number.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn sign_in_with_phone_otp(phone: &str, create_user: default!(bool, true)) {
    crate::errors::require_writable("auth.sign_in_with_phone_otp");
    check_phone(phone);
    let account = match account_by_phone(phone) {
        Some(a) => Some(a),
        None if create_user && gucs::ALLOW_SIGN_UP.get() => {
            spi::run(|c| {
                c.update(
                    "INSERT INTO auth.users (phone) VALUES ($1) ON CONFLICT (phone) DO NOTHING",
                    None,
                    &[phone.into()],
                )?;
                Ok::<_, pgrx::spi::Error>(())
            });
            account_by_phone(phone)
        }
        None => None,
    };
    if let Some(a) = account.filter(|a| a.usable) {
        let purpose = if a.confirmed {
            Purpose::SmsSignIn
        } else {
            Purpose::SmsConfirm
        };
        issue_to(&a, purpose, phone, true);
    }
}

/// Verifies a code sent by SMS to `phone` and signs the user in (Supabase's verifyOtp with
/// type `sms`); confirms the phone. One error, INVALID_OTP, for everything that fails.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn verify_phone_otp(phone: &str, token: &str) -> JsonB {
    crate::stats::begin(crate::stats::OTP_VERIFICATIONS);
    crate::errors::require_writable("auth.verify_phone_otp");
    crate::signing_keys::require_signing_key();
    if token.len() > 16 || phone.len() > 16 {
        invalid_otp();
    }
    let (account, token_id) = judged(
        account_by_phone(phone),
        &["confirmation_token", "recovery_token"],
        token,
        Some(phone),
        "sms",
    );
    consume(&token_id, account.id, "phone_confirmed_at");
    let r = sessions::start_session(account.id, "sms");
    crate::stats::ok(crate::stats::OTP_VERIFICATIONS);
    r
}

/// Counts one attempt at the account's outstanding tokens of `token_types` (the bookkeeping
/// worker, before anything is judged) and returns the id of the one `token` matches, if any
/// (only tokens sent to `recipient` when given).
fn judge(
    account: &Account,
    token_types: &[&str],
    token: &str,
    recipient: Option<&str>,
) -> Option<String> {
    let id = account.id.to_string();
    let answer = autonomous::run_or_refuse(&[Op::ReserveOtp {
        user_id: id.clone(),
        token_types: token_types.iter().map(|t| t.to_string()).collect(),
        max_attempts: gucs::OTP_MAX_ATTEMPTS.get(),
    }]);
    let candidates: Vec<OtpCandidate> = answer
        .into_iter()
        .next()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_else(|| autonomous::Failure::Failed.refuse());
    let key = hash_key();
    let link = !token.bytes().all(|b| b.is_ascii_digit());
    candidates
        .iter()
        .filter(|c| recipient.is_none_or(|r| c.relates_to.to_lowercase() == r.to_lowercase()))
        .find(|c| {
            let stored = if link {
                c.link_hash.as_deref()
            } else {
                Some(c.token_hash.as_str())
            };
            stored.is_some_and(|h| {
                otp::matches(&unhex(h), token, &context(&id, &c.token_type, link), &key)
            })
        })
        .map(|c| c.id.clone())
}
