//! The Python-callable parts of the adapter: `start_response`, `write`, `wsgi.input` and
//! `wsgi.errors`. Each reaches its request through a `Scoped` slot, so one kept past its request
//! raises an exception instead of touching freed memory.

use super::headers::{check_header, parse_content_length, parse_status};
use super::io::{Level, ResponseHead};
use super::state::{RequestState, StartError};
use crate::py_method;
use crate::python::objects::{bound_function, payload, MethodTable, METHOD_TABLE_END};
use crate::python::scoped::{ScopeError, Scoped};
use pyo3::exceptions::{PyAssertionError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

pub type Slot = Scoped<RequestState>;

/// The payload of a `wsgi.errors` object: its request and its partial line.
pub struct LogPayload {
    pub slot: Arc<Slot>,
    pending: Mutex<String>,
}

impl LogPayload {
    pub fn new(slot: Arc<Slot>) -> Self {
        LogPayload {
            slot,
            pending: Mutex::new(String::new()),
        }
    }
}

fn scope_error(e: ScopeError) -> PyErr {
    match e {
        ScopeError::Finished => PyRuntimeError::new_err("request object has expired"),
        ScopeError::Busy => PyRuntimeError::new_err("request is in use by another thread"),
    }
}

fn with_state<R>(slot: &Slot, f: impl FnOnce(&mut RequestState) -> PyResult<R>) -> PyResult<R> {
    slot.with(f).map_err(scope_error)?
}

/// Runs a callback body, turning a Rust panic into a Python exception here, so pyo3's own
/// (process-wide) PanicException type never reaches an interpreter.
fn guarded(body: impl FnOnce() -> PyResult<*mut ffi::PyObject>) -> PyResult<*mut ffi::PyObject> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let msg = crate::panic_message(&*panic);
        Err(PyRuntimeError::new_err(format!(
            "mod_wsgi-rs internal error: {msg}"
        )))
    })
}

/// The positional and keyword arguments of a call, with names for error messages.
struct Args<'py> {
    func: &'static str,
    positional: Vec<Bound<'py, PyAny>>,
    keywords: Option<Bound<'py, PyDict>>,
}

impl<'py> Args<'py> {
    /// # Safety
    /// `args` is a tuple and `kwargs` null or a dict, borrowed for the call (CPython's contract).
    unsafe fn new(
        py: Python<'py>,
        func: &'static str,
        args: *mut ffi::PyObject,
        kwargs: *mut ffi::PyObject,
    ) -> Self {
        // SAFETY: by the caller's contract.
        let (args, kwargs) = unsafe {
            (
                Borrowed::from_ptr(py, args).cast_unchecked::<PyTuple>(),
                Borrowed::from_ptr_or_opt(py, kwargs)
                    .map(|k| k.cast_unchecked::<PyDict>().to_owned()),
            )
        };
        Args {
            func,
            positional: args.iter().collect(),
            keywords: kwargs,
        }
    }

    /// Argument `index`/`name`, or None when absent or None.
    fn get(&self, index: usize, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let by_name = match &self.keywords {
            Some(k) => k.get_item(name)?,
            None => None,
        };
        let value = match (self.positional.get(index), by_name) {
            (Some(_), Some(_)) => {
                return Err(PyTypeError::new_err(format!(
                    "{}() got multiple values for argument '{name}'",
                    self.func
                )))
            }
            (Some(v), None) => Some(v.clone()),
            (None, v) => v,
        };
        Ok(value.filter(|v| !v.is_none()))
    }

    fn check_count(&self, max: usize, names: &[&str]) -> PyResult<()> {
        if self.positional.len() > max {
            return Err(PyTypeError::new_err(format!(
                "{}() takes at most {max} arguments ({} given)",
                self.func,
                self.positional.len()
            )));
        }
        if let Some(k) = &self.keywords {
            for key in k.keys() {
                let key: String = key.extract()?;
                if !names.contains(&key.as_str()) {
                    return Err(PyTypeError::new_err(format!(
                        "{}() got an unexpected keyword argument '{key}'",
                        self.func
                    )));
                }
            }
        }
        Ok(())
    }

    fn required(&self, index: usize, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.get(index, name)?.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{}() missing required argument '{name}'",
                self.func
            ))
        })
    }

    /// An optional size argument: None or a negative number mean "no limit".
    fn size(&self, index: usize, name: &str) -> PyResult<Option<usize>> {
        match self.get(index, name)? {
            None => Ok(None),
            Some(v) => {
                let n: i64 = v.extract().map_err(|_| {
                    PyTypeError::new_err(format!("{}() argument must be an integer", self.func))
                })?;
                Ok(usize::try_from(n).ok())
            }
        }
    }
}

