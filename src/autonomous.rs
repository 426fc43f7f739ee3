//! Bookkeeping that must survive the caller's transaction: a failed sign-in raises an error,
//! which rolls back everything the failing transaction wrote, and a caller could roll back on
//! purpose to erase the evidence. PostgreSQL has no autonomous transactions and we do not
//! require `shared_preload_libraries`, so the record is committed by a short-lived dynamic
//! background worker, connected to the same database as the extension owner, that runs one
//! of a fixed set of operations (no SQL text crosses the boundary) and exits.
//!
//! Fail closed: `run` returns `Ok` only once the worker has committed. Every wait is bounded
//! (a free slot for `SLOT_WAIT`, the worker for `RUN_WAIT`); a wait that times out or is
//! cancelled terminates the worker, so its slot is released at once (a worker that never
//! starts, as on a standby, would otherwise hold it until restart).
//!
//! The operations and the worker's answers travel in a dynamic shared memory segment:
//! `[status u32][request len u32][answer len u32][unused u32][request json][answer json]`.

use crate::audit;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The operations a worker may run.
#[derive(Debug, Serialize, Deserialize)]
pub enum Op {
    /// Reserves one sign-in attempt for an email before its password is judged: at most
    /// `max_failures` attempts per email are judged until one succeeds and releases its own
    /// reservation, and reaching `max_failures` locks the email for `lockout_seconds`. The
    /// email is keyed by the SHA-256 of the database's own `lower()`, the normalisation of the
    /// account lookup and of the unique index. Answers [`Reservation`].
    ReserveSignIn {
        email: String,
        max_failures: i32,
        lockout_seconds: i32,
    },
    /// Gives back the reservation of an attempt whose password was right.
    ReleaseSignIn { email_hash: String, run: String },
    /// Ends a session (refresh-token reuse), audited with the reason.
    RevokeSession {
        session_id: String,
        user_id: String,
        reason: String,
    },
    /// Counts one attempt at the user's outstanding one-time tokens of `token_types` before
    /// the code is judged; a token whose attempts reached `max_attempts` is voided (audited,
    /// and expired rather than deleted: an attempt counted within the limit may be judging it
    /// right now, and may still use it). Answers the tokens that may still be judged
    /// ([`OtpCandidate`]).
    ReserveOtp {
        user_id: String,
        token_types: Vec<String>,
        max_attempts: i32,
    },
    /// Counts one verification attempt of an MFA factor before its code is judged: at most
    /// `max_failures` per `window_seconds` (a success clears the count in the caller's
    /// transaction). Answers whether this attempt may be judged.
    ReserveMfa {
        factor_id: String,
        user_id: String,
        max_failures: i32,
        window_seconds: i32,
    },
    /// An audit row that must survive the caller's rollback.
    Audit {
        event: String,
        user_id: Option<String>,
        details: serde_json::Value,
    },
}

/// The worker's answer to [`Op::ReserveSignIn`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reservation {
    /// False: the email is locked; the attempt must not be judged.
    pub allowed: bool,
    pub email_hash: String,
    /// The run of attempts this one belongs to (its start, as exact epoch seconds).
    pub run: String,
    /// This attempt brought the run to the limit and locked the email.
    pub locks: bool,
    /// When the lock ends, as text for the message.
    pub locked_until: Option<String>,
}

/// A one-time token that may be judged, from [`Op::ReserveOtp`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OtpCandidate {
    pub id: String,
    pub token_type: String,
    pub token_hash: String,
    pub link_hash: Option<String>,
    /// The address the token was sent to.
    pub relates_to: String,
}

/// Why bookkeeping did not happen. Never holds a secret.
#[derive(Debug)]
pub enum Failure {
    /// No worker slot free within `SLOT_WAIT` (max_worker_processes).
    NoSlot,
    /// The worker did not finish within `RUN_WAIT`; it has been terminated.
    Timeout,
    /// The worker ended without committing (its error is in the server log).
    Failed,
}

impl Failure {
    pub fn describe(&self) -> &'static str {
        match self {
            Failure::NoSlot => "no background worker slot was free (max_worker_processes)",
            Failure::Timeout => "the bookkeeping worker did not finish in time",
            Failure::Failed => "the bookkeeping worker failed; the server log has the details",
        }
    }
}

