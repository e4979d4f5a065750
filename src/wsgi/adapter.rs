//! One WSGI call, as PEP 3333 lays it out: build the environ, call the application with
//! `start_response`, send what it returns, and always call its `close()`.

use super::callbacks::{flush_log, type_name, LogPayload, Slot, ADAPTER_METHODS};
use super::environ::{url_scheme, CgiVars};
use super::events;
use super::interp::{self, InterpObjects, Names};
use super::io::{Level, RequestIo};
use super::state::RequestState;
use crate::python::objects::{bound_function, new_handle};
use crate::python::scoped::Scoped;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::sync::Arc;

/// How the call ended, for the server's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response was sent (possibly truncated after an error, which was logged).
    Sent,
    /// Failed before anything was sent: the server answers 500 (the error was logged).
    ServerError,
}

/// Calls `app` for one request whose I/O is `io`, and gives `io` back: the caller sends what it
/// kept ([`RequestIo::send_deferred`]) once it has let go of the GIL.
pub fn run_app(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    vars: &CgiVars,
    script: &str,
    io: Box<dyn RequestIo>,
) -> (Outcome, Box<dyn RequestIo>) {
    let head_request = vars.get("REQUEST_METHOD") == Some(b"HEAD".as_slice());
    let mut state = RequestState::new(io, script.to_string(), head_request);
    let publishing = events::begin(py, vars);
    state.io_stats.timed = publishing;
    let outcome = Scoped::run(py, &mut state, |slot| {
        let call = Call {
            py,
            slot,
            script,
            publishing,
        };
        call.run(app, vars)
    });
    super::process_metrics::application_finished(vars);
    events::end(py);
    (outcome, state.into_io())
}

/// How an item of the application's iterable is written.
#[derive(Clone, Copy)]
enum Piece {
    /// Held by the server until more comes or the response ends (an item of a list).
    Buffered,
    /// Pushed to the client now (an item of a generator).
    Flushed,
    /// The last: it goes out with the end of the response. With `nothing_after` (a plain list or
    /// tuple, which has no `close()`, and no event subscribers), it may be sent once the
    /// application is done with the GIL.
    Last { nothing_after: bool },
}

/// Whether the application's iterable may have a `close()`: plain lists and tuples have none
/// (asking would raise and discard an AttributeError).
fn has_close(result: &Bound<'_, PyAny>) -> bool {
    !(result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>())
}

struct Call<'a, 'py> {
    py: Python<'py>,
    slot: &'a Arc<Slot>,
    script: &'a str,
    /// Event subscribers are told of this request (`mod_wsgi.subscribe_events`).
    publishing: bool,
}

