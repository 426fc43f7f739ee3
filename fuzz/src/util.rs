//! The seeded random source, generic byte mutators and small encoding helpers shared by the
//! targets.

use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One input's random source. Seeded from (run seed, input index) alone, so that any input can
/// be regenerated with `--seed S --replay I` whatever the thread count.
pub struct Rng(ChaCha8Rng);

/// SplitMix64 finaliser: spreads (seed, index) over the whole seed space.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn for_input(seed: u64, index: u64) -> Rng {
        let s = mix(seed ^ mix(index.wrapping_add(0x9e37_79b9_7f4a_7c15)));
        Rng(ChaCha8Rng::seed_from_u64(s))
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.0.random_range(lo..=hi)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.0.random_bool(p)
    }

    pub fn u8(&mut self) -> u8 {
        self.0.random()
    }

    pub fn u64(&mut self) -> u64 {
        self.0.random()
    }

    pub fn f64(&mut self) -> f64 {
        self.0.random()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.0.fill_bytes(&mut v);
        v
    }

    /// Random bytes of a skewed random length up to `max`.
    pub fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.small_len(max);
        self.bytes(n)
    }

    /// Index by weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = self.0.random_range(0..total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// A length skewed towards small values, up to `max`.
    pub fn small_len(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => self.range(0, max.min(4)),
            1 => self.range(0, max.min(16)),
            2 => self.range(0, max.min(64)),
            _ => self.range(0, max),
        }
    }
}

pub const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Bytes that mean something to one of the parsers under test.
pub const SPECIAL: &[u8] = b".=+/-_ \t\r\n\0{}[]\":,\\$";

/// A random byte: any byte, a base64url character or a byte special to some parser.
pub fn interesting_byte(r: &mut Rng) -> u8 {
    match r.below(3) {
        0 => r.u8(),
        1 => *r.pick(B64URL),
        _ => *r.pick(SPECIAL),
    }
}

/// One generic mutation of a byte string (bit flips, byte edits, inserts, deletes, copies,
/// truncation, extension): the AFL-style havoc step.
pub fn havoc(r: &mut Rng, v: &mut Vec<u8>) -> &'static str {
    let len = v.len();
    match r.below(9) {
        0 if len > 0 => {
            for _ in 0..r.range(1, 4) {
                let bit = r.below(len * 8);
                v[bit / 8] ^= 1 << (bit % 8);
            }
            "bit flips"
        }
        1 if len > 0 => {
            let i = r.below(len);
            v[i] = interesting_byte(r);
            "byte set"
        }
        2 => {
            let i = r.range(0, len);
            let n = r.range(1, 8);
            for _ in 0..n {
                let b = interesting_byte(r);
                v.insert(i, b);
            }
            "bytes inserted"
        }
        3 if len > 0 => {
            let i = r.below(len);
            let n = r.range(1, (len - i).min(16));
            v.drain(i..i + n);
            "bytes deleted"
        }
        4 if len > 1 => {
            // Copy a range over or into another place (keeps the alphabet of the input).
            let a = r.below(len);
            let n = r.range(1, (len - a).min(32));
            let chunk = v[a..a + n].to_vec();
            let at = r.range(0, v.len());
            if r.chance(0.5) {
                v.splice(at..at, chunk);
            } else {
                let end = (at + n).min(v.len());
                v.splice(at..end, chunk);
            }
            "range copied"
        }
        5 if len > 0 => {
            v.truncate(r.below(len));
            "truncated"
        }
        6 => {
            let n = r.range(1, 24);
            for _ in 0..n {
                let b = interesting_byte(r);
                v.push(b);
            }
            "extended"
        }
        7 if len > 0 => {
            // Arithmetic on one byte (off-by-one characters: '0'→'1', 'A'→'B').
            let i = r.below(len);
            let d = *r.pick(&[1u8, 2, 255, 254, 16, 240]);
            v[i] = v[i].wrapping_add(d);
            "byte arithmetic"
        }
        _ if len > 1 => {
            let a = r.below(len);
            let b = r.below(len);
            v.swap(a, b);
            "bytes swapped"
        }
        _ => {
            v.push(interesting_byte(r));
            "byte appended"
        }
    }
}

/// The input as text for a `&str` API: as it is when it is UTF-8, else with U+FFFD for the bad
/// sequences (the SQL layer only ever passes valid text).
pub fn as_text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// A classic hex dump (offset, 16 bytes, printable ASCII) for failure reports.
pub fn hex_dump(v: &[u8], limit: usize) -> String {
    let mut out = String::new();
    for (row, chunk) in v.chunks(16).take(limit.div_ceil(16)).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "    {:08x}  {:<47}  |{ascii}|\n",
            row * 16,
            hex.join(" ")
        ));
    }
    if v.len() > limit {
        out.push_str(&format!("    ... ({} bytes in all)\n", v.len()));
    }
    out
}

/// Big-endian unsigned subtraction a - b (a ≥ b, same length).
pub fn be_sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

/// Little-endian addition of two 32-byte numbers (Ed25519 scalars), carry dropped.
pub fn le_add32(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = a[i] as u16 + b[i] as u16 + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    out
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex constant"))
        .collect()
}

/// DER: a definite length.
fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|&b| b == 0)
            .collect();
        let mut v = vec![0x80 | bytes.len() as u8];
        v.extend(bytes);
        v
    }
}

pub fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(body.len()));
    v.extend_from_slice(body);
    v
}

/// DER INTEGER of an unsigned big-endian number.
pub fn der_uint(x: &[u8]) -> Vec<u8> {
    let first = x
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(x.len().saturating_sub(1));
    let mut body = x[first..].to_vec();
    if body.is_empty() {
        body.push(0);
    }
    if body[0] & 0x80 != 0 {
        body.insert(0, 0);
    }
    der(0x02, &body)
}

pub fn pem(label: &str, der_bytes: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der_bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
