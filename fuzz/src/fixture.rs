//! The fixed material of a run: real keys of every algorithm, the key set the core trusts, the
//! tokens signed with those keys (the seeds of the token mutator), and the model of which of
//! them each verification entry point must accept (the forgery oracle's reference).

use crate::util::{der, der_uint, pem, unhex};
use auth_core::b64;
use auth_core::{Alg, Jwk, KeyEntry, KeySet, Policy};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaEncoding, RsaPublicKeyComponents,
};
use aws_lc_rs::{hmac, rsa};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The fixed verification time: 2025-06-15.
pub const NOW: f64 = 1_750_000_000.0;

/// The claim policies verify_jwt is called with (leeway, require_exp, max_token_bytes).
pub const POLICIES: [Policy; 5] = [
    Policy {
        leeway_seconds: 30.0,
        require_exp: true,
        max_token_bytes: 8192,
    },
    Policy {
        leeway_seconds: 0.0,
        require_exp: true,
        max_token_bytes: 8192,
    },
    Policy {
        leeway_seconds: 300.0,
        require_exp: false,
        max_token_bytes: 8192,
    },
    Policy {
        leeway_seconds: 30.0,
        require_exp: true,
        max_token_bytes: 600,
    },
    Policy {
        leeway_seconds: 30.0,
        require_exp: false,
        max_token_bytes: 100_000,
    },
];

pub enum Private {
    Hmac(Vec<u8>),
    Rsa(rsa::KeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub struct Material {
    pub name: &'static str,
    pub private: Private,
    /// kty and key members of the public JWK (for oct: the secret), without kid and alg.
    pub members: Map<String, Value>,
    /// EC: the uncompressed point; Ed25519: x; RSA: n; HMAC: the secret.
    pub raw_public: Vec<u8>,
    /// What an algorithm-confusion attacker feeds HMAC as "the secret": the public key as SPKI
    /// DER, PEM (with and without the final newline), PKCS#1, raw bytes, JWK text.
    pub confusion_secrets: Vec<Vec<u8>>,
}

pub struct EntrySpec {
    pub kid: String,
    pub alg: Alg,
    pub material: usize,
    pub jwk: Value,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub valid_from: Option<f64>,
    pub valid_until: Option<f64>,
}

impl EntrySpec {
    pub fn active(&self, now: f64) -> bool {
        self.valid_from.is_none_or(|f| f <= now) && self.valid_until.is_none_or(|u| now < u)
    }

    pub fn build(&self) -> KeyEntry {
        let jwk = Jwk::parse(&self.jwk).expect("fixture JWK");
        KeyEntry::new(jwk, self.issuer.clone(), self.audience.clone())
            .expect("fixture key entry")
            .with_validity(self.valid_from, self.valid_until)
    }
}

pub struct Original {
    pub token: String,
    /// The key-set entry whose key and alg signed it; None for keys the set does not trust.
    pub signer: Option<usize>,
    pub material: usize,
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
    /// False for a header the core must refuse whatever the key (crit, b64, duplicates, ...).
    pub header_ok: bool,
    /// False for a payload that is not an acceptable claims object (the claim rules of
    /// `claims_ok` cover only well-typed claims).
    pub payload_ok: bool,
    pub label: String,
}

pub struct Fixture {
    pub materials: Vec<Material>,
    pub entries: Vec<EntrySpec>,
    pub originals: Vec<Original>,
    pub by_token: HashMap<String, usize>,
    /// header.payload of the seed tokens (for recognising a re-signed twin); several seed
    /// tokens can share one (same claims under two keys of one alg).
    pub by_signing_input: HashMap<String, Vec<usize>>,
    /// Materials the key set does not trust (embedded-key and re-signing attacks).
    pub attackers: Vec<usize>,
    pub phc: crate::phc::Pool,
}

/// The key set of one thread (the core's verifiers are not Sync): `set` holds every entry,
/// `single[i]` is entry i alone for the single-key entry points.
pub struct ThreadKeys {
    pub set: KeySet,
    pub single: Vec<KeyEntry>,
}

impl ThreadKeys {
    pub fn new(fx: &Fixture) -> ThreadKeys {
        let mut set = KeySet::new();
        for e in &fx.entries {
            set.insert(e.build()).expect("unique kids");
        }
        ThreadKeys {
            set,
            single: fx.entries.iter().map(EntrySpec::build).collect(),
        }
    }
}

fn hmac_alg(alg: Alg) -> hmac::Algorithm {
    match alg {
        Alg::HS384 => hmac::HMAC_SHA384,
        Alg::HS512 => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    }
}

pub fn hmac_sign(alg: Alg, secret: &[u8], msg: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac_alg(alg), secret), msg)
        .as_ref()
        .to_vec()
}

