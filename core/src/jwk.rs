//! JSON Web Keys (RFC 7517/7518/8037) validated at the door: a key that would be weak, ambiguous
//! or unusable is refused when it is added, never discovered later at verification time.
//!
//! Accepted: `oct` (HS256/384/512, secret at least the hash size), `RSA` (RS*/PS*, 2048 to 8192
//! bits, odd exponent > 1, n and e in their minimal octets, not a ROCA-weak modulus), `EC`
//! P-256/P-384 (point on the curve), `OKP` Ed25519 (a canonical encoding of a curve point, not of
//! small order). RSA and `oct` keys must name their `alg`; EC and OKP keys imply it from the
//! curve. `use` other than `sig` and `key_ops` without `verify` are refused.

use crate::alg::Alg;
use crate::b64;
use crate::error::{AuthError, Result};
use crate::parsed_key::{ParsedVerifier, PublicKey};
use curve25519_dalek::edwards::CompressedEdwardsY;
use jsonwebtoken::crypto::JwtVerifier;
use jsonwebtoken::DecodingKey;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const MIN_RSA_BITS: usize = 2048;
/// The crypto backend verifies RSA signatures only for 2048- to 8192-bit moduli (aws-lc's
/// RSA_*_2048_8192_* parameters): a larger key would be accepted and then never verify.
pub const MAX_RSA_BITS: usize = 8192;
const MAX_KID_LEN: usize = 255;
/// Members that only a private key has. A public key set must never hold them.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

#[derive(Clone)]
pub enum Material {
    /// HMAC secret (wiped from memory when dropped).
    Oct(Zeroizing<Vec<u8>>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        crv: &'static str,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Okp {
        x: Vec<u8>,
    },
}

/// A validated verification key.
#[derive(Clone)]
pub struct Jwk {
    pub kid: String,
    /// True when the JWK named its own kid; false when the kid is the RFC 7638 thumbprint.
    pub kid_given: bool,
    pub alg: Alg,
    pub thumbprint: String,
    pub material: Material,
}

impl std::fmt::Debug for Jwk {
    // Never print key material (an HMAC secret would leak into logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn bad(detail: impl Into<String>) -> AuthError {
    AuthError::invalid_parameter(detail)
}

fn member_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("JWK member \"{name}\" must be a string"))),
    }
}

