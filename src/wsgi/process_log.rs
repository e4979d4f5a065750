//! `sys.stdout` and `sys.stderr`: line-buffered writers into the error log. A line written while
//! this thread serves a request is logged against that request (so it carries the client and the
//! request id); any other line goes to the server's error log.
//!
//! The partial line is kept per thread, so two threads printing at once never splice their
//! output into one entry (`print` writes the text and the newline in two calls).

use super::io::Level;
use crate::handle_method;
use crate::py_method;
use crate::python::detached;
use crate::python::objects::{MethodTable, METHOD_TABLE_END};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use std::cell::RefCell;
use std::sync::OnceLock;

/// Where lines go when no request is being served: set once by the server layer.
static SERVER_LOG: OnceLock<fn(Level, &str)> = OnceLock::new();

/// Installs the function that writes to the server's error log.
pub fn set_server_log(f: fn(Level, &str)) {
    let _ = SERVER_LOG.set(f);
}

pub(crate) fn server_log(level: Level, msg: &str) {
    match SERVER_LOG.get() {
        Some(f) => f(level, msg),
        None => eprintln!("{msg}"),
    }
}

/// Logs one line against the request a thread is serving.
pub type RequestLogger = Box<dyn Fn(Level, &str) + Send + Sync>;

thread_local! {
    /// How to log against the request this thread is serving, if any.
    static CURRENT: RefCell<Option<RequestLogger>> = const { RefCell::new(None) };
    /// Text written to sys.stdout/sys.stderr on this thread that does not end a line yet.
    static PENDING: PendingText = const { PendingText(RefCell::new(String::new())) };
}

/// A thread's unfinished line, logged when the thread ends: a thread the application started
/// that prints without a final newline would otherwise lose that text (C mod_wsgi keeps it
/// until some thread's next line; here it is logged on its own, in the server's log, as
/// nothing else of that thread's can follow). A serving thread's is empty by then: each
/// request logs what its thread left unfinished.
struct PendingText(RefCell<String>);

impl Drop for PendingText {
    fn drop(&mut self) {
        for line in self.0.get_mut().lines() {
            server_log(Level::Error, line);
        }
    }
}

/// Marks the thread as serving a request, whose lines `logger` writes, until dropped. The
/// server layer sets it around everything it does in Python for the request (loading the
/// script included).
pub struct CurrentRequest(());

impl CurrentRequest {
    pub fn enter(logger: RequestLogger) -> CurrentRequest {
        CURRENT.with(|c| *c.borrow_mut() = Some(logger));
        CurrentRequest(())
    }

    /// Logs the thread's partial line now, still attributed to the request, and leaves it.
    pub fn finish(self, py: Python<'_>) {
        emit(py, true);
    }
}

impl Drop for CurrentRequest {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// Logs this thread's partial line of `sys.stdout`/`sys.stderr` now.
pub fn flush_pending(py: Python<'_>) {
    emit(py, true);
}

/// Logs one line against the current request, or the server when there is none (as for a
/// thread the application started). The GIL is released while the server writes.
fn log_line(py: Python<'_>, line: &str) {
    log(py, Level::Error, line);
}

/// Logs `line` at `level` against the request this thread serves, else in the server's log.
pub(crate) fn log(py: Python<'_>, level: Level, line: &str) {
    CURRENT.with(|c| match &*c.borrow() {
        Some(logger) => detached(py, || logger(level, line)),
        None => detached(py, || server_log(level, line)),
    });
}

/// Logs the complete lines pending on this thread (with `all`, the partial one too).
fn emit(py: Python<'_>, all: bool) {
    let text = PENDING.with(|p| {
        let mut p = p.0.borrow_mut();
        let cut = if all {
            p.len()
        } else {
            p.rfind('\n').map_or(0, |i| i + 1)
        };
        p.drain(..cut).collect::<String>()
    });
    for line in text.lines() {
        log_line(py, line);
    }
}

/// The payload of the raw `write` and `flush` functions behind `sys.stdout` and `sys.stderr`.
pub struct ProcessLog;

handle_method!(
    process_log_write,
    ProcessLog,
    "write",
    ["text"],
    |py, _slf, _log, args| {
        let text = args.required(0, "text")?;
        let text = text.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be str, not {}",
                text.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let s = crate::python::objects::log_text(text)?;
        PENDING.with(|p| p.0.borrow_mut().push_str(&s));
        if s.contains('\n') {
            emit(py, false);
        }
        Ok(text.len()?.into_pyobject(py)?.into_any())
    }
);

handle_method!(
    process_log_flush,
    ProcessLog,
    "flush",
    [],
    |py, _slf, _log, _args| {
        emit(py, true);
        Ok(py.None().into_bound(py))
    }
);

// The class of `sys.stdout.buffer`, compiled when an application first asks for one.
handle_method!(
    process_log_buffer_class,
    ProcessLog,
    "log_buffer_class",
    [],
    |py, _slf, _log, _args| {
        let namespace = PyDict::new(py);
        namespace.set_item("__name__", "mod_wsgi")?;
        let source = std::ffi::CString::new(include_str!("log_buffer.py")).expect("no NUL");
        py.run(&source, Some(&namespace), None)?;
        Ok(namespace
            .get_item("_LogBuffer")?
            .expect("defined by log_buffer.py"))
    }
);

pub static PROCESS_LOG_METHODS: MethodTable<4> = MethodTable([
    py_method!(c"write", process_log_write),
    py_method!(c"flush", process_log_flush),
    py_method!(c"log_buffer_class", process_log_buffer_class),
    METHOD_TABLE_END,
]);
