//! Role-claim sync arithmetic: merging the roles that grant tables give a user into the roles
//! the user already has, without touching roles that no sync manages.
//!
//! Per user the sync remembers `synced` (roles present because a grant row gives them) and
//! `kept` (roles among those that were already there, set by hand or other code, when a grant
//! first gave them). A role leaves the user's roles when its last grant goes, unless it was
//! kept; manual roles never leave; a granted role is present whatever was done by hand.

use serde_json::Value;

/// Application roles as a JSON value holds them, in a token claim or a user row: an array of
/// strings (non-strings ignored) or a single string; anything else means no roles. Sorted and
/// de-duplicated, so membership is a binary search.
pub fn of_value(v: Option<&Value>) -> Vec<String> {
    let roles = match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    normalise(roles)
}

/// The suffix naming the sync triggers of one (role, user column) registration: 12 hex digits
/// of the SHA-256 of the lower-cased pair (lower-cased as in 0.1.0, whose installed triggers
/// carry these names).
pub fn trigger_suffix(role: &str, user_column: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(format!("{role}\n{user_column}").to_lowercase().as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sorted and de-duplicated.
pub fn normalise(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Returns `(roles, kept)` for a user whose roles are `current`, who previously had
/// `synced_prev` from grants (of which `kept_prev` were there by hand), and whom the grant
/// tables now give `synced_new`.
pub fn merge(
    current: &[String],
    synced_prev: &[String],
    kept_prev: &[String],
    synced_new: &[String],
) -> (Vec<String>, Vec<String>) {
    let added_by_sync = |r: &String| synced_prev.contains(r) && !kept_prev.contains(r);
    let manual: Vec<String> = current
        .iter()
        .filter(|r| !added_by_sync(r))
        .cloned()
        .collect();
    let kept = normalise(
        synced_new
            .iter()
            .filter(|r| manual.contains(r))
            .cloned()
            .collect(),
    );
    let roles = normalise(
        manual
            .into_iter()
            .chain(synced_new.iter().cloned())
            .collect(),
    );
    (roles, kept)
}

#[cfg(test)]
mod tests {
    use super::merge;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grant_and_revoke() {
        let (roles, kept) = merge(&v(&["user"]), &v(&[]), &v(&[]), &v(&["creator"]));
        assert_eq!(
            (roles.clone(), kept.clone()),
            (v(&["creator", "user"]), v(&[]))
        );
        let (roles, kept) = merge(&roles, &v(&["creator"]), &kept, &v(&[]));
        assert_eq!(
            (roles, kept),
            (v(&["user"]), v(&[])),
            "the manual role stays, the synced one goes"
        );
    }

    #[test]
    fn a_manual_role_that_is_also_granted_survives_the_grant() {
        let (roles, kept) = merge(&v(&["admin"]), &v(&[]), &v(&[]), &v(&["admin"]));
        assert_eq!(
            (roles.clone(), kept.clone()),
            (v(&["admin"]), v(&["admin"]))
        );
        let (roles, kept) = merge(&roles, &v(&["admin"]), &kept, &v(&[]));
        assert_eq!((roles, kept), (v(&["admin"]), v(&[])));
    }

    #[test]
    fn grants_win_over_manual_removal_and_output_is_sorted() {
        // Someone removed a synced role by hand while its grant exists: it comes back.
        let (roles, _) = merge(
            &v(&["zeta", "alpha", "alpha"]),
            &v(&["creator"]),
            &v(&[]),
            &v(&["creator", "beta"]),
        );
        assert_eq!(roles, v(&["alpha", "beta", "creator", "zeta"]));
    }
}
