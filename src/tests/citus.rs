//! `auth.bind` and the check a Citus worker makes: a coordinator's task (a backend named
//! `citus_internal …`) must carry the binding `auth.bind` marks, or the helpers raise instead
//! of answering as if anonymous. Citus itself is exercised on a real cluster by tests/citus.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{add_fixture_keys, bind, fixtures, lit, one, try_sql};
    use pgrx::prelude::*;

    fn token() -> String {
        fixtures()["per_alg"]["ES256"]["valid"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[pg_test]
    fn bind_binds_a_token_or_anonymous_and_marks_it() {
        add_fixture_keys();
        let alice = fixtures()["alice"].as_str().unwrap().to_string();
        assert_eq!(
            one(&format!("SELECT auth.bind({})->>'sub'", lit(&token()))).as_deref(),
            Some(alice.as_str())
        );
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            Some(alice.as_str())
        );
        assert_eq!(
            one("SELECT pg_catalog.current_setting('auth.bound')").as_deref(),
            Some("on")
        );
        assert_eq!(one("SELECT auth.bind(NULL)::pg_catalog.text"), None);
        assert_eq!(one("SELECT auth.uid()::pg_catalog.text"), None, "anonymous");
        let r = try_sql("SELECT auth.bind('not.a.token')::pg_catalog.text");
        assert!(r.starts_with("28000 INVALID_TOKEN"), "{r}");
    }

    #[pg_test]
    fn a_worker_task_without_a_binding_raises() {
        add_fixture_keys();
        let alice = fixtures()["alice"].as_str().unwrap().to_string();
        // What a worker's backend looks like to the check: Citus names its connections so.
        Spi::run("SET LOCAL application_name = 'citus_internal gpid=10000000001'").unwrap();
        // set_config never reaches a worker: here it stands for a token that arrived without
        // auth.bind's mark.
        bind(&token());
        let r = try_sql("SELECT auth.uid()::pg_catalog.text");
        assert!(
            r.starts_with("55000 IDENTITY_NOT_PROPAGATED") && r.contains("auth.bind"),
            "{r}"
        );
        // Anonymous without the mark is refused too: that is the silent case this catches.
        Spi::run("SELECT set_config('auth.jwt', '', true)").unwrap();
        let r = try_sql("SELECT auth.role()");
        assert!(r.starts_with("55000 IDENTITY_NOT_PROPAGATED"), "{r}");
        // With the mark (what auth.bind propagates), the token and anonymity both work.
        Spi::run(&format!("SELECT auth.bind({})", lit(&token()))).unwrap();
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            Some(alice.as_str())
        );
        Spi::run("SELECT auth.bind(NULL)").unwrap();
        assert_eq!(one("SELECT auth.uid()::pg_catalog.text"), None);
        // The mark is checked again when it goes, not only when the token changes.
        Spi::run(&format!("SELECT auth.bind({})", lit(&token()))).unwrap();
        Spi::run("SET LOCAL auth.bound = off").unwrap();
        let r = try_sql("SELECT auth.uid()::pg_catalog.text");
        assert!(r.starts_with("55000 IDENTITY_NOT_PROPAGATED"), "{r}");
        // An ordinary backend is not affected.
        Spi::run("SET LOCAL application_name = 'app'").unwrap();
        assert_eq!(
            one("SELECT auth.uid()::pg_catalog.text").as_deref(),
            Some(alice.as_str())
        );
    }
}