impl Failure {
    /// Refuses the caller's action: what it had to record first was not recorded, so nothing
    /// was judged (TEMPORARILY_UNAVAILABLE); the reason also goes to the server log.
    pub fn refuse(&self) -> ! {
        crate::errors::log_server_only(&format!(
            "auth_ext: bookkeeping failed: {}",
            self.describe()
        ));
        crate::errors::raise(auth_core::AuthError::new(
            auth_core::ErrorCode::Unavailable,
            self.describe(),
        ))
    }
}

/// Runs `ops`, or refuses the caller's action (fail closed): see [`Failure::refuse`].
pub fn run_or_refuse(ops: &[Op]) -> Vec<Value> {
    run(ops).unwrap_or_else(|f| f.refuse())
}

/// Runs `ops` whose loss leaves the caller on the safe side; a failure is logged (server log
/// only) with what it leaves behind.
pub fn run_or_log(ops: &[Op], consequence: &str) {
    if let Err(f) = run(ops) {
        crate::errors::log_server_only(&format!("auth_ext: {consequence}: {}", f.describe()));
    }
}

const PENDING: u32 = 0;
const DONE: u32 = 1;
const HEADER: usize = 16;
/// Room for the answers; they are a few short JSON values.
const ANSWER_MAX: usize = 4096;
/// How long to wait for a free worker slot (max_worker_processes) before giving up.
const SLOT_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for the worker to commit, above its own lock and statement timeouts.
const RUN_WAIT: Duration = Duration::from_secs(8);

/// Terminates the worker unless disarmed: on timeout, and when the caller's wait is cancelled
/// (the ERROR unwinds through here), so that no slot stays registered for a worker nobody
/// waits for.
struct Registration(Option<DynamicBackgroundWorker>);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            let _ = w.terminate();
        }
    }
}

/// Runs `ops` in one transaction of its own and waits (bounded) for it to commit. Returns
/// one answer per operation (`null` for those that answer nothing).
fn run(ops: &[Op]) -> Result<Vec<Value>, Failure> {
    let payload = serde_json::to_vec(ops).expect("operations serialise");
    let owner = crate::invalidation::watch_all();
    unsafe {
        // Owned by the transaction's resource owner: an ERROR detaches (and frees) it, and a
        // worker that starts later finds nothing to do.
        let seg = pg_sys::dsm_create(HEADER + payload.len() + ANSWER_MAX, 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        (base as *mut u32).write(PENDING);
        (base.add(4) as *mut u32).write(payload.len() as u32);
        (base.add(8) as *mut u32).write(0);
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(HEADER), payload.len());
        let handle = pg_sys::dsm_segment_handle(seg);

        let started = Instant::now();
        let mut reg = Registration(None);
        loop {
            let builder = BackgroundWorkerBuilder::new("auth_ext bookkeeping")
                .set_type("auth_ext bookkeeping")
                .set_library("auth_ext")
                .set_function("auth_ext_autonomous_main")
                .set_argument(Some(pg_sys::Datum::from(handle)))
                .set_extra(&format!(
                    "{} {}",
                    pg_sys::MyDatabaseId.to_u32(),
                    owner.to_u32()
                ))
                .enable_spi_access()
                .set_notify_pid(pg_sys::MyProcPid);
            match builder.load_dynamic() {
                Ok(w) => {
                    reg.0 = Some(w);
                    break;
                }
                Err(_) if started.elapsed() < SLOT_WAIT => wait(Duration::from_millis(20)),
                Err(_) => {
                    pg_sys::dsm_detach(seg);
                    return Err(Failure::NoSlot);
                }
            }
        }
        let deadline = Instant::now() + RUN_WAIT;
        let outcome = loop {
            match reg.0.as_ref().expect("registered").pid() {
                Err(BackgroundWorkerStatus::Stopped) => break Ok(()),
                Err(BackgroundWorkerStatus::PostmasterDied) => break Err(Failure::Failed),
                _ if Instant::now() >= deadline => break Err(Failure::Timeout),
                // The postmaster sets our latch when the worker starts and stops.
                _ => wait(Duration::from_millis(10)),
            }
        };
        if outcome.is_ok() {
            // It has stopped: nothing left to terminate.
            reg.0 = None;
        }
        drop(reg);
        let status = (base as *const u32).read_volatile();
        let answer_len = ((base.add(8) as *const u32).read_volatile() as usize).min(ANSWER_MAX);
        let answer =
            std::slice::from_raw_parts(base.add(HEADER + payload.len()), answer_len).to_vec();
        pg_sys::dsm_detach(seg);
        outcome?;
        if status != DONE {
            return Err(Failure::Failed);
        }
        serde_json::from_slice(&answer).map_err(|_| Failure::Failed)
    }
}

