//! auth_fuzz: a stable-Rust fuzz harness over auth_core.
//!
//! Every input is generated from (seed, index) by one of the targets below, run under
//! `catch_unwind` with a silent panic hook, and judged by the target's oracles: no panic, no
//! forgery accepted (a token that verifies must be byte-identical to one the harness signed and
//! that the entry point must accept; a key, password hash or JSON document the core accepts must
//! be what it claims), no single call slower than 2 s.
//!
//!   auth_fuzz --inputs N [--seed S] [--threads T] [--target NAME] [--replay INDEX]

mod fixture;
mod jwk;
mod phc;
mod raw;
mod tokens;
mod util;

use fixture::{Fixture, ThreadKeys};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use util::Rng;

/// Any single call into the core slower than this is a failure (a cost the limits should bound).
pub const SLOW_CALL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Panic,
    /// Something accepted that must be refused: a token, a weak key, a wrong password.
    Forgery,
    /// Another broken contract: a valid seed refused, a parser disagreeing with its reference.
    Invariant,
    Slow,
}

/// The state of one input while a target runs it.
pub struct Ctx<'a> {
    pub fx: &'a Fixture,
    /// What this thread is running now, for the hang watchdog.
    pub watch: &'a Mutex<Watch>,
    pub keys: &'a ThreadKeys,
    pub input: Vec<u8>,
    pub note: String,
    pub failures: Vec<(Kind, String)>,
    pub accepted: bool,
    pub calls: u64,
    pub time: Duration,
    pub max_call: Duration,
    pub counters: BTreeMap<String, u64>,
}

impl Ctx<'_> {
    /// Records the input about to be fed to the core (what a failure report dumps).
    pub fn set_input(&mut self, bytes: &[u8], note: impl Into<String>) {
        self.input.clear();
        self.input.extend_from_slice(bytes);
        self.note = note.into();
        if let Ok(mut w) = self.watch.lock() {
            w.input.clear();
            w.input.extend_from_slice(bytes);
            w.note.clone_from(&self.note);
        }
    }

    /// Runs one call into the core, timed.
    pub fn timed<T>(&mut self, what: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let took = start.elapsed();
        self.calls += 1;
        self.time += took;
        self.max_call = self.max_call.max(took);
        if took > SLOW_CALL {
            self.fail(
                Kind::Slow,
                format!("{what} took {:.2} s", took.as_secs_f64()),
            );
        }
        out
    }

    pub fn fail(&mut self, kind: Kind, msg: String) {
        self.failures.push((kind, msg));
    }

    pub fn count(&mut self, name: impl Into<String>) {
        *self.counters.entry(name.into()).or_default() += 1;
    }

    /// Counts a refusal by the shape of its reason (what the inputs reached).
    pub fn refused(&mut self, what: &str, detail: &str) {
        self.count(format!("{what} refused: {}", shape(detail)));
    }
}

/// An error detail without its variable parts (quoted text, numbers), for grouping.
pub fn shape(detail: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in detail.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                if quoted {
                    out.push_str("\"…\"");
                }
            }
            _ if quoted => {}
            '0'..='9' => {
                if !out.ends_with('N') {
                    out.push('N');
                }
            }
            c => out.push(c),
        }
    }
    out.chars().take(72).collect::<String>()
}

pub struct Target {
    pub name: &'static str,
    pub weight: u32,
    pub run: fn(&mut Ctx, &mut Rng),
}

/// Weighted so that 1,000,000 inputs take a few minutes in release on 2 cores: the signature
/// checks and hashing are the expensive part, the parsers are cheap.
pub const TARGETS: [Target; 8] = [
    Target {
        name: "tokens-mutated",
        weight: 40,
        run: tokens::mutated,
    },
    Target {
        name: "tokens-generated",
        weight: 14,
        run: tokens::generated,
    },
    Target {
        name: "jwk",
        weight: 14,
        run: jwk::run,
    },
    Target {
        name: "phc",
        weight: 10,
        run: phc::run,
    },
    Target {
        name: "json",
        weight: 12,
        run: raw::json,
    },
    Target {
        name: "uuid",
        weight: 4,
        run: raw::uuid,
    },
    Target {
        name: "b64",
        weight: 3,
        run: raw::b64,
    },
    Target {
        name: "misc",
        weight: 3,
        run: raw::misc,
    },
];

