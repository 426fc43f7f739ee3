//! Credentials: password hashing, sign-up, sign-in and its failures, imported hashes.

#[pgrx::pg_schema]
mod tests {
    use crate::tests::{lit, one, sign_in_setup, try_sql};
    use pgrx::prelude::*;
    use serde_json::{json, Value};

    #[pg_test]
    fn password_hashing() {
        let h = one("SELECT auth.hash_password('correct horse')").unwrap();
        assert!(
            h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "OWASP defaults: {h}"
        );
        let check = |pw: &str, hash: &str| {
            Spi::get_one::<bool>(&format!(
                "SELECT auth.verify_password({}, {})",
                lit(pw),
                lit(hash)
            ))
            .unwrap()
        };
        assert_eq!(check("correct horse", &h), Some(true));
        assert_eq!(check("correct horsE", &h), Some(false));
        assert_eq!(
            Spi::get_one::<bool>("SELECT auth.verify_password(NULL, 'x')").unwrap(),
            None
        );
        // An argon2-cffi hash cut by 4 characters (non-canonical base64) and one cut in its
        // parameters. (A cut that leaves a canonical, plausible output length cannot be told
        // from a shorter hash: it verifies as a mismatch.)
        let cut = "$argon2id$v=19$m=19456,t=2,p=1$2+mb4d5E1B0YUUS1CJTtjQ$kyEFCA/Cpe408ypOSIZKXozcUDOKu9Gb9oQ4UFN";
        let cut_params = "$argon2id$v=19$m=19456,t=";
        for bad in [
            "",
            "plain",
            "$1$salt$hash",
            "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            cut,
            cut_params,
        ] {
            let r = try_sql(&format!(
                "SELECT auth.verify_password('pw', {})::text",
                lit(bad)
            ));
            assert!(r.starts_with("22023 INVALID_PARAMETER"), "{bad:?}: {r}");
            assert!(!r.contains("'pw'"), "{r}");
        }
        let r = try_sql(&format!(
            "SELECT auth.hash_password({})",
            lit(&"x".repeat(1025))
        ));
        assert!(r.starts_with("22023") && r.contains("1024 bytes"), "{r}");
        // Rehash: bcrypt always, argon2 when weaker than the current settings.
        assert_eq!(
            Spi::get_one::<bool>(&format!("SELECT auth.password_needs_rehash({})", lit(&h)))
                .unwrap(),
            Some(false)
        );
        Spi::run("SET LOCAL auth.argon2_iterations = 3").unwrap();
        assert_eq!(
            Spi::get_one::<bool>(&format!("SELECT auth.password_needs_rehash({})", lit(&h)))
                .unwrap(),
            Some(true)
        );
        assert_eq!(
            Spi::get_one::<bool>("SELECT auth.password_needs_rehash('$2b$04$2Siw3Nv3Q/gTOIPetAyPr.GNj3aO0lb1E5E9UumYGKjP9BYqlNWJe')").unwrap(),
            Some(true)
        );
        // Limits on the parameters a superuser may choose.
        assert!(
            try_sql("SELECT set_config('auth.argon2_memory_kib', '4194304', true)")
                .starts_with("22023")
        );
        assert!(
            try_sql("SELECT set_config('auth.argon2_iterations', '100', true)")
                .starts_with("22023")
        );
    }

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

