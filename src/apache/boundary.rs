//! The one wrapper every C entry point runs its body in: a Rust panic never unwinds into httpd.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

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

/// Whether a request for `uri` is to panic in the handler: `MOD_WSGI_RS_PANIC_URI` in Apache's
/// environment names one URI, so a test can see that a panic in the built module (linked as
/// Apache loads it, exception tables and all) is caught here and the child goes on. Read once
/// per process; unset, it costs a load and a comparison per request.
pub fn panic_requested_for(uri: &[u8]) -> bool {
    static URI: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    URI.get_or_init(|| {
        std::env::var_os("MOD_WSGI_RS_PANIC_URI").map(std::os::unix::ffi::OsStringExt::into_vec)
    })
    .as_deref()
        == Some(uri)
}
