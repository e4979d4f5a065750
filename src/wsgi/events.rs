//! The request-tracking and event API of the `mod_wsgi` module, with C mod_wsgi 4.9.4's
//! behaviour: `active_requests`, `request_data()`, `subscribe_events()`,
//! `subscribe_shutdown()`, `event_callbacks`, `shutdown_callbacks`, and the events
//! `request_started`, `response_started`, `request_exception`, `request_finished` and
//! `process_stopping`.
//!
//! A callback is called as `callback(name, **event)`; a dict it returns is merged into the event
//! (so a `request_started` callback can replace `application_object`, the WSGI application the
//! request then calls). An exception in a callback is logged to the server's error log and the
//! request goes on.
//!
//! Cost when nobody watches: C makes a data dict per request and enters it in
//! `active_requests`. Here each thread keeps a small record of the request it serves (its id,
//! the interpreter) and the dict is made only when it is needed: when `request_data()` is
//! called, when events are published (somebody subscribed), or for every request once
//! `mod_wsgi.active_requests` has been looked up in that interpreter (it is made an attribute
//! then, and filled with the requests already running).
//!
//! No Python code runs while a thread record's lock is held (a finaliser run by the garbage
//! collector could call `request_data()` on the same thread).

use super::environ::CgiVars;
use super::io::Level;
use crate::python::objects::{
    bound_function, current_interpreter, latin1_str, new_capsule, sys_modules, MethodTable,
    OwnedRef, METHOD_TABLE_END,
};
use crate::{handle_method, py_method};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// What one interpreter's `mod_wsgi` module holds for events.
pub struct InterpEvents {
    interp: usize,
    event_callbacks: OwnedRef,
    shutdown_callbacks: OwnedRef,
    active_requests: OwnedRef,
    /// `mod_wsgi.active_requests` has been looked up: every request is entered in it.
    tracking: AtomicBool,
}

impl InterpEvents {
    fn list<'py>(r: &OwnedRef, py: Python<'py>) -> Bound<'py, PyList> {
        r.bind(py)
            .to_owned()
            .cast_into::<PyList>()
            .expect("created as a list")
    }

    /// Whether anybody subscribed to events (C's `wsgi_event_subscribers()`).
    fn subscribed(&self, py: Python<'_>) -> bool {
        self.event_callbacks
            .bind(py)
            .cast::<PyList>()
            .is_ok_and(|l| !l.is_empty())
    }

    fn requests<'py>(&self, py: Python<'py>) -> Bound<'py, PyDict> {
        self.active_requests
            .bind(py)
            .to_owned()
            .cast_into::<PyDict>()
            .expect("created as a dict")
    }
}

/// The prepared interpreters' event objects (leaked: an interpreter lives until the process
/// exits, and [`release`] drops the Python references first).
static INTERPS: RwLock<Vec<&'static InterpEvents>> = RwLock::new(Vec::new());

fn lookup(py: Python<'_>) -> Option<&'static InterpEvents> {
    let interp = current_interpreter(py);
    INTERPS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|e| e.interp == interp)
        .copied()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The request a thread is serving.
#[derive(Default)]
struct Current {
    active: bool,
    interp: usize,
    /// `mod_wsgi.request_id` (Apache's `r->log_id`); the buffer is reused request after request.
    id: Vec<u8>,
    /// The request's data dict, once made.
    data: Option<OwnedRef>,
    /// The thread's CPU times (user, system) when `request_started` was published.
    cpu_start: Option<(f64, f64)>,
    /// `mod_wsgi.script_start`: when the application was called (µs since the epoch).
    app_start_us: i64,
}

struct ThreadRecord(Mutex<Current>);

/// Every thread that has served a request, for filling `active_requests` on its first lookup.
static THREADS: Mutex<Vec<Arc<ThreadRecord>>> = Mutex::new(Vec::new());

thread_local! {
    static RECORD: Arc<ThreadRecord> = {
        let record = Arc::new(ThreadRecord(Mutex::new(Current::default())));
        lock(&THREADS).push(record.clone());
        record
    };
    /// The event objects of the interpreter of the request this thread serves.
    static SERVING: Cell<Option<&'static InterpEvents>> = const { Cell::new(None) };
}

fn serving() -> Option<&'static InterpEvents> {
    SERVING.with(Cell::get)
}

