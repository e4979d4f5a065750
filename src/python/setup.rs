//! What an interpreter (the main one, or an application group's) needs before it serves
//! requests, and what it runs before it is destroyed.

use super::objects::{unbound_function, MethodTable, METHOD_TABLE_END};
use super::restrict::{is_restricted, Restrictions};
use super::runtime::PythonSettings;
use pyo3::exceptions::PyAttributeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::time::Instant;

/// Puts the `WSGIPythonPath` directories (as site directories, so their `.pth` files are
/// honoured) at the front of `sys.path`, runs the caller's own preparation, then applies the
/// `WSGIRestrict*` settings. Runs attached to the new interpreter, on the thread that will
/// destroy it (or finalise Python).
pub fn prepare_interpreter(
    py: Python<'_>,
    settings: &PythonSettings,
    prepare: impl FnOnce(Python<'_>) -> PyResult<()>,
) -> Result<(), String> {
    let describe = |e: PyErr| format!("cannot prepare the Python interpreter: {e}");
    // `threading` records the thread that first imports it as the main thread, and at
    // finalisation waits for that thread's state to go away. Importing it here, on the thread
    // that will finalise, keeps an import from a request thread from hanging the child's exit.
    py.import("threading").map_err(describe)?;
    py.import("atexit")
        .and_then(|atexit| atexit.call_method1("register", (forget_dummy_thread_function(py)?,)))
        .map_err(describe)?;
    add_site_directories(py, &settings.path).map_err(describe)?;
    // The caller's preparation installs the error-log streams; restrictions go over them.
    prepare(py).map_err(describe)?;
    apply_restrictions(py, settings).map_err(describe)
}

/// `WSGIRestrictStdin`, `WSGIRestrictStdout` and `WSGIRestrictSignal`, for one interpreter.
fn apply_restrictions(py: Python<'_>, settings: &PythonSettings) -> PyResult<()> {
    if !(settings.restrict_stdin || settings.restrict_stdout || settings.restrict_signal) {
        return Ok(());
    }
    let restrictions = Restrictions::load(py)?;
    if settings.restrict_stdin {
        restrictions.restrict_stream("stdin")?;
    }
    if settings.restrict_stdout {
        restrict_stdout(&restrictions)?;
    }
    if settings.restrict_signal {
        restrictions.intercept_signals(settings.log_warning)?;
    }
    Ok(())
}

/// `WSGIRestrictStdout On`: any use of `sys.stdout` (so `print()`) raises OSError. With Off,
/// `sys.stdout` is left as it is.
fn restrict_stdout(restrictions: &Restrictions<'_>) -> PyResult<()> {
    restrictions.restrict_stream("stdout")
}

/// Runs just before an interpreter is destroyed. CPython flushes `sys.stdout` as it finalises, which on a
/// restricted stdout would log an "Exception ignored" traceback (C mod_wsgi does); stdout is
/// pointed at `sys.stderr` (the error log) first.
pub fn before_finalize(py: Python<'_>) {
    let restore = || -> PyResult<()> {
        let sys = py.import("sys")?;
        if is_restricted(&sys.getattr("stdout")?) {
            sys.setattr("stdout", sys.getattr("stderr")?)?;
        }
        Ok(())
    };
    if let Err(e) = restore() {
        e.print(py);
    }
}

/// The application's threads still running in an interpreter, by name.
#[derive(Debug, Default)]
pub struct Running {
    pub non_daemon: Vec<String>,
    pub daemon: Vec<String>,
}

impl Running {
    /// Every thread, daemon ones marked so.
    pub fn all(&self) -> Vec<String> {
        self.non_daemon
            .iter()
            .map(|n| format!("'{n}'"))
            .chain(self.daemon.iter().map(|n| format!("'{n}' (daemon)")))
            .collect()
    }
}

/// Registered as an interpreter's first atexit callback, so it runs last. Python 3.13 keeps the
/// `_DummyThread` of a thread it did not start (here: the thread that destroys the interpreter,
/// which in 3.13 is not the interpreter's `threading.main_thread()`) until that thread's state is
/// cleared, which for the destroying thread is after the modules are gone, and then logs an
/// "Exception ignored" traceback: let it go while the modules are still there. In Rust rather
/// than in shutdown.py so that the interpreter does not keep that source's functions (9 KB) for
/// its life.
unsafe fn forget_current_dummy_thread(
    py: Python<'_>,
    _slf: *mut ffi::PyObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    super::method::guarded(|| {
        let threading = super::objects::sys_modules(py)?.get_item("threading")?;
        if let Some(info) = threading.and_then(|t| t.getattr("_thread_local_info").ok()) {
            match info.delattr("_track_dummy_thread_ref") {
                Err(e) if !e.is_instance_of::<PyAttributeError>(py) => return Err(e),
                _ => {}
            }
        }
        Ok(py.None().into_ptr())
    })
}

static FORGET_DUMMY_THREAD: MethodTable<2> = MethodTable([
    crate::py_method!(c"forget_current_dummy_thread", forget_current_dummy_thread),
    METHOD_TABLE_END,
]);

fn forget_dummy_thread_function(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    unbound_function(py, FORGET_DUMMY_THREAD.get(c"forget_current_dummy_thread"))
}

/// shutdown.py, run in the attached interpreter.
fn shutdown_helpers(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__name__", "mod_wsgi")?;
    let source = std::ffi::CString::new(include_str!("shutdown.py")).expect("no NUL");
    py.run(&source, Some(&namespace), None)?;
    Ok(namespace)
}

/// Waits, until `deadline` at most, for the non-daemon threads the application started in the
/// attached interpreter to end (Python would wait for ever); returns those still running.
pub fn join_threads(py: Python<'_>, deadline: Instant) -> Running {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64();
    let joined = shutdown_helpers(py).and_then(|h| {
        h.get_item("join_threads")?
            .expect("defined by shutdown.py")
            .call1((timeout,))?
            .extract::<(Vec<String>, Vec<String>)>()
    });
    match joined {
        Ok((non_daemon, daemon)) => Running { non_daemon, daemon },
        Err(e) => {
            e.print(py);
            Running::default()
        }
    }
}

/// Runs the attached interpreter's `atexit` callbacks and flushes its standard streams, for an
/// interpreter that will not be destroyed (destroying it would run them).
pub fn run_exit_callbacks(py: Python<'_>) {
    let ran = shutdown_helpers(py).and_then(|h| {
        h.get_item("run_exit_callbacks")?
            .expect("defined by shutdown.py")
            .call0()
    });
    if let Err(e) = ran {
        e.print(py);
    }
}

fn add_site_directories(py: Python<'_>, dirs: &[String]) -> PyResult<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    let before: Vec<String> = sys_path.extract()?;
    let site = py.import("site")?;
    for dir in dirs {
        // C's info line, for whoever wonders where an import came from.
        let line = format!(
            "mod_wsgi (pid={}): Adding '{dir}' to path.",
            std::process::id()
        );
        py.detach(|| super::runtime::log_info(&line));
        site.call_method1("addsitedir", (dir,))?;
    }
    let now: Vec<String> = sys_path.extract()?;
    let mut front: Vec<String> = now
        .iter()
        .filter(|p| !before.contains(p))
        .cloned()
        .collect();
    // A directory already on sys.path is still moved to the front, as asked, in the absolute
    // form addsitedir gives it (a relative one would otherwise be there twice).
    let abspath = py.import("os")?.getattr("path")?.getattr("abspath")?;
    for dir in dirs {
        let dir: String = abspath.call1((dir,))?.extract()?;
        if !front.contains(&dir) {
            front.push(dir);
        }
    }
    let rest: Vec<String> = before.into_iter().filter(|p| !front.contains(p)).collect();
    let new_path: Vec<String> = front.into_iter().chain(rest).collect();
    sys_path.call_method1("clear", ())?;
    for p in new_path {
        sys_path.append(p)?;
    }
    Ok(())
}
