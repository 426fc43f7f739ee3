//! Configuration parameters. `auth.jwt` is the per-request input (any role may set it, usually
//! with `SET LOCAL`/`set_config(…, true)`); every other `auth.*` parameter is policy and only a
//! superuser may set it (`ALTER SYSTEM`, `ALTER DATABASE/ROLE … SET`).
//!
//! Every parameter that influences a cached identity has an assign hook that bumps a generation
//! counter; the RLS helpers compare counters instead of re-reading settings on every row.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped whenever the bearer token input changes (`auth.jwt`, or the PostgREST
/// `request.jwt.claim*` settings used when `auth.trust_request_claims` is on): by SET, SET
/// LOCAL, set_config, RESET, DISCARD ALL, and the automatic reset at transaction end.
pub static TOKEN_GEN: AtomicU64 = AtomicU64::new(1);
/// Bumped whenever a policy parameter changes.
pub static CONFIG_GEN: AtomicU64 = AtomicU64::new(1);

pub static JWT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LEEWAY_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static MAX_TOKEN_BYTES: GucSetting<i32> = GucSetting::<i32>::new(8192);
pub static REQUIRE_EXP: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static ROLES_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"app_metadata.roles"));
pub static ARGON2_MEMORY_KIB: GucSetting<i32> = GucSetting::<i32>::new(19456);
pub static ARGON2_ITERATIONS: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static ARGON2_PARALLELISM: GucSetting<i32> = GucSetting::<i32>::new(1);
/// Caps on the stored hashes auth_ext verifies (a hash is data anyone with `verify_password`
/// may pass): memory, and memory × passes as the time budget (about 1.2 s per GiB-pass here).
pub static MAX_VERIFY_MEMORY_KIB: GucSetting<i32> =
    GucSetting::<i32>::new(auth_core::password::DEFAULT_MAX_MEMORY_KIB as i32);
pub static MAX_VERIFY_MEMORY_PASSES: GucSetting<i32> =
    GucSetting::<i32>::new(auth_core::password::DEFAULT_MAX_MEMORY_PASSES as i32);
pub static MAX_FAILED_SIGN_INS: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static LOCKOUT_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(900);
pub static MIN_PASSWORD_LENGTH: GucSetting<i32> = GucSetting::<i32>::new(8);
pub static ISSUER: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"auth_ext"));
pub static ACCESS_TOKEN_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static REFRESH_TOKEN_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
pub static REFRESH_REUSE_INTERVAL_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(10);
pub static OTP_EXPIRY_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static OTP_LENGTH: GucSetting<i32> = GucSetting::<i32>::new(6);
pub static OTP_MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static OTP_MIN_INTERVAL_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static ALLOW_SIGN_UP: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static ALLOW_ANONYMOUS_SIGN_INS: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static REQUIRE_EMAIL_CONFIRMATION: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MFA_MAX_FAILURES: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static MFA_FAILURE_WINDOW_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static MFA_TOTP_ISSUER: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"auth_ext"));
pub static REVOCATION_CHECKS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static HELPERS_AS_INITPLANS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static TRUST_REQUEST_CLAIMS: GucSetting<bool> = GucSetting::<bool>::new(false);
/// Set (LOCAL) by `auth.bind`: on a Citus worker, the mark that the coordinator bound the
/// transaction's identity (docs/citus.md).
pub static BOUND: GucSetting<bool> = GucSetting::<bool>::new(false);
// PostgREST/Supabase inputs, declared here so that changing them bumps TOKEN_GEN.
pub static REQUEST_CLAIMS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static REQUEST_CLAIM_SUB: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static REQUEST_CLAIM_ROLE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static REQUEST_CLAIM_EMAIL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn token_changed(_new: *const c_char, _extra: *mut c_void) {
    TOKEN_GEN.fetch_add(1, Ordering::Relaxed);
}
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn token_changed_bool(_new: bool, _extra: *mut c_void) {
    TOKEN_GEN.fetch_add(1, Ordering::Relaxed);
}
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn config_changed_int(_new: i32, _extra: *mut c_void) {
    CONFIG_GEN.fetch_add(1, Ordering::Relaxed);
}
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn config_changed_bool(_new: bool, _extra: *mut c_void) {
    CONFIG_GEN.fetch_add(1, Ordering::Relaxed);
    TOKEN_GEN.fetch_add(1, Ordering::Relaxed);
}
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn config_changed_str(_new: *const c_char, _extra: *mut c_void) {
    CONFIG_GEN.fetch_add(1, Ordering::Relaxed);
}
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_claim_path(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // A claim path must name something: an empty one would silently grant no roles.
    !(*newval).is_null() && *(*newval) != 0
}

