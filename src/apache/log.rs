//! Writing to Apache's error log. Messages are always passed as the argument of a `"%s"` format,
//! never as the format itself, so text from an application or a request cannot be interpreted.

use super::bindings as ap;
use crate::wsgi::process_log::RequestLogger;
use crate::wsgi::Level;
use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

pub use super::bindings::{APLOG_DEBUG, APLOG_ERR, APLOG_INFO, APLOG_NOTICE, APLOG_WARNING};

fn module_index() -> c_int {
    // SAFETY: httpd writes module_index once while loading the module, before any hook or
    // directive runs; reading a plain int from it afterwards is a read of initialised memory.
    unsafe { (*ptr::addr_of!(crate::wsgi_module)).module_index }
}

fn c_message(msg: &str) -> CString {
    CString::new(msg.replace('\0', "\\0")).expect("NULs replaced")
}

/// Logs to the error log of server `s` (or the main server's when `s` is null).
pub(crate) fn server_log(s: *const ap::server_rec, level: u32, msg: &str) {
    let text = c_message(msg);
    // SAFETY: ap_log_error_ accepts a null server (it then logs to the main error log); the
    // format is a literal "%s" with exactly one matching C-string argument.
    unsafe {
        ap::ap_log_error_(
            c"mod_wsgi_rs".as_ptr(),
            0,
            module_index(),
            level as c_int,
            0,
            s,
            c"%s".as_ptr(),
            text.as_ptr(),
        )
    }
}

/// Logs an error to the main server's error log (used where no server or request is at hand).
pub fn server_error(msg: &str) {
    // SAFETY: ap_server_conf is httpd's pointer to the main server (null before it exists,
    // which server_log accepts).
    let s = unsafe { ap::ap_server_conf };
    server_log(s, APLOG_ERR, msg);
}

/// Apache's level for one of the adapter's.
pub(crate) fn level_of(level: Level) -> u32 {
    match level {
        Level::Error => APLOG_ERR,
        Level::Warning => APLOG_WARNING,
        Level::Info => APLOG_INFO,
        Level::Debug => APLOG_DEBUG,
    }
}

/// The server whose error log takes this process's lines that belong to no request: null for
/// the main server, except in a daemon process, where it is the server (a virtual host, maybe)
/// that defines the process's group, as in C mod_wsgi.
static PROCESS_SERVER: AtomicPtr<ap::server_rec> = AtomicPtr::new(ptr::null_mut());

/// Sends this process's lines that belong to no request to `s`'s error log.
///
/// # Safety
/// `s` must stay live for the rest of the process (a server of the configuration it runs).
pub(crate) unsafe fn set_process_server(s: *mut ap::server_rec) {
    PROCESS_SERVER.store(s, Ordering::Relaxed);
}

/// Logs at the adapter's `level` to the error log of this process's server (see
/// [`set_process_server`]): Python's stdout and stderr outside a request, and a daemon
/// process's own lines.
pub(crate) fn process_server_log(level: Level, msg: &str) {
    let s = match PROCESS_SERVER.load(Ordering::Relaxed) {
        // SAFETY: ap_server_conf is httpd's pointer to the main server (null before it exists,
        // which server_log accepts).
        s if s.is_null() => unsafe { ap::ap_server_conf },
        s => s,
    };
    server_log(s, level_of(level), msg);
}

/// A logger for the Python output of request `r` (see `wsgi::process_log`).
///
/// # Safety
/// `r` must stay live for as long as the logger is kept.
pub(crate) unsafe fn request_logger(r: *const ap::request_rec) -> RequestLogger {
    struct LiveRequest(*const ap::request_rec);
    // SAFETY: the caller keeps r live while the logger exists; ap_log_rerror may be called from
    // any thread for a live request.
    unsafe impl Send for LiveRequest {}
    // SAFETY: as above; logging only reads the request.
    unsafe impl Sync for LiveRequest {}
    let live = LiveRequest(r);
    Box::new(move |level, msg| {
        let live = &live;
        request_log(live.0, level_of(level), msg)
    })
}

/// Logs a warning to the main server's error log (for Python code with no request at hand).
pub fn server_warning(msg: &str) {
    // SAFETY: as in server_error.
    let s = unsafe { ap::ap_server_conf };
    server_log(s, APLOG_WARNING, msg);
}

/// Logs an informational line to the main server's error log.
pub fn server_info_log(msg: &str) {
    // SAFETY: as in server_error.
    let s = unsafe { ap::ap_server_conf };
    server_log(s, APLOG_INFO, msg);
}

/// Logs against a request, so the entry carries the client address and request id.
pub(crate) fn request_log(r: *const ap::request_rec, level: u32, msg: &str) {
    let text = c_message(msg);
    // SAFETY: r is a live request for the duration of the handler that calls this; the format
    // is a literal "%s" with exactly one matching C-string argument.
    unsafe {
        ap::ap_log_rerror_(
            c"mod_wsgi_rs".as_ptr(),
            0,
            module_index(),
            level as c_int,
            0,
            r,
            c"%s".as_ptr(),
            text.as_ptr(),
        )
    }
}
