//! Raw-input targets: the strict JSON parser against an independent reference parser, the uuid
//! parser against PostgreSQL's `uuid_in` rules, strict base64url against re-encoding, and the
//! small helpers (claim paths, identity, NumericDate rendering, printable) for panics.

use crate::tokens::{random_string, random_value};
use crate::util::{havoc, Rng};
use crate::{Ctx, Kind};
use auth_core::claims::{self, Policy};
use auth_core::identity::{self, Identity};
use auth_core::json::{self, JsonError};
use auth_core::{b64, jws};
use serde_json::{Map, Value};

/// serde_json's recursion limit: a document may nest at most this many arrays/objects.
const MAX_DEPTH: usize = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    Value,
    Err(JsonError),
    /// Near a limit where the reference cannot be exact (float range); not compared.
    Unsure,
}

/// A small recursive-descent JSON parser written from RFC 8259 plus the documented strictness
/// (duplicates, NUL, depth), reporting the first problem in document order as the core does.
struct RefParser<'a> {
    /// The same text as `b` (valid UTF-8 is checked before parsing).
    s: &'a str,
    b: &'a [u8],
    i: usize,
    unsure: bool,
}

type R<T> = Result<T, JsonError>;

impl RefParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn value(&mut self, depth: usize) -> R<bool> {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                if depth + 1 > MAX_DEPTH {
                    return Err(JsonError::Syntax);
                }
                self.i += 1;
                let mut keys: Vec<String> = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(true);
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(JsonError::Syntax);
                    }
                    let k = self.string()?;
                    if k.contains('\0') {
                        return Err(JsonError::NulCharacter);
                    }
                    if keys.contains(&k) {
                        return Err(JsonError::DuplicateMember);
                    }
                    keys.push(k);
                    self.ws();
                    self.eat(b':')?;
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(true);
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
            }
            Some(b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return Err(JsonError::Syntax);
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(false);
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(false);
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
            }
            Some(b'"') => {
                if self.string()?.contains('\0') {
                    return Err(JsonError::NulCharacter);
                }
                Ok(false)
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(JsonError::Syntax),
        }
    }

    fn literal(&mut self, lit: &[u8]) -> R<bool> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(false)
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let h = self.b.get(self.i..self.i + 4).ok_or(JsonError::Syntax)?;
        let s = std::str::from_utf8(h).map_err(|_| JsonError::Syntax)?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(JsonError::Syntax);
        }
        self.i += 4;
        u32::from_str_radix(s, 16).map_err(|_| JsonError::Syntax)
    }

    fn string(&mut self) -> R<String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or(JsonError::Syntax)?;
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                0..=0x1f => return Err(JsonError::Syntax),
                b'\\' => {
                    self.i += 1;
                    let e = self.peek().ok_or(JsonError::Syntax)?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            let ch = match u {
                                0xd800..=0xdbff => {
                                    if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                        return Err(JsonError::Syntax);
                                    }
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xdc00..=0xdfff).contains(&lo) {
                                        return Err(JsonError::Syntax);
                                    }
                                    0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00)
                                }
                                0xdc00..=0xdfff => return Err(JsonError::Syntax),
                                u => u,
                            };
                            out.push(char::from_u32(ch).ok_or(JsonError::Syntax)?);
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
                _ => {
                    // Only whole characters are ever stepped over, so `i` is a char boundary.
                    let ch = self.s[self.i..].chars().next().ok_or(JsonError::Syntax)?;
                    out.push(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
    }

    fn number(&mut self) -> R<bool> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            p.i - s
        };
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(JsonError::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(JsonError::Syntax);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(JsonError::Syntax);
            }
        }
        // A leading zero followed by a digit is a syntax error (serde_json reports it there).
        if self.b[start..self.i].starts_with(b"0")
            && self.peek().is_some_and(|c| c.is_ascii_digit())
            || self.b[start..self.i].starts_with(b"-0")
                && self.peek().is_some_and(|c| c.is_ascii_digit())
        {
            return Err(JsonError::Syntax);
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).expect("ASCII");
        let v: f64 = text.parse().map_err(|_| JsonError::Syntax)?;
        // Finite values far from f64::MAX are in range; infinite ones with a decimal magnitude
        // well above 308 are out of range (an error); the boundary is left unjudged.
        if !v.is_finite() || v.abs() > 1e300 {
            if magnitude(text).is_some_and(|m| m >= 312) {
                return Err(JsonError::Syntax);
            }
            self.unsure = true;
        }
        Ok(false)
    }
}

