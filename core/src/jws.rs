//! Compact JWS parsing (RFC 7515 §7.1) with the header rules of RFC 7515/8725: exactly three
//! strict-base64url segments, a duplicate-free header object, a known `alg` (never `none`), no
//! `crit` extensions (we implement none, so any listed name is unknown), no `b64`/`zip`. Header
//! parameters that point at keys (`jwk`, `jku`, `x5u`, `x5c`) are ignored: keys come only from
//! the configured key set.

use crate::alg::Alg;
use crate::b64;
use crate::error::{AuthError, Result};
use crate::json;
use serde_json::Value;

/// Default `auth.max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
}

/// A parsed, not yet verified, compact JWS.
#[derive(Debug)]
pub struct Compact<'a> {
    pub header: Header,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: what the signature covers.
    pub signing_input: &'a str,
    pub payload_b64: &'a str,
    pub signature: Vec<u8>,
}

pub fn parse_compact(token: &str, max_bytes: usize) -> Result<Compact<'_>> {
    if token.len() > max_bytes {
        return Err(AuthError::invalid_token(format!(
            "token is {} bytes, more than auth.max_token_bytes ({max_bytes})",
            token.len()
        )));
    }
    let mut parts = token.split('.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => {
            let n = token.split('.').count();
            return Err(AuthError::invalid_token(if n == 5 {
                "token has 5 segments: encrypted tokens (JWE) are not supported".to_string()
            } else {
                format!("token must have 3 dot-separated segments, found {n}")
            }));
        }
    };
    if h.is_empty() {
        return Err(AuthError::invalid_token("token has an empty header"));
    }
    // The header first, so that an unsigned alg:none token is reported as such.
    let header = header_of_segment(h)?;
    // An empty payload is a valid JWS (and then not a valid JWT: claims parsing refuses it).
    if s.is_empty() {
        return Err(AuthError::invalid_token("token has no signature"));
    }
    let signature = b64::decode(s)
        .ok_or_else(|| AuthError::invalid_token("signature is not canonical unpadded base64url"))?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(Compact {
        header,
        signing_input,
        payload_b64: p,
        signature,
    })
}

thread_local! {
    /// The header segment parsed last and its result: an issuer's tokens share one header, so
    /// most tokens skip decoding and parsing it. One entry, at most `max_bytes` long.
    static LAST_HEADER: std::cell::RefCell<Option<(String, Header)>> =
        const { std::cell::RefCell::new(None) };
}

/// The header of the base64url header segment `h` (`parse_header` of its bytes).
fn header_of_segment(h: &str) -> Result<Header> {
    let cached = LAST_HEADER.with_borrow(|last| {
        last.as_ref()
            .filter(|(segment, _)| segment == h)
            .map(|(_, header)| header.clone())
    });
    if let Some(header) = cached {
        return Ok(header);
    }
    let bytes = b64::decode(h)
        .ok_or_else(|| AuthError::invalid_token("header is not canonical unpadded base64url"))?;
    let header = parse_header(&bytes)?;
    LAST_HEADER.set(Some((h.to_string(), header.clone())));
    Ok(header)
}

/// Decodes and checks the payload segment (only after the signature has been verified).
pub fn decode_payload(compact: &Compact<'_>) -> Result<Vec<u8>> {
    b64::decode(compact.payload_b64)
        .ok_or_else(|| AuthError::invalid_token("payload is not canonical unpadded base64url"))
}

pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    let obj = json::parse_object(bytes)
        .map_err(|e| AuthError::invalid_token(format!("header {}", e.describe())))?;
    let alg = match obj.get("alg") {
        None => return Err(AuthError::invalid_token("header has no alg")),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("none") => {
            return Err(AuthError::invalid_token(
                "alg none (unsigned tokens) is never accepted",
            ))
        }
        Some(Value::String(s)) => Alg::from_name(s)
            .ok_or_else(|| AuthError::invalid_token(format!("unsupported alg {}", printable(s))))?,
        Some(_) => return Err(AuthError::invalid_token("header alg is not a string")),
    };
    if obj.contains_key("crit") {
        // RFC 7515 §4.1.11: a recipient that does not understand a listed extension must reject
        // the JWS; we understand none, and an empty or malformed crit is invalid anyway.
        return Err(AuthError::invalid_token(
            "header crit lists extensions this verifier does not implement",
        ));
    }
    if obj.contains_key("b64") {
        return Err(AuthError::invalid_token(
            "unencoded payloads (b64, RFC 7797) are not supported",
        ));
    }
    if obj.contains_key("zip") {
        return Err(AuthError::invalid_token(
            "zip is a JWE parameter; compressed JWS payloads are refused",
        ));
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(AuthError::invalid_token("header kid is not a string")),
    };
    Ok(Header { alg, kid })
}