fn required_b64(obj: &Map<String, Value>, kty: &str, name: &str) -> Result<(String, Vec<u8>)> {
    let s =
        member_str(obj, name)?.ok_or_else(|| bad(format!("{kty} JWK is missing \"{name}\"")))?;
    let bytes = b64::decode(s).ok_or_else(|| {
        bad(format!(
            "JWK member \"{name}\" is not canonical unpadded base64url"
        ))
    })?;
    Ok((s.to_string(), bytes))
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn bit_len(b: &[u8]) -> usize {
    let b = strip_leading_zeros(b);
    match b.first() {
        None => 0,
        Some(&top) => (b.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// Checks an Ed25519 public key (`x` of an OKP JWK) as RFC 8032 §5.1.3 decodes it, and refuses
/// the weak keys. Under a small-order point A (order dividing 8: the identity, the point of
/// order 2, two of order 4, four of order 8), [S]B = R + [k]A holds for R = identity, S = 0 and
/// every message whose k makes [k]A vanish (all messages for the identity), so one fixed
/// signature would verify everything; the crypto backend does not refuse such keys itself.
/// Refused: not 32 bytes, not the y-coordinate of a curve point, small order (the 8 canonical
/// encodings and the 6 non-canonical ones of libsodium's `has_small_order` list), and any other
/// non-canonical encoding (y ≥ p, or the sign bit set when x = 0: one key, several encodings,
/// several thumbprints).
pub fn check_ed25519_public_key(x: &[u8]) -> Result<()> {
    let bytes: [u8; 32] = x
        .try_into()
        .map_err(|_| bad("Ed25519 public key must be 32 bytes"))?;
    let encoded = CompressedEdwardsY(bytes);
    let point = encoded
        .decompress()
        .ok_or_else(|| bad("Ed25519 public key is not a point on the curve"))?;
    if point.is_small_order() {
        return Err(bad(
            "Ed25519 public key is a point of small order (a weak key: one signature would verify any message)",
        ));
    }
    if point.compress() != encoded {
        return Err(bad(
            "Ed25519 public key is not canonically encoded (RFC 8032 5.1.3)",
        ));
    }
    Ok(())
}

/// ROCA (CVE-2017-15361) fingerprint: moduli made by the vulnerable Infineon library are, for
/// every small prime p below, congruent to a power of 65537 mod p. A random modulus passes all
/// of these tests with negligible probability.
pub fn is_roca_weak(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, &byte| (r * 256 + byte as u32) % p);
        let g = 65537 % p;
        let mut x = 1 % p;
        // Walk the cyclic subgroup generated by 65537 mod p.
        for _ in 0..p {
            if x == residue {
                return true;
            }
            x = x * g % p;
            if x == 1 % p {
                break;
            }
        }
        x == residue
    })
}

impl Jwk {
    /// Validates a public JWK (or an `oct` secret) given as JSON.
    pub fn parse(value: &Value) -> Result<Jwk> {
        let obj = value
            .as_object()
            .ok_or_else(|| bad("a JWK must be a JSON object"))?;
        let kty = member_str(obj, "kty")?.ok_or_else(|| bad("JWK has no \"kty\""))?;

        if let Some(u) = obj.get("use") {
            if u != "sig" {
                return Err(bad(
                    "JWK \"use\" must be \"sig\" (encryption keys cannot verify tokens)",
                ));
            }
        }
        if let Some(ops) = obj.get("key_ops") {
            let ops = ops
                .as_array()
                .ok_or_else(|| bad("JWK \"key_ops\" must be an array"))?;
            if !ops.iter().any(|o| o == "verify") {
                return Err(bad("JWK \"key_ops\" does not include \"verify\""));
            }
        }
        if kty != "oct" {
            if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
                return Err(bad(format!(
                    "JWK contains private key member \"{m}\"; add only the public key"
                )));
            }
        }
        let alg_given = match member_str(obj, "alg")? {
            None => None,
            Some("ES512") => {
                return Err(bad(
                    "alg ES512 (curve P-521) is not supported; use ES256 or ES384",
                ))
            }
            Some(name) => Some(Alg::from_name(name).ok_or_else(|| {
                bad(format!(
                    "JWK alg {} is not a supported signature algorithm",
                    crate::jws::printable(name)
                ))
            })?),
        };

        let (alg, material, thumb_members) = match kty {
            "oct" => {
                let alg = alg_given
                    .ok_or_else(|| bad("an oct JWK must carry \"alg\" (HS256, HS384 or HS512)"))?;
                let (k_str, k) = required_b64(obj, kty, "k")?;
                let k = Zeroizing::new(k);
                if alg.kty() != "oct" {
                    return Err(bad(format!(
                        "alg {} cannot be used with an oct key",
                        alg.name()
                    )));
                }
                if k.len() < alg.min_secret_bytes() {
                    return Err(bad(format!(
                        "{} secret is {} bytes; at least {} are required",
                        alg.name(),
                        k.len(),
                        alg.min_secret_bytes()
                    )));
                }
                let members = json!({"k": k_str, "kty": "oct"});
                (alg, Material::Oct(k), Zeroizing::new(members.to_string()))
            }
            "RSA" => {
                let alg = alg_given.ok_or_else(|| {
                    bad("an RSA JWK must carry \"alg\" (RS256/384/512 or PS256/384/512)")
                })?;
                if alg.kty() != "RSA" {
                    return Err(bad(format!(
                        "alg {} cannot be used with an RSA key",
                        alg.name()
                    )));
                }
                let (n_str, n) = required_b64(obj, kty, "n")?;
                let (e_str, e) = required_b64(obj, kty, "e")?;
                let bits = bit_len(&n);
                if bits < MIN_RSA_BITS {
                    return Err(bad(format!(
                        "RSA modulus is {bits} bits; at least {MIN_RSA_BITS} are required"
                    )));
                }
                if bits > MAX_RSA_BITS {
                    return Err(bad(format!(
                        "RSA modulus is {bits} bits; at most {MAX_RSA_BITS} are supported"
                    )));
                }
                if n.last().is_some_and(|b| b & 1 == 0) {
                    return Err(bad("RSA modulus is even"));
                }
                // RFC 7518 6.3.1: n and e in the minimum number of octets. The crypto backend
                // refuses a leading zero octet in either when it verifies, so such a key would be
                // accepted here and then never verify a token.
                if n.first() == Some(&0) || e.first() == Some(&0) {
                    return Err(bad(
                        "RSA n and e must not have leading zero octets (RFC 7518 6.3.1)",
                    ));
                }
                let e_trim = strip_leading_zeros(&e);
                if e_trim.is_empty()
                    || e_trim.len() > 4
                    || e_trim.last().unwrap() & 1 == 0
                    || e_trim == [1]
                {
                    return Err(bad(
                        "RSA public exponent must be odd, greater than 1 and at most 32 bits",
                    ));
                }
                if is_roca_weak(&n) {
                    return Err(bad(
                        "RSA modulus has the ROCA fingerprint (CVE-2017-15361); the key is weak",
                    ));
                }
                let members = json!({"e": e_str, "kty": "RSA", "n": n_str});
                (
                    alg,
                    Material::Rsa { n, e },
                    Zeroizing::new(members.to_string()),
                )
            }
            "EC" => {
                let crv = member_str(obj, "crv")?.ok_or_else(|| bad("EC JWK has no \"crv\""))?;
                let (crv, alg, size) = match crv {
                    "P-256" => ("P-256", Alg::ES256, 32),
                    "P-384" => ("P-384", Alg::ES384, 48),
                    "P-521" => {
                        return Err(bad(
                            "curve P-521 (ES512) is not supported; use P-256 or P-384",
                        ))
                    }
                    other => {
                        return Err(bad(format!(
                            "unsupported EC curve {}",
                            crate::jws::printable(other)
                        )))
                    }
                };
                if let Some(a) = alg_given {
                    if a != alg {
                        return Err(bad(format!(
                            "alg {} does not match curve {crv} (expected {})",
                            a.name(),
                            alg.name()
                        )));
                    }
                }
                let (x_str, x) = required_b64(obj, kty, "x")?;
                let (y_str, y) = required_b64(obj, kty, "y")?;
                if x.len() != size || y.len() != size {
                    return Err(bad(format!("{crv} coordinates must be {size} bytes each")));
                }
                // Whether the point is on the curve is checked by the verifier built at the end.
                let members = json!({"crv": crv, "kty": "EC", "x": x_str, "y": y_str});
                (
                    alg,
                    Material::Ec { crv, x, y },
                    Zeroizing::new(members.to_string()),
                )
            }
            "OKP" => {
                let crv = member_str(obj, "crv")?.ok_or_else(|| bad("OKP JWK has no \"crv\""))?;
                if crv != "Ed25519" {
                    return Err(bad(format!(
                        "unsupported OKP curve {} (only Ed25519)",
                        crate::jws::printable(crv)
                    )));
                }
                if let Some(a) = alg_given {
                    if a != Alg::EdDSA {
                        return Err(bad(format!(
                            "alg {} does not match curve Ed25519 (expected EdDSA)",
                            a.name()
                        )));
                    }
                }
                let (x_str, x) = required_b64(obj, kty, "x")?;
                // The key itself is checked by the verifier built at the end
                // (`check_ed25519_public_key`).
                let members = json!({"crv": "Ed25519", "kty": "OKP", "x": x_str});
                (
                    Alg::EdDSA,
                    Material::Okp { x },
                    Zeroizing::new(members.to_string()),
                )
            }
            other => {
                return Err(bad(format!(
                    "unsupported kty {}",
                    crate::jws::printable(other)
                )))
            }
        };

        // RFC 7638: SHA-256 over the required members, lexicographically ordered, no whitespace
        // (serde_json's map is ordered and compact, which is exactly that form).
        let thumbprint = b64::encode(&Sha256::digest(thumb_members.as_bytes()));
        let (kid, kid_given) = match member_str(obj, "kid")? {
            Some("") => return Err(bad("JWK kid must not be empty")),
            Some(k) if k.len() > MAX_KID_LEN || k.chars().any(|c| c.is_control()) => {
                return Err(bad(
                    "JWK kid must be at most 255 bytes without control characters",
                ))
            }
            Some(k) => (k.to_string(), true),
            None => (thumbprint.clone(), false),
        };
        let jwk = Jwk {
            kid,
            kid_given,
            alg,
            thumbprint,
            material,
        };
        // Prove now that the crypto backend accepts the key (EC points on their curve, Ed25519
        // keys past our gate), so verification cannot fail later for a reason other than the
        // token.
        jwk.verifier()?;
        Ok(jwk)
    }

    pub fn kty(&self) -> &'static str {
        self.alg.kty()
    }

    /// A verifier bound to this key and its one algorithm: public keys parsed once
    /// (`parsed_key`), secrets through jsonwebtoken's HMAC verifier (which keeps its key).
    pub fn verifier(&self) -> Result<Box<dyn JwtVerifier>> {
        let rejected = || bad("key rejected by the crypto backend");
        // `curve`: an EC key, whose refusal means its point is not on that curve.
        let (key, curve) = match &self.material {
            Material::Oct(k) => {
                return (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.verifier_factory)(
                    &self.alg.to_jsonwebtoken(),
                    &DecodingKey::from_secret(k),
                )
                .map_err(|_| rejected());
            }
            Material::Rsa { n, e } => (PublicKey::Rsa { n, e }, None),
            Material::Ec { crv, x, y } => (PublicKey::Ec { x, y }, Some(*crv)),
            Material::Okp { x } => {
                // The one gate every Ed25519 verifier passes: Jwk::parse (add_key, import_jwks,
                // verify with a JWK or JWKS) and KeyEntry::new both build it through here.
                check_ed25519_public_key(x)?;
                (PublicKey::Ed25519(x), None)
            }
        };
        ParsedVerifier::new(self.alg, key)
            .map(|v| Box::new(v) as Box<dyn JwtVerifier>)
            .ok_or_else(|| match curve {
                Some(crv) => bad(format!("the EC point is not on curve {crv}")),
                None => rejected(),
            })
    }

    /// The JWK as stored: normalised members only (unknown members dropped), kid and alg explicit.
    /// For `oct` keys this contains the secret.
    pub fn to_json(&self) -> Value {
        let mut v = match &self.material {
            Material::Oct(k) => json!({"kty": "oct", "k": b64::encode(k)}),
            Material::Rsa { n, e } => {
                json!({"kty": "RSA", "n": b64::encode(n), "e": b64::encode(e)})
            }
            Material::Ec { crv, x, y } => {
                json!({"kty": "EC", "crv": crv, "x": b64::encode(x), "y": b64::encode(y)})
            }
            Material::Okp { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(x)}),
        };
        v["kid"] = Value::String(self.kid.clone());
        v["alg"] = Value::String(self.alg.name().to_string());
        v["use"] = Value::String("sig".to_string());
        v
    }

    /// The public JWK to publish; `None` for secrets.
    pub fn public_json(&self) -> Option<Value> {
        match self.material {
            Material::Oct(_) => None,
            _ => Some(self.to_json()),
        }
    }

    /// True when both keys hold the same key material (thumbprints match).
    pub fn same_key(&self, other: &Jwk) -> bool {
        self.thumbprint == other.thumbprint
    }
}

