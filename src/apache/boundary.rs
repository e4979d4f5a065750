//! The one wrapper every C entry point runs its body in: a Rust panic never unwinds into httpd.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `body`; if it panics, logs the panic with `what` naming the entry point and returns
/// `on_panic` instead. Used by every hook, directive handler and pool cleanup.
pub fn ffi_boundary<R>(what: &str, on_panic: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let msg = crate::panic_message(&*payload);
            // Logging must not panic again: the server log is plain stderr here.
            super::log::server_error(&format!("mod_wsgi-rs: internal error in {what}: {msg}"));
            on_panic
        }
    }
}