/// The decimal exponent of a JSON number's leading significant digit (None for zero).
fn magnitude(text: &str) -> Option<i64> {
    let t = text.trim_start_matches('-');
    let (mant, exp) = match t.find(['e', 'E']) {
        Some(i) => (
            &t[..i],
            t[i + 1..]
                .parse::<i64>()
                .unwrap_or(if t[i + 1..].starts_with('-') {
                    i64::MIN / 2
                } else {
                    i64::MAX / 2
                }),
        ),
        None => (t, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let int = int.trim_start_matches('0');
    if !int.is_empty() {
        return Some(exp.saturating_add(int.len() as i64 - 1));
    }
    let lead = frac.bytes().take_while(|&c| c == b'0').count();
    if lead == frac.len() {
        return None;
    }
    Some(exp.saturating_sub(lead as i64 + 1))
}

/// The reference verdict of `json::parse_object` on `bytes`.
fn reference(bytes: &[u8]) -> Ref {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return Ref::Err(JsonError::NotUtf8);
    };
    let mut p = RefParser {
        s,
        b: bytes,
        i: 0,
        unsure: false,
    };
    let out = p.value(0).and_then(|is_object| {
        p.ws();
        if p.i != bytes.len() {
            return Err(JsonError::Syntax);
        }
        if is_object {
            Ok(())
        } else {
            Err(JsonError::NotAnObject)
        }
    });
    match out {
        _ if p.unsure => Ref::Unsure,
        Ok(()) => Ref::Value,
        Err(e) => Ref::Err(e),
    }
}

/// JSON-ish text from a small grammar, with duplicates, escapes, NULs, deep nesting and odd
/// numbers mixed in.
fn gen_json(r: &mut Rng, depth: usize, out: &mut String) {
    match r.below(if depth > 6 { 6 } else { 9 }) {
        0 => out.push_str(r.pick::<&str>(&["null", "true", "false"])),
        1 => out.push_str(r.pick::<&str>(&[
            "0",
            "-0",
            "1",
            "-1",
            "1.5",
            "1e10",
            "1E-5",
            "123456789012345678901234567890",
            "1e308",
            "1.7976931348623157e308",
            "1.7976931348623159e308",
            "1e309",
            "1e400",
            "-1e400",
            "0.000000000000000000000000000001",
            "1e-400",
            "4102444800",
            "01",
            "1.",
            ".5",
            "+1",
            "-",
            "1e",
            "0x10",
            "NaN",
            "Infinity",
            "1_000",
        ])),
        2 | 3 => {
            out.push('"');
            for _ in 0..r.small_len(12) {
                out.push_str(r.pick::<&str>(&[
                    "a",
                    "k",
                    " ",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\n",
                    "\\u0041",
                    "\\u0000",
                    "\\ud83d\\ude00",
                    "\\ud800",
                    "\\udc00",
                    "\\ud800\\u0041",
                    "\\x",
                    "\t",
                    "\u{7f}",
                    "é",
                    "\u{1F600}",
                    "\\U0041",
                    "\\u00e9",
                    "\\u004",
                ]));
            }
            out.push('"');
        }
        4 => out.push_str(&serde_json::to_string(&random_value(r, 2)).expect("json")),
        5 => {
            let d = *r.pick(&[1usize, 10, 125, 126, 127, 128, 129, 200]);
            let open = if r.chance(0.5) { "[" } else { "{\"a\":" };
            let close = if open == "[" { "]" } else { "}" };
            out.push_str(&open.repeat(d));
            out.push('1');
            out.push_str(&close.repeat(d));
        }
        6 | 7 => {
            out.push('{');
            let n = r.small_len(6);
            let mut keys: Vec<String> = Vec::new();
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                let k = if !keys.is_empty() && r.chance(0.1) {
                    r.pick(&keys).clone()
                } else {
                    r.pick(&[
                        "a", "b", "exp", "\\u0061", "a\\u0000", "", "\u{e9}", "e\\u0301", "\\u00e9",
                    ])
                    .to_string()
                };
                keys.push(k.clone());
                out.push_str(&format!("\"{k}\""));
                out.push_str(r.pick::<&str>(&[":", " : ", ":\n"]));
                gen_json(r, depth + 1, out);
            }
            out.push('}');
        }
        _ => {
            out.push('[');
            for i in 0..r.small_len(5) {
                if i > 0 {
                    out.push(',');
                }
                gen_json(r, depth + 1, out);
            }
            out.push(']');
        }
    }
}

