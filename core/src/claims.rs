//! Claim policy (RFC 7519 §4.1, RFC 8725 §3.8-3.10): time claims with leeway, issuer and
//! audience binding. Times are Unix seconds as f64 because NumericDate may be fractional.

use crate::error::{AuthError, ErrorCode, Result};
use serde_json::{Map, Value};

/// NumericDates beyond year 9999 (or before year 1) are refused: no real token needs them and
/// they overflow timestamp types downstream.
const MAX_ABS_NUMERIC_DATE: f64 = 253_402_300_799.0;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TimeClaims {
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
}

/// Settings of the claim policy (the `auth.*` GUCs in the SQL layer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub leeway_seconds: f64,
    pub require_exp: bool,
    pub max_token_bytes: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            leeway_seconds: 30.0,
            require_exp: true,
            max_token_bytes: crate::jws::DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let v = n
                .as_f64()
                .filter(|v| v.is_finite() && v.abs() <= MAX_ABS_NUMERIC_DATE);
            v.map(Some)
                .ok_or_else(|| AuthError::invalid_claims(format!("{name} is out of range")))
        }
        Some(_) => Err(AuthError::invalid_claims(format!(
            "{name} must be a NumericDate (a JSON number)"
        ))),
    }
}

pub fn time_claims(claims: &Map<String, Value>) -> Result<TimeClaims> {
    Ok(TimeClaims {
        exp: numeric_date(claims, "exp")?,
        nbf: numeric_date(claims, "nbf")?,
        iat: numeric_date(claims, "iat")?,
    })
}

/// Checks exp/nbf/iat against `now` (Unix seconds). Called at first verification and again in
/// every later transaction that reuses a cached verification.
pub fn check_times(t: &TimeClaims, now: f64, policy: &Policy) -> Result<()> {
    let leeway = policy.leeway_seconds;
    match t.exp {
        None if policy.require_exp => {
            return Err(AuthError::invalid_claims(
                "exp is missing (auth.require_exp is on)",
            ))
        }
        Some(exp) if now >= exp + leeway => {
            return Err(AuthError::new(
                ErrorCode::TokenExpired,
                format!("exp is {} (leeway {leeway:.0} s)", utc(exp)),
            ))
        }
        _ => {}
    }
    if let Some(nbf) = t.nbf {
        if nbf > now + leeway {
            return Err(AuthError::new(
                ErrorCode::TokenNotYetValid,
                format!("nbf is {} (leeway {leeway:.0} s)", utc(nbf)),
            ));
        }
    }
    if let Some(iat) = t.iat {
        if iat > now + leeway {
            return Err(AuthError::new(
                ErrorCode::TokenNotYetValid,
                format!("iat is {}, in the future (leeway {leeway:.0} s)", utc(iat)),
            ));
        }
    }
    Ok(())
}