/// Sleeps on the latch (woken early by the postmaster's notifications), honouring cancels.
fn wait(timeout: Duration) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout.as_millis() as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

fn execute(client: &mut pgrx::spi::SpiClient<'_>, op: &Op) -> pgrx::spi::Result<Value> {
    match op {
        Op::ReserveSignIn {
            email,
            max_failures,
            lockout_seconds,
        } => reserve(client, email, *max_failures, *lockout_seconds),
        Op::ReleaseSignIn { email_hash, run } => {
            // Only within the run it was reserved in: a run that ended and restarted meanwhile
            // does not owe it anything.
            client.update(
                "UPDATE auth.failed_sign_ins
                    SET failed_count = failed_count OPERATOR(pg_catalog.-) 1, locked_until = NULL
                  WHERE email_hash OPERATOR(pg_catalog.=) $1
                    AND EXTRACT(EPOCH FROM run_started_at) OPERATOR(pg_catalog.=) $2::pg_catalog.numeric",
                None,
                &[email_hash.as_str().into(), run.as_str().into()],
            )?;
            client.update(
                "DELETE FROM auth.failed_sign_ins
                  WHERE email_hash OPERATOR(pg_catalog.=) $1 AND failed_count OPERATOR(pg_catalog.<=) 0",
                None,
                &[email_hash.as_str().into()],
            )?;
            Ok(Value::Null)
        }
        Op::RevokeSession {
            session_id,
            user_id,
            reason,
        } => {
            client.update(
                // An earlier revocation is kept. No function inside COALESCE: Citus refuses
                // that in writes to a reference table (auth.distribute_trust).
                "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $2
                  WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid AND revoked_at IS NULL",
                None,
                &[session_id.as_str().into(), reason.as_str().into()],
            )?;
            audit::write(client, reason, Some(user_id), Some(session_id), &json!({}))?;
            Ok(Value::Null)
        }
        Op::ReserveOtp {
            user_id,
            token_types,
            max_attempts,
        } => {
            // Read and lock first, then count: Citus refuses STABLE functions (now(), an
            // enum's text) next to a column, and in RETURNING, in writes to a reference table.
            let t = client.update(
                "SELECT id::pg_catalog.text, token_type::pg_catalog.text, token_hash, link_hash,
                        attempts, relates_to
                   FROM auth.one_time_tokens
                  WHERE user_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid
                    AND token_type::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])
                    AND expires_at OPERATOR(pg_catalog.>) pg_catalog.now()
                  ORDER BY id FOR UPDATE",
                None,
                &[user_id.as_str().into(), token_types.clone().into()],
            )?;
            let mut open = Vec::new();
            let mut voiding = Vec::new();
            for row in t {
                let c = OtpCandidate {
                    id: row.get::<String>(1)?.unwrap_or_default(),
                    token_type: row.get::<String>(2)?.unwrap_or_default(),
                    token_hash: row.get::<String>(3)?.unwrap_or_default(),
                    link_hash: row.get::<String>(4)?,
                    relates_to: row.get::<String>(6)?.unwrap_or_default(),
                };
                if row.get::<i32>(5)?.unwrap_or(i32::MAX) < *max_attempts {
                    open.push(c);
                } else {
                    voiding.push(c);
                }
            }
            let counted: Vec<String> = open.iter().map(|c| c.id.clone()).collect();
            client.update(
                "UPDATE auth.one_time_tokens SET attempts = attempts OPERATOR(pg_catalog.+) 1
                  WHERE id OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.uuid[])",
                None,
                &[counted.into()],
            )?;
            // Expired, not deleted (see the variant's doc): invisible to every later attempt.
            for c in &voiding {
                client.update(
                    "UPDATE auth.one_time_tokens SET expires_at = pg_catalog.now()
                      WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid",
                    None,
                    &[c.id.as_str().into()],
                )?;
                audit::write(
                    client,
                    "one_time_token_voided",
                    Some(user_id),
                    None,
                    &json!({"token_type": c.token_type, "attempts": max_attempts}),
                )?;
            }
            Ok(serde_json::to_value(open).expect("serialises"))
        }
        Op::ReserveMfa {
            factor_id,
            user_id,
            max_failures,
            window_seconds,
        } => {
            // The row exists and is locked in one statement, so concurrent first attempts
            // queue on it, and no success or purge can delete it between insert and lock.
            client.update(
                "INSERT INTO auth.mfa_failed_verifications AS f (factor_id, user_id, failed_count, window_started_at)
                 VALUES ($1::pg_catalog.uuid, $2::pg_catalog.uuid, 0, now())
                 ON CONFLICT (factor_id) DO UPDATE SET factor_id = f.factor_id",
                None,
                &[factor_id.as_str().into(), user_id.as_str().into()],
            )?;
            let t = client.update(
                "SELECT failed_count, window_started_at OPERATOR(pg_catalog.<=) (now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2))
                   FROM auth.mfa_failed_verifications WHERE factor_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid FOR UPDATE",
                Some(1),
                &[factor_id.as_str().into(), (*window_seconds as f64).into()],
            )?;
            let row = t.first();
            let stale = row.get::<bool>(2)?.unwrap_or(true);
            let count = if stale {
                0
            } else {
                row.get::<i32>(1)?.unwrap_or(0)
            };
            if count >= *max_failures {
                audit::write(
                    client,
                    "mfa_verification_locked",
                    Some(user_id),
                    None,
                    &json!({"factor_id": factor_id}),
                )?;
                return Ok(json!(false));
            }
            client.update(
                if stale {
                    "UPDATE auth.mfa_failed_verifications SET failed_count = $2, window_started_at = now()
                      WHERE factor_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
                } else {
                    "UPDATE auth.mfa_failed_verifications SET failed_count = $2
                      WHERE factor_id OPERATOR(pg_catalog.=) $1::pg_catalog.uuid"
                },
                None,
                &[factor_id.as_str().into(), (count + 1).into()],
            )?;
            Ok(json!(true))
        }
        Op::Audit {
            event,
            user_id,
            details,
        } => {
            audit::write(client, event, user_id.as_deref(), None, details)?;
            Ok(Value::Null)
        }
    }
}

