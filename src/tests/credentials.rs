//! Credentials. Hashing, sign-up, sign-in, its failures and the lockout are shown in
//! tests/pg_regress/sql/credentials.sql; here, every hash of the fixture file made by other
//! implementations (argon2-cffi, pyca/bcrypt), read at build time.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::lit;
    use pgrx::prelude::*;
    use serde_json::Value;

    #[pg_test]
    fn independent_hashes_verify() {
        let doc: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/password_hashes.json"))
                .unwrap();
        for r in doc["hashes"].as_array().unwrap() {
            let q = format!(
                "SELECT auth.verify_password({}, {})",
                lit(r["password"].as_str().unwrap()),
                lit(r["hash"].as_str().unwrap())
            );
            assert_eq!(
                Spi::get_one::<bool>(&q).unwrap(),
                Some(true),
                "{}",
                r["source"]
            );
        }
    }
}
