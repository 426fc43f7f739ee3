//! Bookkeeping that must survive the caller's transaction: a failed sign-in raises an error,
//! which rolls back everything the failing transaction wrote, and a caller could roll back on
//! purpose to erase the evidence. PostgreSQL has no autonomous transactions and we do not
//! require `shared_preload_libraries`, so the record is committed by a short-lived dynamic
//! background worker, connected to the same database as the extension owner, that runs one
//! of a fixed set of operations (no SQL text crosses the boundary) and exits. The caller waits
//! for it, so the record is visible to the next attempt.
//!
//! The operation travels in a dynamic shared memory segment: `[status u32][len u32][json]`.

use crate::audit;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The operations a worker may run.
#[derive(Debug, Serialize, Deserialize)]
pub enum Op {
    /// One more failed sign-in for an email (by hash); locks it at `max_failures`. Audited as
    /// `sign_in_failed`, and `account_locked` when this failure locks it.
    RecordFailedSignIn {
        email_hash: String,
        user_id: Option<String>,
        max_failures: i32,
        lockout_seconds: i32,
    },
    /// A successful sign-in ends the run of failures.
    ResetFailedSignIns { email_hash: String },
    /// Ends a session (refresh-token reuse), audited with the reason.
    RevokeSession {
        session_id: String,
        user_id: String,
        reason: String,
    },
    /// An audit row that must survive the caller's rollback.
    Audit {
        event: String,
        user_id: Option<String>,
        details: serde_json::Value,
    },
}

const PENDING: u32 = 0;
const DONE: u32 = 1;
const FAILED: u32 = 2;
const HEADER: usize = 8;
/// How long to wait for a free worker slot (max_worker_processes) before giving up.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Runs `ops` in one transaction of its own and waits for it to commit. Errors are reported
/// as a WARNING (never with secrets) and returned, so callers can decide; the bookkeeping is
/// best effort only when the server has no worker slot free for two seconds.
pub fn run(ops: &[Op]) -> Result<(), String> {
    let payload = serde_json::to_vec(ops).map_err(|e| e.to_string())?;
    let (_, owner) = crate::privilege::locate(crate::invalidation::KEY_STORE.relname);
    unsafe {
        let seg = pg_sys::dsm_create(HEADER + payload.len(), 0);
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        (base as *mut u32).write(PENDING);
        (base.add(4) as *mut u32).write(payload.len() as u32);
        std::ptr::copy_nonoverlapping(payload.as_ptr(), base.add(HEADER), payload.len());
        let handle = pg_sys::dsm_segment_handle(seg);

        let started = std::time::Instant::now();
        let worker = loop {
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
                Ok(w) => break w,
                Err(_) if started.elapsed() < SLOT_WAIT => {
                    pg_sys::pg_usleep(20_000);
                    pg_sys::check_for_interrupts!();
                }
                Err(_) => {
                    pg_sys::dsm_detach(seg);
                    let msg = "auth_ext: no background worker slot free (max_worker_processes); bookkeeping skipped".to_string();
                    pgrx::warning!("{msg}");
                    return Err(msg);
                }
            }
        };
        let waited = worker.wait_for_shutdown();
        let status = (base as *const u32).read_volatile();
        pg_sys::dsm_detach(seg);
        match (waited, status) {
            (Ok(()), DONE) => Ok(()),
            _ => {
                let msg = "auth_ext: the bookkeeping worker failed; see the server log".to_string();
                pgrx::warning!("{msg}");
                Err(msg)
            }
        }
    }
}