/// One attempt more in the email's current run, if the email is not locked. A run ends when
/// its lock expires or `lockout_seconds` pass without an attempt.
fn reserve(
    client: &mut pgrx::spi::SpiClient<'_>,
    email: &str,
    max_failures: i32,
    lockout_seconds: i32,
) -> pgrx::spi::Result<Value> {
    let secs = lockout_seconds as f64;
    // The row exists before it is locked, so concurrent first attempts queue on it.
    let email_hash = client
        .update(
            "WITH k(h) AS (SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
                                  pg_catalog.lower($1::pg_catalog.text), 'UTF8')), 'hex'))
             INSERT INTO auth.failed_sign_ins AS f (email_hash, failed_count, last_failed_at, run_started_at)
             SELECT h, 0, now(), now() FROM k
             ON CONFLICT (email_hash) DO UPDATE SET email_hash = f.email_hash
             RETURNING f.email_hash",
            None,
            &[email.into()],
        )?
        .first()
        .get_one::<String>()?
        .unwrap_or_default();
    let t = client.update(
        "SELECT failed_count, locked_until > now(),
                locked_until <= now() OR last_failed_at <= now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $2),
                locked_until::pg_catalog.text
           FROM auth.failed_sign_ins WHERE email_hash OPERATOR(pg_catalog.=) $1 FOR UPDATE",
        Some(1),
        &[email_hash.as_str().into(), secs.into()],
    )?;
    let row = t.first();
    let count = row.get::<i32>(1)?.unwrap_or(0);
    let locked = row.get::<bool>(2)?.unwrap_or(false);
    let stale = row.get::<bool>(3)?.unwrap_or(false);
    if locked {
        audit::write(
            client,
            "sign_in_locked",
            None,
            None,
            &json!({"email_hash": email_hash}),
        )?;
        let until = row.get::<String>(4)?;
        return Ok(serde_json::to_value(Reservation {
            allowed: false,
            email_hash,
            locked_until: until,
            ..Default::default()
        })
        .expect("serialises"));
    }
    let count = if stale { 1 } else { count + 1 };
    let locks = count >= max_failures;
    let t = client.update(
        "UPDATE auth.failed_sign_ins
            SET failed_count = $2, last_failed_at = now(),
                run_started_at = CASE WHEN $3 THEN now() ELSE run_started_at END,
                locked_until = CASE WHEN $4 THEN now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $5) END
          WHERE email_hash OPERATOR(pg_catalog.=) $1
         RETURNING EXTRACT(EPOCH FROM run_started_at)::pg_catalog.text, locked_until::pg_catalog.text",
        Some(1),
        &[email_hash.as_str().into(), count.into(), stale.into(), locks.into(), secs.into()],
    )?;
    let row = t.first();
    Ok(serde_json::to_value(Reservation {
        allowed: true,
        run: row.get::<String>(1)?.unwrap_or_default(),
        locked_until: row.get::<String>(2)?,
        email_hash,
        locks,
    })
    .expect("serialises"))
}