impl<'py> Call<'_, 'py> {
    /// The application runs on this thread's stack below this frame (and below the caller's),
    /// as does every C call it makes: a frame kept small here is a page of stack fewer for every
    /// Apache thread that serves a deep application (twelve middleware layers touched one more
    /// 4 KiB page per thread than C's). So building the environ, sending the response and the
    /// end of the request are functions of their own, which have returned, or not yet been
    /// called, while the application runs.
    fn run(&self, app: &Bound<'py, PyAny>, vars: &CgiVars) -> Outcome {
        let (start_response, environ, log) = match self.prepare(vars) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        let app = &events::request_started(self.py, app, &environ);
        let outcome = match app.call1((environ, start_response)) {
            Ok(result) => self.respond(&result, &log),
            Err(e) => self.fail(e),
        };
        self.finish(&log);
        outcome
    }

    /// `start_response`, the environ, and the request's `wsgi.errors` log.
    #[inline(never)]
    fn prepare(
        &self,
        vars: &CgiVars,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>, Arc<LogPayload>)> {
        let objects = interp::objects(self.py);
        let adapter = new_handle(&objects.adapter_type(self.py), self.slot.clone())?;
        let start_response = bound_function(&adapter, ADAPTER_METHODS.get(c"start_response"))?;
        let input = new_handle(&objects.input_type(self.py), self.slot.clone())?;
        let log = Arc::new(LogPayload::new(self.slot.clone()));
        let errors = new_handle(&objects.log_type(self.py), log.clone())?;
        let environ = build_environ(self.py, objects, vars, &input, &errors)?;
        Ok((start_response, environ, log))
    }

    /// Sends what the application returned, then calls its `close()`.
    #[inline(never)]
    fn respond(&self, result: &Bound<'py, PyAny>, log: &LogPayload) -> Outcome {
        // The response is complete and on its way before close(), so the client does not wait
        // for the application's clean-up; a failure is logged before close() runs, so its
        // traceback comes before anything close() logs, as in C.
        let sent = self.send_result(result, log).and_then(|()| {
            self.flush_logs(log)?;
            self.complete_response()
        });
        let mut outcome = match sent {
            Ok(()) => Outcome::Sent,
            Err(e) if self.client_left(&e) => Outcome::Sent,
            Err(e) => self.fail(e),
        };
        if let Err(e) = self.close(result) {
            outcome = self.fail(e);
        }
        outcome
    }

    /// The request's end: the event subscribers are told, the rest of its log goes out.
    #[inline(never)]
    fn finish(&self, log: &LogPayload) {
        events::request_finished(self.py, || {
            self.slot
                .with(self.py, |st| st.io_stats)
                .unwrap_or_default()
        });
        if let Err(e) = flush_log(self.py, log) {
            self.log_exception(e);
        }
    }

    /// Partial lines go out before the response ends, so they reach the log in the order they
    /// were written (in daemon mode, what comes after the end is logged by the daemon itself,
    /// and may overtake the rest).
    fn flush_logs(&self, log: &LogPayload) -> PyResult<()> {
        super::process_log::flush_pending(self.py);
        flush_log(self.py, log)
    }

    /// Sends each item of the application's iterable. A list or tuple is written without
    /// flushing between items, its last item together with the end of the response (one
    /// release of the GIL fewer, and one pass down Apache's filters); anything else (a
    /// generator) is flushed item by item so the client sees it as it is produced.
    fn send_result(&self, result: &Bound<'py, PyAny>, log: &LogPayload) -> PyResult<()> {
        let file_wrapper = interp::objects(self.py).file_wrapper(self.py);
        if result.get_type().is(&*file_wrapper) && self.send_file(result)? {
            return Ok(());
        }
        let nothing_after = !self.publishing && !has_close(result);
        // Exact lists and tuples only: a subclass may iterate otherwise (its own __iter__).
        if result.is_exact_instance_of::<PyList>() {
            let list = result.cast::<PyList>()?;
            // The length is asked again at each step: another thread may change the list while
            // an item is written with the GIL released.
            self.write_sequence(|| list.len(), |i| list.get_item(i), nothing_after, log)
        } else if result.is_exact_instance_of::<PyTuple>() {
            let tuple = result.cast::<PyTuple>()?;
            self.write_sequence(|| tuple.len(), |i| tuple.get_item(i), nothing_after, log)
        } else {
            for item in result.try_iter()? {
                // PEP 3333: once the declared Content-Length is sent, stop iterating (close() is
                // still called), so an endless iterable cannot keep the thread for ever.
                if self.write_item(&item?, Piece::Flushed, log)? {
                    break;
                }
            }
            Ok(())
        }
    }

    fn write_sequence(
        &self,
        len: impl Fn() -> usize,
        item: impl Fn(usize) -> PyResult<Bound<'py, PyAny>>,
        nothing_after: bool,
        log: &LogPayload,
    ) -> PyResult<()> {
        let mut i = 0;
        while i < len() {
            let next = item(i)?;
            i += 1;
            if i < len() {
                self.write_item(&next, Piece::Buffered, log)?;
            } else {
                // The response ends with this item: what another thread appends to the list
                // while it is written (the GIL released) comes too late to be sent.
                self.write_item(&next, Piece::Last { nothing_after }, log)?;
                break;
            }
        }
        Ok(())
    }

    /// Sends a `wsgi.file_wrapper` over a real file as a file (sendfile) from its current
    /// position; false when its `filelike` is not one, to be iterated instead.
    fn send_file(&self, wrapper: &Bound<'py, PyAny>) -> PyResult<bool> {
        let py = self.py;
        let filelike = wrapper.getattr("filelike")?;
        let fd = filelike
            .call_method0("fileno")
            .and_then(|v| v.extract::<i32>());
        let pos = filelike
            .call_method0("tell")
            .and_then(|v| v.extract::<i64>());
        let (Ok(fd), Ok(pos)) = (fd, pos) else {
            return Ok(false);
        };
        // A descriptor that is not open (a fileno() of -1, a stale number) is no file to send:
        // iterate, as C does.
        let Ok(stat) = py.import("os")?.call_method1("fstat", (fd,)) else {
            return Ok(false);
        };
        let mode = stat.getattr("st_mode")?;
        if !py
            .import("stat")?
            .call_method1("S_ISREG", (mode,))?
            .is_truthy()?
            || pos < 0
        {
            return Ok(false);
        }
        let size: i64 = stat.getattr("st_size")?.extract()?;
        let available = (size - pos).max(0) as u64;
        self.with_state(|st| {
            if !st.started() {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "response has not been started",
                ));
            }
            st.send_file(py, fd, pos as u64, available)
                .map_err(pyo3::exceptions::PyOSError::new_err)
        })?;
        Ok(true)
    }

    /// Writes one item of the iterable; true once the declared Content-Length has been sent. An
    /// item that completes the declared Content-Length is the last, whatever `piece` says.
    fn write_item(
        &self,
        item: &Bound<'py, PyAny>,
        piece: Piece,
        log: &LogPayload,
    ) -> PyResult<bool> {
        let bytes = item.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "sequence of byte string values expected, value of type {} found",
                type_name(item)
            ))
        })?;
        let data = bytes.as_bytes();
        if data.is_empty() {
            return Ok(false);
        }
        let piece = match piece {
            Piece::Flushed if self.with_state(|st| Ok(st.completed_by(data.len())))? => {
                Piece::Last {
                    nothing_after: false,
                }
            }
            other => other,
        };
        if let Piece::Last { .. } = piece {
            self.flush_logs(log)?;
        }
        self.with_state(|st| {
            if !st.started() {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "response has not been started",
                ));
            }
            match piece {
                Piece::Buffered => st.write(self.py, data, false),
                Piece::Flushed => st.write(self.py, data, true),
                Piece::Last { nothing_after } => st.write_last(self.py, data, nothing_after),
            }
            .map_err(pyo3::exceptions::PyOSError::new_err)?;
            Ok(st.declared_length_sent())
        })
    }

    fn close(&self, result: &Bound<'py, PyAny>) -> PyResult<()> {
        if !has_close(result) {
            return Ok(());
        }
        let name = Names::get(self.py, &interp::objects(self.py).names.close);
        if let Some(close) = result.getattr_opt(name)? {
            close.call0()?;
        }
        Ok(())
    }

    fn complete_response(&self) -> PyResult<()> {
        self.with_state(|st| {
            if !st.started() {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "response has not been started",
                ));
            }
            st.finish(self.py)
                .map_err(pyo3::exceptions::PyOSError::new_err)
        })
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut RequestState) -> PyResult<R>) -> PyResult<R> {
        self.slot
            .with(self.py, f)
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("{e:?}")))?
    }

    /// Whether `err` is a failed write of the response to a client that has gone (closed or
    /// reset the connection): then iterating stopped, as C does, and this logs it at debug level
    /// only (it is no error of the application's) and makes sure the response is cut short.
    /// The write() callable still raises it into the application, as in C.
    fn client_left(&self, err: &PyErr) -> bool {
        let py = self.py;
        if !err.is_instance_of::<pyo3::exceptions::PyOSError>(py) {
            return false;
        }
        let msg = format!(
            "mod_wsgi (pid={}): Client closed connection: {}.",
            std::process::id(),
            err.value(py)
        );
        self.slot
            .with(py, |st| {
                if !st.client_gone() {
                    return false;
                }
                st.log(py, Level::Debug, &msg);
                st.abort(py);
                true
            })
            .unwrap_or(false)
    }

    /// Logs `err`; a response already under way is truncated, otherwise the server sends a 500.
    #[cold]
    #[inline(never)]
    fn fail(&self, err: PyErr) -> Outcome {
        let py = self.py;
        let published = err.clone_ref(py);
        self.log_exception(err);
        events::request_exception(py, &published);
        let sent = self.slot.with(py, |st| {
            if st.headers_sent() {
                st.abort(py);
                true
            } else {
                false
            }
        });
        match sent {
            Ok(true) => Outcome::Sent,
            _ => Outcome::ServerError,
        }
    }

    /// Writes the exception and its traceback to the error log, one entry per line.
    fn log_exception(&self, err: PyErr) {
        let mut lines = vec![exception_headline(self.py, &err, self.script)];
        lines.extend(exception_report(self.py, &err));
        let py = self.py;
        let _ = self.slot.with(py, |st| {
            for line in &lines {
                st.log(py, Level::Error, line);
            }
        });
    }
}

