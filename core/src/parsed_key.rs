//! Public-key verifiers that keep the key parsed. jsonwebtoken's aws-lc verifiers parse the key
//! material again for every signature (for RSA that includes the Montgomery set-up, about a
//! seventh of an RS256 verification); these parse it once, when the key set is loaded, with
//! aws-lc-rs's `ParsedPublicKey`, and verify with the same aws-lc algorithms.

use crate::alg::Alg;
use aws_lc_rs::signature::{self as lc, ParsedPublicKey, VerificationAlgorithm};
use jsonwebtoken::crypto::JwtVerifier;

/// A verifier for one asymmetric key and its one algorithm.
pub struct ParsedVerifier {
    alg: Alg,
    key: ParsedPublicKey,
}

/// The public key as the bytes aws-lc-rs parses.
pub enum PublicKey<'a> {
    /// Modulus and exponent, big-endian.
    Rsa { n: &'a [u8], e: &'a [u8] },
    /// The affine coordinates, each the curve's full length.
    Ec { x: &'a [u8], y: &'a [u8] },
    /// The 32-byte Ed25519 public key.
    Ed25519(&'a [u8]),
}

fn algorithm(alg: Alg) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        // The same algorithm objects jsonwebtoken's aws-lc verifiers use (2048–8192-bit RSA).
        Alg::RS256 => &lc::RSA_PKCS1_2048_8192_SHA256,
        Alg::RS384 => &lc::RSA_PKCS1_2048_8192_SHA384,
        Alg::RS512 => &lc::RSA_PKCS1_2048_8192_SHA512,
        Alg::PS256 => &lc::RSA_PSS_2048_8192_SHA256,
        Alg::PS384 => &lc::RSA_PSS_2048_8192_SHA384,
        Alg::PS512 => &lc::RSA_PSS_2048_8192_SHA512,
        Alg::ES256 => &lc::ECDSA_P256_SHA256_FIXED,
        Alg::ES384 => &lc::ECDSA_P384_SHA384_FIXED,
        Alg::EdDSA => &lc::ED25519,
        Alg::HS256 | Alg::HS384 | Alg::HS512 => return None,
    })
}

impl ParsedVerifier {
    /// `None` when aws-lc rejects the key for `alg` (or `alg` is not a public-key algorithm).
    pub fn new(alg: Alg, key: PublicKey<'_>) -> Option<ParsedVerifier> {
        let bytes = match key {
            PublicKey::Rsa { n, e } => rsa_public_key_der(n, e),
            PublicKey::Ec { x, y } => [&[0x04][..], x, y].concat(),
            PublicKey::Ed25519(x) => x.to_vec(),
        };
        let key = ParsedPublicKey::new(algorithm(alg)?, bytes).ok()?;
        Some(ParsedVerifier { alg, key })
    }
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for ParsedVerifier {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        self.key
            .verify_sig(msg, signature)
            .map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for ParsedVerifier {
    fn algorithm(&self) -> jsonwebtoken::Algorithm {
        self.alg.to_jsonwebtoken()
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017
/// A.1.1), the form aws-lc-rs parses an RSA public key from.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let body = [der_unsigned_integer(n), der_unsigned_integer(e)].concat();
    der(0x30, &body)
}

/// A DER INTEGER holding the unsigned big-endian `bytes`: minimal, and positive.
fn der_unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let digits = &bytes[first..];
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b >= 0x80) {
        content.push(0); // zero itself, or a high bit that would read as negative
    }
    content.extend_from_slice(digits);
    der(0x02, &content)
}

/// One DER element: `tag`, definite length, `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let digits: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | digits.len() as u8);
        out.extend(digits);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(der_unsigned_integer(&[0x01, 0x00, 0x01]), [2, 3, 1, 0, 1]);
        assert_eq!(der_unsigned_integer(&[0, 0, 0x7f]), [2, 1, 0x7f]);
        assert_eq!(der_unsigned_integer(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(der_unsigned_integer(&[0, 0]), [2, 1, 0]);
        assert_eq!(der_unsigned_integer(&[]), [2, 1, 0]);
    }

    #[test]
    fn der_lengths_use_the_long_form_from_128() {
        assert_eq!(der(0x30, &[7; 127])[..2], [0x30, 127]);
        assert_eq!(der(0x30, &[7; 128])[..3], [0x30, 0x81, 128]);
        assert_eq!(der(0x30, &[7; 513])[..4], [0x30, 0x82, 0x02, 0x01]);
    }

    #[test]
    fn an_rsa_key_round_trips_through_aws_lc() {
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let parts = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        // Our encoding of (n, e) is byte for byte the DER aws-lc-rs writes for the same key.
        assert_eq!(
            rsa_public_key_der(&parts.n, &parts.e),
            pair.public_key().as_ref()
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&lc::RSA_PKCS1_SHA256, &rng, b"msg", &mut sig)
            .unwrap();
        let v = ParsedVerifier::new(
            Alg::RS256,
            PublicKey::Rsa {
                n: &parts.n,
                e: &parts.e,
            },
        )
        .unwrap();
        use jsonwebtoken::signature::Verifier;
        assert!(v.verify(b"msg", &sig).is_ok());
        assert!(v.verify(b"msh", &sig).is_err());
        // The key is bound to its algorithm: PS256 or RS384 signatures are not RS256 ones.
        let mut pss = vec![0; pair.public_modulus_len()];
        pair.sign(&lc::RSA_PSS_SHA256, &rng, b"msg", &mut pss)
            .unwrap();
        assert!(v.verify(b"msg", &pss).is_err());
    }

    #[test]
    fn secrets_and_bad_keys_get_no_verifier() {
        assert!(ParsedVerifier::new(Alg::HS256, PublicKey::Ed25519(&[1; 32])).is_none());
        assert!(ParsedVerifier::new(
            Alg::ES256,
            PublicKey::Ec {
                x: &[1; 32],
                y: &[2; 32]
            }
        )
        .is_none());
        assert!(ParsedVerifier::new(Alg::EdDSA, PublicKey::Ed25519(&[1; 31])).is_none());
    }
}