/// A NumericDate as `YYYY-MM-DD hh:mm:ss UTC` (for error details).
pub fn utc(t: f64) -> String {
    let secs = t.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (H. Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A key bound to an issuer accepts only tokens whose `iss` equals it; a key bound to
/// audiences accepts only tokens whose `aud` (string or array) names one of them.
pub fn check_issuer_audience(
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    audience: Option<&[String]>,
) -> Result<()> {
    if let Some(expected) = issuer {
        match claims.get("iss") {
            Some(Value::String(iss)) if iss == expected => {}
            Some(Value::String(_)) => {
                return Err(AuthError::invalid_claims(
                    "iss does not match the key's issuer",
                ))
            }
            Some(_) => return Err(AuthError::invalid_claims("iss must be a string")),
            None => {
                return Err(AuthError::invalid_claims(
                    "iss is missing (the key requires an issuer)",
                ))
            }
        }
    }
    if let Some(allowed) = audience {
        let matches = |s: &str| allowed.iter().any(|a| a == s);
        let ok = match claims.get("aud") {
            Some(Value::String(s)) => matches(s),
            Some(Value::Array(items)) => {
                if items.iter().any(|v| !v.is_string()) {
                    return Err(AuthError::invalid_claims(
                        "aud must be a string or an array of strings",
                    ));
                }
                items.iter().any(|v| v.as_str().is_some_and(matches))
            }
            Some(_) => {
                return Err(AuthError::invalid_claims(
                    "aud must be a string or an array of strings",
                ))
            }
            None => {
                return Err(AuthError::invalid_claims(
                    "aud is missing (the key requires an audience)",
                ))
            }
        };
        if !ok {
            return Err(AuthError::invalid_claims(
                "aud does not name an audience the key accepts",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn time_rules() {
        let p = Policy::default();
        let now = 1_700_000_000.0;
        let t = |v: Value| time_claims(&obj(v)).unwrap();
        assert!(check_times(&t(json!({"exp": now + 60.0})), now, &p).is_ok());
        assert!(
            check_times(&t(json!({"exp": now - 10.0})), now, &p).is_ok(),
            "within leeway"
        );
        let e = check_times(&t(json!({"exp": now - 31.0})), now, &p).unwrap_err();
        assert_eq!(e.code, ErrorCode::TokenExpired);
        assert_eq!(
            check_times(&t(json!({"exp": now - 30.0})), now, &p)
                .unwrap_err()
                .code,
            ErrorCode::TokenExpired
        );
        assert!(
            check_times(&t(json!({"exp": now + 0.5})), now, &p).is_ok(),
            "fractional"
        );
        assert_eq!(
            check_times(&t(json!({})), now, &p).unwrap_err().code,
            ErrorCode::InvalidClaims
        );
        let lax = Policy {
            require_exp: false,
            ..p
        };
        assert!(check_times(&t(json!({})), now, &lax).is_ok());
        let e =
            check_times(&t(json!({"exp": now + 60.0, "nbf": now + 31.0})), now, &p).unwrap_err();
        assert_eq!(e.code, ErrorCode::TokenNotYetValid);
        assert!(check_times(&t(json!({"exp": now + 60.0, "nbf": now + 29.0})), now, &p).is_ok());
        let e =
            check_times(&t(json!({"exp": now + 60.0, "iat": now + 31.0})), now, &p).unwrap_err();
        assert_eq!(e.code, ErrorCode::TokenNotYetValid);
        let strict = Policy {
            leeway_seconds: 0.0,
            ..p
        };
        assert_eq!(
            check_times(&t(json!({"exp": now - 1.0})), now, &strict)
                .unwrap_err()
                .code,
            ErrorCode::TokenExpired
        );
    }

    #[test]
    fn utc_rendering() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(978_307_200.0), "2001-01-01 00:00:00 UTC");
        assert_eq!(utc(4_102_444_800.0), "2100-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_399.5), "2000-02-28 23:59:59 UTC");
        assert_eq!(utc(951_868_800.0), "2000-03-01 00:00:00 UTC");
        assert_eq!(utc(-1.0), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn malformed_times_are_invalid_claims() {
        for v in [
            json!({"exp": "4102444800"}),
            json!({"exp": true}),
            json!({"exp": null}),
            json!({"nbf": [1]}),
            json!({"exp": 1e300}),
            json!({"iat": -1e12}),
        ] {
            assert_eq!(
                time_claims(&obj(v.clone())).unwrap_err().code,
                ErrorCode::InvalidClaims,
                "{v}"
            );
        }
    }

    #[test]
    fn issuer_and_audience() {
        let aud = vec!["authenticated".to_string(), "api".to_string()];
        let c = obj(json!({"iss": "https://a", "aud": "api"}));
        assert!(check_issuer_audience(&c, Some("https://a"), Some(&aud)).is_ok());
        assert!(check_issuer_audience(&c, None, None).is_ok());
        assert!(check_issuer_audience(&c, Some("https://b"), None).is_err());
        assert!(check_issuer_audience(
            &obj(json!({"aud": ["x", "authenticated"]})),
            None,
            Some(&aud)
        )
        .is_ok());
        assert!(check_issuer_audience(&obj(json!({"aud": ["x"]})), None, Some(&aud)).is_err());
        assert!(check_issuer_audience(&obj(json!({"aud": ["api", 3]})), None, Some(&aud)).is_err());
        assert!(check_issuer_audience(&obj(json!({"aud": 3})), None, Some(&aud)).is_err());
        assert!(check_issuer_audience(&obj(json!({})), None, Some(&aud)).is_err());
        assert!(check_issuer_audience(&obj(json!({"iss": 1})), Some("1"), None).is_err());
    }
}