/// The request's data dict, made (and entered in `active_requests` when that is tracked) if it
/// does not exist yet; with `enter`, entered in `active_requests` even if it existed. None when
/// the record's thread serves no request.
fn ensure_data<'py>(
    py: Python<'py>,
    events: &InterpEvents,
    record: &ThreadRecord,
    enter: bool,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let (existing, id) = {
        let c = lock(&record.0);
        if !c.active || c.interp != events.interp {
            return Ok(None);
        }
        (c.data.as_ref().map(|d| d.bind(py).to_owned()), c.id.clone())
    };
    let data = match existing {
        Some(d) if !enter => return Ok(Some(d.cast_into::<PyDict>()?)),
        Some(d) => d.cast_into::<PyDict>()?,
        None => {
            let made = PyDict::new(py);
            let mut c = lock(&record.0);
            match &c.data {
                // Another thread made it meanwhile (filling active_requests).
                Some(d) => d.bind(py).to_owned().cast_into::<PyDict>()?,
                None => {
                    c.data = Some(OwnedRef::new(made.clone().into_any()));
                    made
                }
            }
        }
    };
    if events.tracking.load(Ordering::Acquire) {
        events.requests(py).set_item(latin1_str(py, &id)?, &data)?;
    }
    Ok(Some(data))
}

/// The value of `mod_wsgi.request_id` (set near the end of the variables, so looked for from
/// there); empty when there is none.
fn request_id(vars: &CgiVars) -> &[u8] {
    vars.iter()
        .rev()
        .find(|(k, _)| *k == b"mod_wsgi.request_id")
        .map_or(&[][..], |(_, v)| v)
}

/// Marks the thread as serving the request whose variables are `vars`. True when events are
/// published for it (somebody subscribed), so its I/O is timed.
pub fn begin(py: Python<'_>, vars: &CgiVars) -> bool {
    let Some(events) = lookup(py) else {
        return false;
    };
    SERVING.with(|s| s.set(Some(events)));
    let publishing = events.subscribed(py);
    RECORD.with(|record| {
        {
            let mut c = lock(&record.0);
            c.active = true;
            c.interp = events.interp;
            c.id.clear();
            c.id.extend_from_slice(request_id(vars));
        }
        if publishing || events.tracking.load(Ordering::Acquire) {
            if let Err(e) = ensure_data(py, events, record, false) {
                log_callback_error(py, &e);
            }
        }
    });
    publishing
}

/// The thread no longer serves a request: its entry leaves `active_requests`.
pub fn end(py: Python<'_>) {
    let Some(events) = SERVING.with(|s| s.take()) else {
        return;
    };
    let (data, id) = RECORD.with(|record| {
        let mut c = lock(&record.0);
        c.active = false;
        c.cpu_start = None;
        let data = c.data.take();
        let id = data.as_ref().map(|_| std::mem::take(&mut c.id));
        (data, id)
    });
    if let Some(data) = data {
        if events.tracking.load(Ordering::Acquire) {
            if let Some(Ok(key)) = id.as_deref().map(|id| latin1_str(py, id)) {
                let _ = events.requests(py).del_item(key);
            }
        }
        data.release(py);
    }
}

/// The current request's id (None when it has none) and data dict, for an event.
fn request_facts<'py>(
    py: Python<'py>,
    events: &InterpEvents,
) -> PyResult<(Option<Bound<'py, PyAny>>, Bound<'py, PyAny>)> {
    RECORD.with(|record| {
        let data = ensure_data(py, events, record, false)?;
        let id = lock(&record.0).id.clone();
        let id = if id.is_empty() {
            None
        } else {
            Some(latin1_str(py, &id)?.into_any())
        };
        Ok((
            id,
            data.map_or_else(|| py.None().into_bound(py), |d| d.into_any()),
        ))
    })
}

fn new_event<'py>(py: Python<'py>, id: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyDict>> {
    let event = PyDict::new(py);
    if let Some(id) = id {
        event.set_item("request_id", id)?;
    }
    Ok(event)
}

