//! Keys: validation when added, JWKS import, and key changes seen by the cache at the next
//! statement.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{add_fixture_keys, bind, case, fixtures, lit, one, try_sql};
    use pgrx::prelude::*;
    use serde_json::json;

    #[pg_test]
    fn key_changes_take_effect_at_the_next_statement() {
        add_fixture_keys();
        bind(&case("alice"));
        assert!(one("SELECT auth.uid()::pg_catalog.text").is_some());
        // Retire from a future time: still valid now.
        Spi::run("SELECT auth.retire_key('fx-es256', now() + interval '1 hour')").unwrap();
        assert!(one("SELECT auth.uid()::pg_catalog.text").is_some());
        Spi::run("SELECT auth.retire_key('fx-es256')").unwrap();
        let r = try_sql("SELECT auth.uid()::pg_catalog.text");
        assert!(
            r.starts_with("28000 INVALID_TOKEN") && r.contains("retired"),
            "{r}"
        );
        // Adding the key again re-activates it.
        let f = fixtures();
        Spi::run(&format!(
            "SELECT auth.add_key({}::pg_catalog.jsonb, {}, ARRAY[{}])",
            lit(&f["keys"]["ES256"].to_string()),
            lit(f["issuer"].as_str().unwrap()),
            lit(f["audience"].as_str().unwrap())
        ))
        .unwrap();
        assert!(try_sql("SELECT auth.uid()::pg_catalog.text").starts_with("ok "));
        // Deleting the key (by hand) is seen too.
        Spi::run("DELETE FROM auth.key_store WHERE kid = 'fx-es256'").unwrap();
        let r = try_sql("SELECT auth.uid()::pg_catalog.text");
        assert!(r.contains("unknown kid"), "{r}");
    }

    #[pg_test]
    fn key_validation_errors() {
        for (jwk, why) in [
            (
                r#"{"kty":"oct","alg":"HS256","k":"c2hvcnQ"}"#,
                "at least 32",
            ),
            (r#"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#, "P-521"),
            (
                r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}"#,
                "use",
            ),
            (
                r#"{"kty":"RSA","alg":"RS256","n":"AQAB","e":"AQAB"}"#,
                "2048",
            ),
        ] {
            let r = try_sql(&format!(
                "SELECT auth.add_key({}::pg_catalog.jsonb)",
                lit(jwk)
            ));
            assert!(
                r.starts_with("22023 INVALID_PARAMETER") && r.contains(why),
                "{jwk}: {r}"
            );
        }
        let ed = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}"#;
        assert_eq!(
            one(&format!(
                "SELECT auth.add_key({}::pg_catalog.jsonb, NULL, ARRAY['*'])",
                lit(ed)
            ))
            .as_deref(),
            Some("k1")
        );
        assert_eq!(
            one(&format!(
                "SELECT auth.add_key({}::pg_catalog.jsonb, NULL, ARRAY['*'])",
                lit(ed)
            ))
            .as_deref(),
            Some("k1"),
            "idempotent"
        );
        let other =
            json!({"kty":"OKP","crv":"Ed25519","kid":"k1","x": fixtures()["keys"]["EdDSA"]["x"]});
        let r = try_sql(&format!(
            "SELECT auth.add_key({}::pg_catalog.jsonb, NULL, ARRAY['*'])",
            lit(&other.to_string())
        ));
        assert!(r.starts_with("22023") && r.contains("different key"), "{r}");
        let no_kid =
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        assert_eq!(
            one(&format!(
                "SELECT auth.add_key({}::pg_catalog.jsonb, NULL, ARRAY['*'])",
                lit(no_kid)
            ))
            .as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
        let r = try_sql(&format!(
            "SELECT auth.add_key({}::pg_catalog.jsonb, '', NULL)",
            lit(ed)
        ));
        assert!(r.starts_with("22023"), "{r}");
        let r = try_sql(&format!(
            "SELECT auth.add_key({}::pg_catalog.jsonb, NULL, '{{}}')",
            lit(ed)
        ));
        assert!(r.starts_with("22023"), "{r}");
        let r = try_sql("SELECT auth.retire_key('nope')::pg_catalog.text");
        assert!(r.starts_with("22023"), "{r}");
        // JWKS: counts, refuses mixed secret/public sets.
        let f = fixtures();
        let jwks = json!({"keys": [f["keys"]["ES256"], f["keys"]["RS256"], f["keys"]["EdDSA"]]});
        assert_eq!(
            Spi::get_one::<i32>(&format!(
                "SELECT auth.import_jwks({}::pg_catalog.jsonb, 'https://idp', ARRAY['*'])",
                lit(&jwks.to_string())
            ))
            .unwrap(),
            Some(3)
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth.keys WHERE issuer = 'https://idp'")
                .unwrap(),
            Some(3)
        );
        let mixed = json!({"keys": [f["keys"]["ES256"], f["keys"]["HS256"]]});
        assert!(try_sql(&format!(
            "SELECT auth.import_jwks({}::pg_catalog.jsonb)::pg_catalog.text",
            lit(&mixed.to_string())
        ))
        .starts_with("22023"));
    }
}