    #[pg_test]
    fn sign_up_and_sign_in() {
        sign_in_setup();
        let id = one("SELECT auth.sign_up('Carol@Example.TEST', 'long enough pw', '{\"name\": \"Carol\"}')::text").unwrap();
        let row = one(&format!(
            "SELECT jsonb_build_object('email', email, 'meta', raw_user_meta_data, 'argon', encrypted_password LIKE '$argon2id$%')::text FROM auth.users WHERE id = '{id}'"
        ))
        .unwrap();
        let row: Value = serde_json::from_str(&row).unwrap();
        assert_eq!(
            row,
            json!({"email": "Carol@Example.TEST", "meta": {"name": "Carol"}, "argon": true})
        );
        assert_eq!(
            one(&format!(
                "SELECT provider FROM auth.identities WHERE user_id = '{id}'"
            ))
            .as_deref(),
            Some("email")
        );
        // Email is unique case-insensitively; passwords have a minimum length; emails a shape.
        for (q, why) in [
            (
                "SELECT auth.sign_up('carol@example.test', 'long enough pw')::text",
                "already exists",
            ),
            (
                "SELECT auth.sign_up('dave@example.test', 'short')::text",
                "at least 8",
            ),
            (
                "SELECT auth.sign_up('not an email', 'long enough pw')::text",
                "name@domain",
            ),
            (
                "SELECT auth.sign_up('e@x.test', 'long enough pw', '[1]')::text",
                "JSON object",
            ),
        ] {
            let r = try_sql(q);
            assert!(
                r.starts_with("22023 INVALID_PARAMETER") && r.contains(why),
                "{q}: {r}"
            );
        }
        // Sign-in matches the email case-insensitively and returns the user.
        let r = one("SELECT auth.sign_in('CAROL@example.test', 'long enough pw')::text").unwrap();
        let r: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(r["user"]["id"], id.as_str());
        assert_eq!(r["user"]["user_metadata"]["name"], "Carol");
        assert!(r["user"]["last_sign_in_at"].is_string());
        assert!(r["user"].get("encrypted_password").is_none());
    }

    #[pg_test]
    fn sign_in_failures_look_alike() {
        sign_in_setup();
        Spi::run("SELECT auth.sign_up('erin@example.test', 'long enough pw')").unwrap();
        let wrong = try_sql("SELECT auth.sign_in('erin@example.test', 'wrong password')::text");
        let unknown = try_sql("SELECT auth.sign_in('nobody@example.test', 'wrong password')::text");
        assert!(wrong.starts_with("28P01 INVALID_CREDENTIALS"), "{wrong}");
        assert_eq!(wrong, unknown, "one error whether or not the email exists");
        Spi::run("UPDATE auth.users SET banned_until = now() + interval '1 day' WHERE email = 'erin@example.test'").unwrap();
        assert_eq!(
            try_sql("SELECT auth.sign_in('erin@example.test', 'long enough pw')::text"),
            wrong,
            "banned"
        );
        Spi::run("UPDATE auth.users SET banned_until = NULL, deleted_at = now() WHERE email = 'erin@example.test'").unwrap();
        assert_eq!(
            try_sql("SELECT auth.sign_in('erin@example.test', 'long enough pw')::text"),
            wrong,
            "deleted"
        );
    }

    #[pg_test]
    fn bcrypt_imports_are_upgraded_on_sign_in() {
        sign_in_setup();
        // A GoTrue-style bcrypt hash made by pyca/bcrypt (tests/fixtures/password_hashes.json).
        let doc: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/password_hashes.json"))
                .unwrap();
        let row = doc["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["source"] == "pyca bcrypt $2b$" && r["password"] == "short")
            .unwrap();
        Spi::run(&format!(
            "INSERT INTO auth.users (email, encrypted_password) VALUES ('frank@example.test', {})",
            lit(row["hash"].as_str().unwrap())
        ))
        .unwrap();
        let before =
            one("SELECT encrypted_password FROM auth.users WHERE email = 'frank@example.test'")
                .unwrap();
        assert!(Spi::get_one::<bool>(&format!(
            "SELECT auth.verify_password('short', {})",
            lit(&before)
        ))
        .unwrap()
        .unwrap());
        one("SELECT auth.sign_in('frank@example.test', 'short')::text").unwrap();
        let after =
            one("SELECT encrypted_password FROM auth.users WHERE email = 'frank@example.test'")
                .unwrap();
        assert!(after.starts_with("$argon2id$"), "{after}");
        assert_eq!(
            Spi::get_one::<bool>(&format!(
                "SELECT auth.verify_password('short', {})",
                lit(&after)
            ))
            .unwrap(),
            Some(true)
        );
    }
}