pub fn json(ctx: &mut Ctx, r: &mut Rng) {
    let mut bytes: Vec<u8> = match r.below(10) {
        0 => r.some_bytes(100),
        1 => {
            let d = *r.pick(&[126usize, 127, 128, 1000, 100_000]);
            format!("{{\"a\":{}{}}}", "[".repeat(d), "]".repeat(d)).into_bytes()
        }
        _ => {
            let mut s = String::new();
            if r.chance(0.8) {
                // Mostly objects: that is what the core parses.
                s.push('{');
                let n = r.small_len(5);
                for i in 0..n {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str(&format!("\"k{}\":", r.below(6)));
                    gen_json(r, 1, &mut s);
                }
                s.push('}');
            } else {
                gen_json(r, 0, &mut s);
            }
            if r.chance(0.1) {
                s = format!(
                    "{}{s}{}",
                    r.pick(&["", " ", "\u{feff}", "\n"]),
                    r.pick(&["", " ", "x", "{}", "\0"])
                );
            }
            s.into_bytes()
        }
    };
    if r.chance(0.3) {
        for _ in 0..r.range(1, 3) {
            havoc(r, &mut bytes);
        }
    }
    ctx.set_input(&bytes, "JSON document");
    let got = ctx.timed("json::parse_object", || json::parse_object(&bytes));
    let want = reference(&bytes);
    match (&got, want) {
        (_, Ref::Unsure) => ctx.count("float range boundary, not compared"),
        (Ok(m), Ref::Value) => {
            ctx.accepted = true;
            ctx.count("accepted, as the reference");
            // The value itself: what serde_json makes of the same (duplicate-free) text.
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(v)) if &v == m => {}
                other => ctx.fail(
                    Kind::Invariant,
                    format!("parse_object's value differs from serde_json's: {other:?}"),
                ),
            }
        }
        (Err(e), Ref::Err(w)) if *e == w => ctx.count(format!("refused, as the reference: {e:?}")),
        (got, want) => {
            let kind = if got.is_ok() {
                Kind::Forgery
            } else {
                Kind::Invariant
            };
            ctx.fail(
                kind,
                format!(
                    "strict JSON parser says {:?}, the reference says {want:?}",
                    got.as_ref().map(|_| "an object")
                ),
            );
        }
    }
    // The header parser and the JWK entry on the same bytes: no panic.
    let _ = ctx.timed("jws::parse_header", || jws::parse_header(&bytes));
    if let Ok(v) = ctx.timed("json::parse_value", || json::parse_value(&bytes)) {
        let _ = ctx.timed("Jwk::parse", || auth_core::Jwk::parse(&v));
    }
}

/// PostgreSQL's `uuid_in` (src/backend/utils/adt/uuid.c, string_to_uuid): optional braces,
/// 32 hex digits, a hyphen allowed after any group of four.
fn pg_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    let mut i = 0;
    let braces = b.first() == Some(&b'{');
    if braces {
        i += 1;
    }
    let mut out = [0u8; 16];
    for (k, byte) in out.iter_mut().enumerate() {
        let pair = b.get(i..i + 2)?;
        if !pair.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        i += 2;
        if b.get(i) == Some(&b'-') && k % 2 == 1 && k < 15 {
            i += 1;
        }
    }
    if braces {
        if b.get(i) != Some(&b'}') {
            return None;
        }
        i += 1;
    }
    (i == b.len()).then_some(out)
}

/// The forms `parse_uuid` promises: 8-4-4-4-12 or 32 plain digits, optionally braced.
fn common_form(s: &str) -> bool {
    let inner = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let b = inner.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit),
        36 => b.iter().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        }),
        _ => false,
    }
}

pub fn uuid(ctx: &mut Ctx, r: &mut Rng) {
    let raw = r.bytes(16);
    let h: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let hyph = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    let mut s = match r.below(9) {
        0 => hyph.clone(),
        1 => hyph.to_uppercase(),
        2 => h.clone(),
        3 => format!("{{{hyph}}}"),
        4 => format!("{{{h}}}"),
        5 => {
            // PostgreSQL's other forms: a hyphen after any group of four.
            let mut out = String::new();
            for (i, c) in h.chars().enumerate() {
                out.push(c);
                if i % 4 == 3 && i < 31 && r.chance(0.5) {
                    out.push('-');
                }
            }
            out
        }
        6 => format!("urn:uuid:{hyph}"),
        7 => random_string(r),
        _ => format!(" {hyph}\n"),
    };
    if r.chance(0.4) {
        let mut v = s.into_bytes();
        havoc(r, &mut v);
        s = String::from_utf8_lossy(&v).into_owned();
    }
    ctx.set_input(s.as_bytes(), "uuid text");
    let got = ctx.timed("parse_uuid", || identity::parse_uuid(&s));
    let pg = pg_uuid(&s);
    match got {
        Some(b) => {
            ctx.accepted = true;
            if pg != Some(b) {
                ctx.fail(
                    Kind::Forgery,
                    format!("parse_uuid accepts what uuid_in gives as {pg:?}"),
                );
            }
        }
        None if common_form(&s) && pg.is_some() => ctx.fail(
            Kind::Invariant,
            "parse_uuid refuses a common form that uuid_in accepts".into(),
        ),
        None if pg.is_some() => ctx.count("uuid_in-only form (documented subset)"),
        None => {}
    }
}