/// A WSGI "native string": a `str` whose characters all fit in Latin-1.
fn latin1_str(value: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    let s = value.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected unicode object for {what}, value of type {} found",
            type_name(value)
        ))
    })?;
    let s = s.to_str()?.to_string();
    if s.chars().any(|c| c as u32 > 0xff) {
        return Err(PyValueError::new_err(format!(
            "{what} must be encodable as Latin-1: {s:?}"
        )));
    }
    Ok(s)
}

pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// Validates `start_response`'s status and headers into a response head.
fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<ResponseHead> {
    let status = latin1_str(status, "status")?;
    let (code, status_line) = parse_status(&status).map_err(PyValueError::new_err)?;
    let list = headers.cast::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected list object for headers, value of type {} found",
            type_name(headers)
        ))
    })?;
    let mut out = Vec::with_capacity(list.len());
    let mut content_length = None;
    for item in list.iter() {
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "list of 2-tuples expected for headers, value of type {} found",
                    type_name(&item)
                ))
            })?;
        let name = latin1_str(&pair.get_item(0)?, "header name")?;
        let value = latin1_str(&pair.get_item(1)?, "header value")?;
        check_header(&name, &value).map_err(PyValueError::new_err)?;
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(parse_content_length(&value).map_err(PyValueError::new_err)?);
        }
        out.push((name, value));
    }
    Ok(ResponseHead {
        status: code,
        status_line,
        headers: out,
        content_length,
    })
}

fn none() -> PyResult<*mut ffi::PyObject> {
    // SAFETY: attached (we run inside a trampoline); returns a new reference to None.
    Ok(unsafe { ffi::Py_NewRef(ffi::Py_None()) })
}

/// The frame every method shares: panics become exceptions, `self`'s payload is found, and the
/// arguments are checked against `params` before `body` runs.
///
/// # Safety
/// `slf` must be an object of a handle type whose payload is a `T` (true for the `self` of a
/// method in that type's table); `args`/`kwargs` are what CPython passed.
unsafe fn method<T>(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
    name: &'static str,
    params: &[&str],
    body: impl FnOnce(&T, &Args<'_>) -> PyResult<*mut ffi::PyObject>,
) -> PyResult<*mut ffi::PyObject> {
    guarded(|| {
        // SAFETY: by this function's contract.
        let (payload, args) = unsafe {
            (
                payload::<T>(slf).expect("handle payload"),
                Args::new(py, name, args, kwargs),
            )
        };
        args.check_count(params.len(), params)?;
        body(payload, &args)
    })
}

/// Declares `$name` as a method (the trampoline's signature) whose body is `$body`, a closure
/// taking the payload and the arguments.
macro_rules! handle_method {
    ($name:ident, $payload:ty, $py_name:literal, [$($param:literal),*], |$py:ident, $slf:ident, $p:ident, $a:ident| $body:expr) => {
        unsafe fn $name(
            $py: Python<'_>,
            $slf: *mut ffi::PyObject,
            args: *mut ffi::PyObject,
            kwargs: *mut ffi::PyObject,
        ) -> PyResult<*mut ffi::PyObject> {
            #[allow(unused_braces)]
            let body = |$p: &$payload, $a: &Args<'_>| -> PyResult<*mut ffi::PyObject> { $body };
            // SAFETY: $name is only listed in the method table of the type whose payload is
            // $payload, so `self` is one of its objects.
            unsafe { method::<$payload>($py, $slf, args, kwargs, $py_name, &[$($param),*], body) }
        }
    };
}

handle_method!(
    start_response,
    Slot,
    "start_response",
    ["status", "response_headers", "exc_info"],
    |py, slf, slot, args| {
        let status = args.required(0, "status")?;
        let headers = args.required(1, "response_headers")?;
        let exc_info = args.get(2, "exc_info")?;
        let head = parse_head(&status, &headers)?;
        with_state(slot, |st| match st.start(head, exc_info.is_some()) {
            Ok(()) => Ok(()),
            Err(StartError::AlreadyStarted) => {
                Err(PyAssertionError::new_err("headers have already been set"))
            }
            Err(StartError::HeadersSent) => {
                let value = exc_info.as_ref().expect("has exc_info").get_item(1)?;
                Err(PyErr::from_value(value))
            }
        })?;
        // SAFETY: slf is alive for this call.
        let handle = unsafe { Borrowed::from_ptr(py, slf) };
        Ok(bound_function(&handle, ADAPTER_METHODS.get(c"write"))?.into_ptr())
    }
);

handle_method!(write, Slot, "write", ["data"], |py, _slf, slot, args| {
    let data = args.required(0, "data")?;
    let bytes = data.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "byte string value expected, value of type {} found",
            type_name(&data)
        ))
    })?;
    with_state(slot, |st| {
        if !st.started() {
            return Err(PyRuntimeError::new_err(
                "write() called before start_response()",
            ));
        }
        st.write(py, bytes.as_bytes(), true)
            .map_err(PyOSError::new_err)
    })?;
    none()
});

