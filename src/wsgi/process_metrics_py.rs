//! `mod_wsgi.process_metrics()` and `mod_wsgi.request_metrics()`: the dicts C mod_wsgi 4.9.4
//! returns (same keys, in the same order, same types), built from the accounting of
//! `process_metrics`.

use super::process_metrics::{self as pm, Report, BUCKETS};
use crate::python::objects::METHOD_TABLE_END;
use crate::python::objects::{bound_function, new_capsule, MethodTable};
use crate::{handle_method, py_method};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule};
use std::sync::Arc;

/// What the functions need to know about the process.
struct ProcessInfo {
    /// A daemon process (queue and daemon times are measured only there).
    daemon: bool,
    /// The request threads a process can have: the group's `threads=`, or Apache's
    /// `ThreadsPerChild` (1 without a threaded MPM).
    threads_maximum: usize,
}

/// The process's user and system CPU seconds, as C mod_wsgi reads them (`times()`).
fn cpu_times(py: Python<'_>) -> PyResult<(f64, f64)> {
    let t = py.import("os")?.call_method0("times")?;
    Ok((
        t.getattr("user")?.extract()?,
        t.getattr("system")?.extract()?,
    ))
}

fn set_memory(d: &Bound<'_, PyDict>) -> PyResult<()> {
    let (rss, peak) = pm::memory_rss();
    d.set_item("memory_max_rss", peak)?;
    d.set_item("memory_rss", rss)
}

fn process_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let now = pm::now_us();
    let f = pm::process_figures(now);
    let d = PyDict::new(py);
    d.set_item("pid", std::process::id())?;
    d.set_item("request_busy_time", f.busy)?;
    d.set_item("request_count", f.requests)?;
    set_memory(&d)?;
    let (user, system) = cpu_times(py)?;
    d.set_item("cpu_user_time", user)?;
    d.set_item("cpu_system_time", system)?;
    let start = pm::process_start();
    d.set_item("restart_time", pm::seconds(start))?;
    d.set_item("current_time", pm::seconds(now))?;
    d.set_item("running_time", pm::seconds(now - start) as u32)?;
    d.set_item("request_threads", f.threads.len())?;
    d.set_item("active_requests", f.active)?;
    let threads = PyList::empty(py);
    for (id, requests) in f.threads {
        let t = PyDict::new(py);
        t.set_item("thread_id", id)?;
        t.set_item("request_count", requests)?;
        threads.append(t)?;
    }
    d.set_item("threads", threads)?;
    Ok(d)
}

fn report_dict<'py>(py: Python<'py>, r: &Report) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("pid", std::process::id())?;
    d.set_item("start_time", r.start_time)?;
    d.set_item("stop_time", r.stop_time)?;
    d.set_item("sample_period", r.sample_period)?;
    d.set_item("cpu_user_time", r.cpu_user_time)?;
    d.set_item("cpu_system_time", r.cpu_system_time)?;
    set_memory(&d)?;
    d.set_item("request_threads_maximum", r.request_threads_maximum)?;
    d.set_item("request_threads_started", r.request_threads_started)?;
    d.set_item("capacity_utilization", r.capacity_utilization)?;
    d.set_item("request_count", r.request_count)?;
    d.set_item("request_throughput", r.request_throughput)?;
    let names = [
        "server_time_buckets",
        "queue_time_buckets",
        "daemon_time_buckets",
        "application_time_buckets",
    ];
    for (name, buckets) in names.into_iter().zip(&r.buckets) {
        d.set_item(name, PyList::new(py, &buckets[..BUCKETS])?)?;
    }
    d.set_item(
        "request_threads_buckets",
        PyList::new(py, &r.request_threads_buckets)?,
    )?;
    d.set_item("request_threads_active", r.request_threads_active)?;
    d.set_item("server_time", r.server_time)?;
    d.set_item("queue_time", r.queue_time)?;
    d.set_item("daemon_time", r.daemon_time)?;
    d.set_item("application_time", r.application_time)?;
    Ok(d)
}

handle_method!(
    process_metrics,
    ProcessInfo,
    "process_metrics",
    [],
    |py, _slf, _info, _args| Ok(process_dict(py)?.into_any())
);

handle_method!(
    request_metrics,
    ProcessInfo,
    "request_metrics",
    [],
    |py, _slf, info, _args| {
        let (user, system) = cpu_times(py)?;
        let report = pm::sample(
            pm::now_us(),
            user,
            system,
            info.daemon,
            info.threads_maximum,
        );
        // The first call starts sampling and returns an empty dict, as C's does.
        Ok(match report {
            Some(r) => report_dict(py, &r)?,
            None => PyDict::new(py),
        }
        .into_any())
    }
);

static METHODS: MethodTable<3> = MethodTable([
    py_method!(c"process_metrics", process_metrics),
    py_method!(c"request_metrics", request_metrics),
    METHOD_TABLE_END,
]);

/// Adds `process_metrics` and `request_metrics` to the `mod_wsgi` module of the interpreter this
/// thread is attached to. The first call
/// in a process, when Python starts, marks the time it started serving (`restart_time`).
pub fn add_functions(
    py: Python<'_>,
    module: &Bound<'_, PyModule>,
    daemon: bool,
    threads_maximum: i32,
) -> PyResult<()> {
    pm::process_start();
    let info = ProcessInfo {
        daemon,
        threads_maximum: threads_maximum.max(1) as usize,
    };
    let handle = new_capsule(py, Arc::new(info))?;
    for name in [c"process_metrics", c"request_metrics"] {
        let f = bound_function(&handle, METHODS.get(name))?;
        module.setattr(name.to_str().expect("ASCII"), f)?;
    }
    Ok(())
}