pub fn b64(ctx: &mut Ctx, r: &mut Rng) {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \n.";
    let s: String = if r.chance(0.5) {
        let mut v = b64::encode(&r.some_bytes(100)).into_bytes();
        if r.chance(0.7) {
            havoc(r, &mut v);
        }
        String::from_utf8_lossy(&v).into_owned()
    } else {
        (0..r.small_len(100))
            .map(|_| *r.pick(alphabet) as char)
            .collect()
    };
    ctx.set_input(s.as_bytes(), "base64url text");
    let got = ctx.timed("b64::decode", || b64::decode(&s));
    let mut buf = vec![1, 2, 3];
    let ok_into = ctx.timed("b64::decode_into", || b64::decode_into(&s, &mut buf));
    if ok_into != got.is_some() || (ok_into && Some(&buf) != got.as_ref()) {
        ctx.fail(Kind::Invariant, "decode_into disagrees with decode".into());
    }
    if let Some(bytes) = got {
        ctx.accepted = true;
        // Canonical: exactly one spelling of any byte string decodes.
        if b64::encode(&bytes) != s {
            ctx.fail(
                Kind::Forgery,
                "b64::decode accepted a non-canonical spelling".into(),
            );
        }
    }
}

pub fn misc(ctx: &mut Ctx, r: &mut Rng) {
    let v = random_value(r, 4);
    let mut claims = match v {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("x".into(), other);
            m
        }
    };
    for k in [
        "sub",
        "role",
        "email",
        "exp",
        "nbf",
        "iat",
        "iss",
        "aud",
        "app_metadata",
    ] {
        if r.chance(0.3) {
            claims.insert(k.into(), random_value(r, 2));
        }
    }
    let path = match r.below(4) {
        0 => identity::DEFAULT_ROLES_CLAIM.to_string(),
        1 => random_string(r),
        2 => r
            .pick(&["", ".", "..", "a.", ".a", "x.y.z", "https://x.io/roles"])
            .to_string(),
        _ => claims.keys().next().cloned().unwrap_or_default(),
    };
    let text = serde_json::to_vec(&claims).unwrap_or_default();
    ctx.set_input(&text, format!("claims; path {path:?}"));
    let _ = ctx.timed("Identity::from_claims", || {
        Identity::from_claims(&claims, &path)
    });
    let _ = ctx.timed("lookup", || identity::lookup(&claims, &path).cloned());
    let roles = ctx.timed("roles_at", || identity::roles_at(&claims, &path));
    if roles.windows(2).any(|w| w[0] >= w[1]) {
        ctx.fail(
            Kind::Invariant,
            "roles_at is not sorted and duplicate-free".into(),
        );
    }
    let policy = Policy {
        leeway_seconds: *r.pick(&[0.0, 30.0, -1.0, f64::NAN, f64::INFINITY, 1e300]),
        require_exp: r.chance(0.5),
        max_token_bytes: 8192,
    };
    if let Ok(t) = ctx.timed("time_claims", || claims::time_claims(&claims)) {
        let now = *r.pick(&[crate::fixture::NOW, 0.0, -1e12, 1e15, f64::NAN]);
        let _ = ctx.timed("check_times", || claims::check_times(&t, now, &policy));
        let _ = ctx.timed("check_issuer_audience", || {
            claims::check_issuer_audience(
                &claims,
                Some("https://issuer.example"),
                Some(&["api".to_string()]),
            )
        });
    }
    let t = *r.pick(&[
        0.0,
        -1.0,
        1e300,
        -1e300,
        f64::MAX,
        f64::MIN,
        f64::NAN,
        f64::INFINITY,
        253_402_300_799.0,
        1.5e12,
    ]);
    let _ = ctx.timed("utc", || claims::utc(t));
    let s = random_string(r);
    let p = ctx.timed("printable", || jws::printable(&s));
    if p.chars().count() > 43 || p.chars().any(char::is_control) {
        ctx.fail(Kind::Invariant, format!("printable gave {p:?}"));
    }
}