/// The line C mod_wsgi logs ahead of the traceback of an exception from script `script`:
/// `SystemExit` is "ignored" (the process carries on), anything else "occurred".
pub fn exception_headline(py: Python<'_>, err: &PyErr, script: &str) -> String {
    if err.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
        format!(
            "mod_wsgi (pid={}): SystemExit exception raised by WSGI script '{script}' ignored.",
            std::process::id()
        )
    } else {
        format!(
            "mod_wsgi (pid={}): Exception occurred processing WSGI script '{script}'.",
            std::process::id()
        )
    }
}

/// The traceback of `err` as Python's `traceback` module prints it, split into lines.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> Vec<String> {
    let formatted = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (err.get_type(py), err.value(py), err.traceback(py)),
            )
        })
        .and_then(|parts| parts.extract::<Vec<String>>());
    match formatted {
        Ok(parts) => parts.concat().lines().map(str::to_string).collect(),
        Err(_) => vec![err.to_string()],
    }
}

/// The traceback of `err` followed, in an application group whose import of an extension module
/// failed because the module cannot run in a sub-interpreter, by a line saying what to do.
pub fn exception_report(py: Python<'_>, err: &PyErr) -> Vec<String> {
    let mut lines = format_exception(py, err);
    if let Some(hint) = subinterpreter_hint(&interp::objects(py).group, &lines) {
        lines.push(hint);
    }
    lines
}

