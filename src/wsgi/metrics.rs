//! `mod_wsgi.server_metrics()`: a copy of Apache's scoreboard as C mod_wsgi 4.9.4 returns it (a
//! dict of the global record with a list of processes, each with a list of workers), or None
//! when metrics are off (`WSGIServerMetrics Off` in Apache's children, where they are on by
//! default as in C; a daemon group without `server-metrics=On`) or there is no scoreboard.
//! The scoreboard is read by the server layer into a [`ServerMetrics`] snapshot; this module
//! only turns that into Python objects.

use crate::python::objects::{
    bound_function, latin1_str, new_capsule, MethodTable, METHOD_TABLE_END,
};
use crate::{handle_method, py_method};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::Arc;

/// Reads the scoreboard now; None when this process has none.
pub type ScoreboardReader = fn() -> Option<ServerMetrics>;

/// Apache's scoreboard at one moment. Times are microseconds since the epoch (`apr_time_t`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerMetrics {
    pub server_limit: i32,
    pub thread_limit: i32,
    pub running_generation: i32,
    pub restart_time: i64,
    pub current_time: i64,
    pub processes: Vec<ProcessMetrics>,
}

/// One process slot of the scoreboard (used or not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessMetrics {
    pub process_num: i32,
    pub pid: i32,
    pub generation: i32,
    pub quiescing: bool,
    pub workers: Vec<WorkerMetrics>,
}

/// One worker (thread) slot of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerMetrics {
    pub thread_num: i32,
    pub generation: i32,
    /// Apache's `SERVER_*` status number.
    pub status: u8,
    pub access_count: u64,
    pub bytes_served: u64,
    pub start_time: i64,
    pub stop_time: i64,
    pub last_used: i64,
    /// Latin-1 text, as Apache stores it (up to its first NUL).
    pub client: Vec<u8>,
    pub request: Vec<u8>,
    pub vhost: Vec<u8>,
}

/// The one-letter code of a worker status, as in mod_status's scoreboard key (and C
/// mod_wsgi's `status` values), indexed by scoreboard.h's `SERVER_*` numbers: `SERVER_DEAD` (0)
/// is `.`, `SERVER_STARTING` (1) `S`, `SERVER_READY` (2) `_`, and so on.
pub fn status_code(status: u8) -> &'static str {
    const CODES: [&str; 11] = [".", "S", "_", "R", "W", "K", "L", "D", "C", "G", "I"];
    CODES.get(status as usize).copied().unwrap_or("?")
}

/// Seconds as C mod_wsgi reports times: a float.
fn seconds(us: i64) -> f64 {
    us as f64 / 1_000_000.0
}

/// Whole seconds the server has been running since its last restart (C truncates to 32 bits).
pub fn running_time(m: &ServerMetrics) -> u32 {
    seconds(m.current_time - m.restart_time) as u32
}

fn worker_dict<'py>(py: Python<'py>, w: &WorkerMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("thread_num", w.thread_num)?;
    d.set_item("generation", w.generation)?;
    d.set_item("status", status_code(w.status))?;
    d.set_item("access_count", w.access_count)?;
    d.set_item("bytes_served", w.bytes_served)?;
    d.set_item("start_time", seconds(w.start_time))?;
    d.set_item("stop_time", seconds(w.stop_time))?;
    d.set_item("last_used", seconds(w.last_used))?;
    d.set_item("client", latin1_str(py, &w.client)?)?;
    d.set_item("request", latin1_str(py, &w.request)?)?;
    d.set_item("vhost", latin1_str(py, &w.vhost)?)?;
    Ok(d)
}

fn process_dict<'py>(py: Python<'py>, p: &ProcessMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("process_num", p.process_num)?;
    d.set_item("pid", p.pid)?;
    d.set_item("generation", p.generation)?;
    d.set_item("quiescing", p.quiescing)?;
    let workers = PyList::empty(py);
    for w in &p.workers {
        workers.append(worker_dict(py, w)?)?;
    }
    d.set_item("workers", workers)?;
    Ok(d)
}

/// The dict `mod_wsgi.server_metrics()` returns, with C mod_wsgi's keys and types.
pub fn to_dict<'py>(py: Python<'py>, m: &ServerMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("server_limit", m.server_limit)?;
    d.set_item("thread_limit", m.thread_limit)?;
    d.set_item("running_generation", m.running_generation)?;
    d.set_item("restart_time", seconds(m.restart_time))?;
    d.set_item("current_time", seconds(m.current_time))?;
    d.set_item("running_time", running_time(m))?;
    let processes = PyList::empty(py);
    for p in &m.processes {
        processes.append(process_dict(py, p)?)?;
    }
    d.set_item("processes", processes)?;
    Ok(d)
}

/// The payload of the object behind `mod_wsgi.server_metrics`: how to read the scoreboard,
/// None when metrics are off for this process.
struct MetricsSource(Option<ScoreboardReader>);

handle_method!(
    server_metrics,
    MetricsSource,
    "server_metrics",
    [],
    |py, _slf, source, _args| {
        match source.0.and_then(|read| read()) {
            Some(m) => Ok(to_dict(py, &m)?.into_any()),
            None => Ok(py.None().into_bound(py)),
        }
    }
);

static METRICS_METHODS: MethodTable<2> = MethodTable([
    py_method!(c"server_metrics", server_metrics),
    METHOD_TABLE_END,
]);

/// `mod_wsgi.server_metrics` for the interpreter this thread is attached to.
pub fn server_metrics_function(
    py: Python<'_>,
    reader: Option<ScoreboardReader>,
) -> PyResult<Bound<'_, PyAny>> {
    let handle = new_capsule(py, Arc::new(MetricsSource(reader)))?;
    bound_function(&handle, METRICS_METHODS.get(c"server_metrics"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_follow_mod_status() {
        assert_eq!(status_code(0), ".");
        assert_eq!(status_code(1), "S");
        assert_eq!(status_code(2), "_");
        assert_eq!(status_code(4), "W");
        assert_eq!(status_code(10), "I");
        assert_eq!(status_code(11), "?");
    }

    #[test]
    fn running_time_is_whole_seconds_since_the_restart() {
        let m = ServerMetrics {
            restart_time: 1_000_000,
            current_time: 3_999_999,
            ..ServerMetrics::default()
        };
        assert_eq!(running_time(&m), 2);
    }
}
