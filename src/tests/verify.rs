//! Verification through SQL: `auth.verify` with a given key, `auth.authenticate`, and the
//! verification settings (leeway, `require_exp`, `max_token_bytes`, `roles_claim`) with tokens
//! made in Rust at the current time. (Every algorithm and the fixture attack tokens:
//! tests/pg_regress/sql/tokens.sql.)

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{add_fixture_keys, bind, case, fixtures, lit, one, try_sql};
    use pgrx::prelude::*;
    use serde_json::{json, Value};

    #[pg_test]
    fn authenticate_binds_to_the_transaction() {
        add_fixture_keys();
        let f = fixtures();
        let claims = one(&format!(
            "SELECT auth.authenticate({})::pg_catalog.text",
            lit(&case("bob"))
        ))
        .unwrap();
        let claims: Value = serde_json::from_str(&claims).unwrap();
        assert_eq!(claims["sub"], f["bob"]);
        assert_eq!(
            one("SELECT current_setting('auth.jwt')").unwrap(),
            case("bob")
        );
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            f["bob"].as_str()
        );
        let r = try_sql(&format!(
            "SELECT auth.authenticate({})::pg_catalog.text",
            lit(&case("wrong_issuer"))
        ));
        assert!(r.starts_with("28000 INVALID_CLAIMS"), "{r}");
        // verify() binds nothing.
        Spi::run(&format!("SELECT auth.verify({})", lit(&case("alice")))).unwrap();
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            f["bob"].as_str()
        );
    }

    #[pg_test]
    fn verify_with_a_given_key() {
        let f = fixtures();
        let key = f["keys"]["EdDSA"].to_string();
        let r = try_sql(&format!(
            "SELECT auth.verify({}, {}::pg_catalog.jsonb)->>'sub'",
            lit(f["per_alg"]["EdDSA"]["valid"].as_str().unwrap()),
            lit(&key)
        ));
        assert_eq!(r, format!("ok {}", f["alice"].as_str().unwrap()));
        let r = try_sql(&format!(
            "SELECT auth.verify({}, {}::pg_catalog.jsonb)->>'sub'",
            lit(f["per_alg"]["ES256"]["valid"].as_str().unwrap()),
            lit(&key)
        ));
        assert!(r.starts_with("28000 INVALID_TOKEN"), "{r}");
        let r = try_sql(&format!("SELECT auth.verify({}, '{{\"kty\":\"oct\",\"k\":\"c2hvcnQ\",\"alg\":\"HS256\"}}'::pg_catalog.jsonb)->>'sub'", lit(&case("no_kid"))));
        assert!(r.starts_with("22023 INVALID_PARAMETER"), "{r}");
    }

    #[pg_test]
    fn policy_settings() {
        let secret = [7u8; 32];
        let key = json!({"kty": "oct", "alg": "HS256", "kid": "dyn", "k": auth_core::b64::encode(&secret)});
        Spi::run(&format!(
            "SELECT auth.add_key({}::pg_catalog.jsonb, NULL, ARRAY['*'])",
            lit(&key.to_string())
        ))
        .unwrap();
        let now = Spi::get_one::<f64>("SELECT extract(epoch FROM now())::pg_catalog.float8")
            .unwrap()
            .unwrap() as i64;
        let make = |claims: Value| {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.kid = Some("dyn".into());
            jsonwebtoken::encode(
                &h,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap()
        };
        let just_expired = make(json!({"sub": "u", "exp": now - 10}));
        let r = try_sql(&format!(
            "SELECT auth.verify({})->>'sub'",
            lit(&just_expired)
        ));
        assert!(r.starts_with("ok u"), "within the 30 s leeway: {r}");
        bind(&just_expired);
        assert_eq!(one("SELECT auth.user_id()").as_deref(), Some("u"));
        Spi::run("SET LOCAL auth.leeway_seconds = 0").unwrap();
        assert!(
            try_sql("SELECT auth.user_id()").starts_with("28000 TOKEN_EXPIRED"),
            "a policy change re-checks the cached token"
        );
        let no_exp = make(json!({"sub": "u"}));
        assert!(try_sql(&format!("SELECT auth.verify({})", lit(&no_exp)))
            .starts_with("28000 INVALID_CLAIMS"));
        Spi::run("SET LOCAL auth.require_exp = off").unwrap();
        assert!(
            try_sql(&format!("SELECT auth.verify({})->>'sub'", lit(&no_exp))).starts_with("ok u")
        );
        Spi::run("SET LOCAL auth.max_token_bytes = 256").unwrap();
        let big = make(json!({"sub": "u", "pad": "x".repeat(300)}));
        let r = try_sql(&format!("SELECT auth.verify({})", lit(&big)));
        assert!(
            r.starts_with("28000 INVALID_TOKEN") && r.contains("max_token_bytes"),
            "{r}"
        );
        Spi::run("SET LOCAL auth.roles_claim = 'https://example.test/roles'").unwrap();
        bind(&make(
            json!({"sub": "u", "https://example.test/roles": ["auditor"]}),
        ));
        assert_eq!(
            one("SELECT auth.roles()::pg_catalog.text").as_deref(),
            Some("{auditor}")
        );
    }
}
