//! The one source of randomness: aws-lc's system random generator (keys, salts, secrets,
//! refresh tokens and ids all come from here).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// `n` bytes from the system's cryptographically secure generator.
pub fn bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the system random source works");
    buf
}