pub static ADAPTER_METHODS: MethodTable<3> = MethodTable([
    py_method!(c"start_response", start_response),
    py_method!(c"write", write),
    METHOD_TABLE_END,
]);

fn read_line(py: Python<'_>, slot: &Slot, size: Option<usize>) -> PyResult<Vec<u8>> {
    with_state(slot, |st| {
        st.readline_input(py, size).map_err(PyOSError::new_err)
    })
}

handle_method!(
    input_read,
    Slot,
    "read",
    ["size"],
    |py, _slf, slot, args| {
        let size = args.size(0, "size")?;
        let data = with_state(slot, |st| {
            st.read_input(py, size).map_err(PyOSError::new_err)
        })?;
        Ok(PyBytes::new(py, &data).into_ptr())
    }
);

handle_method!(
    input_readline,
    Slot,
    "readline",
    ["size"],
    |py, _slf, slot, args| {
        let line = read_line(py, slot, args.size(0, "size")?)?;
        Ok(PyBytes::new(py, &line).into_ptr())
    }
);

handle_method!(
    input_readlines,
    Slot,
    "readlines",
    ["hint"],
    |py, _slf, slot, args| {
        let hint = args.size(0, "hint")?;
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = read_line(py, slot, None)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines.into_ptr())
    }
);

unsafe extern "C" fn input_iter(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: returns a new reference to the live object it was called on.
    unsafe { ffi::Py_NewRef(slf) }
}

/// `next(wsgi.input)`: the next line; the end of the body ends the iteration.
unsafe fn input_next(py: Python<'_>, slf: *mut ffi::PyObject) -> PyResult<*mut ffi::PyObject> {
    guarded(|| {
        // SAFETY: slf is an Input handle.
        let slot = unsafe { payload::<Slot>(slf).expect("input payload") };
        let line = read_line(py, slot, None)?;
        if line.is_empty() {
            // NULL with no exception set: StopIteration.
            return Ok(std::ptr::null_mut());
        }
        Ok(PyBytes::new(py, &line).into_ptr())
    })
}

pub static INPUT_METHODS: MethodTable<4> = MethodTable([
    py_method!(c"read", input_read),
    py_method!(c"readline", input_readline),
    py_method!(c"readlines", input_readlines),
    METHOD_TABLE_END,
]);

pub fn input_iter_slots() -> crate::python::objects::IterSlots {
    crate::python::objects::IterSlots {
        iter: input_iter,
        next: pyo3::impl_::trampoline::get_trampoline_function!(iternextfunc, input_next),
    }
}

/// Sends the complete lines of `pending` (all of it with `all`) to the request's log.
fn emit_lines(py: Python<'_>, log: &LogPayload, pending: &mut String, all: bool) -> PyResult<()> {
    let cut = if all {
        pending.len()
    } else {
        pending.rfind('\n').map_or(0, |i| i + 1)
    };
    if cut == 0 {
        return Ok(());
    }
    let text: String = pending.drain(..cut).collect();
    with_state(&log.slot, |st| {
        for line in text.lines() {
            st.log(py, Level::Error, line);
        }
        Ok(())
    })
}

fn text_arg<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    value.cast::<PyString>().cloned().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected str object, value of type {} found",
            type_name(value)
        ))
    })
}

/// Appends `texts` to the log's partial line and logs every line now complete.
fn log_texts<'py>(
    py: Python<'py>,
    log: &LogPayload,
    texts: impl Iterator<Item = PyResult<Bound<'py, PyAny>>>,
) -> PyResult<*mut ffi::PyObject> {
    let mut pending = log.pending.lock().unwrap_or_else(|e| e.into_inner());
    for text in texts {
        pending.push_str(text_arg(&text?)?.to_str()?);
    }
    emit_lines(py, log, &mut pending, false)?;
    none()
}

// `wsgi.errors.write(text)`: line-buffered, one log entry per line.
handle_method!(
    log_write,
    LogPayload,
    "write",
    ["msg"],
    |py, _slf, log, args| { log_texts(py, log, std::iter::once(args.required(0, "msg"))) }
);

handle_method!(
    log_writelines,
    LogPayload,
    "writelines",
    ["lines"],
    |py, _slf, log, args| { log_texts(py, log, args.required(0, "lines")?.try_iter()?) }
);

// `wsgi.errors.flush()`: logs a partial line too.
handle_method!(
    log_flush,
    LogPayload,
    "flush",
    [],
    |py, _slf, log, _args| {
        flush_log(py, log)?;
        none()
    }
);

pub fn flush_log(py: Python<'_>, log: &LogPayload) -> PyResult<()> {
    let mut pending = log.pending.lock().unwrap_or_else(|e| e.into_inner());
    emit_lines(py, log, &mut pending, true)
}

pub static LOG_METHODS: MethodTable<4> = MethodTable([
    py_method!(c"write", log_write),
    py_method!(c"writelines", log_writelines),
    py_method!(c"flush", log_flush),
    METHOD_TABLE_END,
]);