/// A number the environ holds as a decimal string (C's daemon fields), 0 when absent.
fn environ_number(environ: &Bound<'_, PyDict>, key: &str) -> i64 {
    environ
        .get_item(key)
        .ok()
        .flatten()
        .and_then(|v| v.extract::<String>().ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Seconds, as C reports times: `apr_time_sec` of a double.
fn seconds(us: i64) -> f64 {
    us as f64 / 1_000_000.0
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The calling thread's CPU times (user, system) in seconds.
fn thread_cpu(py: Python<'_>) -> PyResult<(f64, f64)> {
    let resource = py.import("resource")?;
    let usage = resource.call_method1("getrusage", (resource.getattr("RUSAGE_THREAD")?,))?;
    Ok((
        usage.getattr("ru_utime")?.extract()?,
        usage.getattr("ru_stime")?.extract()?,
    ))
}

/// Publishes `request_started` if anybody subscribed; returns the application to call: `app`,
/// or the `application_object` a callback returned in its place.
pub fn request_started<'py>(
    py: Python<'py>,
    app: &Bound<'py, PyAny>,
    environ: &Bound<'py, PyDict>,
) -> Bound<'py, PyAny> {
    let Some(events) = serving().filter(|e| e.subscribed(py)) else {
        return app.clone();
    };
    match publish_request_started(py, events, app, environ) {
        Ok(Some(replacement)) => replacement,
        Ok(None) => app.clone(),
        Err(e) => {
            log_callback_error(py, &e);
            app.clone()
        }
    }
}

// The publishing itself is apart from the checks every request makes (here and below): only a
// process with a subscriber runs it, so its code stays out of the other servers' pages.
#[inline(never)]
fn publish_request_started<'py>(
    py: Python<'py>,
    events: &InterpEvents,
    app: &Bound<'py, PyAny>,
    environ: &Bound<'py, PyDict>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let cpu = thread_cpu(py).ok();
    let app_start_us = environ_number(environ, "mod_wsgi.script_start");
    RECORD.with(|record| {
        let mut c = lock(&record.0);
        c.cpu_start = cpu;
        c.app_start_us = app_start_us;
    });
    let (id, data) = request_facts(py, events)?;
    let event = new_event(py, id)?;
    let thread_id = environ.get_item("mod_wsgi.thread_id")?;
    event.set_item(
        "thread_id",
        thread_id.map_or(0, |t| t.extract::<i64>().unwrap_or(0)),
    )?;
    event.set_item(
        "daemon_connects",
        environ_number(environ, "mod_wsgi.daemon_connects"),
    )?;
    event.set_item(
        "daemon_restarts",
        environ_number(environ, "mod_wsgi.daemon_restarts"),
    )?;
    for (name, key) in [
        ("request_start", "mod_wsgi.request_start"),
        ("queue_start", "mod_wsgi.queue_start"),
        ("daemon_start", "mod_wsgi.daemon_start"),
    ] {
        event.set_item(name, seconds(environ_number(environ, key)))?;
    }
    event.set_item("application_object", app)?;
    event.set_item("request_environ", environ)?;
    event.set_item("application_start", seconds(app_start_us))?;
    event.set_item("request_data", data)?;
    publish(py, events, "request_started", &event);
    Ok(event
        .get_item("application_object")?
        .filter(|replacement| !replacement.is(app)))
}

/// Publishes `response_started` (from `start_response`) if anybody subscribed.
pub fn response_started(
    py: Python<'_>,
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    exc_info: Option<&Bound<'_, PyAny>>,
) {
    let Some(events) = serving().filter(|e| e.subscribed(py)) else {
        return;
    };
    if let Err(e) = publish_response_started(py, events, status, headers, exc_info) {
        log_callback_error(py, &e);
    }
}

#[inline(never)]
fn publish_response_started(
    py: Python<'_>,
    events: &InterpEvents,
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    exc_info: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let (id, data) = request_facts(py, events)?;
    let event = new_event(py, id)?;
    event.set_item("response_status", status)?;
    event.set_item("response_headers", headers)?;
    match exc_info {
        Some(info) => event.set_item("exception_info", info)?,
        None => event.set_item("exception_info", py.None())?,
    }
    event.set_item("request_data", data)?;
    publish(py, events, "response_started", &event);
    Ok(())
}

