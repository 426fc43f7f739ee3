//! Tokens we issue: signing keys and JWKS, sign-in token responses, refresh rotation, sign-out
//! and bans.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{bind, lit, one, sign_in_setup, token_response, try_sql};
    use pgrx::prelude::*;
    use serde_json::Value;

    #[pg_test]
    fn signing_keys_and_jwks() {
        let mut kids = Vec::new();
        for alg in ["ES256", "EdDSA", "RS256", "HS256"] {
            kids.push(one(&format!("SELECT auth.generate_signing_key('{alg}')")).unwrap());
        }
        let jwks: Value = serde_json::from_str(&one("SELECT auth.jwks()::text").unwrap()).unwrap();
        let published: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["alg"].as_str().unwrap())
            .collect();
        assert_eq!(
            published,
            vec!["ES256", "EdDSA", "RS256"],
            "HMAC secrets are never published"
        );
        assert!(jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("d").is_none()));
        // Each key signs tokens that our verifier accepts with issuer and audience checks.
        for kid in &kids {
            let t = one(&format!(
                "SELECT auth.sign('{{\"sub\": \"x\", \"aud\": \"authenticated\"}}', '{kid}')"
            ))
            .unwrap();
            let claims: Value = serde_json::from_str(
                &one(&format!("SELECT auth.verify({})::text", lit(&t))).unwrap(),
            )
            .unwrap();
            assert_eq!(claims["iss"], "auth_ext");
            assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
        }
        // Without audience "authenticated" or with another issuer, our keys refuse the token.
        let t = one("SELECT auth.sign('{\"sub\": \"x\", \"aud\": \"other\"}')").unwrap();
        assert!(try_sql(&format!("SELECT auth.verify({})::text", lit(&t)))
            .starts_with("28000 INVALID_CLAIMS"));
        let t = one(
            "SELECT auth.sign('{\"sub\": \"x\", \"aud\": \"authenticated\", \"iss\": \"evil\"}')",
        )
        .unwrap();
        assert!(try_sql(&format!("SELECT auth.verify({})::text", lit(&t)))
            .starts_with("28000 INVALID_CLAIMS"));
        assert!(try_sql("SELECT auth.generate_signing_key('PS256')").starts_with("22023"));
        // The newest key signs; a retired one stops verifying.
        let t = one("SELECT auth.sign('{\"sub\": \"x\", \"aud\": \"authenticated\"}')").unwrap();
        let header: Value =
            serde_json::from_slice(&auth_core::b64::decode(t.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["kid"], kids[3].as_str());
        Spi::run(&format!("SELECT auth.retire_key('{}')", kids[3])).unwrap();
        assert!(try_sql(&format!("SELECT auth.verify({})::text", lit(&t))).contains("retired"));
        // A key keeps the issuer it was made for; auth.issuer applies to keys made later.
        Spi::run("SET LOCAL auth.issuer = 'https://db.example.test/auth'").unwrap();
        let iss = |t: &str| -> String {
            serde_json::from_str::<Value>(
                &one(&format!("SELECT auth.verify({})::text", lit(t))).unwrap(),
            )
            .unwrap()["iss"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let claims = "'{\"sub\": \"x\", \"aud\": \"authenticated\"}'";
        let t = one(&format!("SELECT auth.sign({claims}, '{}')", kids[0])).unwrap();
        assert_eq!(iss(&t), "auth_ext");
        let fresh = one("SELECT auth.generate_signing_key()").unwrap();
        let t = one(&format!("SELECT auth.sign({claims})")).unwrap();
        assert_eq!(iss(&t), "https://db.example.test/auth");
        let header: Value =
            serde_json::from_slice(&auth_core::b64::decode(t.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["kid"], fresh.as_str());
        // Key events are audited, with the kid and without key material.
        Spi::run(r#"SELECT auth.add_key('{"kty": "oct", "alg": "HS256", "kid": "audit-test", "k": "YW4gaG1hYyBzZWNyZXQgZm9yIHRoZSBhdWRpdCB0ZXN0"}', NULL, ARRAY['*'])"#).unwrap();
        let audit = one("SELECT string_agg(event || ' ' || details::text, E'\n' ORDER BY id) FROM auth.audit_log").unwrap();
        for e in ["signing_key_generated", "key_added", "key_retired"] {
            assert!(audit.contains(e), "{e} not in {audit}");
        }
        assert!(audit.contains(&kids[3]) && audit.contains("audit-test"));
        assert!(!audit.contains("YW4gaG1hYyBzZWNyZXQ") && !audit.contains("\"d\""));
    }

    #[pg_test]
    fn sign_in_issues_supabase_shaped_tokens() {
        sign_in_setup();
        let id = one("SELECT auth.sign_up('hank@example.test', 'long enough pw', '{\"name\": \"Hank\"}')::text").unwrap();
        let r = token_response("SELECT auth.sign_in('hank@example.test', 'long enough pw')::text");
        assert_eq!(r["token_type"], "bearer");
        assert_eq!(r["expires_in"], 3600);
        assert_eq!(r["user"]["id"], id.as_str());
        assert_eq!(r["refresh_token"].as_str().unwrap().len(), 43);
        let access = r["access_token"].as_str().unwrap();
        let claims: Value = serde_json::from_str(
            &one(&format!("SELECT auth.verify({})::text", lit(access))).unwrap(),
        )
        .unwrap();
        for k in [
            "aud",
            "exp",
            "iat",
            "iss",
            "sub",
            "email",
            "phone",
            "role",
            "app_metadata",
            "user_metadata",
            "session_id",
            "jti",
            "aal",
            "amr",
        ] {
            assert!(claims.get(k).is_some(), "claim {k} missing: {claims}");
        }
        assert_eq!(claims["aud"], "authenticated");
        assert_eq!(claims["role"], "authenticated");
        assert_eq!(claims["sub"], id.as_str());
        assert_eq!(claims["user_metadata"]["name"], "Hank");
        assert_eq!(
            claims["exp"].as_i64().unwrap(),
            r["expires_at"].as_i64().unwrap()
        );
        // The token binds and the helpers answer from it.
        bind(access);
        assert_eq!(one("SELECT auth.uid()::text").as_deref(), Some(id.as_str()));
        assert_eq!(
            one("SELECT auth.email()").as_deref(),
            Some("hank@example.test")
        );
        let events = one(&format!(
            "SELECT string_agg(event, ',' ORDER BY id) FROM auth.audit_log WHERE user_id = '{id}'"
        ))
        .unwrap();
        assert!(events.contains("signed_in"), "{events}");
    }

    #[pg_test]
    fn refresh_rotates_and_retries_get_the_same_successor() {
        sign_in_setup();
        Spi::run("SELECT auth.sign_up('ivy@example.test', 'long enough pw')").unwrap();
        let r = token_response("SELECT auth.sign_in('ivy@example.test', 'long enough pw')::text");
        let first = r["refresh_token"].as_str().unwrap().to_string();
        let r2 = token_response(&format!("SELECT auth.refresh({})::text", lit(&first)));
        let second = r2["refresh_token"].as_str().unwrap().to_string();
        assert_ne!(first, second);
        // A client retry within the reuse interval: the same successor, no new rotation.
        let r3 = token_response(&format!("SELECT auth.refresh({})::text", lit(&first)));
        assert_eq!(r3["refresh_token"], second.as_str());
        let rows = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM auth.refresh_tokens WHERE session_id = '{}'",
            serde_json::from_str::<Value>(
                &one(&format!(
                    "SELECT auth.verify({})::text",
                    lit(r2["access_token"].as_str().unwrap())
                ))
                .unwrap()
            )
            .unwrap()["session_id"]
                .as_str()
                .unwrap()
        ))
        .unwrap();
        assert_eq!(rows, Some(2));
        // The successor rotates on.
        let r4 = token_response(&format!("SELECT auth.refresh({})::text", lit(&second)));
        assert_ne!(r4["refresh_token"], second.as_str());
        // A late retry of the first token, still within the interval: the chain's live token.
        let r5 = token_response(&format!("SELECT auth.refresh({})::text", lit(&first)));
        assert_eq!(r5["refresh_token"], r4["refresh_token"]);
        // Unknown and expired tokens.
        assert!(
            try_sql("SELECT auth.refresh('not-a-token')::text").starts_with("28000 INVALID_TOKEN")
        );
        let third = r4["refresh_token"].as_str().unwrap().to_string();
        Spi::run("UPDATE auth.refresh_tokens SET expires_at = now() - interval '1 second' WHERE rotated_at IS NULL").unwrap();
        assert!(
            try_sql(&format!("SELECT auth.refresh({})::text", lit(&third)))
                .starts_with("28000 TOKEN_EXPIRED")
        );
    }

    #[pg_test]
    fn sign_out_and_bans_revoke_access_tokens() {
        sign_in_setup();
        let id = one("SELECT auth.sign_up('jack@example.test', 'long enough pw')::text").unwrap();
        let a = token_response("SELECT auth.sign_in('jack@example.test', 'long enough pw')::text");
        let b = token_response("SELECT auth.sign_in('jack@example.test', 'long enough pw')::text");
        let (ta, tb) = (
            a["access_token"].as_str().unwrap().to_string(),
            b["access_token"].as_str().unwrap().to_string(),
        );
        bind(&ta);
        assert_eq!(one("SELECT auth.uid()::text").as_deref(), Some(id.as_str()));
        assert_eq!(
            Spi::get_one::<i64>("SELECT auth.sign_out('others')").unwrap(),
            Some(1)
        );
        assert!(
            one("SELECT auth.uid()::text").is_some(),
            "this session lives on"
        );
        assert!(try_sql(&format!("SELECT auth.verify({})::text", lit(&tb)))
            .starts_with("28000 TOKEN_REVOKED"));
        assert!(try_sql(&format!(
            "SELECT auth.refresh({})::text",
            lit(b["refresh_token"].as_str().unwrap())
        ))
        .starts_with("28000 TOKEN_REVOKED"));
        Spi::run("SELECT auth.sign_out()").unwrap();
        let r = try_sql("SELECT auth.uid()::text");
        assert!(r.starts_with("28000 TOKEN_REVOKED"), "{r}");
        // Bans: every token of the user, until the ban ends.
        Spi::run("RESET auth.jwt").unwrap();
        let c = token_response("SELECT auth.sign_in('jack@example.test', 'long enough pw')::text");
        let tc = c["access_token"].as_str().unwrap().to_string();
        bind(&tc);
        Spi::run(&format!(
            "SELECT auth.ban_user('{id}', now() + interval '1 hour')"
        ))
        .unwrap();
        assert!(try_sql("SELECT auth.uid()::text").starts_with("28000 TOKEN_REVOKED"));
        assert!(
            try_sql("SELECT auth.sign_in('jack@example.test', 'long enough pw')::text")
                .starts_with("28P01 INVALID_CREDENTIALS")
        );
        // With revocation checks off, only signature and claims count.
        Spi::run("SET LOCAL auth.revocation_checks = off").unwrap();
        assert_eq!(one("SELECT auth.uid()::text").as_deref(), Some(id.as_str()));
        Spi::run("SET LOCAL auth.revocation_checks = on").unwrap();
        Spi::run(&format!("SELECT auth.ban_user('{id}', NULL)")).unwrap();
        assert!(
            try_sql("SELECT auth.uid()::text").starts_with("28000 TOKEN_REVOKED"),
            "the ban ended the session"
        );
        let events = one(&format!(
            "SELECT string_agg(DISTINCT event, ',') FROM auth.audit_log WHERE user_id = '{id}'"
        ))
        .unwrap();
        for e in ["signed_in", "signed_out", "user_banned", "user_unbanned"] {
            assert!(events.contains(e), "{e} not in {events}");
        }
        // Deleting the user (soft, as GoTrue does) revokes their tokens too.
        Spi::run("RESET auth.jwt").unwrap();
        let d = token_response("SELECT auth.sign_in('jack@example.test', 'long enough pw')::text");
        bind(d["access_token"].as_str().unwrap());
        assert_eq!(one("SELECT auth.uid()::text").as_deref(), Some(id.as_str()));
        Spi::run(&format!(
            "UPDATE auth.users SET deleted_at = now() WHERE id = '{id}'"
        ))
        .unwrap();
        let r = try_sql("SELECT auth.uid()::text");
        assert!(
            r.starts_with("28000 TOKEN_REVOKED") && r.contains("deleted"),
            "{r}"
        );
        // A hard DELETE takes the sessions with it: still revoked, now for the session.
        Spi::run(&format!("DELETE FROM auth.users WHERE id = '{id}'")).unwrap();
        let r = try_sql("SELECT auth.uid()::text");
        assert!(
            r.starts_with("28000 TOKEN_REVOKED") && r.contains("session"),
            "{r}"
        );
    }
}
