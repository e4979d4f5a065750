//! The objects behind `WSGIRestrictStdin`, `WSGIRestrictStdout` and `WSGIRestrictSignal`
//! (defined in restrict.py), and the built-in function through which the signal interceptor
//! writes its warnings to Apache's error log.

use super::method::guarded;
use super::objects::{unbound_function, MethodTable, METHOD_TABLE_END};
use crate::py_method;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use std::sync::OnceLock;

/// Where warnings from Python code go; set once, from the settings Python starts with.
static LOG_WARNING: OnceLock<fn(&str)> = OnceLock::new();

/// restrict.py, run in one interpreter.
pub struct Restrictions<'py> {
    namespace: Bound<'py, PyDict>,
}

impl<'py> Restrictions<'py> {
    pub fn load(py: Python<'py>) -> PyResult<Self> {
        let namespace = PyDict::new(py);
        // Its classes and functions then report module mod_wsgi, as C mod_wsgi's do.
        namespace.set_item("__name__", "mod_wsgi")?;
        let source = std::ffi::CString::new(include_str!("restrict.py")).expect("no NUL");
        py.run(&source, Some(&namespace), None)?;
        Ok(Restrictions { namespace })
    }

    fn get(&self, name: &str) -> PyResult<Bound<'py, PyAny>> {
        Ok(self
            .namespace
            .get_item(name)?
            .expect("defined by restrict.py"))
    }

    /// Replaces `sys.<stream>` with a `Restricted` object.
    pub fn restrict_stream(&self, stream: &str) -> PyResult<()> {
        let py = self.namespace.py();
        let restricted = self.get("Restricted")?.call1((format!("sys.{stream}"),))?;
        py.import("sys")?.setattr(stream, restricted)
    }

    /// Replaces `signal.signal` with the interceptor, which logs through `log_warning`.
    pub fn intercept_signals(&self, log_warning: Option<fn(&str)>) -> PyResult<()> {
        let py = self.namespace.py();
        if let Some(log) = log_warning {
            let _ = LOG_WARNING.set(log);
        }
        let signal = py.import("signal")?;
        // Called once; taken out of the namespace, which the interceptor keeps as its globals,
        // so that it does not keep this function's code too.
        let intercept = self.get("intercept_signals")?;
        self.namespace.del_item("intercept_signals")?;
        intercept.call1((signal, log_warning_function(py)?))?;
        Ok(())
    }
}

/// Whether `obj` is one of restrict.py's `Restricted` objects (of any interpreter).
pub fn is_restricted(obj: &Bound<'_, PyAny>) -> bool {
    let ty = obj.get_type();
    let named = |attr: &str, want: &str| {
        ty.getattr(attr)
            .and_then(|v| v.extract::<String>())
            .is_ok_and(|v| v == want)
    };
    named("__module__", "mod_wsgi") && named("__qualname__", "Restricted")
}

// `log_warning(text)`: one line to the error log at warning level, written with the GIL released
// (it may block on a piped logger).
unsafe fn log_warning(
    py: Python<'_>,
    _slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    guarded(|| {
        // SAFETY: CPython passes this call's argument tuple, borrowed for the call.
        let args = unsafe { Borrowed::from_ptr(py, args).cast_unchecked::<PyTuple>() };
        let text = match args.get_item(0) {
            Ok(t) if args.len() == 1 => t,
            _ => return Err(PyTypeError::new_err("log_warning() takes one str argument")),
        };
        let text = text
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("log_warning() takes one str argument"))?
            .to_string_lossy()
            .into_owned();
        if let Some(&log) = LOG_WARNING.get() {
            super::detached(py, move || log(&text));
        }
        Ok(py.None().into_ptr())
    })
}

static LOG_WARNING_DEF: MethodTable<2> =
    MethodTable([py_method!(c"log_warning", log_warning), METHOD_TABLE_END]);

/// A built-in function object for [`log_warning`] in the current interpreter.
fn log_warning_function(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    unbound_function(py, LOG_WARNING_DEF.get(c"log_warning"))
}