/// Publishes `request_exception` (after the application's exception was logged) if anybody
/// subscribed.
pub fn request_exception(py: Python<'_>, err: &PyErr) {
    let Some(events) = serving().filter(|e| e.subscribed(py)) else {
        return;
    };
    let published = (|| -> PyResult<()> {
        let (id, data) = request_facts(py, events)?;
        let event = new_event(py, id)?;
        let traceback = err
            .traceback(py)
            .map_or_else(|| py.None().into_bound(py), |t| t.into_any());
        let info = PyTuple::new(
            py,
            [
                err.get_type(py).into_any(),
                err.value(py).clone().into_any(),
                traceback,
            ],
        )?;
        event.set_item("exception_info", info)?;
        event.set_item("request_data", data)?;
        publish(py, events, "request_exception", &event);
        Ok(())
    })();
    if let Err(e) = published {
        log_callback_error(py, &e);
    }
}

/// What a request read and wrote, for `request_finished`. Times are measured only when events
/// are published (`timed`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IoStats {
    pub timed: bool,
    pub input_reads: u64,
    pub input_length: u64,
    pub input_time: Duration,
    pub output_writes: u64,
    pub output_length: u64,
    pub output_time: Duration,
}

impl IoStats {
    /// The start of an I/O call, when timed.
    pub fn clock(&self) -> Option<Instant> {
        self.timed.then(Instant::now)
    }

    /// One read of the request body that returned `n` bytes.
    pub fn read(&mut self, start: Option<Instant>, n: usize) {
        self.input_reads += 1;
        self.input_length += n as u64;
        if let Some(t) = start {
            self.input_time += t.elapsed();
        }
    }

    /// One block of the response, of `n` bytes (counted whole, as C counts it, even beyond a
    /// declared Content-Length); `write` false for a file sent as such.
    pub fn wrote(&mut self, start: Option<Instant>, n: u64, write: bool) {
        self.output_writes += u64::from(write);
        self.output_length += n;
        if let Some(t) = start {
            self.output_time += t.elapsed();
        }
    }
}

/// C's split of the thread's CPU time over the application's run: the differences, never
/// negative, scaled down to the elapsed time when they exceed it.
fn cpu_split(start: (f64, f64), end: (f64, f64), application_time: f64) -> (f64, f64) {
    let mut user = (end.0 - start.0).max(0.0);
    let mut system = (end.1 - start.1).max(0.0);
    let total = user + system;
    if total > 0.0 && total > application_time {
        user = user / total * application_time;
        system = application_time - user;
    }
    (user, system)
}

/// Publishes `request_finished` if anybody subscribed; `stats` says what the request read and
/// wrote.
pub fn request_finished(py: Python<'_>, stats: impl FnOnce() -> IoStats) {
    let Some(events) = serving().filter(|e| e.subscribed(py)) else {
        return;
    };
    let finish_us = now_micros();
    if let Err(e) = publish_request_finished(py, events, stats(), finish_us) {
        log_callback_error(py, &e);
    }
}

#[inline(never)]
fn publish_request_finished(
    py: Python<'_>,
    events: &InterpEvents,
    stats: IoStats,
    finish_us: i64,
) -> PyResult<()> {
    let (cpu_start, app_start_us) = RECORD.with(|record| {
        let c = lock(&record.0);
        (c.cpu_start, c.app_start_us)
    });
    let (id, data) = request_facts(py, events)?;
    let event = new_event(py, id)?;
    event.set_item("input_reads", stats.input_reads)?;
    event.set_item("input_length", stats.input_length)?;
    event.set_item("input_time", stats.input_time.as_secs_f64())?;
    event.set_item("output_length", stats.output_length)?;
    event.set_item("output_writes", stats.output_writes)?;
    let application_time = if app_start_us > 0 {
        seconds(finish_us - app_start_us).max(0.0)
    } else {
        0.0
    };
    // C leaves the CPU times out when the thread had used none when the request started.
    if let Some(start) = cpu_start.filter(|s| s.0 != 0.0) {
        if let Ok(end) = thread_cpu(py) {
            let (user, system) = cpu_split(start, end, application_time);
            event.set_item("cpu_user_time", user)?;
            event.set_item("cpu_system_time", system)?;
        }
    }
    event.set_item("output_time", stats.output_time.as_secs_f64())?;
    event.set_item("application_finish", seconds(finish_us))?;
    event.set_item("application_time", application_time)?;
    event.set_item("request_data", data)?;
    publish(py, events, "request_finished", &event);
    Ok(())
}

