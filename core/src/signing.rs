//! Our own signing keys and tokens: key generation (ES256, EdDSA, RS256, HS256) with aws-lc-rs,
//! signing with jsonwebtoken, and refresh tokens (opaque, 256-bit, stored as SHA-256, each one's
//! successor derived by HMAC so that a retry within the reuse interval gets the same one).

use crate::alg::Alg;
use crate::b64;
use crate::error::{AuthError, Result};
use crate::jwk::Jwk;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A freshly generated key: the private material to store and the public JWK to trust.
pub struct GeneratedKey {
    pub alg: Alg,
    /// PKCS#8 DER for ES256/EdDSA/RS256, the secret for HS256.
    pub private: Zeroizing<Vec<u8>>,
    /// Validated; its kid is the RFC 7638 thumbprint. For HS256 it holds the secret.
    pub public: Jwk,
}

fn internal(what: &str) -> AuthError {
    AuthError::invalid_parameter(format!("{what} failed in the crypto backend"))
}

pub fn generate(alg: Alg) -> Result<GeneratedKey> {
    let (private, jwk) = match alg {
        Alg::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| internal("EC key generation"))?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|_| internal("EC key parsing"))?;
            let point = pair.public_key().as_ref();
            let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256",
                             "x": b64::encode(&point[1..33]), "y": b64::encode(&point[33..65])});
            (doc.as_ref().to_vec(), jwk)
        }
        Alg::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| internal("Ed25519 key generation"))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|_| internal("Ed25519 key parsing"))?;
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": b64::encode(pair.public_key().as_ref())});
            (doc.as_ref().to_vec(), jwk)
        }
        Alg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| internal("RSA key generation"))?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(|_| internal("RSA key encoding"))?;
            let parts = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            let jwk = json!({"kty": "RSA", "alg": "RS256", "n": b64::encode(&parts.n), "e": b64::encode(&parts.e)});
            (der.as_ref().to_vec(), jwk)
        }
        Alg::HS256 => {
            let secret = crate::random::bytes(32);
            let jwk = json!({"kty": "oct", "alg": "HS256", "k": b64::encode(&secret)});
            (secret, jwk)
        }
        other => {
            return Err(AuthError::invalid_parameter(format!(
                "signing keys can be ES256, EdDSA, RS256 or HS256, not {}",
                other.name()
            )))
        }
    };
    let public = Jwk::parse(&jwk)?;
    Ok(GeneratedKey {
        alg,
        private: Zeroizing::new(private),
        public,
    })
}

/// A key ready to sign.
pub struct Signer {
    pub kid: String,
    pub alg: Alg,
    key: EncodingKey,
}

impl Signer {
    pub fn new(kid: &str, alg: Alg, private: &[u8]) -> Result<Signer> {
        let key = match alg {
            Alg::ES256 => EncodingKey::from_ec_der(private),
            Alg::EdDSA => EncodingKey::from_ed_der(private),
            Alg::HS256 => EncodingKey::from_secret(private),
            Alg::RS256 => {
                // jsonwebtoken reads PKCS#8 RSA keys from PEM only.
                let body = base64::engine::general_purpose::STANDARD.encode(private);
                let pem =
                    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
                EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|_| internal("RSA key loading"))?
            }
            other => {
                return Err(AuthError::invalid_parameter(format!(
                    "cannot sign with {}",
                    other.name()
                )))
            }
        };
        Ok(Signer {
            kid: kid.to_string(),
            alg,
            key,
        })
    }

    /// A compact JWS of `claims` with header {alg, kid, typ: JWT}.
    pub fn sign(&self, claims: &Map<String, Value>) -> Result<String> {
        let mut header = Header::new(self.alg.to_jsonwebtoken());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|_| internal("signing"))
    }
}

/// A new refresh token: 256 random bits, base64url.
pub fn new_refresh_token() -> String {
    b64::encode(&crate::random::bytes(32))
}

/// The successor of a refresh token under `secret`: HMAC-SHA256, base64url.
pub fn successor(secret: &[u8], token: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    b64::encode(aws_lc_rs::hmac::sign(&key, token.as_bytes()).as_ref())
}

/// What is stored of a refresh token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Policy;
    use crate::keyset::{KeyEntry, KeySet};

    #[test]
    fn generated_keys_sign_tokens_our_verifier_accepts() {
        for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256, Alg::HS256] {
            let k = generate(alg).unwrap();
            assert_eq!(k.public.alg, alg);
            let signer = Signer::new(&k.public.kid, alg, &k.private).unwrap();
            let mut claims = Map::new();
            claims.insert("sub".into(), json!("u1"));
            claims.insert("exp".into(), json!(4_102_444_800u64));
            let token = signer.sign(&claims).unwrap();
            let mut set = KeySet::new();
            set.insert(KeyEntry::new(k.public.clone(), None, None).unwrap())
                .unwrap();
            let v = crate::verify_jwt(&token, &set, 1_750_000_000.0, &Policy::default()).unwrap();
            assert_eq!(v.claims["sub"], "u1", "{alg:?}");
            assert_eq!(v.kid, k.public.kid);
            if alg != Alg::HS256 {
                assert!(k.public.public_json().is_some());
            }
        }
        assert!(generate(Alg::PS256).is_err());
    }

    #[test]
    fn refresh_tokens() {
        let t = new_refresh_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, new_refresh_token());
        let s = successor(b"secret", &t);
        assert_eq!(s, successor(b"secret", &t), "deterministic");
        assert_ne!(s, successor(b"other", &t));
        assert_eq!(s.len(), 43);
        assert_eq!(token_hash(&t).len(), 32);
    }
}