/// A worker's current input: a call that never returns (a hang, an unbounded cost) is still
/// reported, by the main thread, while it runs.
#[derive(Default)]
pub struct Watch {
    index: u64,
    target: &'static str,
    started: Option<Instant>,
    input: Vec<u8>,
    note: String,
    reported: bool,
}

/// After this long on one input the watchdog reports it (and the run goes on waiting).
const HANG_REPORT: Duration = Duration::from_secs(30);

#[derive(Default, Clone)]
struct Stats {
    inputs: u64,
    accepted: u64,
    calls: u64,
    time: Duration,
    max_call: Duration,
    counters: BTreeMap<String, u64>,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.inputs += o.inputs;
        self.accepted += o.accepted;
        self.calls += o.calls;
        self.time += o.time;
        self.max_call = self.max_call.max(o.max_call);
        for (k, v) in &o.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
    }
}

struct Failure {
    target: &'static str,
    index: u64,
    kind: Kind,
    msg: String,
    note: String,
    input: Vec<u8>,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Silent: a panic is recorded for the report, not printed mid-run.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{payload}{at}")));
    }));
}

struct Args {
    inputs: u64,
    seed: u64,
    threads: usize,
    target: Option<usize>,
    replay: Option<u64>,
}

fn usage(msg: &str) -> ! {
    eprintln!("auth_fuzz: {msg}");
    eprintln!(
        "usage: auth_fuzz --inputs N [--seed S] [--threads T] [--target NAME] [--replay INDEX]"
    );
    eprintln!("targets: {}", TARGETS.map(|t| t.name).join(", "));
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        inputs: 1_000_000,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        target: None,
        replay: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let num = |v: String| -> u64 {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| usage(&format!("not a number: {v}")))
        };
        match flag.as_str() {
            "--inputs" => a.inputs = num(value()),
            "--seed" => a.seed = num(value()),
            "--threads" => a.threads = num(value()).max(1) as usize,
            "--replay" => a.replay = Some(num(value())),
            "--target" => {
                let name = value();
                a.target = Some(
                    TARGETS
                        .iter()
                        .position(|t| t.name == name)
                        .unwrap_or_else(|| usage(&format!("unknown target {name}"))),
                )
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown option {other}")),
        }
    }
    a
}

