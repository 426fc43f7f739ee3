//! auth_ext: a complete auth core inside PostgreSQL.
//!
//! This crate is the thin PostgreSQL layer over `auth_core`: SQL functions, GUCs, caches,
//! invalidation and error mapping. Where to find things:
//! * `auth.uid()` and the other RLS helpers: `rls.rs` (hot path) over `binding.rs` (the
//!   identity bound to the transaction, cached), `identity.rs` (a verified token) and
//!   `account.rs` (the account it acts as); the planner hook that makes them initPlans:
//!   `planner.rs`
//! * `auth.authenticate` / `auth.verify` / `auth.verify_jws`: `verify.rs`
//! * `auth.add_key` / `import_jwks` / `retire_key`, the key cache: `keys.rs`; our own signing
//!   keys and `auth.sign`: `signing_keys.rs`
//! * `auth.sign_up` / `sign_in` / `ensure_user` / passwords: `credentials.rs`; sessions,
//!   `auth.refresh`, `auth.sign_out`: `sessions.rs`; role-claim sync: `roles.rs`
//! * one-time codes, magic links, recovery, email change, phone codes: `one_time.rs`; TOTP
//!   MFA: `mfa.rs`; our server secrets: `secrets.rs`
//! * Citus (`auth.bind` propagation, worker check, local placements): `citus.rs`; `auth.stats`:
//!   `stats.rs`
//! * bookkeeping that survives the caller's rollback (lockout, reuse revocation):
//!   `autonomous.rs`; the audit log: `audit.rs`
//! * GUCs: `gucs.rs`; the transaction clock: `clock.rs`; error codes → SQLSTATE: `errors.rs`;
//!   what clients see of internal errors: `client_errors.rs`; our SPI calls: `spi.rs`;
//!   cross-backend freshness: `invalidation.rs`; the one door to the owner's privileges (user
//!   switch + pinned search_path): `privilege.rs`; the counters of `auth.stats`: `stats.rs`
//! * Tables, views and grants: `sql/*.sql`
//!
//! Dependencies point one way, from the SQL entry points down to `invalidation`, `gucs`,
//! `errors`, `clock` and `spi`, which know no other module but `stats` (itself knowing none).

use pgrx::prelude::*;

mod account;
mod audit;
mod autonomous;
mod binding;
mod citus;
mod client_errors;
mod clock;
mod credentials;
mod errors;
mod gucs;
mod identity;
mod invalidation;
mod jsonb;
mod keys;
mod mfa;
mod one_time;
mod planner;
mod privilege;
mod rls;
mod roles;
mod row_lookup;
mod secrets;
mod sessions;
mod signing_keys;
mod spi;
mod stats;
mod verify;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!(
    "../sql/000_requirements.sql",
    name = "requirements_sql",
    bootstrap
);
extension_sql_file!(
    "../sql/010_keys.sql",
    name = "keys_sql",
    requires = [invalidation::_invalidate_caches]
);
extension_sql_file!("../sql/020_rls.sql", name = "rls_sql");
extension_sql_file!("../sql/030_users.sql", name = "users_sql");
extension_sql_file!(
    "../sql/040_roles.sql",
    name = "roles_sql",
    requires = [
        "users_sql",
        roles::_sync_new_users,
        invalidation::_invalidate_caches
    ]
);
extension_sql_file!(
    "../sql/050_sessions.sql",
    name = "sessions_sql",
    requires = ["keys_sql", "users_sql", invalidation::_invalidate_caches]
);
extension_sql_file!(
    "../sql/060_session_admin.sql",
    name = "session_admin_sql",
    requires = ["sessions_sql"]
);
extension_sql_file!(
    "../sql/070_account_issuers.sql",
    name = "account_issuers_sql",
    requires = ["session_admin_sql", invalidation::_invalidate_caches]
);
extension_sql_file!(
    "../sql/080_citus.sql",
    name = "citus_sql",
    requires = ["account_issuers_sql"]
);
extension_sql_file!(
    "../sql/085_stats.sql",
    name = "stats_sql",
    requires = [
        "citus_sql",
        stats::_stats,
        stats::stats_reset,
        stats::_stats_revocation
    ]
);
extension_sql_file!(
    "../sql/090_one_time_tokens.sql",
    name = "one_time_tokens_sql",
    requires = ["users_sql", "sessions_sql"]
);
extension_sql_file!(
    "../sql/095_mfa.sql",
    name = "mfa_sql",
    requires = ["sessions_sql", "rls_sql"]
);
extension_sql_file!(
    "../sql/097_anonymous.sql",
    name = "anonymous_sql",
    requires = ["users_sql"]
);
extension_sql_file!(
    "../sql/900_privileges.sql",
    name = "privileges_sql",
    finalize
);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    invalidation::init();
    client_errors::init();
    stats::init();
}

#[cfg(feature = "pg_test")]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
