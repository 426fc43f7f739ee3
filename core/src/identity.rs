//! What the RLS helpers read from a verified claims set, computed once per token: subject (as
//! text and as uuid), role, email, application roles, and dotted-path claim lookup.

use crate::error::{AuthError, Result};
use serde_json::{Map, Value};

/// Default claim path of application roles (`auth.roles_claim`).
pub const DEFAULT_ROLES_CLAIM: &str = "app_metadata.roles";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uid {
    /// No `sub` claim.
    Absent,
    Uuid([u8; 16]),
    /// `sub` is present but not a uuid (Clerk `user_…`, Auth0 `auth0|…`): `auth.uid()` refuses
    /// and points at `auth.user_id()`.
    NotUuid,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub sub: Option<String>,
    pub uid: Uid,
    pub role: Option<String>,
    pub email: Option<String>,
    /// Sorted, duplicate-free.
    pub roles: Vec<String>,
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::invalid_claims(format!(
            "{name} must be a string"
        ))),
    }
}

/// Parses a uuid the way PostgreSQL's `uuid_in` accepts the common forms (hyphenated, braced,
/// plain 32 hex digits), so `auth.uid()` agrees with `sub::uuid`.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let inner = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(s);
    if inner.len() == 32 || (inner.len() == 36 && inner.as_bytes().get(8) == Some(&b'-')) {
        uuid::Uuid::try_parse(inner).ok().map(|u| *u.as_bytes())
    } else {
        None
    }
}

impl Identity {
    pub fn from_claims(claims: &Map<String, Value>, roles_claim: &str) -> Result<Identity> {
        let sub = optional_string(claims, "sub")?;
        let uid = match &sub {
            None => Uid::Absent,
            Some(s) => parse_uuid(s).map_or(Uid::NotUuid, Uid::Uuid),
        };
        Ok(Identity {
            uid,
            sub,
            role: optional_string(claims, "role")?,
            email: optional_string(claims, "email")?,
            roles: roles_at(claims, roles_claim),
        })
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles
            .binary_search_by(|r| r.as_str().cmp(role))
            .is_ok()
    }
}

/// Looks up a claim by path. A top-level name that itself contains dots (Auth0 namespaces its
/// custom claims as URLs, `https://example.com/roles`) matches first; otherwise the path is
/// split on dots and walked through nested objects.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// Application roles at `path` (see [`crate::roles::of_value`]).
pub fn roles_at(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    crate::roles::of_value(lookup(claims, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn derives_identity() {
        let c = obj(json!({
            "sub": "8d8ac610-566d-4ef0-9c22-186b2a5ed793", "role": "authenticated", "email": "a@b.c",
            "app_metadata": {"roles": ["editor", "admin", "editor", 7]}
        }));
        let id = Identity::from_claims(&c, DEFAULT_ROLES_CLAIM).unwrap();
        assert!(matches!(id.uid, Uid::Uuid(_)));
        assert_eq!(id.roles, vec!["admin", "editor"]);
        assert!(id.has_role("admin") && !id.has_role("owner"));
        assert_eq!(id.email.as_deref(), Some("a@b.c"));
    }

    #[test]
    fn non_uuid_subjects_and_bad_types() {
        let id =
            Identity::from_claims(&obj(json!({"sub": "user_2abc"})), DEFAULT_ROLES_CLAIM).unwrap();
        assert_eq!(id.uid, Uid::NotUuid);
        assert_eq!(id.sub.as_deref(), Some("user_2abc"));
        let id = Identity::from_claims(&obj(json!({})), DEFAULT_ROLES_CLAIM).unwrap();
        assert_eq!(id.uid, Uid::Absent);
        assert!(id.roles.is_empty());
        assert!(Identity::from_claims(&obj(json!({"sub": 5})), DEFAULT_ROLES_CLAIM).is_err());
        assert!(Identity::from_claims(&obj(json!({"role": ["x"]})), DEFAULT_ROLES_CLAIM).is_err());
    }

    #[test]
    fn uuid_forms() {
        let want = parse_uuid("8d8ac610-566d-4ef0-9c22-186b2a5ed793").unwrap();
        assert_eq!(
            parse_uuid("8D8AC610-566D-4EF0-9C22-186B2A5ED793"),
            Some(want)
        );
        assert_eq!(
            parse_uuid("{8d8ac610-566d-4ef0-9c22-186b2a5ed793}"),
            Some(want)
        );
        assert_eq!(parse_uuid("8d8ac610566d4ef09c22186b2a5ed793"), Some(want));
        assert_eq!(
            parse_uuid("urn:uuid:8d8ac610-566d-4ef0-9c22-186b2a5ed793"),
            None
        );
        assert_eq!(parse_uuid("8d8ac610-566d-4ef0-9c22-186b2a5ed79"), None);
        assert_eq!(parse_uuid("' or 1=1 --"), None);
    }

    #[test]
    fn paths() {
        let c = obj(
            json!({"a": {"b": {"c": 1}}, "https://x.io/roles": ["r"], "app_metadata": {"roles": "solo"}}),
        );
        assert_eq!(lookup(&c, "a.b.c"), Some(&json!(1)));
        assert_eq!(lookup(&c, "a.b"), Some(&json!({"c": 1})));
        assert_eq!(lookup(&c, "a.x"), None);
        assert_eq!(lookup(&c, "a.b.c.d"), None);
        assert_eq!(lookup(&c, "https://x.io/roles"), Some(&json!(["r"])));
        assert_eq!(roles_at(&c, "https://x.io/roles"), vec!["r"]);
        assert_eq!(roles_at(&c, DEFAULT_ROLES_CLAIM), vec!["solo"]);
        assert_eq!(lookup(&c, ""), None);
    }
}
