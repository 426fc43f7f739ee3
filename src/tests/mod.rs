//! SQL-level tests, run by `cargo pgrx test` inside a real PostgreSQL with the extension
//! installed. Each test runs in its own transaction, rolled back at the end. What a DBA does
//! in SQL across transactions (sign-up, sign-in, sessions, keys, RLS, role sync) is shown and
//! checked by `tests/pg_regress`; connections and concurrency by `tests/e2e`. Here is what
//! those cannot do: whole vector files read at build time, tokens made in Rust at the current
//! time, caches and plans inside one backend.
//!
//! One file per feature. In each, the tests sit in a `#[pg_schema] mod tests`: pgrx puts a
//! test's SQL function in the schema named after the module that directly contains it, and
//! `cargo pgrx test` calls it as `"tests"."<test>"()`. The helpers below are shared by all.
//! (`crate::pg_test`, which `cargo pgrx test` requires, is in lib.rs.)

mod citus;
mod credentials;
mod identity;
mod keys;
mod privileges;
mod rls;
mod stats;
mod vectors;
mod verify;

use pgrx::prelude::*;
use serde_json::Value;

const FIXTURES: &str = include_str!("../../tests/fixtures/tokens.json");

fn fixtures() -> Value {
    serde_json::from_str(FIXTURES).unwrap()
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `query` (one value) in a subtransaction: "ok <value>" or "<SQLSTATE> <message> | <detail> | <hint>".
fn try_sql(query: &str) -> String {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.try_sql(q text) RETURNS text LANGUAGE plpgsql AS $f$
         DECLARE r text; d text; h text;
         BEGIN
           EXECUTE q INTO r;
           RETURN 'ok ' || coalesce(r, 'NULL');
         EXCEPTION WHEN OTHERS THEN
           GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
           RETURN SQLSTATE || ' ' || SQLERRM || ' | ' || coalesce(d, '') || ' | ' || coalesce(h, '');
         END $f$",
    )
    .unwrap();
    Spi::get_one::<String>(&format!("SELECT pg_temp.try_sql({})", lit(query)))
        .unwrap()
        .unwrap()
}

fn one(query: &str) -> Option<String> {
    Spi::get_one::<String>(query).unwrap()
}

/// The fixture IdP's keys, and its subjects declared to be this database's user ids.
fn add_fixture_keys() {
    Spi::run(&format!(
        "SELECT auth.add_account_issuer({})",
        lit(fixtures()["issuer"].as_str().unwrap())
    ))
    .unwrap();
    add_idp_keys();
}

/// The fixture IdP's keys, bound to its issuer (which owns no accounts by id).
fn add_idp_keys() {
    let f = fixtures();
    for (_, key) in f["keys"].as_object().unwrap() {
        Spi::run(&format!(
            "SELECT auth.add_key({}::pg_catalog.jsonb, {}, ARRAY[{}])",
            lit(&key.to_string()),
            lit(f["issuer"].as_str().unwrap()),
            lit(f["audience"].as_str().unwrap())
        ))
        .unwrap();
    }
}

fn bind(token: &str) {
    Spi::run(&format!(
        "SELECT set_config('auth.jwt', {}, true)",
        lit(token)
    ))
    .unwrap();
}

fn case(name: &str) -> String {
    fixtures()["cases"][name].as_str().unwrap().to_string()
}

/// Fast argon2 parameters for tests that hash (the defaults cost ~40 ms a hash).
fn fast_hashing() {
    Spi::run("SET LOCAL auth.argon2_memory_kib = 1024").unwrap();
    Spi::run("SET LOCAL auth.argon2_iterations = 1").unwrap();
}

/// Cheap hashing and an active signing key (sign-in never makes one itself).
fn sign_in_setup() -> String {
    fast_hashing();
    // Tests sign users in right after sign-up (email confirmation: tests/e2e/test_passwordless.py).
    Spi::run("SET LOCAL auth.require_email_confirmation = off").unwrap();
    one("SELECT auth.generate_signing_key()").unwrap()
}

fn token_response(sql: &str) -> Value {
    serde_json::from_str(&one(sql).unwrap()).unwrap()
}