/// The raw current value of a string GUC without copying: this is read once per helper call on
/// the slow path only.
pub fn raw_str(setting: &'static GucSetting<Option<CString>>) -> Option<&'static CStr> {
    // SAFETY: PostgreSQL owns the string and replaces (never mutates) it on change; callers
    // use the slice before any statement can run that changes the setting.
    unsafe {
        let p = *setting.as_ptr();
        if p.is_null() || *p == 0 {
            None
        } else {
            Some(CStr::from_ptr(p))
        }
    }
}

pub fn leeway_seconds() -> f64 {
    LEEWAY_SECONDS.get() as f64
}

pub fn policy() -> auth_core::Policy {
    auth_core::Policy {
        leeway_seconds: leeway_seconds(),
        require_exp: REQUIRE_EXP.get(),
        max_token_bytes: MAX_TOKEN_BYTES.get() as usize,
    }
}

/// `auth.roles_claim`, borrowed from PostgreSQL (see `raw_str`: use it before running SQL).
pub fn roles_claim() -> &'static str {
    raw_str(&ROLES_CLAIM)
        .and_then(|c| c.to_str().ok())
        .unwrap_or(auth_core::identity::DEFAULT_ROLES_CLAIM)
}

/// The parameters of new hashes. They must stay within the verification caps: a hash we could
/// not verify later is useless, and sign-in's dummy hash for unknown emails must cost what a
/// real one costs.
pub fn argon2_params() -> auth_core::password::Argon2Params {
    let p = auth_core::password::Argon2Params {
        memory_kib: ARGON2_MEMORY_KIB.get() as u32,
        iterations: ARGON2_ITERATIONS.get() as u32,
        parallelism: ARGON2_PARALLELISM.get() as u32,
    };
    if let Err(e) = verify_limits().check_argon2(p) {
        crate::errors::invalid_parameter(format!(
            "auth.argon2_* settings exceed auth.max_verify_memory_kib/auth.max_verify_memory_passes: {}",
            e.detail
        ));
    }
    p
}

pub fn verify_limits() -> auth_core::password::VerifyLimits {
    auth_core::password::VerifyLimits {
        max_memory_kib: MAX_VERIFY_MEMORY_KIB.get() as u32,
        max_memory_passes: MAX_VERIFY_MEMORY_PASSES.get() as u64,
        ..auth_core::password::VerifyLimits::DEFAULT
    }
}

pub fn issuer() -> String {
    raw_str(&ISSUER)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("auth_ext")
        .to_string()
}