/// What extension modules (or CPython on their behalf) say when they refuse to be imported into
/// a sub-interpreter.
const NOT_IN_SUBINTERPRETERS: &[&str] = &[
    // CPython 3.12+, for a single-phase init module in an isolated interpreter.
    "does not support loading in subinterpreters",
    // pyo3 modules.
    "do not yet support subinterpreters",
    "does not support subinterpreters",
    // NumPy 2 and others that keep per-process state.
    "cannot load module more than once per process",
    // Cython modules (lxml, …), in a second interpreter.
    "Interpreter change detected",
    // psycopg2, in an interpreter with a GIL of its own.
    "datetime initialization failed",
];

/// The line logged after a traceback (the lines of `traceback`) showing that an extension module
/// refused to load in application group `group`'s sub-interpreter; None in the main interpreter
/// (group '') or for any other error.
pub fn subinterpreter_hint(group: &str, traceback: &[String]) -> Option<String> {
    if group.is_empty() {
        return None;
    }
    let refused = traceback.iter().any(|line| {
        (line.contains("ImportError") || line.contains("ModuleNotFoundError"))
            && NOT_IN_SUBINTERPRETERS.iter().any(|m| line.contains(m))
    });
    refused.then(|| {
        format!(
            "mod_wsgi (pid={}): An extension module imported by the application cannot run in a \
             Python sub-interpreter, which is what application group '{group}' is. Run the \
             application in the main interpreter with 'WSGIApplicationGroup %{{GLOBAL}}' (or \
             the option application-group=%{{GLOBAL}} of WSGIScriptAlias).",
            std::process::id()
        )
    })
}

