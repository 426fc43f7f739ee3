//! Strict base64url (RFC 7515 §2): URL-safe alphabet, no padding, no whitespace and canonical
//! trailing bits, so that one token has exactly one encoding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Decodes strict base64url; `None` on any deviation.
pub fn decode(input: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input.as_bytes()).ok()
}

/// Decodes strict base64url into `out` (cleared first); false on any deviation.
pub fn decode_into(input: &str, out: &mut Vec<u8>) -> bool {
    out.clear();
    URL_SAFE_NO_PAD.decode_vec(input.as_bytes(), out).is_ok()
}

pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_canonical_forms() {
        assert_eq!(decode("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(decode("Zm8").as_deref(), Some(&b"fo"[..]));
        assert!(decode("Zm8=").is_none(), "padding");
        assert!(decode("Zm9").is_none(), "non-zero trailing bits");
        assert!(decode("Zm 9v").is_none(), "whitespace");
        assert!(decode("Zm9v\n").is_none(), "newline");
        assert!(decode("a+b/").is_none(), "standard alphabet");
        assert!(decode("Z").is_none(), "impossible length");
        assert_eq!(decode("").as_deref(), Some(&b""[..]));
    }
}