fn rsa_encoding(alg: Alg) -> &'static dyn RsaEncoding {
    match alg {
        Alg::RS256 => &signature::RSA_PKCS1_SHA256,
        Alg::RS384 => &signature::RSA_PKCS1_SHA384,
        Alg::RS512 => &signature::RSA_PKCS1_SHA512,
        Alg::PS256 => &signature::RSA_PSS_SHA256,
        Alg::PS384 => &signature::RSA_PSS_SHA384,
        _ => &signature::RSA_PSS_SHA512,
    }
}

/// Signs with a real private key. Only ever called on content the harness built itself (seed
/// tokens, or attacker keys on attacker content), never on a mutant under a trusted key.
pub fn sign(m: &Material, alg: Alg, msg: &[u8]) -> Vec<u8> {
    match &m.private {
        Private::Hmac(secret) => hmac_sign(alg, secret, msg),
        Private::Rsa(pair) => {
            let mut sig = vec![0u8; pair.public_modulus_len()];
            pair.sign(rsa_encoding(alg), &SystemRandom::new(), msg, &mut sig)
                .expect("RSA signing");
            sig
        }
        Private::Ec(pair) => pair
            .sign(&SystemRandom::new(), msg)
            .expect("ECDSA signing")
            .as_ref()
            .to_vec(),
        Private::Ed(pair) => pair.sign(msg).as_ref().to_vec(),
    }
}

/// The algorithms a material can sign with.
pub fn algs_of(m: &Material) -> &'static [Alg] {
    match &m.private {
        Private::Hmac(_) => &[Alg::HS256, Alg::HS384, Alg::HS512],
        Private::Rsa(_) => &[
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
        ],
        Private::Ec(_) if m.raw_public.len() == 65 => &[Alg::ES256],
        Private::Ec(_) => &[Alg::ES384],
        Private::Ed(_) => &[Alg::EdDSA],
    }
}

fn confusion(spki: Vec<u8>, extra: Vec<Vec<u8>>, members: &Map<String, Value>) -> Vec<Vec<u8>> {
    let p = pem("PUBLIC KEY", &spki);
    let mut v = vec![
        p.clone().into_bytes(),
        p.trim_end().as_bytes().to_vec(),
        spki,
        serde_json::to_vec(members).expect("json"),
    ];
    v.extend(extra);
    v
}

/// Key material comes from the system RNG: ECDSA and PSS signatures are randomised anyway, so
/// the seed could not make the seed tokens byte-reproducible; failure reports print the keys.
fn hmac_material(name: &'static str, len: usize) -> Material {
    let secret = auth_core::random::bytes(len);
    let mut members = Map::new();
    members.insert("kty".into(), json!("oct"));
    members.insert("k".into(), json!(b64::encode(&secret)));
    Material {
        name,
        private: Private::Hmac(secret.clone()),
        members,
        raw_public: secret,
        confusion_secrets: Vec::new(),
    }
}

fn rsa_material(name: &'static str) -> Material {
    let pair = rsa::KeyPair::generate(rsa::KeySize::Rsa2048).expect("RSA keygen");
    let parts = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    let (n, e) = (parts.n.clone(), parts.e.clone());
    let mut members = Map::new();
    members.insert("kty".into(), json!("RSA"));
    members.insert("n".into(), json!(b64::encode(&n)));
    members.insert("e".into(), json!(b64::encode(&e)));
    let pkcs1 = der(0x30, &[der_uint(&n), der_uint(&e)].concat());
    // AlgorithmIdentifier rsaEncryption with NULL parameters.
    let alg_id = unhex("300d06092a864886f70d0101010500");
    let mut bits = vec![0u8];
    bits.extend(&pkcs1);
    let spki = der(0x30, &[alg_id, der(0x03, &bits)].concat());
    let extra = vec![pem("RSA PUBLIC KEY", &pkcs1).into_bytes(), pkcs1, n.clone()];
    let confusion_secrets = confusion(spki, extra, &members);
    Material {
        name,
        private: Private::Rsa(pair),
        members,
        raw_public: n,
        confusion_secrets,
    }
}

