//! The Python-callable parts of the adapter: `start_response`, `write`, `wsgi.input` and
//! `wsgi.errors`. Each reaches its request through a `Scoped` slot, so one kept past its request
//! raises an exception instead of touching freed memory.

use super::headers::{check_header, parse_content_length, parse_status};
use super::io::{Level, ResponseHead};
use super::state::{RequestState, StartError};
use crate::python::method::iter_self;
use crate::python::objects::{bound_function, bytes_filled_by, MethodTable, METHOD_TABLE_END};
use crate::python::scoped::{ScopeError, Scoped};
use crate::{handle_iternext, handle_method, py_method};
use pyo3::exceptions::{PyAssertionError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
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

pub(super) fn scope_error(e: ScopeError) -> PyErr {
    match e {
        ScopeError::Finished => PyRuntimeError::new_err("request object has expired"),
        ScopeError::Busy => {
            PyRuntimeError::new_err("request is already in use further up this thread's stack")
        }
    }
}

fn with_state<R>(
    py: Python<'_>,
    slot: &Slot,
    f: impl FnOnce(&mut RequestState) -> PyResult<R>,
) -> PyResult<R> {
    slot.with(py, f).map_err(scope_error)?
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

fn none(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    Ok(py.None().into_bound(py))
}

handle_method!(
    start_response,
    Slot,
    "start_response",
    ["status", "response_headers", "exc_info"],
    |py, this, slot, args| {
        let status = args.required(0, "status")?;
        let headers = args.required(1, "response_headers")?;
        let exc_info = args.get(2, "exc_info")?;
        let head = parse_head(&status, &headers)?;
        with_state(py, slot, |st| match st.start(head, exc_info.is_some()) {
            Ok(()) => Ok(()),
            Err(StartError::AlreadyStarted) => {
                Err(PyAssertionError::new_err("headers have already been set"))
            }
            Err(StartError::HeadersSent) => {
                let value = exc_info.as_ref().expect("has exc_info").get_item(1)?;
                Err(PyErr::from_value(value))
            }
        })?;
        super::events::response_started(py, &status, &headers, exc_info.as_ref());
        bound_function(this, ADAPTER_METHODS.get(c"write"))
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
    with_state(py, slot, |st| {
        if !st.started() {
            return Err(PyRuntimeError::new_err(
                "write() called before start_response()",
            ));
        }
        st.write(py, bytes.as_bytes(), true)
            .map_err(PyOSError::new_err)
    })?;
    none(py)
});

pub static ADAPTER_METHODS: MethodTable<3> = MethodTable([
    py_method!(c"start_response", start_response),
    py_method!(c"write", write),
    METHOD_TABLE_END,
]);

fn read_line(py: Python<'_>, slot: &Slot, size: Option<usize>) -> PyResult<Vec<u8>> {
    with_state(py, slot, |st| {
        st.readline_input(py, size).map_err(PyOSError::new_err)
    })
}

/// Up to this size, `read(n)` reads straight into a `bytes` of n bytes; a larger n reads into a
/// buffer that grows only as data arrives.
const DIRECT_READ_MAX: usize = 4 << 20;

handle_method!(
    input_read,
    Slot,
    "read",
    ["size"],
    |py, _slf, slot, args| {
        match args.size(0, "size")? {
            Some(0) => with_state(py, slot, |st| {
                st.expect_continue(py);
                Ok(PyBytes::new(py, b"").into_any())
            }),
            Some(n) if n <= DIRECT_READ_MAX => with_state(py, slot, |st| {
                let bytes = bytes_filled_by(py, n, |buf| {
                    st.read_input_into(py, buf).map_err(PyOSError::new_err)
                })?;
                Ok(bytes.into_any())
            }),
            size => {
                let data = with_state(py, slot, |st| {
                    st.read_input(py, size).map_err(PyOSError::new_err)
                })?;
                Ok(PyBytes::new(py, &data).into_any())
            }
        }
    }
);

handle_method!(
    input_readline,
    Slot,
    "readline",
    ["size"],
    |py, _slf, slot, args| {
        let line = read_line(py, slot, args.size(0, "size")?)?;
        Ok(PyBytes::new(py, &line).into_any())
    }
);

handle_method!(
    input_readlines,
    Slot,
    "readlines",
    ["hint"],
    |py, _slf, slot, args| {
        // As io's readlines: a hint of 0 or less means no limit.
        let hint = args.size(0, "hint")?.filter(|&h| h > 0);
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
        Ok(lines.into_any())
    }
);

// `next(wsgi.input)`: the next line; the end of the body ends the iteration.
handle_iternext!(input_next, Slot, |py, slot| {
    let line = read_line(py, slot, None)?;
    Ok((!line.is_empty()).then(|| PyBytes::new(py, &line).into_any()))
});

// `wsgi.input.close()`: nothing to release (Apache owns the connection); C has it too, and
// libraries that treat the input as a file call it.
handle_method!(input_close, Slot, "close", [], |py, _slf, _slot, _args| {
    none(py)
});

pub static INPUT_METHODS: MethodTable<5> = MethodTable([
    py_method!(c"read", input_read),
    py_method!(c"readline", input_readline),
    py_method!(c"readlines", input_readlines),
    py_method!(c"close", input_close),
    METHOD_TABLE_END,
]);

pub fn input_iter_slots() -> crate::python::objects::IterSlots {
    crate::python::objects::IterSlots {
        iter: iter_self,
        next: pyo3::impl_::trampoline::get_trampoline_function!(iternextfunc, input_next),
    }
}

/// Takes the complete lines of the log's partial text after adding `text` (all of it with
/// `all`). The lock is held only for that: logging may release the GIL, and a thread waiting for
/// this lock with the GIL held would then keep the logging thread from getting it back.
fn complete_lines(log: &LogPayload, text: &str, all: bool) -> String {
    let mut pending = log.pending.lock().unwrap_or_else(|e| e.into_inner());
    pending.push_str(text);
    let cut = if all {
        pending.len()
    } else {
        pending.rfind('\n').map_or(0, |i| i + 1)
    };
    pending.drain(..cut).collect()
}

/// Sends `lines` to the request's log, one entry per line.
fn emit_lines(py: Python<'_>, log: &LogPayload, lines: &str) -> PyResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    with_state(py, &log.slot, |st| {
        for line in lines.lines() {
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

/// Appends `texts` to the log's partial line and logs every line now complete; returns how
/// many characters the texts had.
fn log_texts<'py>(
    py: Python<'py>,
    log: &LogPayload,
    texts: impl Iterator<Item = PyResult<Bound<'py, PyAny>>>,
) -> PyResult<usize> {
    // The texts are gathered first: an iterator given to writelines() runs Python code.
    let mut gathered = String::new();
    let mut chars = 0;
    for text in texts {
        let text = text?;
        let text = text_arg(&text)?;
        chars += text.len()?;
        gathered.push_str(&crate::python::objects::log_text(&text)?);
    }
    emit_lines(py, log, &complete_lines(log, &gathered, false))?;
    Ok(chars)
}

// `wsgi.errors.write(text)`: line-buffered, one log entry per line; returns the number of
// characters written, as a text stream's write() does.
handle_method!(
    log_write,
    LogPayload,
    "write",
    ["msg"],
    |py, _slf, log, args| {
        let written = log_texts(py, log, std::iter::once(args.required(0, "msg")))?;
        Ok(written.into_pyobject(py)?.into_any())
    }
);

handle_method!(
    log_writelines,
    LogPayload,
    "writelines",
    ["lines"],
    |py, _slf, log, args| {
        log_texts(py, log, args.required(0, "lines")?.try_iter()?)?;
        none(py)
    }
);

// `wsgi.errors.flush()`: logs a partial line too. It is `close()` as well: the stream is the
// server's, and something that closes it (a `with` block, a wrapper being collected) must not
// silence everything logged after.
handle_method!(
    log_flush,
    LogPayload,
    "flush",
    [],
    |py, _slf, log, _args| {
        flush_log(py, log)?;
        none(py)
    }
);

handle_method!(
    log_close,
    LogPayload,
    "close",
    [],
    |py, _slf, log, _args| {
        flush_log(py, log)?;
        none(py)
    }
);

pub fn flush_log(py: Python<'_>, log: &LogPayload) -> PyResult<()> {
    emit_lines(py, log, &complete_lines(log, "", true))
}

// The rest of a text stream's methods that libraries call on wsgi.errors (modules.py's
// give_stream_api adds its attributes): native, where Python functions would be kept, with their
// code, in every interpreter.
handle_method!(
    log_writable,
    LogPayload,
    "writable",
    [],
    |py, _slf, _log, _args| Ok(true.into_pyobject(py)?.to_owned().into_any())
);

// One function per name: a wrong call's TypeError names the method called.
handle_method!(
    log_readable,
    LogPayload,
    "readable",
    [],
    |py, _slf, _log, _args| Ok(false.into_pyobject(py)?.to_owned().into_any())
);

handle_method!(
    log_seekable,
    LogPayload,
    "seekable",
    [],
    |py, _slf, _log, _args| Ok(false.into_pyobject(py)?.to_owned().into_any())
);

handle_method!(
    log_isatty,
    LogPayload,
    "isatty",
    [],
    |py, _slf, _log, _args| Ok(false.into_pyobject(py)?.to_owned().into_any())
);

handle_method!(
    log_fileno,
    LogPayload,
    "fileno",
    [],
    |py, _slf, _log, _args| {
        let unsupported = py.import("io")?.getattr("UnsupportedOperation")?;
        Err(PyErr::from_value(unsupported.call1(("fileno",))?))
    }
);

handle_method!(
    log_enter,
    LogPayload,
    "__enter__",
    [],
    |_py, this, _log, _args| Ok(this.clone())
);

handle_method!(
    log_exit,
    LogPayload,
    "__exit__",
    ["exc_type", "exc_value", "traceback"],
    |py, _slf, _log, _args| none(py)
);

pub static LOG_METHODS: MethodTable<12> = MethodTable([
    py_method!(c"write", log_write),
    py_method!(c"writelines", log_writelines),
    py_method!(c"flush", log_flush),
    py_method!(c"close", log_close),
    py_method!(c"writable", log_writable),
    py_method!(c"readable", log_readable),
    py_method!(c"seekable", log_seekable),
    py_method!(c"isatty", log_isatty),
    py_method!(c"fileno", log_fileno),
    py_method!(c"__enter__", log_enter),
    py_method!(c"__exit__", log_exit),
    METHOD_TABLE_END,
]);