/// A short, printable rendering of an attacker-controlled string for error details.
pub fn printable(s: &str) -> String {
    let clean: String = s
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 40 {
        format!("\"{clean}…\"")
    } else {
        format!("\"{clean}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64::encode;

    fn tok(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            encode(header.as_bytes()),
            encode(payload.as_bytes()),
            encode(sig)
        )
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = tok(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT","jku":"https://evil"}"#,
            "{}",
            b"sig",
        );
        let c = parse_compact(&t, 8192).unwrap();
        assert_eq!(
            c.header,
            Header {
                alg: Alg::ES256,
                kid: Some("k1".into())
            }
        );
        assert_eq!(c.signature, b"sig");
        assert!(t.starts_with(c.signing_input));
        assert_eq!(decode_payload(&c).unwrap(), b"{}");
    }

    #[test]
    fn refuses_bad_headers() {
        for (h, why) in [
            (r#"{"alg":"none"}"#, "alg none"),
            (r#"{"alg":"NoNe"}"#, "alg none"),
            (r#"{"typ":"JWT"}"#, "no alg"),
            (r#"{"alg":"hs256"}"#, "unsupported alg"),
            (r#"{"alg":256}"#, "not a string"),
            (r#"{"alg":"HS256","crit":["exp"]}"#, "crit"),
            (r#"{"alg":"HS256","crit":[]}"#, "crit"),
            (r#"{"alg":"HS256","b64":false}"#, "b64"),
            (r#"{"alg":"HS256","zip":"DEF"}"#, "zip"),
            (r#"{"alg":"HS256","kid":7}"#, "kid"),
            (r#"{"alg":"HS256","alg":"none"}"#, "duplicate"),
            (r#"["alg"]"#, "not a JSON object"),
            (r#"{"alg":"HS256"} "#, "HS256"), // trailing whitespace is valid JSON
        ] {
            let t = tok(h, "{}", b"s");
            match parse_compact(&t, 8192) {
                Err(e) => assert!(e.detail.contains(why), "{h}: {e}"),
                Ok(_) => assert_eq!(why, "HS256", "{h} accepted"),
            }
        }
    }

    #[test]
    fn the_last_header_is_reused_only_for_the_same_segment() {
        let good = tok(r#"{"alg":"HS256","kid":"a"}"#, "{}", b"s");
        let other = tok(r#"{"alg":"ES256","kid":"b"}"#, "{}", b"s");
        // Same JSON, another encoding of it: not the cached segment, parsed on its own.
        let spaced = tok(r#"{"alg":"HS256", "kid":"a"}"#, "{}", b"s");
        let none = tok(r#"{"alg":"none","kid":"a"}"#, "{}", b"s");
        let kid = |t: &str| parse_compact(t, 8192).unwrap().header.kid;
        for _ in 0..2 {
            assert_eq!(kid(&good), Some("a".into()));
            assert!(parse_compact(&none, 8192).is_err());
            assert_eq!(kid(&good), Some("a".into()));
            assert_eq!(parse_compact(&other, 8192).unwrap().header.alg, Alg::ES256);
            assert_eq!(kid(&spaced), Some("a".into()));
        }
        // A refused header is never remembered: the same segment is refused again.
        let bad = tok(r#"{"alg":"HS256","crit":["x"]}"#, "{}", b"s");
        assert!(parse_compact(&bad, 8192).is_err());
        assert!(parse_compact(&bad, 8192).is_err());
    }

    #[test]
    fn refuses_bad_structure() {
        let good = tok(r#"{"alg":"HS256"}"#, "{}", b"sig");
        let parts: Vec<&str> = good.split('.').collect();
        for bad in [
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}.x"),
            format!("{good}.x.y"),
            format!("{}.{}.", parts[0], parts[1]),
            format!("{good}="),
            format!("{good}\n"),
            format!("Bearer {good}"),
            format!(" {good}"),
            String::new(),
        ] {
            assert!(parse_compact(&bad, 8192).is_err(), "{bad:?}");
        }
        let big = tok(r#"{"alg":"HS256"}"#, &"x".repeat(9000), b"s");
        let e = parse_compact(&big, 8192).unwrap_err();
        assert!(e.detail.contains("max_token_bytes"));
    }

    #[test]
    fn printable_strips_control_characters_and_truncates() {
        assert_eq!(printable("a\u{0}b\nc"), "\"a?b?c\"");
        assert!(printable(&"x".repeat(100)).ends_with("…\""));
    }
}