/// Why the process stops, for `process_stopping` (C's `wsgi_shutdown_reason`): '' unless a
/// daemon process's timer or an eviction stops it.
static SHUTDOWN_REASON: Mutex<&str> = Mutex::new("");

/// Records why this process stops; the first reason stays.
pub fn set_shutdown_reason(reason: &'static str) {
    let mut r = lock(&SHUTDOWN_REASON);
    if r.is_empty() {
        *r = reason;
    }
}

/// Publishes `process_stopping` in the interpreter this thread is attached to, to the event
/// callbacks and then the shutdown callbacks (run at process exit, before the interpreter is
/// destroyed).
pub fn process_stopping(py: Python<'_>) {
    let Some(events) = lookup(py) else {
        return;
    };
    let reason = *lock(&SHUTDOWN_REASON);
    let event = PyDict::new(py);
    if let Err(e) = event.set_item("shutdown_reason", reason) {
        log_callback_error(py, &e);
        return;
    }
    call_callbacks(
        py,
        "process_stopping",
        &InterpEvents::list(&events.event_callbacks, py),
        &event,
    );
    call_callbacks(
        py,
        "process_stopping",
        &InterpEvents::list(&events.shutdown_callbacks, py),
        &event,
    );
}

fn publish(py: Python<'_>, events: &InterpEvents, name: &str, event: &Bound<'_, PyDict>) {
    call_callbacks(
        py,
        name,
        &InterpEvents::list(&events.event_callbacks, py),
        event,
    );
}

/// Calls each callback (including those added while calling) as `callback(name, **event)`,
/// merging a dict it returns into `event`.
fn call_callbacks(
    py: Python<'_>,
    name: &str,
    callbacks: &Bound<'_, PyList>,
    event: &Bound<'_, PyDict>,
) {
    let mut i = 0;
    while i < callbacks.len() {
        let Ok(callback) = callbacks.get_item(i) else {
            break;
        };
        i += 1;
        match callback.call((name,), Some(event)) {
            Ok(result) => {
                if let Ok(update) = result.cast::<PyDict>() {
                    if let Err(e) = event.update(update.as_mapping()) {
                        log_callback_error(py, &e);
                    }
                }
            }
            Err(e) => log_callback_error(py, &e),
        }
    }
}

/// Logs an exception raised by an event callback to the server's error log, as C does.
fn log_callback_error(py: Python<'_>, err: &PyErr) {
    let mut lines = vec![format!(
        "mod_wsgi (pid={}): Exception occurred within event callback.",
        std::process::id()
    )];
    lines.extend(super::adapter::format_exception(py, err));
    crate::python::detached(py, || {
        for line in &lines {
            super::process_log::server_log(Level::Error, line);
        }
    });
}

/// The payload of the object behind `mod_wsgi.request_data` (and the hook that makes
/// `mod_wsgi.active_requests` tracked).
struct EventsApi;

handle_method!(
    request_data,
    EventsApi,
    "request_data",
    [],
    |py, _slf, _api, _args| {
        let no_request = || PyRuntimeError::new_err("no active request for thread");
        let events = serving().ok_or_else(no_request)?;
        let data = RECORD.with(|record| ensure_data(py, events, record, false))?;
        Ok(data.ok_or_else(no_request)?.into_any())
    }
);

handle_method!(
    activate_requests,
    EventsApi,
    "_activate_requests",
    [],
    |py, _slf, _api, _args| {
        if let Some(events) = lookup(py) {
            if !events.tracking.swap(true, Ordering::AcqRel) {
                let records = lock(&THREADS).clone();
                for record in &records {
                    ensure_data(py, events, record, true)?;
                }
            }
        }
        Ok(py.None().into_bound(py))
    }
);

static EVENTS_METHODS: MethodTable<3> = MethodTable([
    py_method!(c"request_data", request_data),
    py_method!(c"_activate_requests", activate_requests),
    METHOD_TABLE_END,
]);