fn ec_material(name: &'static str, p384: bool) -> Material {
    let alg = if p384 {
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING
    };
    let pair = EcdsaKeyPair::generate(alg).expect("EC keygen");
    let point = pair.public_key().as_ref().to_vec();
    let size = (point.len() - 1) / 2;
    let mut members = Map::new();
    members.insert("kty".into(), json!("EC"));
    members.insert("crv".into(), json!(if p384 { "P-384" } else { "P-256" }));
    members.insert("x".into(), json!(b64::encode(&point[1..1 + size])));
    members.insert("y".into(), json!(b64::encode(&point[1 + size..])));
    // id-ecPublicKey with the named curve.
    let alg_id = if p384 {
        unhex("301006072a8648ce3d020106052b81040022")
    } else {
        unhex("301306072a8648ce3d020106082a8648ce3d030107")
    };
    let mut bits = vec![0u8];
    bits.extend(&point);
    let spki = der(0x30, &[alg_id, der(0x03, &bits)].concat());
    let extra = vec![point.clone(), point[1..1 + size].to_vec()];
    let confusion_secrets = confusion(spki, extra, &members);
    Material {
        name,
        private: Private::Ec(pair),
        members,
        raw_public: point,
        confusion_secrets,
    }
}

fn ed_material(name: &'static str) -> Material {
    let pair = Ed25519KeyPair::generate().expect("Ed25519 keygen");
    let x = pair.public_key().as_ref().to_vec();
    let mut members = Map::new();
    members.insert("kty".into(), json!("OKP"));
    members.insert("crv".into(), json!("Ed25519"));
    members.insert("x".into(), json!(b64::encode(&x)));
    let mut bits = vec![0u8];
    bits.extend(&x);
    let spki = der(0x30, &[unhex("300506032b6570"), der(0x03, &bits)].concat());
    let confusion_secrets = confusion(spki, vec![x.clone()], &members);
    Material {
        name,
        private: Private::Ed(pair),
        members,
        raw_public: x,
        confusion_secrets,
    }
}

struct EntryDef {
    kid: Option<&'static str>,
    alg: Alg,
    material: &'static str,
    issuer: Option<&'static str>,
    audience: Option<&'static [&'static str]>,
    valid_from: Option<f64>,
    valid_until: Option<f64>,
}

const fn def(kid: &'static str, alg: Alg, material: &'static str) -> EntryDef {
    EntryDef {
        kid: Some(kid),
        alg,
        material,
        issuer: None,
        audience: None,
        valid_from: None,
        valid_until: None,
    }
}

pub const ISSUER: &str = "https://issuer.example";

fn entry_defs() -> Vec<EntryDef> {
    vec![
        def("hs256", Alg::HS256, "hmac32"),
        def("hs384", Alg::HS384, "hmac48"),
        // No kid in the JWK: its kid is the RFC 7638 thumbprint.
        EntryDef {
            kid: None,
            ..def("", Alg::HS512, "hmac64")
        },
        EntryDef {
            valid_until: Some(NOW - 1000.0),
            ..def("hs256-old", Alg::HS256, "hmac32-old")
        },
        EntryDef {
            issuer: Some(ISSUER),
            audience: Some(&["api"]),
            ..def("rs256", Alg::RS256, "rsa")
        },
        def("rs384", Alg::RS384, "rsa"),
        def("rs512", Alg::RS512, "rsa"),
        def("ps256", Alg::PS256, "rsa"),
        def("ps384", Alg::PS384, "rsa"),
        def("ps512", Alg::PS512, "rsa"),
        EntryDef {
            issuer: Some(ISSUER),
            ..def("es256", Alg::ES256, "p256")
        },
        def("es384", Alg::ES384, "p384"),
        EntryDef {
            valid_from: Some(NOW + 1000.0),
            ..def("es256-next", Alg::ES256, "p256-next")
        },
        EntryDef {
            audience: Some(&["authenticated", "api"]),
            ..def("ed25519", Alg::EdDSA, "ed25519")
        },
    ]
}