fn execute(client: &mut pgrx::spi::SpiClient<'_>, op: &Op) -> pgrx::spi::Result<()> {
    match op {
        Op::RecordFailedSignIn {
            email_hash,
            user_id,
            max_failures,
            lockout_seconds,
        } => {
            // A lock that has expired starts a new run of failures.
            let locked = client
                .update(
                    "INSERT INTO auth.failed_sign_ins AS f (email_hash, failed_count, last_failed_at, locked_until)
                     VALUES ($1, 1, now(), CASE WHEN $2 <= 1 THEN now() + make_interval(secs => $3) END)
                     ON CONFLICT (email_hash) DO UPDATE SET
                       failed_count = CASE WHEN f.locked_until <= now() THEN 1 ELSE f.failed_count + 1 END,
                       last_failed_at = now(),
                       locked_until = CASE
                         WHEN (CASE WHEN f.locked_until <= now() THEN 1 ELSE f.failed_count + 1 END) >= $2
                           THEN now() + make_interval(secs => $3)
                         ELSE NULL END
                     RETURNING failed_count = $2",
                    None,
                    &[email_hash.as_str().into(), (*max_failures).into(), (*lockout_seconds as f64).into()],
                )?
                .first()
                .get_one::<bool>()?
                .unwrap_or(false);
            // The email's hash, not the email: it links attempts on one address (also an
            // unknown one) without storing what someone typed.
            audit::write(
                client,
                "sign_in_failed",
                user_id.as_deref(),
                None,
                &serde_json::json!({"email_hash": email_hash}),
            )?;
            if locked {
                audit::write(
                    client,
                    "account_locked",
                    user_id.as_deref(),
                    None,
                    &serde_json::json!({"seconds": lockout_seconds}),
                )?;
            }
        }
        Op::ResetFailedSignIns { email_hash } => {
            client.update(
                "DELETE FROM auth.failed_sign_ins WHERE email_hash = $1",
                None,
                &[email_hash.as_str().into()],
            )?;
        }
        Op::RevokeSession {
            session_id,
            user_id,
            reason,
        } => {
            client.update(
                "UPDATE auth.sessions SET revoked_at = coalesce(revoked_at, now()), revoked_reason = coalesce(revoked_reason, $2)
                  WHERE id = $1::pg_catalog.uuid",
                None,
                &[session_id.as_str().into(), reason.as_str().into()],
            )?;
            audit::write(
                client,
                reason,
                Some(user_id),
                Some(session_id),
                &serde_json::json!({}),
            )?;
        }
        Op::Audit {
            event,
            user_id,
            details,
        } => audit::write(client, event, user_id.as_deref(), None, details)?,
    }
    Ok(())
}

/// Entry point of the bookkeeping worker.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn auth_ext_autonomous_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
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
    for (name, value) in [
        (c"default_transaction_read_only", c"off"),
        (c"search_path", crate::privilege::PINNED_SEARCH_PATH),
    ] {
        crate::gucs::set(
            name,
            value,
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
            pg_sys::GucAction::GUC_ACTION_SET,
        );
    }
    unsafe {
        let seg = pg_sys::dsm_attach(arg.value() as pg_sys::dsm_handle);
        if seg.is_null() {
            pgrx::warning!("auth_ext bookkeeping: the caller is gone");
            return;
        }
        let base = pg_sys::dsm_segment_address(seg) as *mut u8;
        let len = (base.add(4) as *const u32).read() as usize;
        let payload = std::slice::from_raw_parts(base.add(HEADER), len).to_vec();
        // An ERROR inside the transaction ends the worker before the status is written, so
        // the caller sees the segment still PENDING and reports the failure.
        let status = match serde_json::from_slice::<Vec<Op>>(&payload) {
            Ok(ops) => {
                let outcome = BackgroundWorker::transaction(|| {
                    crate::privilege::as_owner(|| {
                        Spi::connect_mut(|client| {
                            // Never hang the waiting caller on a lock it might hold itself.
                            client.update("SET LOCAL lock_timeout = '5s'", None, &[])?;
                            client.update("SET LOCAL statement_timeout = '10s'", None, &[])?;
                            ops.iter().try_for_each(|op| execute(client, op))
                        })
                    })
                });
                if outcome.is_ok() {
                    DONE
                } else {
                    FAILED
                }
            }
            Err(_) => FAILED,
        };
        (base as *mut u32).write_volatile(status);
        pg_sys::dsm_detach(seg);
    }
}
