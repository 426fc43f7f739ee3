//! Privileges: what a role without grants may call and read.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{
        add_fixture_keys, bind, case, lit, one, sign_in_setup, token_response, try_sql,
    };
    use pgrx::prelude::*;
    use serde_json::Value;

    #[pg_test]
    fn privileges() {
        add_fixture_keys();
        Spi::run("CREATE ROLE auth_ext_test_user NOLOGIN").unwrap();
        Spi::run("SET LOCAL ROLE auth_ext_test_user").unwrap();
        bind(&case("alice"));
        assert!(
            one("SELECT auth.uid()::text").is_some(),
            "helpers are callable by PUBLIC"
        );
        assert!(
            try_sql(&format!("SELECT auth.verify({})::text", lit(&case("bob")))).starts_with("ok")
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth.keys").unwrap(),
            Some(12),
            "metadata is public"
        );
        for q in [
            "SELECT count(*)::text FROM auth.key_store",
            "SELECT auth.add_key('{}'::jsonb)",
            "SELECT auth.import_jwks('{}'::jsonb)::text",
            "SELECT auth.retire_key('fx-hs256')::text",
        ] {
            let r = try_sql(q);
            assert!(r.starts_with("42501"), "{q}: {r}");
        }
        let cols = one("SELECT string_agg(column_name::text, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'auth' AND table_name = 'keys'");
        assert_eq!(
            cols.as_deref(),
            Some("kid,alg,kty,issuer,audience,valid_from,valid_until")
        );
    }

    #[pg_test]
    fn user_tables_are_private() {
        sign_in_setup();
        Spi::run("CREATE ROLE auth_ext_test_user2 NOLOGIN").unwrap();
        Spi::run("SET LOCAL ROLE auth_ext_test_user2").unwrap();
        for q in [
            "SELECT count(*)::text FROM auth.users",
            "SELECT count(*)::text FROM auth.identities",
            "SELECT count(*)::text FROM auth.failed_sign_ins",
        ] {
            assert!(try_sql(q).starts_with("42501"), "{q}");
        }
        // …but sign-up and sign-in are for everyone.
        assert!(
            try_sql("SELECT auth.sign_up('gina@example.test', 'long enough pw')::text")
                .starts_with("ok ")
        );
        assert!(
            try_sql("SELECT auth.sign_in('gina@example.test', 'long enough pw')::text")
                .starts_with("ok ")
        );
    }

    #[pg_test]
    fn token_privileges_and_housekeeping() {
        Spi::run("CREATE ROLE auth_ext_test_user3 NOLOGIN").unwrap();
        Spi::run("SELECT auth.generate_signing_key()").unwrap();
        Spi::run("SET LOCAL ROLE auth_ext_test_user3").unwrap();
        for q in [
            "SELECT auth.sign('{}')",
            "SELECT auth.generate_signing_key()",
            "SELECT auth.revoke_session(gen_random_uuid())::text",
            "SELECT auth.ban_user(gen_random_uuid(), now())::text",
            "SELECT auth.purge_expired()::text",
            "SELECT count(*)::text FROM auth.signing_keys",
            "SELECT count(*)::text FROM auth.sessions",
            "SELECT count(*)::text FROM auth.refresh_tokens",
            "SELECT count(*)::text FROM auth.audit_log",
        ] {
            assert!(try_sql(q).starts_with("42501"), "{q}");
        }
        assert!(try_sql("SELECT auth.jwks()::text").starts_with("ok "));
        assert!(try_sql("SELECT auth.refresh('x')::text").starts_with("28000 INVALID_TOKEN"));
        Spi::run("RESET ROLE").unwrap();
        // Something to purge: an expired refresh token and an audit row past the age given.
        sign_in_setup();
        Spi::run("SELECT auth.sign_up('kim@example.test', 'long enough pw')").unwrap();
        let r = token_response("SELECT auth.sign_in('kim@example.test', 'long enough pw')::text");
        Spi::run("UPDATE auth.refresh_tokens SET expires_at = now() - interval '1 second'")
            .unwrap();
        Spi::run("INSERT INTO auth.audit_log (created_at, event) VALUES (now() - interval '100 days', 'old_event')").unwrap();
        let counts: Value = serde_json::from_str(
            &one("SELECT auth.purge_expired(interval '90 days')::text").unwrap(),
        )
        .unwrap();
        assert!(counts.get("refresh_tokens").is_some() && counts.get("audit_log").is_some());
        assert_eq!(counts["refresh_tokens"], 1, "{counts}");
        assert_eq!(counts["audit_log"], 1, "{counts}");
        assert_eq!(
            one("SELECT count(*)::text FROM auth.audit_log WHERE event = 'old_event'").as_deref(),
            Some("0")
        );
        // The purged token is gone for good; the session's recent audit rows stay.
        let gone = try_sql(&format!(
            "SELECT auth.refresh({})::text",
            lit(r["refresh_token"].as_str().unwrap())
        ));
        assert!(gone.starts_with("28000 INVALID_TOKEN"), "{gone}");
        assert_eq!(
            one("SELECT count(*)::text FROM auth.audit_log WHERE event = 'signed_in'").as_deref(),
            Some("1")
        );
    }
}