/// Adds the event API to the `mod_wsgi` module of the interpreter this thread is attached to
/// (once the module is in `sys.modules`).
pub fn install(py: Python<'_>) -> PyResult<()> {
    let mod_wsgi = sys_modules(py)?
        .get_item("mod_wsgi")?
        .ok_or_else(|| PyRuntimeError::new_err("mod_wsgi module missing"))?;
    let namespace = PyDict::new(py);
    namespace.set_item("__name__", "mod_wsgi")?;
    let source = std::ffi::CString::new(include_str!("events.py")).expect("no NUL in our sources");
    py.run(&source, Some(&namespace), None)?;
    let handle = new_capsule(py, Arc::new(EventsApi))?;
    let active_requests = PyDict::new(py);
    // Taken out of the namespace, which the functions it installs keep as their globals.
    let install_api = namespace
        .get_item("install")?
        .expect("defined by events.py");
    namespace.del_item("install")?;
    install_api.call1((
        &mod_wsgi,
        &active_requests,
        bound_function(&handle, EVENTS_METHODS.get(c"_activate_requests"))?,
        bound_function(&handle, EVENTS_METHODS.get(c"request_data"))?,
    ))?;
    let events = InterpEvents {
        interp: current_interpreter(py),
        event_callbacks: OwnedRef::new(mod_wsgi.getattr("event_callbacks")?),
        shutdown_callbacks: OwnedRef::new(mod_wsgi.getattr("shutdown_callbacks")?),
        active_requests: OwnedRef::new(active_requests.into_any()),
        tracking: AtomicBool::new(false),
    };
    INTERPS
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push(Box::leak(Box::new(events)));
    crate::python::runtime::set_stopping_hook(process_stopping);
    Ok(())
}

/// Drops our references to the event objects of the interpreter this thread is attached to,
/// just before it is destroyed.
pub fn release(py: Python<'_>) {
    let interp = current_interpreter(py);
    let found = {
        let mut all = INTERPS.write().unwrap_or_else(|p| p.into_inner());
        let at = all.iter().position(|e| e.interp == interp);
        at.map(|at| all.remove(at))
    };
    if let Some(e) = found {
        for r in [
            &e.event_callbacks,
            &e.shutdown_callbacks,
            &e.active_requests,
        ] {
            r.release(py);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_are_differences_never_negative() {
        let (u, s) = cpu_split((1.0, 2.0), (1.25, 1.5), 10.0);
        assert_eq!((u, s), (0.25, 0.0));
    }

    #[test]
    fn cpu_times_are_scaled_to_the_elapsed_time() {
        // 3 s of CPU over 1.5 s of application time: user keeps its share (2/3).
        let (u, s) = cpu_split((0.0, 0.0), (2.0, 1.0), 1.5);
        assert!((u - 1.0).abs() < 1e-9, "{u}");
        assert!((s - 0.5).abs() < 1e-9, "{s}");
    }

    #[test]
    fn request_id_is_found_from_the_end() {
        let vars = CgiVars::from_iter(vec![
            (b"REQUEST_METHOD".to_vec(), b"GET".to_vec()),
            (b"mod_wsgi.request_id".to_vec(), b"abc".to_vec()),
            (b"mod_wsgi.connection_id".to_vec(), b"def".to_vec()),
        ]);
        assert_eq!(request_id(&vars), b"abc");
        assert_eq!(request_id(&CgiVars::default()), b"");
    }

    #[test]
    fn io_stats_count_whole_blocks_and_time_only_when_asked() {
        let mut s = IoStats::default();
        assert!(s.clock().is_none());
        s.wrote(s.clock(), 10, true);
        s.wrote(None, 5, false);
        s.read(None, 7);
        assert_eq!(
            (
                s.output_writes,
                s.output_length,
                s.input_reads,
                s.input_length
            ),
            (1, 15, 1, 7)
        );
        assert_eq!(s.output_time, Duration::ZERO);
        s.timed = true;
        assert!(s.clock().is_some());
    }

    #[test]
    fn the_first_shutdown_reason_stays() {
        set_shutdown_reason("inactivity_timeout");
        set_shutdown_reason("request_timeout");
        assert_eq!(*lock(&SHUTDOWN_REASON), "inactivity_timeout");
    }
}