fn base_claims(e: Option<&EntrySpec>) -> Map<String, Value> {
    let iss = e.and_then(|e| e.issuer.clone()).unwrap_or(ISSUER.into());
    let aud = e
        .and_then(|e| e.audience.as_ref().map(|a| a[0].clone()))
        .unwrap_or("api".into());
    let v = json!({
        "sub": "8d8ac610-566d-4ef0-9c22-186b2a5ed793",
        "role": "authenticated",
        "email": "user@example.com",
        "iss": iss,
        "aud": aud,
        "iat": NOW - 60.0,
        "exp": NOW + 3600.0,
        "app_metadata": {"roles": ["editor", "admin"]},
    });
    v.as_object().expect("object").clone()
}

pub fn make_token(m: &Material, alg: Alg, header: &Map<String, Value>, claims: &[u8]) -> String {
    let h = b64::encode(serde_json::to_string(header).expect("json").as_bytes());
    let input = format!("{h}.{}", b64::encode(claims));
    let sig = sign(m, alg, input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

pub fn header(alg: Alg, kid: Option<&str>) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("alg".into(), json!(alg.name()));
    h.insert("typ".into(), json!("JWT"));
    if let Some(k) = kid {
        h.insert("kid".into(), json!(k));
    }
    h
}

impl Fixture {
    pub fn build() -> Fixture {
        let mut materials = vec![
            hmac_material("hmac32", 32),
            hmac_material("hmac48", 48),
            hmac_material("hmac64", 64),
            hmac_material("hmac32-old", 32),
            rsa_material("rsa"),
            ec_material("p256", false),
            ec_material("p384", true),
            ec_material("p256-next", false),
            ed_material("ed25519"),
        ];
        let trusted = materials.len();
        materials.extend([
            hmac_material("attacker-hmac", 64),
            rsa_material("attacker-rsa"),
            ec_material("attacker-p256", false),
            ec_material("attacker-p384", true),
            ed_material("attacker-ed25519"),
        ]);
        let attackers: Vec<usize> = (trusted..materials.len()).collect();
        let index = |name: &str| {
            materials
                .iter()
                .position(|m| m.name == name)
                .expect("material")
        };

        let mut entries = Vec::new();
        for d in entry_defs() {
            let mi = index(d.material);
            let mut jwk = materials[mi].members.clone();
            jwk.insert("alg".into(), json!(d.alg.name()));
            if let Some(k) = d.kid {
                jwk.insert("kid".into(), json!(k));
            }
            let jwk = Value::Object(jwk);
            let kid = Jwk::parse(&jwk).expect("fixture JWK").kid;
            entries.push(EntrySpec {
                kid,
                alg: d.alg,
                material: mi,
                jwk,
                issuer: d.issuer.map(str::to_owned),
                audience: d
                    .audience
                    .map(|a| a.iter().map(|s| s.to_string()).collect()),
                valid_from: d.valid_from,
                valid_until: d.valid_until,
            });
        }

        let mut originals = Vec::new();
        let mut add_raw = |signer: Option<usize>,
                           material: usize,
                           alg: Alg,
                           kid: Option<&str>,
                           header: &[u8],
                           payload: &[u8],
                           ok: (bool, bool),
                           label: String| {
            let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
            let sig = sign(&materials[material], alg, input.as_bytes());
            let claims = serde_json::from_slice::<Map<String, Value>>(payload).unwrap_or_default();
            originals.push(Original {
                token: format!("{input}.{}", b64::encode(&sig)),
                signer,
                material,
                alg,
                kid: kid.map(str::to_owned),
                claims,
                header_ok: ok.0,
                payload_ok: ok.1,
                label,
            });
        };
        let mut add = |signer: Option<usize>,
                       material: usize,
                       alg: Alg,
                       kid: Option<&str>,
                       claims: Map<String, Value>,
                       label: String| {
            let h = serde_json::to_vec(&header(alg, kid)).expect("json");
            let text = serde_json::to_vec(&claims).expect("json");
            add_raw(signer, material, alg, kid, &h, &text, (true, true), label);
        };
        for (i, e) in entries.iter().enumerate() {
            let base = base_claims(Some(e));
            let kid = Some(e.kid.as_str());
            let with = |f: &dyn Fn(&mut Map<String, Value>)| {
                let mut c = base.clone();
                f(&mut c);
                c
            };
            let s = Some(i);
            let (m, a) = (e.material, e.alg);
            add(s, m, a, kid, base.clone(), format!("{} valid", e.kid));
            add(s, m, a, None, base.clone(), format!("{} no kid", e.kid));
            add(
                s,
                m,
                a,
                kid,
                with(&|c| {
                    c.insert("exp".into(), json!(NOW - 3600.0));
                }),
                format!("{} expired", e.kid),
            );
            add(
                s,
                m,
                a,
                kid,
                with(&|c| {
                    c.remove("exp");
                }),
                format!("{} no exp", e.kid),
            );
            add(
                s,
                m,
                a,
                kid,
                with(&|c| {
                    c.insert("nbf".into(), json!(NOW + 3600.0));
                }),
                format!("{} nbf future", e.kid),
            );
            add(
                s,
                m,
                a,
                kid,
                with(&|c| {
                    c.insert("iss".into(), json!("https://evil.example"));
                    c.insert("aud".into(), json!(["evil", "other"]));
                }),
                format!("{} foreign iss/aud", e.kid),
            );
            add(
                s,
                m,
                a,
                kid,
                with(&|c| {
                    c.insert("exp".into(), json!(NOW + 3600.5));
                    c.insert("aud".into(), json!(["x", c["aud"].clone()]));
                    c.insert("name".into(), json!("Zoë \u{1F600} \"quoted\" \\ /"));
                    c.insert(
                        "n".into(),
                        json!([1, -2.5, 1e300, null, true, {"a": {"b": []}}]),
                    );
                }),
                format!("{} fancy", e.kid),
            );
        }
        // Near the default max_token_bytes: lengths either side of 8192.
        for kid in ["hs256", "es256", "ed25519"] {
            let (i, e) = entries
                .iter()
                .enumerate()
                .find(|(_, e)| e.kid == kid)
                .expect("entry");
            let fixed = make_token(
                &materials[e.material],
                e.alg,
                &header(e.alg, Some(kid)),
                b"",
            )
            .len();
            let base = base_claims(Some(e));
            let base_len = b64::encode(&serde_json::to_vec(&base).expect("json")).len();
            let mut seen = Vec::new();
            let mut pad = 8192usize.saturating_sub(fixed + base_len) * 3 / 4;
            while seen.len() < 3 && pad < 8192 {
                let mut c = base.clone();
                c.insert("pad".into(), json!("p".repeat(pad)));
                let len = fixed + b64::encode(&serde_json::to_vec(&c).expect("json")).len();
                if (8190..=8194).contains(&len) && !seen.contains(&len) {
                    seen.push(len);
                    add(
                        Some(i),
                        e.material,
                        e.alg,
                        Some(kid),
                        c,
                        format!("{kid} {len} bytes"),
                    );
                }
                pad += 1;
            }
        }
        // Signed by keys the set does not trust, under trusted kids and none.
        for &mi in &attackers {
            let alg = algs_of(&materials[mi])[0];
            let kid = entries.iter().find(|e| e.alg == alg).map(|e| e.kid.clone());
            add(
                None,
                mi,
                alg,
                kid.as_deref(),
                base_claims(None),
                format!("{} under a trusted kid", materials[mi].name),
            );
            add(
                None,
                mi,
                alg,
                None,
                base_claims(None),
                format!("{} no kid", materials[mi].name),
            );
        }
        // Signed by trusted keys over hostile headers and payloads: what the signature covers
        // must still be refused where the model says so (crit, duplicates, NUL, bad claims).
        let exp = NOW + 3600.0;
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let hostile_payloads: Vec<(Vec<u8>, bool)> = vec![
            (
                format!(r#"{{"exp":{exp},"exp":9999999999}}"#).into_bytes(),
                false,
            ),
            (
                format!(r#"{{"exp":{exp},"\u0065xp":9999999999}}"#).into_bytes(),
                false,
            ),
            (
                format!(r#"{{"exp":{exp},"sub":"a\u0000b"}}"#).into_bytes(),
                false,
            ),
            (
                [
                    format!(r#"{{"exp":{exp},"sub":""#).as_bytes(),
                    b"\xff\xfe",
                    b"\"}",
                ]
                .concat(),
                false,
            ),
            (format!(r#"{{"exp":{exp},"x":{deep}}}"#).into_bytes(), false),
            (br#"{"exp":1e400}"#.to_vec(), false),
            (br#"{"exp":1e300}"#.to_vec(), false),
            (br#"{"exp":-1e300}"#.to_vec(), false),
            (br#"{"exp":"1750003600"}"#.to_vec(), false),
            (br#"{"exp":true}"#.to_vec(), false),
            (format!(r#"{{"exp":{exp},"iat":null}}"#).into_bytes(), false),
            (
                format!(r#"{{"exp":{exp},"nbf":"soon"}}"#).into_bytes(),
                false,
            ),
            (b"[]".to_vec(), false),
            (b"".to_vec(), false),
            (b"null".to_vec(), false),
            (br#""claims""#.to_vec(), false),
            (format!(r#"{{"exp":{exp}}} x"#).into_bytes(), false),
            (format!(r#"{{"exp":{exp}}}{{}}"#).into_bytes(), false),
            (
                [
                    &b"\xef\xbb\xbf"[..],
                    format!(r#"{{"exp":{exp}}}"#).as_bytes(),
                ]
                .concat(),
                false,
            ),
            (format!(" \n{{\"exp\":{exp}}}\t ").into_bytes(), true),
            (
                format!(r#"{{"exp":{exp},"aud":["api",3],"iss":5}}"#).into_bytes(),
                true,
            ),
            (
                format!(r#"{{"exp":{exp},"sub":"\ud83d\ude00","n":12345678901234567890123}}"#)
                    .into_bytes(),
                true,
            ),
        ];
        for kid in ["hs256", "es256", "ed25519", "ps256"] {
            let (i, e) = entries
                .iter()
                .enumerate()
                .find(|(_, e)| e.kid == kid)
                .expect("entry");
            let h = serde_json::to_vec(&header(e.alg, Some(kid))).expect("json");
            for (j, (payload, ok)) in hostile_payloads.iter().enumerate() {
                add_raw(
                    Some(i),
                    e.material,
                    e.alg,
                    Some(kid),
                    &h,
                    payload,
                    (true, *ok),
                    format!("{kid} hostile payload #{j}"),
                );
            }
            let alg = e.alg.name();
            let claims = serde_json::to_string(&base_claims(Some(e))).expect("json");
            let hostile_headers: Vec<(String, bool, Option<&str>)> = vec![
                (
                    format!(r#"{{"alg":"{alg}","kid":"{kid}","crit":["exp"]}}"#),
                    false,
                    Some(kid),
                ),
                (
                    format!(r#"{{"alg":"{alg}","kid":"{kid}","crit":[]}}"#),
                    false,
                    Some(kid),
                ),
                (
                    format!(r#"{{"alg":"{alg}","kid":"{kid}","b64":false}}"#),
                    false,
                    Some(kid),
                ),
                (
                    format!(r#"{{"alg":"{alg}","kid":"{kid}","zip":"DEF"}}"#),
                    false,
                    Some(kid),
                ),
                (
                    format!(r#"{{"alg":"{alg}","kid":"{kid}","kid":"{kid}"}}"#),
                    false,
                    Some(kid),
                ),
                (
                    format!(r#"{{"alg":"{alg}","alg":"{alg}","kid":"{kid}"}}"#),
                    false,
                    Some(kid),
                ),
                (format!(r#"{{"alg":"{alg}","kid":7}}"#), false, None),
                (format!(r#"{{"alg":"{alg}","kid":null}}"#), false, None),
                (
                    format!(r#"{{"alg":"{alg}","kid":"{kid}","x":"\u0000"}}"#),
                    false,
                    Some(kid),
                ),
                (
                    format!(r#"{{"alg":"{}","kid":"{kid}"}}"#, alg.to_lowercase()),
                    false,
                    Some(kid),
                ),
                (format!(r#"["alg","{alg}"]"#), false, None),
                (
                    format!(r#"{{"alg":"{alg}","kid":"{kid}"}} x"#),
                    false,
                    Some(kid),
                ),
                (
                    format!(
                        r#"{{"alg":"{alg}","kid":"{kid}","jku":"https://evil.example/jwks","x5u":"https://evil.example/x","x5c":["AAAA"],"jwk":{{"kty":"oct","k":"AAAA"}}}}"#
                    ),
                    true,
                    Some(kid),
                ),
                (
                    format!(
                        r#"{{"kid":"{kid}","typ":"at+jwt","cty":"JWT","alg":"{alg}","ext":{{"a":[1,2,{{"b":null}}]}}}}"#
                    ),
                    true,
                    Some(kid),
                ),
                (format!(r#" {{"alg":"{alg}"}}"#), true, None),
            ];
            for (j, (h, ok, hkid)) in hostile_headers.iter().enumerate() {
                add_raw(
                    Some(i),
                    e.material,
                    e.alg,
                    *hkid,
                    h.as_bytes(),
                    claims.as_bytes(),
                    (*ok, true),
                    format!("{kid} hostile header #{j}"),
                );
            }
        }
        let mut by_signing_input: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, o) in originals.iter().enumerate() {
            let input = &o.token[..o.token.rfind('.').expect("3 segments")];
            by_signing_input
                .entry(input.to_string())
                .or_default()
                .push(i);
        }
        let by_token = originals
            .iter()
            .enumerate()
            .map(|(i, o)| (o.token.clone(), i))
            .collect();
        Fixture {
            materials,
            entries,
            originals,
            by_token,
            by_signing_input,
            attackers,
            phc: crate::phc::Pool::build(),
        }
    }

    /// What `verify_jws` against the whole set must say about original `o`.
    pub fn expect_jws(&self, o: &Original, max_bytes: usize) -> bool {
        let Some(s) = o.signer else { return false };
        let e = &self.entries[s];
        o.header_ok
            && o.token.len() <= max_bytes
            && e.active(NOW)
            && o.kid.as_deref().is_none_or(|k| k == e.kid)
    }

    pub fn expect_jwt(&self, o: &Original, p: &Policy) -> bool {
        self.expect_jws(o, p.max_token_bytes) && o.payload_ok && {
            let e = &self.entries[o.signer.expect("signed")];
            claims_ok(&o.claims, p, e.issuer.as_deref(), e.audience.as_deref())
        }
    }

    /// Single-key entry points: the kid is not consulted, nor the key's validity window.
    pub fn expect_jws_with_key(&self, o: &Original, entry: usize, max_bytes: usize) -> bool {
        o.header_ok && o.signer == Some(entry) && o.token.len() <= max_bytes
    }

    pub fn expect_jwt_with_key(&self, o: &Original, entry: usize, p: &Policy) -> bool {
        let e = &self.entries[entry];
        self.expect_jws_with_key(o, entry, p.max_token_bytes)
            && o.payload_ok
            && claims_ok(&o.claims, p, e.issuer.as_deref(), e.audience.as_deref())
    }

    /// The public JWKs of the set (and the HMAC secrets: fuzz keys), for failure reports.
    pub fn describe_keys(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&format!(
                "    {} iss={:?} aud={:?} from={:?} until={:?}: {}\n",
                e.kid, e.issuer, e.audience, e.valid_from, e.valid_until, e.jwk
            ));
        }
        out
    }
}

/// The claim rules, written independently of the core's (the seed tokens' claims are plain
/// numbers and strings, far from every boundary).
pub fn claims_ok(
    c: &Map<String, Value>,
    p: &Policy,
    iss: Option<&str>,
    aud: Option<&[String]>,
) -> bool {
    let num = |k: &str| c.get(k).and_then(Value::as_f64);
    let exp_ok = match num("exp") {
        None => !p.require_exp,
        Some(exp) => NOW < exp + p.leeway_seconds,
    };
    let nbf_ok = num("nbf").is_none_or(|n| n <= NOW + p.leeway_seconds);
    let iat_ok = num("iat").is_none_or(|n| n <= NOW + p.leeway_seconds);
    let iss_ok = iss.is_none_or(|want| c.get("iss").and_then(Value::as_str) == Some(want));
    let aud_ok = aud.is_none_or(|allowed| match c.get("aud") {
        Some(Value::String(s)) => allowed.contains(s),
        Some(Value::Array(items)) => {
            items.iter().all(Value::is_string)
                && items
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| allowed.iter().any(|a| a == s)))
        }
        _ => false,
    });
    exp_ok && nbf_ok && iat_ok && iss_ok && aud_ok
}