/// The request counters C mod_wsgi reports: requests this process has completed, a small
/// number naming the thread, and the requests this thread has served before this one.
struct RequestCounts {
    total: u64,
    thread_id: u64,
    thread_requests: u64,
    /// When the application is called (microseconds since the epoch).
    start: i64,
}

impl RequestCounts {
    fn next() -> RequestCounts {
        let total = super::process_metrics::requests_completed();
        // The thread numbering and counts `mod_wsgi.process_metrics()` reports.
        let call = super::process_metrics::application_called();
        RequestCounts {
            total,
            thread_id: call.thread_id,
            thread_requests: call.thread_requests,
            start: call.start,
        }
    }
}

fn build_environ<'py>(
    py: Python<'py>,
    objects: &InterpObjects,
    vars: &CgiVars,
    input: &Bound<'py, PyAny>,
    errors: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let environ = objects.new_environ(py)?;
    let mut strings = objects.environ_strings.lookup();
    for (key, value) in vars.iter() {
        // As in C mod_wsgi: `HTTPS` (from mod_ssl, a proxy's headers or SetEnv) becomes
        // `wsgi.url_scheme`, which is what a WSGI application should look at, and goes.
        if key == b"HTTPS" {
            continue;
        }
        let (key, value) = strings.strings(py, key, value)?;
        environ.set_item(key, value)?;
    }
    drop(strings);
    let counts = RequestCounts::next();
    let names = &objects.names;
    environ.set_item(
        Names::get(py, &names.script_start),
        counts.start.to_string(),
    )?;
    environ.set_item(Names::get(py, &names.total_requests), counts.total)?;
    environ.set_item(Names::get(py, &names.thread_id), counts.thread_id)?;
    environ.set_item(
        Names::get(py, &names.thread_requests),
        counts.thread_requests,
    )?;
    environ.set_item(Names::get(py, &names.url_scheme), url_scheme(vars))?;
    environ.set_item(Names::get(py, &names.input), input)?;
    environ.set_item(Names::get(py, &names.errors), errors)?;
    Ok(environ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn extensions_refusing_sub_interpreters_get_a_hint() {
        for message in [
            "ImportError: module _cffi_ext does not support loading in subinterpreters",
            "ImportError: PyO3 modules do not yet support subinterpreters, see https://github.com/PyO3/pyo3/issues/576",
            "ImportError: cannot load module more than once per process",
            "ImportError: Interpreter change detected - this module can only be loaded into one interpreter per process.",
            "ImportError: datetime initialization failed",
        ] {
            let tb = lines(&format!(
                "Traceback (most recent call last):\n  File \"/srv/app.wsgi\", line 1, in <module>\n{message}"
            ));
            let hint = subinterpreter_hint("site|/app", &tb).expect(message);
            assert!(hint.contains("WSGIApplicationGroup %{GLOBAL}"), "{hint}");
            assert!(hint.contains("'site|/app'"), "{hint}");
        }
    }

    #[test]
    fn no_hint_in_the_main_interpreter_or_for_other_errors() {
        let refused = lines("ImportError: module x does not support loading in subinterpreters");
        assert_eq!(subinterpreter_hint("", &refused), None);
        let other = lines("ImportError: No module named 'x'\nValueError: does not support loading in subinterpreters");
        assert_eq!(subinterpreter_hint("site", &other), None);
    }
}