fn main() {
    let args = parse_args();
    let started = Instant::now();
    println!(
        "auth_fuzz: seed {} ({} threads{}); reproduce with --seed {}",
        args.seed,
        if args.replay.is_some() {
            1
        } else {
            args.threads
        },
        args.target
            .map(|t| format!(", target {}", TARGETS[t].name))
            .unwrap_or_default(),
        args.seed
    );
    let fx = Fixture::build();
    let weights: Vec<u32> = TARGETS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if args.target.is_none_or(|o| o == i) {
                t.weight
            } else {
                0
            }
        })
        .collect();

    // Sanity: every seed token gets exactly the model's verdict from every entry point, before
    // any mutant is judged against that model.
    let mut failures: Vec<Failure> = Vec::new();
    let mut counts: BTreeMap<Kind, u64> = BTreeMap::new();
    {
        let keys = ThreadKeys::new(&fx);
        for (kind, msg) in tokens::sanity(&fx, &keys) {
            *counts.entry(kind).or_default() += 1;
            failures.push(Failure {
                target: "sanity",
                index: 0,
                kind,
                msg,
                note: String::new(),
                input: Vec::new(),
            });
        }
    }
    println!(
        "fixture: {} keys in the set ({} algorithms), {} signed seed tokens, {} password hashes; built and checked in {:.2} s",
        fx.entries.len(),
        {
            let mut a: Vec<_> = fx.entries.iter().map(|e| e.alg.name()).collect();
            a.sort();
            a.dedup();
            a.len()
        },
        fx.originals.len(),
        fx.phc.entries.len(),
        started.elapsed().as_secs_f64()
    );

    install_panic_hook();
    let (indices, threads): (Vec<u64>, usize) = match args.replay {
        Some(i) => (vec![i], 1),
        None => ((0..args.inputs).collect(), args.threads),
    };
    let done = AtomicU64::new(0);
    let all_stats: Mutex<Vec<Stats>> = Mutex::new(vec![Stats::default(); TARGETS.len()]);
    let all_failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let fuzz_start = Instant::now();
    let total = indices.len() as u64;
    let watches: Vec<Mutex<Watch>> = (0..threads).map(|_| Mutex::default()).collect();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (t, watch) in watches.iter().enumerate() {
            let (fx, weights, indices, done) = (&fx, &weights, &indices, &done);
            let (all_stats, all_failures) = (&all_stats, &all_failures);
            let replay = args.replay.is_some();
            let seed = args.seed;
            let h = std::thread::Builder::new()
                .name(format!("fuzz-{t}"))
                .stack_size(64 << 20)
                .spawn_scoped(s, move || {
                    let keys = ThreadKeys::new(fx);
                    let mut stats = vec![Stats::default(); TARGETS.len()];
                    let mut failures = Vec::new();
                    for &index in indices.iter().skip(t).step_by(threads) {
                        let mut r = Rng::for_input(seed, index);
                        let ti = r.weighted(weights);
                        if let Ok(mut w) = watch.lock() {
                            w.index = index;
                            w.target = TARGETS[ti].name;
                            w.started = Some(Instant::now());
                            w.input.clear();
                            w.note.clear();
                            w.reported = false;
                        }
                        let mut ctx = Ctx {
                            fx,
                            watch,
                            keys: &keys,
                            input: Vec::new(),
                            note: String::new(),
                            failures: Vec::new(),
                            accepted: false,
                            calls: 0,
                            time: Duration::ZERO,
                            max_call: Duration::ZERO,
                            counters: BTreeMap::new(),
                        };
                        let run = TARGETS[ti].run;
                        if catch_unwind(AssertUnwindSafe(|| run(&mut ctx, &mut r))).is_err() {
                            let msg = LAST_PANIC
                                .with(|p| p.borrow_mut().take())
                                .unwrap_or_else(|| "panic".into());
                            ctx.fail(Kind::Panic, msg);
                        }
                        if let Ok(mut w) = watch.lock() {
                            w.started = None;
                        }
                        let st = &mut stats[ti];
                        st.inputs += 1;
                        st.accepted += ctx.accepted as u64;
                        st.calls += ctx.calls;
                        st.time += ctx.time;
                        st.max_call = st.max_call.max(ctx.max_call);
                        for (k, v) in std::mem::take(&mut ctx.counters) {
                            *st.counters.entry(k).or_default() += v;
                        }
                        if replay {
                            println!(
                                "replay of input {index}: target {}, {}, accepted: {}\n  note: {}\n{}",
                                TARGETS[ti].name,
                                if ctx.failures.is_empty() { "no failure" } else { "FAILED" },
                                ctx.accepted,
                                ctx.note,
                                util::hex_dump(&ctx.input, 1 << 16)
                            );
                        }
                        for (kind, msg) in ctx.failures.drain(..) {
                            failures.push(Failure {
                                target: TARGETS[ti].name,
                                index,
                                kind,
                                msg,
                                note: ctx.note.clone(),
                                input: ctx.input.clone(),
                            });
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut all = all_stats.lock().expect("stats lock");
                    for (a, s) in all.iter_mut().zip(&stats) {
                        a.add(s);
                    }
                    all_failures.lock().expect("failures lock").extend(failures);
                })
                .expect("spawn");
            handles.push(h);
        }
        // Progress on stderr, so that the figures on stdout stay a clean report.
        let mut last = Instant::now();
        while handles.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            for w in &watches {
                let Ok(mut w) = w.lock() else { continue };
                if !w.reported && w.started.is_some_and(|s| s.elapsed() > HANG_REPORT) {
                    w.reported = true;
                    println!(
                        "\nHANG: input {} ({}) has run for {} s and goes on: --seed {} --replay {}\n  input: {}\n{}",
                        w.index,
                        w.target,
                        HANG_REPORT.as_secs(),
                        args.seed,
                        w.index,
                        w.note,
                        util::hex_dump(&w.input, 1 << 14)
                    );
                }
            }
            if last.elapsed() >= Duration::from_secs(15) {
                last = Instant::now();
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  ... {d}/{total} inputs ({:.0}%), {:.0} inputs/s",
                    d as f64 * 100.0 / total.max(1) as f64,
                    d as f64 / fuzz_start.elapsed().as_secs_f64()
                );
            }
        }
    });
    let wall = fuzz_start.elapsed();
    let stats = all_stats.into_inner().expect("stats");
    failures.extend(all_failures.into_inner().expect("failures"));
    for f in &failures {
        if f.target != "sanity" {
            *counts.entry(f.kind).or_default() += 1;
        }
    }

    // Figures.
    println!();
    println!(
        "{:<18} {:>9} {:>9} {:>10} {:>9} {:>12}",
        "target", "inputs", "accepted", "core calls", "core s", "max call ms"
    );
    let mut total_stats = Stats::default();
    for (t, s) in TARGETS.iter().zip(&stats) {
        println!(
            "{:<18} {:>9} {:>9} {:>10} {:>9.1} {:>12.2}",
            t.name,
            s.inputs,
            s.accepted,
            s.calls,
            s.time.as_secs_f64(),
            s.max_call.as_secs_f64() * 1e3
        );
        total_stats.add(s);
    }
    println!(
        "{:<18} {:>9} {:>9} {:>10} {:>9.1} {:>12.2}",
        "all",
        total_stats.inputs,
        total_stats.accepted,
        total_stats.calls,
        total_stats.time.as_secs_f64(),
        total_stats.max_call.as_secs_f64() * 1e3
    );
    // What the inputs reached: every outcome, then the most frequent refusal reasons.
    println!("\noutcomes, and the 10 most frequent refusal reasons per target:");
    for (t, s) in TARGETS.iter().zip(&stats) {
        let (refusals, outcomes): (Vec<_>, Vec<_>) = s
            .counters
            .iter()
            .partition(|(k, _)| k.contains(" refused: "));
        for (k, v) in &outcomes {
            println!("  {:<17} {v:>8}  {k}", t.name);
        }
        let mut top = refusals;
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, v) in top.iter().take(10) {
            println!("  {:<17} {v:>8}  {k}", t.name);
        }
        if top.len() > 10 {
            println!(
                "  {:<17} {:>8}  ({} other refusal reasons)",
                t.name,
                "",
                top.len() - 10
            );
        }
    }
    println!(
        "rate: {:.0} inputs/s ({} inputs in {:.1} s wall on {} threads; {:.1} s in all)",
        total_stats.inputs as f64 / wall.as_secs_f64(),
        total_stats.inputs,
        wall.as_secs_f64(),
        threads,
        started.elapsed().as_secs_f64()
    );

    if !failures.is_empty() {
        failures.sort_by_key(|f| (f.kind, f.index));
        // One example per distinct failure (its message without the numbers), so that a flood
        // of one kind cannot hide another.
        let mut groups: BTreeMap<(Kind, &str, String), (usize, &Failure)> = BTreeMap::new();
        for f in &failures {
            let shape: String = f.msg.chars().filter(|c| !c.is_ascii_digit()).collect();
            groups.entry((f.kind, f.target, shape)).or_insert((0, f)).0 += 1;
        }
        println!(
            "\nFAILURES: {} in all, {} distinct (one example each, the first 30):",
            failures.len(),
            groups.len()
        );
        for (i, ((_, _, _), (n, f))) in groups.iter().enumerate().take(30) {
            println!(
                "\n#{} {:?} in {} ({n} like it; input {}: --seed {} --replay {}{}): {}",
                i + 1,
                f.kind,
                f.target,
                f.index,
                args.seed,
                f.index,
                args.target
                    .map(|t| format!(" --target {}", TARGETS[t].name))
                    .unwrap_or_default(),
                f.msg
            );
            if !f.note.is_empty() {
                println!("  input: {}", f.note);
            }
            if !f.input.is_empty() {
                println!(
                    "  {} bytes:\n{}",
                    f.input.len(),
                    util::hex_dump(&f.input, 1 << 14)
                );
            }
        }
        println!("\nkey set of this run (the ES/PS signatures are randomised; the inputs above are exact):");
        print!("{}", fx.describe_keys());
        println!(
            "other failures: {} invariant violations, {} slow calls (> {} s)",
            counts.get(&Kind::Invariant).copied().unwrap_or(0),
            counts.get(&Kind::Slow).copied().unwrap_or(0),
            SLOW_CALL.as_secs()
        );
    }
    let panics = counts.get(&Kind::Panic).copied().unwrap_or(0);
    let forgeries = counts.get(&Kind::Forgery).copied().unwrap_or(0);
    println!(
        "fuzz: {} inputs, {panics} panics, {forgeries} forgeries accepted",
        total_stats.inputs
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
