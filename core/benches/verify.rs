//! First verification of a token, per algorithm: auth_core's whole pipeline (strict parse,
//! key selection by kid, signature, strict claims JSON, claim policy) next to
//! `jsonwebtoken::decode` of the same token with the same checks (alg, exp, iss, aud), measured
//! in the same run. Prints the ratio per algorithm (target ≤ 1.3) and the absolute figures
//! against docs/performance.md "Targets".
//!
//!   cargo bench -p auth_core --bench verify
//!   AUTH_BENCH_SMOKE=1 cargo bench -p auth_core --bench verify   (CI: tiny sample, same table)

use auth_core::{verify_jwt, Jwk, KeyEntry, KeySet, Policy};
use criterion::{black_box, Criterion};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const ALGS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// docs/performance.md "Targets" absolute targets for a first verification, in µs.
fn target_us(alg: &str) -> Option<f64> {
    match alg {
        "HS256" => Some(5.0),
        "ES256" => Some(60.0),
        "RS256" => Some(40.0),
        "EdDSA" => Some(60.0),
        _ => None,
    }
}

fn fixtures() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tokens.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

/// The median of `group/id` if it ran since `since` (a filter may have left it out, and an
/// earlier run's file may still be there).
fn median_ns(group: &str, id: &str, since: std::time::SystemTime) -> Option<f64> {
    let path = out_dir().join(group).join(id).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).unwrap();
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    let started = std::time::SystemTime::now();
    let smoke = std::env::var_os("AUTH_BENCH_SMOKE").is_some();
    let mut c = Criterion::default()
        .output_directory(&out_dir())
        .configure_from_args();
    if smoke {
        c = c
            .warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(200))
            .sample_size(10);
    }
    let f = fixtures();
    let issuer = f["issuer"].as_str().unwrap().to_string();
    let audience = f["audience"].as_str().unwrap().to_string();
    // Wall-clock now, as the extension uses the transaction time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let policy = Policy::default();

    for alg in ALGS {
        let key_json = &f["keys"][alg];
        let token = f["per_alg"][alg]["valid"].as_str().unwrap().to_string();

        // auth_core: a key set holding every fixture key, as a database would.
        let mut set = KeySet::new();
        for (_, k) in f["keys"].as_object().unwrap() {
            set.insert(
                KeyEntry::new(
                    Jwk::parse(k).unwrap(),
                    Some(issuer.clone()),
                    Some(vec![audience.clone()]),
                )
                .unwrap(),
            )
            .unwrap();
        }
        assert!(verify_jwt(&token, &set, now, &policy).is_ok());

        // jsonwebtoken: the same key, the same checks.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key_json.clone()).unwrap();
        let dkey = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation =
            jsonwebtoken::Validation::new(Jwk::parse(key_json).unwrap().alg.to_jsonwebtoken());
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.leeway = 30;
        assert!(jsonwebtoken::decode::<Value>(&token, &dkey, &validation).is_ok());

        let mut g = c.benchmark_group(format!("verify_{alg}"));
        g.bench_function("auth_core", |b| {
            b.iter(|| verify_jwt(black_box(&token), &set, now, &policy).unwrap())
        });
        g.bench_function("jsonwebtoken", |b| {
            b.iter(|| jsonwebtoken::decode::<Value>(black_box(&token), &dkey, &validation).unwrap())
        });
        g.finish();
    }
    c.final_summary();

    println!(
        "\nfirst verification of a token (median), auth_core vs jsonwebtoken::decode, same run"
    );
    println!(
        "{:<6} {:>12} {:>15} {:>7} {:>12}",
        "alg", "auth_core µs", "jsonwebtoken µs", "ratio", "target µs"
    );
    for alg in ALGS {
        let group = format!("verify_{alg}");
        let Some(ours) = median_ns(&group, "auth_core", started) else {
            continue;
        };
        let ours = ours / 1000.0;
        let target = target_us(alg).map(|t| format!("≤ {t}")).unwrap_or_default();
        match median_ns(&group, "jsonwebtoken", started) {
            Some(base) => {
                let base = base / 1000.0;
                println!(
                    "{alg:<6} {ours:>12.2} {base:>15.2} {:>7.2} {target:>12}",
                    ours / base
                );
            }
            None => println!("{alg:<6} {ours:>12.2} {:>15} {:>7} {target:>12}", "-", "-"),
        }
    }
}
