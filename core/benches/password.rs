//! auth_core's password verification (scheme check + limits + argon2 crate) next to the argon2
//! crate's own verify of the same OWASP-parameter hash, in the same run. Target ratio ≤ 1.1.
//!
//!   cargo bench -p auth_core --bench password

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use auth_core::password::{hash, verify, Argon2Params};
use criterion::{black_box, Criterion};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

fn median_ns(id: &str) -> f64 {
    let path = out_dir()
        .join("verify_password")
        .join(id)
        .join("new/estimates.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["median"]["point_estimate"].as_f64().unwrap()
}

fn main() {
    let smoke = std::env::var_os("AUTH_BENCH_SMOKE").is_some();
    let mut c = Criterion::default()
        .output_directory(&out_dir())
        .configure_from_args()
        .sample_size(20);
    if smoke {
        c = c
            .warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(300))
            .sample_size(10);
    }
    let pw = b"correct horse battery staple";
    let h = hash(pw, Argon2Params::OWASP).unwrap();
    let mut g = c.benchmark_group("verify_password");
    g.bench_function("auth_core", |b| {
        b.iter(|| assert!(verify(black_box(pw), &h).unwrap()))
    });
    g.bench_function("argon2_crate", |b| {
        b.iter(|| {
            let parsed = PasswordHash::new(black_box(&h)).unwrap();
            argon2::Argon2::default()
                .verify_password(pw, &parsed)
                .unwrap()
        })
    });
    g.finish();
    c.final_summary();
    let (ours, base) = (
        median_ns("auth_core") / 1e6,
        median_ns("argon2_crate") / 1e6,
    );
    println!("\nverify an argon2id hash (m=19456 KiB, t=2, p=1), median, same run");
    println!("  auth_core::password::verify {ours:8.2} ms");
    println!("  argon2 crate verify_password {base:8.2} ms");
    println!("  ratio {:.3} (target <= 1.1)", ours / base);
}
