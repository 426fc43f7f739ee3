//! Identity is (issuer, subject): `auth.ensure_user` for external IdPs, the per-user account
//! cache, and tokens of one issuer never acting as another issuer's accounts.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{
        add_fixture_keys, add_idp_keys, bind, case, fixtures, lit, one, sign_in_setup,
        token_response, try_sql,
    };
    use pgrx::prelude::*;
    use serde_json::json;

    #[pg_test]
    fn ensure_user_for_external_identities() {
        // The IdP owns no accounts by id: its identities are linked in auth.identities.
        add_idp_keys();
        assert_eq!(
            one("SELECT auth.ensure_user()::pg_catalog.text"),
            None,
            "anonymous"
        );
        bind(&case("clerk_subject"));
        let id = one("SELECT auth.ensure_user()::pg_catalog.text").unwrap();
        assert_eq!(
            one("SELECT auth.ensure_user()::pg_catalog.text").as_deref(),
            Some(id.as_str()),
            "idempotent"
        );
        let ident = one(&format!(
            "SELECT provider || ' ' || provider_id FROM auth.identities WHERE user_id = '{id}'"
        ))
        .unwrap();
        assert_eq!(ident, "https://idp.fixtures.test user_2abcDEF");
        // auth.uid() is the linked account's id.
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            Some(id.as_str())
        );
        // A uuid subject that is free becomes the user id, so auth.uid() = sub.
        bind(&case("bob"));
        let r = try_sql("SELECT auth.uid()::pg_catalog.text");
        assert!(
            r.starts_with("28000 INVALID_CLAIMS") && r.contains("linked to no account"),
            "not linked yet: {r}"
        );
        let bob = one("SELECT auth.ensure_user()::pg_catalog.text").unwrap();
        assert_eq!(bob, fixtures()["bob"].as_str().unwrap());
        assert_eq!(Some(bob), one("SELECT auth.uid()::pg_catalog.text"));
    }

    #[pg_test]
    fn accounts_cached_per_user_stay_fresh() {
        // A new token of a user this backend has seen is served from the per-user account
        // cache, but never past a change to the user.
        add_fixture_keys();
        let f = fixtures();
        let alice = f["alice"].as_str().unwrap();
        Spi::run(&format!("INSERT INTO auth.users (id) VALUES ('{alice}')")).unwrap();
        let token = |alg: &str| f["per_alg"][alg]["valid"].as_str().unwrap().to_string();
        bind(&token("ES256"));
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            Some(alice)
        );
        Spi::run(&format!(
            "UPDATE auth.users SET banned_until = now() + interval '1 day' WHERE id = '{alice}'"
        ))
        .unwrap();
        for alg in ["EdDSA", "RS256"] {
            bind(&token(alg));
            let r = try_sql("SELECT auth.uid()::pg_catalog.text");
            assert!(r.starts_with("28000 TOKEN_REVOKED"), "{alg}: {r}");
            let r = try_sql(&format!(
                "SELECT auth.verify({})::pg_catalog.text",
                lit(&token(alg))
            ));
            assert!(r.starts_with("28000 TOKEN_REVOKED"), "{alg}: {r}");
        }
        Spi::run(&format!(
            "UPDATE auth.users SET banned_until = NULL WHERE id = '{alice}'"
        ))
        .unwrap();
        bind(&token("HS256"));
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            Some(alice)
        );
        assert!(try_sql(&format!(
            "SELECT auth.verify({})::pg_catalog.text",
            lit(&token("EdDSA"))
        ))
        .starts_with("ok"));
    }

    #[pg_test]
    fn issuer_confusion_is_refused() {
        sign_in_setup();
        add_idp_keys();
        // A local account, and the IdP (a trusted issuer) minting a token with its id as sub.
        let local =
            one("SELECT auth.sign_up('victim@example.test', 'long enough pw')::pg_catalog.text")
                .unwrap();
        Spi::run(&format!(
            "UPDATE auth.users SET raw_app_meta_data = '{{\"roles\": [\"admin\"]}}' WHERE id = '{local}'"
        ))
        .unwrap();
        // Another trusted issuer, whose tokens the attacker controls.
        let secret = [9u8; 32];
        Spi::run(&format!(
            "SELECT auth.add_key({}::pg_catalog.jsonb, 'https://other.example', ARRAY['authenticated'])",
            lit(&json!({"kty": "oct", "alg": "HS256", "kid": "other", "k": auth_core::b64::encode(&secret)}).to_string())
        ))
        .unwrap();
        let now = Spi::get_one::<f64>("SELECT extract(epoch FROM now())::pg_catalog.float8")
            .unwrap()
            .unwrap() as i64;
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("other".into());
        let token = jsonwebtoken::encode(
            &h,
            &json!({"sub": local, "iss": "https://other.example", "aud": "authenticated", "exp": now + 600,
                    "app_metadata": {"roles": ["viewer"]}}),
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        bind(&token);
        // Not the local account: not its id, not its roles.
        let r = try_sql("SELECT auth.uid()::pg_catalog.text");
        assert!(r.starts_with("28000 INVALID_CLAIMS"), "{r}");
        assert_eq!(
            one("SELECT auth.user_id()").as_deref(),
            Some(local.as_str())
        );
        assert_eq!(
            one("SELECT auth.roles()::pg_catalog.text").as_deref(),
            Some("{viewer}")
        );
        assert!(try_sql("SELECT auth.sign_out('global')::pg_catalog.text")
            .starts_with("28000 INVALID_CLAIMS"));
        // Linking it makes a new account, never the local one.
        let linked = one("SELECT auth.ensure_user()::pg_catalog.text").unwrap();
        assert_ne!(linked, local);
        assert_eq!(one("SELECT auth.uid()::pg_catalog.text"), Some(linked));
        // Declared as owning accounts by id, the issuer's sub is the account.
        Spi::run("SELECT auth.add_account_issuer('https://other.example')").unwrap();
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text"),
            Some(local.clone())
        );
        assert_eq!(
            one("SELECT auth.roles()::pg_catalog.text").as_deref(),
            Some("{admin}")
        );
        Spi::run("SELECT auth.drop_account_issuer('https://other.example')").unwrap();
        assert_ne!(
            one("SELECT auth.uid()::pg_catalog.text"),
            Some(local.clone())
        );
        // Our own token: ensure_user returns the user and creates nothing.
        let session = token_response(
            "SELECT auth.sign_in('victim@example.test', 'long enough pw')::pg_catalog.text",
        );
        bind(session["access_token"].as_str().unwrap());
        let users = one("SELECT count(*)::pg_catalog.text FROM auth.users");
        assert_eq!(
            one("SELECT auth.ensure_user()::pg_catalog.text"),
            Some(local.clone())
        );
        assert_eq!(
            one("SELECT count(*)::pg_catalog.text FROM auth.users"),
            users
        );
        assert_eq!(
            one("SELECT count(*)::pg_catalog.text FROM auth.identities WHERE user_id = auth.uid() AND provider <> 'email'").as_deref(),
            Some("0")
        );
    }
}
