//! Privileges: what a role without grants may call and read of the keys. (The user, session
//! and token tables and functions: tests/pg_regress/sql/credentials.sql and sessions.sql.)

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{add_fixture_keys, bind, case, lit, one, try_sql};
    use pgrx::prelude::*;

    #[pg_test]
    fn privileges() {
        add_fixture_keys();
        Spi::run("CREATE ROLE auth_ext_test_user NOLOGIN").unwrap();
        Spi::run("SET LOCAL ROLE auth_ext_test_user").unwrap();
        bind(&case("alice"));
        assert!(
            one("SELECT auth.uid()::pg_catalog.text").is_some(),
            "helpers are callable by PUBLIC"
        );
        assert!(try_sql(&format!(
            "SELECT auth.verify({})::pg_catalog.text",
            lit(&case("bob"))
        ))
        .starts_with("ok"));
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM auth.keys").unwrap(),
            Some(12),
            "metadata is public"
        );
        for q in [
            "SELECT count(*)::pg_catalog.text FROM auth.key_store",
            "SELECT auth.add_key('{}'::pg_catalog.jsonb)",
            "SELECT auth.import_jwks('{}'::pg_catalog.jsonb)::pg_catalog.text",
            "SELECT auth.retire_key('fx-hs256')::pg_catalog.text",
        ] {
            let r = try_sql(q);
            assert!(r.starts_with("42501"), "{q}: {r}");
        }
        let cols = one("SELECT string_agg(column_name::pg_catalog.text, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'auth' AND table_name = 'keys'");
        assert_eq!(
            cols.as_deref(),
            Some("kid,alg,kty,issuer,audience,valid_from,valid_until")
        );
    }
}
