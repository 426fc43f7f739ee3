//! The RLS helpers (`auth.uid()`, `auth.role()`, `auth.roles()`, `auth.claim()`, …): anonymous
//! and bound answers, the per-backend cache following `auth.jwt`, PostgREST's request claims,
//! initPlans, and the reserved `auth.*` settings.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{add_fixture_keys, bind, case, fixtures, lit, one, try_sql};
    use pgrx::prelude::*;

    #[pg_test]
    fn helpers_are_null_when_anonymous() {
        assert_eq!(one("SELECT auth.uid()::pg_catalog.text"), None);
        assert_eq!(one("SELECT auth.user_id()"), None);
        assert_eq!(one("SELECT auth.role()"), None);
        assert_eq!(one("SELECT auth.email()"), None);
        assert_eq!(one("SELECT auth.jwt()::pg_catalog.text"), None);
        assert_eq!(one("SELECT auth.claim('sub')::pg_catalog.text"), None);
        assert_eq!(
            one("SELECT auth.roles()::pg_catalog.text").as_deref(),
            Some("{}")
        );
        assert_eq!(
            Spi::get_one::<bool>("SELECT auth.has_role('admin')").unwrap(),
            Some(false)
        );
        let r = try_sql("SELECT auth.require_role('admin')::pg_catalog.text");
        assert!(r.starts_with("42501 INSUFFICIENT_PERMISSIONS"), "{r}");
        // An empty auth.jwt is anonymous too.
        bind("");
        assert_eq!(one("SELECT auth.uid()::pg_catalog.text"), None);
    }

    #[pg_test]
    fn helpers_read_the_bound_token() {
        add_fixture_keys();
        let f = fixtures();
        bind(&case("alice_admin"));
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            f["alice"].as_str()
        );
        assert_eq!(one("SELECT auth.user_id()").as_deref(), f["alice"].as_str());
        assert_eq!(one("SELECT auth.role()").as_deref(), Some("authenticated"));
        assert_eq!(
            one("SELECT auth.email()").as_deref(),
            Some("alice@example.test")
        );
        assert_eq!(
            one("SELECT auth.roles()::pg_catalog.text").as_deref(),
            Some("{admin,editor}")
        );
        assert_eq!(
            Spi::get_one::<bool>("SELECT auth.has_role('admin')").unwrap(),
            Some(true)
        );
        assert_eq!(
            Spi::get_one::<bool>("SELECT auth.has_role('owner')").unwrap(),
            Some(false)
        );
        assert!(try_sql("SELECT auth.require_role('admin')::pg_catalog.text").starts_with("ok"));
        assert!(
            try_sql("SELECT auth.require_role('owner')::pg_catalog.text")
                .starts_with("42501 INSUFFICIENT_PERMISSIONS")
        );
        assert_eq!(
            one("SELECT auth.claim('app_metadata.tenant_id')::pg_catalog.text").as_deref(),
            Some("42")
        );
        assert_eq!(
            one("SELECT auth.claim('app_metadata.nope')::pg_catalog.text"),
            None
        );
        assert_eq!(
            one("SELECT auth.jwt()->>'iss'").as_deref(),
            f["issuer"].as_str()
        );
        // Many rows, one verification: the same values for every row.
        let distinct = Spi::get_one::<i64>("SELECT count(DISTINCT (auth.uid(), auth.role(), auth.has_role('admin'), auth.claim('sub'))) FROM generate_series(1, 10000)").unwrap();
        assert_eq!(distinct, Some(1));
        // Non-uuid subjects (Clerk, Auth0): uid() refuses and points at user_id().
        bind(&case("clerk_subject"));
        assert_eq!(
            one("SELECT auth.user_id()").as_deref(),
            Some("user_2abcDEF")
        );
        let r = try_sql("SELECT auth.uid()::pg_catalog.text");
        assert!(
            r.starts_with("28000 INVALID_CLAIMS") && r.contains("auth.user_id()"),
            "{r}"
        );
    }

    #[pg_test]
    fn cache_follows_the_setting() {
        add_fixture_keys();
        let f = fixtures();
        bind(&case("alice"));
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            f["alice"].as_str()
        );
        bind(&case("bob"));
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            f["bob"].as_str()
        );
        Spi::run("RESET auth.jwt").unwrap();
        assert_eq!(one("SELECT auth.uid()::pg_catalog.text"), None);
        bind(&case("alice"));
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            f["alice"].as_str()
        );
        bind(&case("expired"));
        assert!(try_sql("SELECT auth.uid()::pg_catalog.text").starts_with("28000 TOKEN_EXPIRED"));
        // A bad token is an error in every helper, never a silent NULL.
        for h in [
            "auth.user_id()",
            "auth.role()",
            "auth.jwt()::pg_catalog.text",
            "auth.roles()::pg_catalog.text",
            "auth.has_role('x')::pg_catalog.text",
        ] {
            assert!(
                try_sql(&format!("SELECT {h}")).starts_with("28000 TOKEN_EXPIRED"),
                "{h}"
            );
        }
        // A token set inside a function's SET clause is seen there and gone after.
        bind(&case("alice"));
        Spi::run(&format!(
            "CREATE FUNCTION pg_temp.as_bob() RETURNS text LANGUAGE sql SET auth.jwt = {} AS 'SELECT auth.uid()::pg_catalog.text'",
            lit(&case("bob"))
        ))
        .unwrap();
        assert_eq!(one("SELECT pg_temp.as_bob()").as_deref(), f["bob"].as_str());
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            f["alice"].as_str()
        );
    }

    #[pg_test]
    fn trusted_request_claims_only_when_enabled() {
        Spi::run("SELECT set_config('request.jwt.claims', '{\"sub\":\"8d8ac610-566d-4ef0-9c22-186b2a5ed793\",\"role\":\"authenticated\"}', true)").unwrap();
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text"),
            None,
            "off by default"
        );
        Spi::run("SET LOCAL auth.trust_request_claims = on").unwrap();
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            Some("8d8ac610-566d-4ef0-9c22-186b2a5ed793")
        );
        assert_eq!(one("SELECT auth.role()").as_deref(), Some("authenticated"));
        Spi::run("SELECT set_config('request.jwt.claims', '', true)").unwrap();
        Spi::run("SELECT set_config('request.jwt.claim.sub', '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9', true)").unwrap();
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            Some("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
        );
        // auth.jwt, when set, always wins.
        add_fixture_keys();
        bind(&case("alice"));
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            fixtures()["alice"].as_str()
        );
    }

    #[pg_test]
    fn helpers_become_initplans() {
        Spi::run("CREATE TEMP TABLE docs (id int, owner uuid, tags text[])").unwrap();
        let plan = |q: &str| {
            Spi::connect(|c| {
                c.select(&format!("EXPLAIN (COSTS OFF) {q}"), None, &[])
                    .unwrap()
                    .map(|r| r.get::<String>(1).unwrap().unwrap())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        };
        let p = plan("SELECT * FROM docs WHERE owner = auth.uid()");
        assert!(
            p.contains("InitPlan") && p.contains("Filter: (owner = $0)"),
            "{p}"
        );
        let p = plan("SELECT * FROM docs WHERE auth.has_role('admin')");
        assert!(p.contains("InitPlan"), "{p}");
        // Arguments that vary per row keep the per-row call.
        let p = plan("SELECT * FROM docs WHERE auth.has_role(tags[1])");
        assert!(
            !p.contains("InitPlan") && p.contains("auth.has_role"),
            "{p}"
        );
        Spi::run("SET LOCAL auth.helpers_as_initplans = off").unwrap();
        let p = plan("SELECT * FROM docs WHERE owner = auth.uid()");
        assert!(!p.contains("InitPlan") && p.contains("auth.uid()"), "{p}");
    }

    #[pg_test]
    fn auth_settings_prefix_is_reserved() {
        // A typo must not become a silent placeholder that leaves requests anonymous.
        let r = try_sql("SELECT set_config('auth.jwtt', 'x', true)");
        assert!(r.starts_with("42602"), "{r}");
        assert!(try_sql("SELECT set_config('auth.jwt', '', true)").starts_with("ok"));
    }
}
