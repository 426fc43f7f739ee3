//! Strict JSON for JOSE headers and JWT claims: valid UTF-8, exactly one object, no duplicate
//! member names at any depth (RFC 7515 §5.2, RFC 7519 §4), no NUL characters (PostgreSQL text
//! and jsonb cannot hold them, and C-string truncation is an attack), bounded nesting.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why a document was refused. Never carries input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    NotUtf8,
    Syntax,
    NotAnObject,
    DuplicateMember,
    NulCharacter,
}

impl JsonError {
    pub fn describe(self) -> &'static str {
        match self {
            JsonError::NotUtf8 => "is not valid UTF-8",
            JsonError::Syntax => "is not valid JSON (or nests deeper than 128 levels)",
            JsonError::NotAnObject => "is not a JSON object",
            JsonError::DuplicateMember => "has a duplicate member name",
            JsonError::NulCharacter => "contains a NUL character",
        }
    }
}

const DUPLICATE: &str = "\u{1}duplicate member";
const NUL: &str = "\u{1}nul character";

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

fn checked_string<E: de::Error>(s: String) -> Result<Value, E> {
    if s.contains('\0') {
        return Err(E::custom(NUL));
    }
    Ok(Value::String(s))
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        checked_string(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        checked_string(v)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.contains('\0') {
                return Err(de::Error::custom(NUL));
            }
            if out.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses any strict JSON value (used for JWK documents given through SQL, which arrive as
/// jsonb and so are already duplicate-free, and for tests).
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::NotUtf8)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let v = match StrictValue::deserialize(&mut de) {
        Ok(StrictValue(v)) => v,
        Err(e) => {
            let msg = e.to_string();
            return Err(if msg.starts_with(DUPLICATE) {
                JsonError::DuplicateMember
            } else if msg.starts_with(NUL) {
                JsonError::NulCharacter
            } else {
                JsonError::Syntax
            });
        }
    };
    // Trailing garbage after the value is an error, not something to ignore.
    de.end().map_err(|_| JsonError::Syntax)?;
    Ok(v)
}

/// Parses a strict JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse_value(bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(JsonError::NotAnObject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let m = parse_object(br#"{"a":1,"b":{"c":[1,2,{"d":null}]},"e":"x"}"#).unwrap();
        assert_eq!(m["a"], 1);
        assert_eq!(m["b"]["c"][2]["d"], Value::Null);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateMember)
        );
        assert_eq!(
            parse_object(br#"{"x":{"a":1,"a":2}}"#),
            Err(JsonError::DuplicateMember)
        );
        assert_eq!(
            parse_object(br#"{"x":[{"a":1,"a":2}]}"#),
            Err(JsonError::DuplicateMember)
        );
        // Escaped spellings of the same name are the same name.
        assert_eq!(
            parse_object(br#"{"sub":1,"s\u0075b":2}"#),
            Err(JsonError::DuplicateMember)
        );
    }

    #[test]
    fn refuses_malformed_input() {
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(b"\"s\""), Err(JsonError::NotAnObject));
        assert_eq!(parse_object(br#"{"a":1} x"#), Err(JsonError::Syntax));
        assert_eq!(parse_object(br#"{"a":1}{}"#), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"{\"a\":\"\xff\"}"), Err(JsonError::NotUtf8));
        assert_eq!(parse_object(br#"{"a":"\ud800"}"#), Err(JsonError::Syntax));
        assert_eq!(
            parse_object(br#"{"a":"x\u0000y"}"#),
            Err(JsonError::NulCharacter)
        );
        assert_eq!(
            parse_object(br#"{"a\u0000":1}"#),
            Err(JsonError::NulCharacter)
        );
        assert_eq!(parse_object(br#"{"a":1e400}"#), Err(JsonError::Syntax));
        assert_eq!(parse_object(b""), Err(JsonError::Syntax));
    }

    #[test]
    fn bounds_nesting_without_overflowing_the_stack() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_object(deep.as_bytes()), Err(JsonError::Syntax));
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(parse_object(ok.as_bytes()).is_ok());
    }
}