extern "C-unwind" {
    /// PostgreSQL's own SIGTERM handler for backends (postgres.c): sets ProcDiePending.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// Entry point of the bookkeeping worker.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn auth_ext_autonomous_main(arg: pg_sys::Datum) {
    // SIGTERM (a caller that stopped waiting) ends the worker at its next interrupt check,
    // its transaction aborted. Not the background-worker default (bgworker_die), which exits
    // inside the signal handler and, during a commit's critical section, PANICs the server.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as std::ffi::c_int, Some(postgres_die));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let mut ids = BackgroundWorker::get_extra()
        .split(' ')
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (db, role) = (ids.next().unwrap_or(0), ids.next().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(
        Some(pg_sys::Oid::from(db)),
        Some(pg_sys::Oid::from(role)),
    );
    // The connection took the database's and role's settings, which a non-superuser database
    // owner controls (ALTER DATABASE … SET): read-only transactions would drop every record,
    // and `role`/`session_authorization` would run it as someone else. Override them at the
    // session level before the first transaction; the user is switched back to the owner and
    // the search path pinned by privilege::as_owner around the work itself.
    crate::gucs::set(
        &[
            (c"default_transaction_read_only", c"off"),
            (c"search_path", crate::privilege::PINNED_SEARCH_PATH),
        ],
        pg_sys::GucContext::PGC_SUSET,
        pg_sys::GucSource::PGC_S_OVERRIDE,
        pg_sys::GucAction::GUC_ACTION_SET,
    );
    unsafe {
        let seg = pg_sys::dsm_attach(arg.value() as pg_sys::dsm_handle);
        if seg.is_null() {
            // The caller stopped waiting (and terminated us, or will): nothing to do.
            return;
        }
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        let len = (base.add(4) as *const u32).read() as usize;
        let payload = std::slice::from_raw_parts(base.add(HEADER), len).to_vec();
        // An ERROR inside the transaction ends the worker before the status is written, so
        // the caller sees the segment still PENDING and reports the failure.
        if let Ok(ops) = serde_json::from_slice::<Vec<Op>>(&payload) {
            let outcome = BackgroundWorker::transaction(|| {
                crate::privilege::as_owner(|| {
                    Spi::connect_mut(|client| {
                        // Never hang the waiting caller on a lock it might hold itself; both
                        // stay well below the caller's RUN_WAIT.
                        client.update("SET LOCAL lock_timeout = '2s'", None, &[])?;
                        client.update("SET LOCAL statement_timeout = '5s'", None, &[])?;
                        ops.iter()
                            .map(|op| execute(client, op))
                            .collect::<pgrx::spi::Result<Vec<Value>>>()
                    })
                })
            });
            if let Ok(answers) = outcome {
                let answer = serde_json::to_vec(&answers).unwrap_or_default();
                if answer.len() <= ANSWER_MAX {
                    std::ptr::copy_nonoverlapping(
                        answer.as_ptr(),
                        base.add(HEADER + len),
                        answer.len(),
                    );
                    (base.add(8) as *mut u32).write_volatile(answer.len() as u32);
                    (base as *mut u32).write_volatile(DONE);
                }
            }
        }
        pg_sys::dsm_detach(seg);
    }
}