/// Parses a JWKS document (`{"keys": [...]}`): every key valid, kids unique, and secrets never
/// mixed with public keys (a published JWKS that contains an `oct` key is a leaked secret, and a
/// mixed set is the precondition of key-confusion attacks).
pub fn parse_jwks(value: &Value) -> Result<Vec<Jwk>> {
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("a JWKS must be an object with a \"keys\" array"))?;
    if keys.is_empty() {
        return Err(bad("the JWKS has no keys"));
    }
    let mut out: Vec<Jwk> = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let jwk = Jwk::parse(k).map_err(|e| bad(format!("key #{}: {}", i + 1, e.detail)))?;
        if out.iter().any(|o| o.kid == jwk.kid) {
            return Err(bad(format!(
                "the JWKS has two keys with kid {}",
                crate::jws::printable(&jwk.kid)
            )));
        }
        out.push(jwk);
    }
    let secrets = out
        .iter()
        .filter(|k| matches!(k.material, Material::Oct(_)))
        .count();
    if secrets > 0 && secrets < out.len() {
        return Err(bad(
            "the JWKS mixes secret (oct) and public keys; add secrets with auth.add_key",
        ));
    }
    Ok(out)
}

/// Known weak Ed25519 public keys, for tests and the fuzz harness (the check itself is
/// curve25519-dalek's): the y-coordinates of libsodium's `has_small_order` list
/// (ed25519_ref10.c); each is
/// tried with the sign bit clear and set: 14 encodings. Canonical: y = 0 (both signs: the
/// two points of order 4), 1 (identity), p - 1 (order 2), the two order-8 y (both signs).
/// Non-canonical: y = p and p + 1 (both signs), and 1 and p - 1 with the sign bit set (x = 0).
pub const SMALL_ORDER_ED25519_Y: [&str; 7] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ed_key() -> Value {
        // RFC 8037 A.2
        json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
    }

    #[test]
    fn rfc8037_thumbprint() {
        let k = Jwk::parse(&ed_key()).unwrap();
        assert_eq!(k.thumbprint, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(k.kid, k.thumbprint);
        assert!(!k.kid_given);
        assert_eq!(k.alg, Alg::EdDSA);
    }

    #[test]
    fn rfc7638_rsa_thumbprint() {
        // RFC 7638 §3.1 example.
        let v = json!({"kty":"RSA","alg":"RS256","kid":"2011-04-29","e":"AQAB",
            "n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        let k = Jwk::parse(&v).unwrap();
        assert_eq!(k.thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(k.kid, "2011-04-29");
    }

    #[test]
    fn refuses_weak_or_ambiguous_keys() {
        let cases = [
            (json!({"kty":"oct","k":"c2hvcnQ"}), "must carry \"alg\""),
            (
                json!({"kty":"oct","alg":"HS256","k":"c2hvcnQ"}),
                "at least 32",
            ),
            (
                json!({"kty":"oct","alg":"HS512","k":b64::encode(&[7u8; 48])}),
                "at least 64",
            ),
            (json!({"kty":"oct","alg":"HS256","k":""}), "at least 32"),
            (
                json!({"kty":"oct","alg":"A256GCM","k":b64::encode(&[7u8; 32])}),
                "not a supported",
            ),
            (
                json!({"kty":"oct","alg":"RS256","k":b64::encode(&[7u8; 32])}),
                "cannot be used",
            ),
            (
                json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}),
                "use",
            ),
            (
                json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","key_ops":["encrypt"]}),
                "key_ops",
            ),
            (
                json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}),
                "private",
            ),
            (
                json!({"kty":"OKP","crv":"X25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
                "OKP curve",
            ),
            (
                json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"ES256"}),
                "does not match",
            ),
            (json!({"kty":"OKP","crv":"Ed25519","x":"11qY"}), "32 bytes"),
            (json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"}), "P-521"),
            (
                json!({"kty":"EC","crv":"P-256","x":b64::encode(&[1u8; 32]),"y":b64::encode(&[2u8; 32])}),
                "not on curve",
            ),
            (
                json!({"kty":"RSA","alg":"RS256","n":b64::encode(&[0xc5u8; 128]),"e":"AQAB"}),
                "at least 2048",
            ),
            (
                json!({"kty":"RSA","alg":"RS256","n":b64::encode(&[0xc5u8; 256]),"e":"AQ"}),
                "exponent",
            ),
            (
                json!({"kty":"RSA","n":b64::encode(&[0xc5u8; 256]),"e":"AQAB"}),
                "must carry \"alg\"",
            ),
            (
                json!({"kty":"RSA","alg":"RS256","e":"AQAB"}),
                "missing \"n\"",
            ),
            (
                json!({"kty":"RSA","alg":"RS256","n":"AQAB=","e":"AQAB"}),
                "base64url",
            ),
            (json!({"kty":"XYZ"}), "unsupported kty"),
            (
                json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":""}),
                "empty",
            ),
            (json!("not a key"), "object"),
        ];
        for (v, why) in cases {
            match Jwk::parse(&v) {
                Ok(k) => panic!("accepted {v}: {k:?}"),
                Err(e) => assert!(
                    e.detail.contains(why),
                    "{v}: got {:?}, wanted {why:?}",
                    e.detail
                ),
            }
        }
    }

    fn unhex32(s: &str) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        b
    }

    fn small_order_encodings() -> Vec<[u8; 32]> {
        let mut all = Vec::new();
        for y in SMALL_ORDER_ED25519_Y {
            for sign in [0u8, 0x80] {
                let mut b = unhex32(y);
                b[31] |= sign;
                all.push(b);
            }
        }
        all
    }

    fn okp(x: &[u8]) -> Value {
        json!({"kty":"OKP","crv":"Ed25519","x":b64::encode(x)})
    }

    /// The list is complete: its canonical members are exactly the 8 points of order dividing
    /// 8 (the curve's torsion subgroup, as curve25519-dalek lists it), the rest are the 6
    /// non-canonical encodings that decode to them.
    #[test]
    fn small_order_list_is_the_whole_torsion_subgroup() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let encodings = small_order_encodings();
        assert_eq!(encodings.len(), 14);
        let mut canonical: Vec<[u8; 32]> = encodings
            .iter()
            .filter(|e| {
                let p = CompressedEdwardsY(**e).decompress().expect("decodes");
                assert!(p.is_small_order());
                p.compress().to_bytes() == **e
            })
            .copied()
            .collect();
        let mut torsion: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .map(|p| p.compress().to_bytes())
            .collect();
        canonical.sort();
        torsion.sort();
        torsion.dedup();
        assert_eq!(torsion.len(), 8);
        assert_eq!(canonical, torsion);
    }

    #[test]
    fn refuses_every_small_order_ed25519_key() {
        for e in small_order_encodings() {
            let what = format!("x = {}", b64::encode(&e));
            let err = Jwk::parse(&okp(&e)).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::InvalidParameter, "{what}");
            assert!(err.detail.contains("small order"), "{what}: {}", err.detail);
            assert!(
                !err.detail.contains(&b64::encode(&e)),
                "no key in the detail"
            );
            let mut with_alg = okp(&e);
            with_alg["alg"] = json!("EdDSA");
            with_alg["kid"] = json!("weak");
            assert!(Jwk::parse(&with_alg).is_err(), "{what}");
            // In a JWKS, next to a good key.
            let err = parse_jwks(&json!({"keys":[ed_key(), okp(&e)]})).unwrap_err();
            assert!(err.detail.contains("key #2") && err.detail.contains("small order"));
            // A Jwk assembled by hand (never through parse) still cannot become a verifier.
            let forged = Jwk {
                kid: "forged".into(),
                kid_given: true,
                alg: Alg::EdDSA,
                thumbprint: "forged".into(),
                material: Material::Okp { x: e.to_vec() },
            };
            assert!(forged.verifier().is_err(), "{what}");
            let err = crate::KeyEntry::new(forged, None, None).unwrap_err();
            assert!(err.detail.contains("small order"), "{what}");
        }
    }

    #[test]
    fn refuses_ed25519_keys_off_the_curve_or_non_canonical() {
        // y = 2 is not the y-coordinate of any point.
        let mut y2 = [0u8; 32];
        y2[0] = 2;
        let err = Jwk::parse(&okp(&y2)).unwrap_err();
        assert!(err.detail.contains("not a point"), "{}", err.detail);
        // y = 3 is a point of large order; p + 3 (fits in 255 bits) encodes the same point.
        let mut y3 = [0u8; 32];
        y3[0] = 3;
        Jwk::parse(&okp(&y3)).unwrap();
        let mut p3 = unhex32(SMALL_ORDER_ED25519_Y[5]); // p
        p3[0] += 3;
        let err = Jwk::parse(&okp(&p3)).unwrap_err();
        assert!(err.detail.contains("canonical"), "{}", err.detail);
        for short in [&[][..], &y3[..31], &[y3.as_slice(), &[0]].concat()[..]] {
            let err = Jwk::parse(&okp(short)).unwrap_err();
            assert!(err.detail.contains("32 bytes"), "{}", err.detail);
        }
    }

    #[test]
    fn ordinary_ed25519_keys_are_accepted() {
        // RFC 8037 A.2, and the key of a freshly generated pair.
        Jwk::parse(&ed_key()).unwrap();
        let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        use aws_lc_rs::signature::KeyPair;
        let k = Jwk::parse(&okp(pair.public_key().as_ref())).unwrap();
        crate::KeyEntry::new(k, None, None).unwrap();
    }

    /// Why the refusal matters: under the identity-point key, the crypto backend itself
    /// (aws-lc's parsed Ed25519 key, exactly as `verifier` builds it, minus our check) accepts
    /// the fixed signature R = identity (0x01 then 31 zero bytes), S = 0 for every message.
    /// Only the check keeps such a key out.
    #[test]
    fn the_identity_key_would_verify_a_fixed_signature_for_any_message() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let backend = ParsedVerifier::new(Alg::EdDSA, PublicKey::Ed25519(&identity)).unwrap();
        let mut fixed = vec![0u8; 64];
        fixed[0] = 1;
        for msg in [
            &b""[..],
            b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZG1pbiIsInJvbGUiOiJzZXJ2aWNlX3JvbGUifQ",
            b"any other message",
        ] {
            assert!(
                jsonwebtoken::signature::Verifier::verify(&backend, msg, &fixed).is_ok(),
                "the backend accepts the forgery (if this fails, the backend now refuses it too)"
            );
        }
        // A real key does not accept it, and the identity key never gets that far.
        let real = Jwk::parse(&ed_key()).unwrap().verifier().unwrap();
        assert!(jsonwebtoken::signature::Verifier::verify(real.as_ref(), b"any", &fixed).is_err());
        assert!(Jwk::parse(&okp(&identity)).is_err());
    }

    #[test]
    fn jwks_rules() {
        let hs = json!({"kty":"oct","alg":"HS256","kid":"a","k":b64::encode(&[7u8; 32])});
        let hs2 = json!({"kty":"oct","alg":"HS256","kid":"a","k":b64::encode(&[8u8; 32])});
        let ed = ed_key();
        assert_eq!(parse_jwks(&json!({"keys":[ed.clone()]})).unwrap().len(), 1);
        assert!(parse_jwks(&json!({"keys":[hs.clone(), hs2]}))
            .unwrap_err()
            .detail
            .contains("two keys"));
        assert!(parse_jwks(&json!({"keys":[hs, ed]}))
            .unwrap_err()
            .detail
            .contains("mixes"));
        assert!(parse_jwks(&json!({"keys":[]})).is_err());
        assert!(parse_jwks(&json!([])).is_err());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let k = Jwk::parse(
            &json!({"kty":"oct","alg":"HS256","kid":"a","k":b64::encode(&[0x41u8; 32])}),
        )
        .unwrap();
        let s = format!("{k:?}");
        assert!(!s.contains("QUFB"), "{s}");
        assert!(k.public_json().is_none());
    }

    /// Found by the fuzz harness (fuzz/, scripts/fuzz.sh): RSA keys that Jwk::parse used to
    /// accept but the crypto backend can never verify with, so every genuine token failed with
    /// "signature does not verify": a modulus above 8192 bits (the backend's range is
    /// 2048-8192), and n or e with a leading zero octet (the backend refuses the encoding).
    #[test]
    fn refuses_rsa_keys_the_backend_cannot_verify_with() {
        use aws_lc_rs::signature::{KeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let parts = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let (n, e) = (parts.n.clone(), parts.e.clone());
        let rsa = |n: &[u8], e: &[u8]| {
            json!({"kty": "RSA", "alg": "RS256", "kid": "r",
                   "n": b64::encode(n), "e": b64::encode(e)})
        };
        // The canonical key verifies a real signature, through the same verifier.
        let input = b"eyJhbGciOiJSUzI1NiJ9.e30";
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input,
            &mut sig,
        )
        .unwrap();
        let good = crate::KeyEntry::new(Jwk::parse(&rsa(&n, &e)).unwrap(), None, None).unwrap();
        assert!(good.verify_signature(input, &sig));
        // The same key with a leading zero octet in e (65537 as AAEAAQ) or n: refused at the
        // door (it used to be accepted and then refuse this very signature).
        let e0 = [&[0u8][..], &e].concat();
        let n0 = [&[0u8][..], &n].concat();
        for (bad_n, bad_e) in [(&n, &e0), (&n0, &e)] {
            let err = Jwk::parse(&rsa(bad_n, bad_e)).unwrap_err();
            assert!(err.detail.contains("leading zero"), "{}", err.detail);
        }
        // A modulus beyond 8192 bits (odd, so only the size can refuse it).
        for bits in [8193usize, 9000, 16384] {
            let mut big = vec![0xc5u8; bits.div_ceil(8)];
            big[0] = 1u8 << ((bits - 1) % 8);
            let err = Jwk::parse(&rsa(&big, &e)).unwrap_err();
            assert!(
                err.detail.contains("at most 8192"),
                "{bits}: {}",
                err.detail
            );
        }
        let mut at_max = vec![0xc5u8; 1024];
        at_max[0] = 0x80;
        Jwk::parse(&rsa(&at_max, &e)).unwrap();
    }
}
