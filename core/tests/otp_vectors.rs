//! TOTP/HOTP against PyOTP, an independent implementation: codes for every algorithm, 6-8
//! digits, 30/60 s steps and 16-64-byte secrets; PyOTP's verdicts with a window of one step;
//! and key URIs in our format that PyOTP's parser reads back (`tests/vectors/totp_pyotp.json`,
//! made by `tests/vectors/gen_totp_pyotp.py`). The RFC 6238/4226 vectors are in `src/totp.rs`.

use auth_core::totp::{self, Algorithm, Params, Secret, TotpError};
use serde_json::Value;
use std::path::PathBuf;

fn load() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/totp_pyotp.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn params(case: &Value) -> Params {
    let alg = Algorithm::parse(case["algorithm"].as_str().unwrap()).unwrap();
    let digits = case["digits"].as_u64().unwrap_or(6) as u32;
    let step = case["step"].as_u64().unwrap_or(30);
    Params::new(alg, digits, step).unwrap()
}

#[test]
fn totp_codes_and_windows_match_pyotp() {
    let v = load();
    let cases = v["totp"].as_array().unwrap();
    assert_eq!(cases.len(), 288);
    let mut verdicts = 0;
    for case in cases {
        let p = params(case);
        let secret = Secret::from_bytes(&hex(case["secret_hex"].as_str().unwrap())).unwrap();
        let b32 = case["secret_base32"].as_str().unwrap();
        assert_eq!(secret.to_base32(), b32);
        assert_eq!(Secret::from_base32(b32).unwrap(), secret);
        let now = case["now"].as_u64().unwrap();
        let t = case["time_step"].as_u64().unwrap();
        assert_eq!(p.time_step(now), t);
        let code = case["code"].as_str().unwrap();
        assert_eq!(totp::code_at(&secret, &p, t), code, "{case}");
        assert_eq!(totp::verify(&secret, &p, code, now, 0, None), Ok(t));
        for n in case["neighbours"].as_array().unwrap() {
            let step = n["step"].as_u64().unwrap();
            let code = n["code"].as_str().unwrap();
            assert_eq!(totp::code_at(&secret, &p, step), code);
            let ours = totp::verify(&secret, &p, code, now, 1, None);
            if let Some(pyotp) = n["pyotp_valid_window_1"].as_bool() {
                assert_eq!(ours.is_ok(), pyotp, "step {step} of {case}");
                verdicts += 1;
            }
            // Once its step is accepted, a code is refused (unless it also happens to be
            // the code of a later step of the window: then that step, never an earlier one).
            match totp::verify(&secret, &p, code, now, 1, Some(step)) {
                Ok(later) => assert!(later > step),
                Err(e) => assert!(matches!(e, TotpError::Replayed | TotpError::Mismatch)),
            }
        }
    }
    assert_eq!(verdicts, 864);
}

#[test]
fn hotp_codes_match_pyotp() {
    let v = load();
    for case in v["hotp"].as_array().unwrap() {
        let secret = Secret::from_bytes(&hex(case["secret_hex"].as_str().unwrap())).unwrap();
        let counter = case["counter"].as_u64().unwrap();
        assert_eq!(
            totp::hotp_code(&secret, &params(case), counter),
            case["code"].as_str().unwrap(),
            "{case}"
        );
    }
}

#[test]
fn key_uris_are_what_pyotp_reads_back() {
    let v = load();
    let cases = v["uri"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let p = params(case);
        let secret = Secret::from_bytes(&hex(case["secret_hex"].as_str().unwrap())).unwrap();
        let uri = totp::otpauth_uri(
            &secret,
            &p,
            case["issuer"].as_str().unwrap(),
            case["account"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(uri, case["uri"].as_str().unwrap());
        assert_eq!(
            totp::code_at(&secret, &p, p.time_step(1_750_000_000)),
            case["code_at_1750000000"].as_str().unwrap()
        );
    }
}
