//! Property tests: invariants over generated inputs (proptest), next to the fixed vectors.

use auth_core::jwk::Jwk;
use auth_core::{b64, json, jws, roles, verify_jwt, KeyEntry, KeySet, Policy};
use proptest::prelude::*;
use serde_json::json;

const NOW: f64 = 1_790_000_000.0;

fn hs256_keys() -> KeySet {
    let jwk = Jwk::parse(&json!({"kty": "oct", "alg": "HS256", "kid": "k",
        "k": "YW4gaG1hYyBzZWNyZXQgZm9yIHRoZSBhdWRpdCB0ZXN0"}))
    .unwrap();
    let mut set = KeySet::new();
    set.insert(KeyEntry::new(jwk, None, None).unwrap()).unwrap();
    set
}

fn role() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["admin", "editor", "creator", "reader", "member"])
        .prop_map(String::from)
}

fn role_set() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(role(), 0..5).prop_map(|mut v| {
        v.sort();
        v.dedup();
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn base64url_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = b64::encode(&bytes);
        prop_assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        prop_assert_eq!(b64::decode(&text), Some(bytes));
    }

    /// Any input is an error or a token, never a panic; garbage never verifies.
    #[test]
    fn arbitrary_tokens_never_panic_or_verify(s in "\\PC{0,300}") {
        prop_assert!(verify_jwt(&s, &hs256_keys(), NOW, &Policy::default()).is_err());
        let _ = jws::parse_compact(&s, 8192);
    }

    /// Three base64url segments of arbitrary bytes: still refused, never a panic.
    #[test]
    fn well_formed_garbage_is_refused(
        h in prop::collection::vec(any::<u8>(), 0..64),
        p in prop::collection::vec(any::<u8>(), 0..64),
        s in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let t = format!("{}.{}.{}", b64::encode(&h), b64::encode(&p), b64::encode(&s));
        prop_assert!(verify_jwt(&t, &hs256_keys(), NOW, &Policy::default()).is_err());
    }

    /// The strict parser accepts exactly what serde_json accepts, for duplicate-free objects.
    #[test]
    fn strict_json_agrees_with_serde_on_plain_objects(
        m in prop::collection::btree_map("[a-z]{1,8}", prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            "[ -~]{0,16}".prop_map(|s| json!(s)),
            any::<bool>().prop_map(|b| json!(b)),
        ], 0..8)
    ) {
        let text = serde_json::to_string(&m).unwrap();
        let parsed = json::parse_object(text.as_bytes()).unwrap();
        prop_assert_eq!(serde_json::Value::Object(parsed), serde_json::to_value(&m).unwrap());
    }

    /// Role sync: granted roles are present, manual roles are never removed, and a role whose
    /// grants are all gone leaves unless it was there by hand.
    #[test]
    fn role_merge_invariants(
        manual in role_set(), synced_prev in role_set(), synced_new in role_set()
    ) {
        // The state a previous merge leaves: roles = manual ∪ synced_prev.
        let (current, kept_prev) = roles::merge(&manual, &[], &[], &synced_prev);
        let (after, _) = roles::merge(&current, &synced_prev, &kept_prev, &synced_new);
        for r in &synced_new {
            prop_assert!(after.contains(r), "granted {} missing from {:?}", r, after);
        }
        for r in &manual {
            prop_assert!(after.contains(r), "manual {} removed: {:?}", r, after);
        }
        for r in &after {
            prop_assert!(manual.contains(r) || synced_new.contains(r), "stray {} in {:?}", r, after);
        }
        let mut sorted = after.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted, after);
    }
}
