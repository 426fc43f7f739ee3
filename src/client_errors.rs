//! What a client sees of an error: codes, never internals (docs/security.md, "Trust boundaries"). pgrx would append a
//! Rust backtrace to the DETAIL of errors that pass through Rust frames when backtraces are
//! enabled in the server's environment; `init` turns that capture off for the library, since
//! SQL can read an error's fields before any hook sees them (GET STACKED DIAGNOSTICS). An
//! internal error (a panic, a failed SPI call of our own) still carries our SQL or the panic
//! message: an `emit_log_hook` moves that (and any backtrace) into `detail_log`, which only
//! the server log prints, and gives the client a stable message instead. Errors with our own
//! codes (`INVALID_TOKEN`, …) pass untouched.

use pgrx::pg_sys;
use std::ffi::CStr;

static mut PREVIOUS: pg_sys::emit_log_hook_type = None;

const INTERNAL_MESSAGE: &CStr = c"auth_ext: internal error; the server log has the details";

/// A Rust backtrace as `std::backtrace::Backtrace` prints it: frame lines `  N: symbol`
/// followed by `at path.rs:line:col`.
pub(crate) fn backtrace_start(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let frame = t
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if frame || (t.starts_with("at ") && t.contains(".rs:")) {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

unsafe fn text(p: *const std::os::raw::c_char) -> Option<String> {
    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
}

unsafe fn pstr(s: &str) -> *mut std::os::raw::c_char {
    let c = std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
    pg_sys::pstrdup(c.as_ptr())
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn scrub(edata: *mut pg_sys::ErrorData) {
    if let Some(previous) = PREVIOUS {
        previous(edata);
    }
    let e = &mut *edata;
    if e.elevel < pg_sys::PGERROR as i32 || !e.output_to_client {
        return;
    }
    let from_rust = text(e.filename).is_some_and(|f| f.ends_with(".rs"));
    let internal = from_rust && e.sqlerrcode == pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR as i32;
    let detail = text(e.detail);
    let cut = detail.as_deref().and_then(backtrace_start);
    if !internal && cut.is_none() {
        return;
    }
    // Everything the client must not see goes to the server log's DETAIL.
    let mut for_log = String::new();
    if internal {
        for_log.push_str(&text(e.message).unwrap_or_default());
        for_log.push('\n');
    }
    if let Some(d) = &detail {
        for_log.push_str(d);
    }
    if let Some(old) = text(e.detail_log) {
        for_log.push('\n');
        for_log.push_str(&old);
    }
    e.detail_log = pstr(&for_log);
    e.detail = match (internal, cut) {
        (true, _) => std::ptr::null_mut(),
        (false, Some(at)) => {
            let kept = detail.as_deref().unwrap_or_default()[..at].trim_end();
            if kept.is_empty() {
                std::ptr::null_mut()
            } else {
                pstr(kept)
            }
        }
        (false, None) => e.detail,
    };
    if internal {
        e.message = pstr(INTERNAL_MESSAGE.to_str().unwrap_or_default());
    }
}

pub fn init() {
    unsafe {
        PREVIOUS = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(scrub);
    }
    // The ErrorData of an error is readable from SQL before any hook sees it (PL/pgSQL's
    // GET STACKED DIAGNOSTICS), so no backtrace may be attached to it: pgrx captures one only
    // when backtraces are enabled, and this turns them off for the library. A real panic (a
    // bug) still leaves its backtrace, in the server log only (stderr).
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    let pgrx_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        pgrx_hook(info);
        let p = info.payload();
        if p.is::<&str>() || p.is::<String>() {
            eprintln!(
                "auth_ext: internal error at {}:\n{}",
                info.location().map(|l| l.to_string()).unwrap_or_default(),
                std::backtrace::Backtrace::force_capture()
            );
        }
    }));
}