pub fn init() {
    let user = GucFlags::default();
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"auth.jwt",
            c"Bearer token (JWT) of the current request.",
            c"Set per transaction with set_config('auth.jwt', token, true). Verified on first use; auth.uid() and the other helpers read the verified claims.",
            &JWT,
            GucContext::Userset,
            user,
            None,
            Some(token_changed),
            None,
        );
        for (name, setting) in [
            (c"request.jwt.claims", &REQUEST_CLAIMS),
            (c"request.jwt.claim.sub", &REQUEST_CLAIM_SUB),
            (c"request.jwt.claim.role", &REQUEST_CLAIM_ROLE),
            (c"request.jwt.claim.email", &REQUEST_CLAIM_EMAIL),
        ] {
            GucRegistry::define_string_guc_with_hooks(
                name,
                c"Claims set by PostgREST; read by auth_ext only when auth.trust_request_claims is on.",
                c"",
                setting,
                GucContext::Userset,
                user,
                None,
                Some(token_changed),
                None,
            );
        }
        GucRegistry::define_int_guc_with_hooks(
            c"auth.leeway_seconds",
            c"Clock-skew allowance for exp, nbf and iat, in seconds.",
            c"",
            &LEEWAY_SECONDS,
            0,
            3600,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(config_changed_int),
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"auth.max_token_bytes",
            c"Largest accepted bearer token, in bytes.",
            c"",
            &MAX_TOKEN_BYTES,
            256,
            1 << 20,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(config_changed_int),
            None,
        );
        GucRegistry::define_bool_guc_with_hooks(
            c"auth.require_exp",
            c"Refuse tokens without an exp claim.",
            c"",
            &REQUIRE_EXP,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(config_changed_bool),
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"auth.roles_claim",
            c"Dotted claim path of the application roles read by auth.roles() and auth.has_role().",
            c"",
            &ROLES_CLAIM,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_claim_path),
            Some(config_changed_str),
            None,
        );
        // Bounds keep hashing affordable (no request allocates more than 256 MiB) and our
        // hashes importable by GoTrue (m ≤ 1 GiB, t ≤ 20, p ≤ 16).
        for (name, desc, setting, min, max) in [
            (
                c"auth.argon2_memory_kib",
                c"argon2id memory cost of new password hashes, in KiB.",
                &ARGON2_MEMORY_KIB,
                1024,
                262_144,
            ),
            (
                c"auth.argon2_iterations",
                c"argon2id time cost (passes) of new password hashes.",
                &ARGON2_ITERATIONS,
                1,
                20,
            ),
            (
                c"auth.argon2_parallelism",
                c"argon2id parallelism (lanes) of new password hashes.",
                &ARGON2_PARALLELISM,
                1,
                16,
            ),
            (
                c"auth.max_verify_memory_kib",
                c"Largest argon2 memory cost of a stored hash that is verified, in KiB; larger is INVALID_PARAMETER.",
                &MAX_VERIFY_MEMORY_KIB,
                1024,
                auth_core::password::VerifyLimits::CEILING.max_memory_kib as i32,
            ),
            (
                c"auth.max_verify_memory_passes",
                c"Largest argon2 memory (KiB) times iterations of a stored hash that is verified; bounds its time.",
                &MAX_VERIFY_MEMORY_PASSES,
                1024,
                auth_core::password::VerifyLimits::CEILING.max_memory_passes as i32,
            ),
            (
                c"auth.max_failed_sign_ins",
                c"Consecutive failed sign-ins that lock an account.",
                &MAX_FAILED_SIGN_INS,
                1,
                1000,
            ),
            (
                c"auth.lockout_seconds",
                c"How long a locked account stays locked, in seconds.",
                &LOCKOUT_SECONDS,
                1,
                7 * 86_400,
            ),
            (
                c"auth.min_password_length",
                c"Shortest password auth.sign_up accepts, in characters.",
                &MIN_PASSWORD_LENGTH,
                1,
                1024,
            ),
            (c"auth.access_token_seconds", c"Lifetime of issued access tokens, in seconds.", &ACCESS_TOKEN_SECONDS, 30, 7 * 86_400),
            (c"auth.refresh_token_seconds", c"Lifetime of a refresh token (sliding: each refresh starts a new one), in seconds.", &REFRESH_TOKEN_SECONDS, 300, 366 * 86_400),
            (c"auth.refresh_reuse_interval_seconds", c"Window in which a rotated refresh token may be presented again (client retries) and gets the same successor.", &REFRESH_REUSE_INTERVAL_SECONDS, 0, 300),
            (c"auth.otp_expiry_seconds", c"Lifetime of one-time codes and links, in seconds.", &OTP_EXPIRY_SECONDS, 60, 86_400),
            (c"auth.otp_length", c"Digits of one-time codes.", &OTP_LENGTH, 6, 10),
            (c"auth.otp_max_attempts", c"Attempts judged per one-time code before it is void.", &OTP_MAX_ATTEMPTS, 1, 100),
            (c"auth.mfa_max_failures", c"Failed verifications per MFA factor per window before its verifications are refused.", &MFA_MAX_FAILURES, 1, 100),
            (c"auth.mfa_failure_window_seconds", c"Window of auth.mfa_max_failures, in seconds.", &MFA_FAILURE_WINDOW_SECONDS, 30, 86_400),
            (c"auth.otp_min_interval_seconds", c"Least time between two one-time codes sent to one user, in seconds.", &OTP_MIN_INTERVAL_SECONDS, 0, 3600),
        ] {
            GucRegistry::define_int_guc(
                name,
                desc,
                c"",
                setting,
                min,
                max,
                GucContext::Suset,
                GucFlags::default(),
            );
        }
        GucRegistry::define_string_guc_with_hooks(
            c"auth.issuer",
            c"iss of the tokens auth_ext issues; its own signing keys verify only tokens with this issuer.",
            c"",
            &ISSUER,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_claim_path),
            None,
            None,
        );
        GucRegistry::define_string_guc(
            c"auth.mfa_totp_issuer",
            c"Issuer shown by authenticator apps for TOTP factors (the otpauth:// label).",
            c"",
            &MFA_TOTP_ISSUER,
            GucContext::Suset,
            GucFlags::default(),
        );
        GucRegistry::define_bool_guc(
            c"auth.require_email_confirmation",
            c"auth.sign_in refuses users whose email is not confirmed (EMAIL_NOT_CONFIRMED); auth.sign_up sends a confirmation and answers a taken email like a new one.",
            c"",
            &REQUIRE_EMAIL_CONFIRMATION,
            GucContext::Suset,
            GucFlags::default(),
        );
        GucRegistry::define_bool_guc(
            c"auth.allow_anonymous_sign_ins",
            c"auth.sign_in_anonymously creates users without email or password.",
            c"Off by default: each call creates a user and a session.",
            &ALLOW_ANONYMOUS_SIGN_INS,
            GucContext::Suset,
            GucFlags::default(),
        );
        GucRegistry::define_bool_guc(
            c"auth.allow_sign_up",
            c"auth.sign_in_with_otp creates an account for an unknown email (when its create_user is true).",
            c"",
            &ALLOW_SIGN_UP,
            GucContext::Suset,
            GucFlags::default(),
        );
        GucRegistry::define_bool_guc_with_hooks(
            c"auth.revocation_checks",
            c"Reject tokens of revoked sessions and of banned or deleted users (TOKEN_REVOKED).",
            c"Checked when a token is bound and whenever auth.users or auth.sessions change, not per row.",
            &REVOCATION_CHECKS,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(config_changed_bool),
            None,
        );
        GucRegistry::define_bool_guc(
            c"auth.helpers_as_initplans",
            c"Plan auth.uid() and the other RLS helpers as initPlans evaluated once per execution.",
            c"Turn off only to compare plans: the helpers then run once per row (from a cache).",
            &HELPERS_AS_INITPLANS,
            GucContext::Userset,
            GucFlags::default(),
        );
        GucRegistry::define_bool_guc_with_hooks(
            c"auth.trust_request_claims",
            c"When auth.jwt is not set, read PostgREST's request.jwt.claims without verification.",
            c"Only for databases behind PostgREST, which verifies tokens itself: any SQL client can set request.jwt.claims.",
            &TRUST_REQUEST_CLAIMS,
            GucContext::Suset,
            GucFlags::default(),
            None,
            Some(config_changed_bool),
            None,
        );
        GucRegistry::define_bool_guc_with_hooks(
            c"auth.bound",
            c"Set for the transaction by auth.bind: the identity was bound explicitly (token or anonymous).",
            c"On Citus workers, an auth helper refuses to run in a coordinator's task without it (IDENTITY_NOT_PROPAGATED).",
            &BOUND,
            GucContext::Userset,
            user,
            None,
            Some(token_changed_bool),
            None,
        );
        // Every auth.* setting is ours: a typo (`SET auth.jwtt`) is an error, not a silent
        // placeholder that leaves the request anonymous.
        pg_sys::MarkGUCPrefixReserved(c"auth".as_ptr());
    }
}

/// Sets parameters by name (the one wrapper over `set_config_option`); errors are raised.
pub fn set(
    settings: &[(&CStr, &CStr)],
    context: pg_sys::GucContext::Type,
    source: pg_sys::GucSource::Type,
    action: pg_sys::GucAction::Type,
) {
    for (name, value) in settings {
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                context,
                source,
                action,
                true,
                0,
                false,
            );
        }
    }
}
