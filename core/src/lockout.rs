//! Keys for failed-sign-in bookkeeping: the SHA-256 of the lower-cased email, so that attempts
//! against addresses that have no account are counted (and locked) exactly like real ones —
//! lockout reveals nothing about which emails exist — without storing those addresses.

use sha2::{Digest, Sha256};

pub fn email_key(email: &str) -> String {
    Sha256::digest(email.to_lowercase().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn case_insensitive_and_hex() {
        let k = super::email_key("Alice@Example.COM");
        assert_eq!(k, super::email_key("alice@example.com"));
        assert_eq!(k.len(), 64);
        assert_ne!(k, super::email_key("bob@example.com"));
    }
}
