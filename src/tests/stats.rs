//! `auth.stats` in one backend (the test server does not preload the library: scope
//! `backend`): every series listed, and the counters moving exactly as the calls made.
//! Cluster-wide totals across connections, with the library preloaded: tests/e2e/test_stats.py.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{add_fixture_keys, bind, case, lit, one, sign_in_setup, try_sql};
    use pgrx::prelude::*;

    fn stat(metric: &str, outcome: &str) -> i64 {
        Spi::get_one::<i64>(&format!(
            "SELECT value FROM auth.stats WHERE metric = {} AND outcome = {}",
            lit(metric),
            lit(outcome)
        ))
        .unwrap()
        .unwrap_or_else(|| panic!("no series {metric}/{outcome}"))
    }

    /// Every series, as "metric/outcome=value" for the nonzero ones.
    fn nonzero() -> String {
        one("SELECT coalesce(string_agg(metric || '/' || outcome || '=' || value, ' ' ORDER BY metric, outcome), '')
               FROM auth.stats WHERE value <> 0")
        .unwrap()
    }

    #[pg_test]
    fn every_series_is_listed_in_backend_scope() {
        Spi::run("SELECT auth.stats_reset()").unwrap();
        assert_eq!(
            one("SELECT count(*)::pg_catalog.text || ' ' || count(DISTINCT (metric, outcome))::pg_catalog.text || ' ' || string_agg(DISTINCT scope, ',') FROM auth.stats").as_deref(),
            Some("48 48 backend")
        );
        assert_eq!(nonzero(), "");
        for (m, o) in [
            ("verifications", "ok"),
            ("verifications", "TOKEN_EXPIRED"),
            ("verifications", "INVALID_TOKEN"),
            ("verifications", "TOKEN_REVOKED"),
            ("identity_cache", "hit"),
            ("identity_cache", "miss"),
            ("verify_cache", "hit"),
            ("sign_ins", "INVALID_CREDENTIALS"),
            ("sign_ins", "ACCOUNT_LOCKED"),
            ("refreshes", "reuse_detected"),
            ("revocations", "sign_out"),
            ("revocations", "ban_user"),
        ] {
            assert_eq!(stat(m, o), 0);
        }
    }

    #[pg_test]
    fn counters_move_exactly_as_the_calls_made() {
        add_fixture_keys();
        Spi::run("SELECT auth.stats_reset()").unwrap();
        // An ok verification: the first helper call misses the cache and verifies.
        bind(&case("alice"));
        assert!(one("SELECT auth.uid()::pg_catalog.text").is_some());
        assert_eq!(
            nonzero(),
            "identity_cache/miss=1 verifications/ok=1",
            "first helper call"
        );
        // The same token again in the next statement: a cache hit, no verification.
        assert!(one("SELECT auth.uid()::pg_catalog.text").is_some());
        assert_eq!(
            nonzero(),
            "identity_cache/hit=1 identity_cache/miss=1 verifications/ok=1"
        );
        // An expired token: a miss, and a verification whose outcome is its code.
        bind(&case("expired"));
        let r = try_sql("SELECT auth.uid()::pg_catalog.text");
        assert!(r.starts_with("28000 TOKEN_EXPIRED"), "{r}");
        assert_eq!(stat("verifications", "TOKEN_EXPIRED"), 1);
        assert_eq!(stat("verifications", "ok"), 1);
        assert_eq!(stat("identity_cache", "miss"), 2);
        // auth.verify: its own repeat cache.
        Spi::run("SELECT auth.stats_reset()").unwrap();
        for _ in 0..2 {
            Spi::run(&format!("SELECT auth.verify({})", lit(&case("alice")))).unwrap();
        }
        let r = try_sql(&format!(
            "SELECT auth.verify({})::pg_catalog.text",
            lit(&case("unknown_kid"))
        ));
        assert!(r.starts_with("28000 INVALID_TOKEN"), "{r}");
        assert_eq!(
            nonzero(),
            "verifications/INVALID_TOKEN=1 verifications/ok=1 verify_cache/hit=1 verify_cache/miss=2"
        );
    }

    #[pg_test]
    fn failed_sign_in_and_its_code() {
        sign_in_setup();
        one("SELECT auth.sign_up('stats@example.test', 'long enough pw')::pg_catalog.text")
            .unwrap();
        Spi::run("SELECT auth.stats_reset()").unwrap();
        let r =
            try_sql("SELECT auth.sign_in('stats@example.test', 'wrong password')::pg_catalog.text");
        assert!(r.starts_with("28P01 INVALID_CREDENTIALS"), "{r}");
        assert!(one(
            "SELECT auth.sign_in('stats@example.test', 'long enough pw')::pg_catalog.text"
        )
        .is_some());
        assert_eq!(nonzero(), "sign_ins/INVALID_CREDENTIALS=1 sign_ins/ok=1");
        // Revocations count at commit: not inside the transaction that revokes.
        let session = one("SELECT id::pg_catalog.text FROM auth.sessions LIMIT 1").unwrap();
        Spi::run(&format!(
            "SELECT auth.revoke_session({}::pg_catalog.uuid)",
            lit(&session)
        ))
        .unwrap();
        assert_eq!(stat("revocations", "revoke_session"), 0);
    }

    #[pg_test]
    fn only_monitoring_roles_read_and_only_the_owner_resets() {
        Spi::run("CREATE ROLE stats_nobody; CREATE ROLE stats_monitor IN ROLE pg_monitor").unwrap();
        let can = |role: &str| {
            one(&format!(
                "SELECT has_table_privilege('{role}', 'auth.stats', 'SELECT')::pg_catalog.text
                     || ' ' || has_function_privilege('{role}', 'auth._stats()', 'EXECUTE')::pg_catalog.text
                     || ' ' || has_function_privilege('{role}', 'auth.stats_reset()', 'EXECUTE')::pg_catalog.text"
            ))
            .unwrap()
        };
        assert_eq!(can("stats_nobody"), "false false false");
        assert_eq!(can("stats_monitor"), "true true false");
        Spi::run("SET LOCAL ROLE stats_monitor").unwrap();
        assert_eq!(
            one("SELECT count(*)::pg_catalog.text FROM auth.stats").as_deref(),
            Some("48")
        );
        Spi::run("RESET ROLE").unwrap();
    }
}
