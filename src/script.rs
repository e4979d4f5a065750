//! A `.wsgi` file as a Python module: named `_mod_wsgi_<md5 of its path>` in the `sys.modules` of
//! the interpreter (application group) it runs in, loaded on first use and loaded afresh when its
//! modification time changes. The same script in two groups is two modules, loaded separately.

use crate::python::detached;
use crate::python::objects::{compile_module_source, exec_module_code, sys_modules};
use crate::wsgi::interp::Names;
use pyo3::prelude::*;
use pyo3::types::PyModule;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Why no application could be had from a script.
pub enum LoadError {
    /// The script could not be read or compiled.
    Unreadable(PyErr),
    /// Running the script's code (or looking up the callable) failed.
    Failed(PyErr),
    /// The script ran but has no attribute of the callable's name.
    NoCallable,
}

impl LoadError {
    /// The exception of a script that could not be read, compiled or run.
    fn into_exception(self) -> PyErr {
        match self {
            LoadError::Unreadable(err) | LoadError::Failed(err) => err,
            LoadError::NoCallable => {
                pyo3::exceptions::PyAttributeError::new_err("no WSGI application in the script")
            }
        }
    }

    /// The lines C mod_wsgi logs for a script that could not be read, compiled or run (path
    /// `path`): which of those failed, then the exception and its traceback. Empty for
    /// `NoCallable`, which has a line of its own.
    pub fn report(&self, py: Python<'_>, path: &str) -> Vec<String> {
        let (what, err) = match self {
            LoadError::Unreadable(err) => {
                let objects = crate::wsgi::interp::objects(py);
                let what = format!(
                    "mod_wsgi (pid={}, process='{}', application='{}'): Could not read/compile \
                     source file '{path}'.",
                    std::process::id(),
                    objects.process_group,
                    objects.group
                );
                (what, err)
            }
            LoadError::Failed(err) => {
                let what = if err.is_instance_of::<pyo3::exceptions::PySystemExit>(py) {
                    "SystemExit exception raised when doing exec of"
                } else {
                    "Failed to exec"
                };
                let what = format!(
                    "mod_wsgi (pid={}): {what} Python script file '{path}'.",
                    std::process::id()
                );
                (what, err)
            }
            LoadError::NoCallable => return Vec::new(),
        };
        let mut lines = vec![
            what,
            crate::wsgi::adapter::exception_headline(py, err, path),
        ];
        lines.extend(crate::wsgi::adapter::exception_report(py, err));
        lines
    }
}

/// Module names by script path, so the digest is computed once per script. A list: a process
/// serves a handful of scripts, and a hash map would bring its hashing and random keys (3 KB of
/// code) into every request's path.
static MODULE_NAMES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn module_names() -> MutexGuard<'static, Vec<(String, String)>> {
    MODULE_NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn module_name(path: &str) -> String {
    if let Some((_, name)) = module_names().iter().find(|(p, _)| p == path) {
        return name.clone();
    }
    // On a file system that ignores case, `/srv/App.wsgi` and `/srv/app.wsgi` are one script
    // and must be one module.
    let digest = if crate::python::runtime::case_sensitive_paths() {
        crate::md5::hex_digest(path.as_bytes())
    } else {
        crate::md5::hex_digest(path.to_ascii_lowercase().as_bytes())
    };
    // Not format!(): see note_loading.
    let name = ["_mod_wsgi_", &digest].concat();
    let mut names = module_names();
    if !names.iter().any(|(p, _)| p == path) {
        names.push((path.to_string(), name.clone()));
    }
    name
}

/// The module registered for a script, if any.
fn registered<'py>(py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    sys_modules(py)?.get_item(name)
}

/// The modification time a module was loaded from; None while another thread is still running
/// the script (`__mtime__` is set only once it has run to completion).
fn loaded_mtime(py: Python<'_>, module: &Bound<'_, PyAny>) -> Option<i64> {
    let mtime_name = Names::get(py, &crate::wsgi::interp::objects(py).names.mtime);
    module.getattr(mtime_name).and_then(|m| m.extract()).ok()
}

/// Whether `module` was loaded completely from the script as it is now (modification time
/// `mtime`), or may be used as it is because reloading is off.
fn is_current(py: Python<'_>, module: &Bound<'_, PyAny>, mtime: i64, reloading: bool) -> bool {
    loaded_mtime(py, module).is_some_and(|loaded| !reloading || loaded == mtime)
}

/// Whether the script's own `reload_required(resource)` asks for a reload. An exception there is
/// handed to `report` and means no.
fn reload_requested(
    py: Python<'_>,
    module: &Bound<'_, PyAny>,
    resource: &str,
    report: &dyn Fn(Python<'_>, &PyErr),
) -> bool {
    // A lookup in the module's dict, not getattr: most scripts have no such function, and a
    // failed getattr would build an AttributeError on every request.
    let Ok(module) = module.cast::<PyModule>() else {
        return false;
    };
    let name = Names::get(py, &crate::wsgi::interp::objects(py).names.reload_required);
    let hook = match module.dict().get_item(name) {
        Ok(Some(hook)) => hook,
        Ok(None) => return false,
        Err(e) => {
            report(py, &e);
            return false;
        }
    };
    match hook
        .call1((resource,))
        .and_then(|answer| answer.is_truthy())
    {
        Ok(reload) => reload,
        Err(e) => {
            report(py, &e);
            false
        }
    }
}

/// Runs the script's code in a new module registered as `name`; on failure nothing stays
/// registered, so the next request tries again.
fn load_module<'py>(
    py: Python<'py>,
    name: &str,
    path: &str,
    mtime: i64,
) -> Result<Bound<'py, PyAny>, LoadError> {
    // The script runs on the request thread's stack below this frame, as deep as everything it
    // imports goes, and a thread keeps each page of stack it touched: the work around the run
    // is in functions of their own, and the code runs without a call through `exec()`.
    let code = compiled_script(py, path)?;
    let module = registered_module(py, name, path).map_err(LoadError::Failed)?;
    let ran = exec_module_code(py, &code, &module.dict())
        .and_then(|()| module.setattr("__mtime__", mtime));
    if let Err(e) = ran {
        if let Ok(modules) = sys_modules(py) {
            let _ = modules.del_item(name);
        }
        return Err(LoadError::Failed(e));
    }
    Ok(module.into_any())
}

/// A new module for the script at `path`, registered in `sys.modules` as `name`.
#[inline(never)]
fn registered_module<'py>(
    py: Python<'py>,
    name: &str,
    path: &str,
) -> PyResult<Bound<'py, PyModule>> {
    let module = PyModule::new(py, name)?;
    module.setattr("__file__", path)?;
    describe_origin(py, &module, name, path);
    sys_modules(py)?.set_item(name, &module)?;
    Ok(module)
}

/// The script at `path`, read and compiled. Apart from [`load_module`], so that neither its
/// source nor this work's frame stays on the stack, or in memory, while the script runs.
#[inline(never)]
fn compiled_script<'py>(py: Python<'py>, path: &str) -> Result<Bound<'py, PyAny>, LoadError> {
    let source = std::fs::read(path).map_err(|e| LoadError::Unreadable(os_error(py, &e, path)))?;
    compile_module_source(py, &source, path).map_err(LoadError::Unreadable)
}

/// The Python exception for a failure to read `path`, as `open()` would raise it
/// (`PermissionError: [Errno 13] Permission denied: '/srv/app.wsgi'`).
fn os_error(py: Python<'_>, err: &std::io::Error, path: &str) -> PyErr {
    let Some(errno) = err.raw_os_error() else {
        return PyErr::from(std::io::Error::new(err.kind(), err.to_string()));
    };
    // OSError(errno, strerror, filename) is made the subclass the errno calls for.
    let made = py
        .import("os")
        .and_then(|os| os.call_method1("strerror", (errno,)))
        .and_then(|text| {
            py.get_type::<pyo3::exceptions::PyOSError>()
                .call1((errno, text, path))
        });
    match made {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    }
}

/// Gives the script's module what an imported module has (`__spec__`, `__loader__` for its file,
/// `__cached__` None), as CPython's `PyImport_ExecCodeModuleEx` does for C mod_wsgi, so that
/// `pkgutil.get_data(__name__, …)` and `inspect.getsource` work. Not worth failing the load
/// over (C does not either).
fn describe_origin(py: Python<'_>, module: &Bound<'_, PyModule>, name: &str, path: &str) {
    let _ = py
        .import("_frozen_importlib_external")
        .and_then(|external| external.call_method1("_fix_up_module", (module.dict(), name, path)));
}

/// Holds the attached interpreter's load lock without holding the GIL while waiting for it.
fn lock_loading(py: Python<'_>) -> MutexGuard<'static, ()> {
    let lock = &crate::wsgi::interp::objects(py).load_lock;
    loop {
        match lock.try_lock() {
            Ok(guard) => return guard,
            // A load that panicked left nothing half-registered (see load_module): carry on.
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
        // Wait for the current holder with the GIL released (it may need the GIL to finish).
        detached(py, || drop(lock.lock()));
    }
}

/// The WSGI application `callable` of the script at `path` (modification time `mtime`, in
/// microseconds), loading or reloading the script as needed. With `reloading` on, a changed
/// modification time or the script's own `reload_required(resource)` returning true reloads it
/// (`resource` is the file the request maps to, the script itself unless a handler script
/// serves it; None, for the access and authentication hooks, does not ask the script, as in C);
/// an exception raised by `reload_required` goes to `report`.
pub fn load_application<'py>(
    py: Python<'py>,
    path: &str,
    resource: Option<&str>,
    mtime: i64,
    reloading: bool,
    callable: &str,
    report: &dyn Fn(Python<'_>, &PyErr),
) -> Result<Bound<'py, PyAny>, LoadError> {
    let name = module_name(path);
    let found = registered(py, &name).map_err(LoadError::Failed)?;
    // A complete module that must be reloaded; one still being loaded by another thread is
    // waited for instead (below, under the load lock).
    let mut stale = None;
    if let Some(m) = found {
        if is_current(py, &m, mtime, reloading)
            && !(reloading && resource.is_some_and(|r| reload_requested(py, &m, r, report)))
        {
            return callable_of(py, &m, callable);
        }
        if loaded_mtime(py, &m).is_some() {
            stale = Some(m);
        }
    }
    let _guard = lock_loading(py);
    // Another thread may have loaded it while this one waited; the module judged stale above is
    // not taken again, whatever its modification time says.
    let module = match registered(py, &name).map_err(LoadError::Failed)? {
        Some(m) if !stale.is_some_and(|s| s.is(&m)) && is_current(py, &m, mtime, reloading) => m,
        existing => {
            note_loading(py, path, existing.is_some());
            load_module(py, &name, path, mtime)?
        }
    };
    callable_of(py, &module, callable)
}

/// The info-level line C mod_wsgi logs as it loads a script (`again`: in place of the module
/// loaded before), which operators look for when a script reloads.
fn note_loading(py: Python<'_>, path: &str, again: bool) {
    let objects = crate::wsgi::interp::objects(py);
    let what = if again {
        "Reloading WSGI script '"
    } else {
        "Loading Python script file '"
    };
    // Joined rather than format!(): nothing else a serving process runs formats, so this keeps
    // the formatting machinery (5 KB of code) out of the pages every Apache process maps.
    let line = [
        "mod_wsgi (pid=",
        &std::process::id().to_string(),
        ", process='",
        &objects.process_group,
        "', application='",
        &objects.group,
        "'): ",
        what,
        path,
        "'.",
    ]
    .concat();
    crate::wsgi::process_log::log(py, crate::wsgi::Level::Info, &line);
}

/// Whether the script at `path` was loaded completely into the attached interpreter and has
/// changed since (its modification time is no longer `mtime`, or its
/// `reload_required(resource)` says so). A daemon process answers this by having itself
/// replaced rather than reloading the module in place, as C mod_wsgi does, so no state of the
/// old code survives.
pub fn script_changed(
    py: Python<'_>,
    path: &str,
    resource: &str,
    mtime: i64,
    report: &dyn Fn(Python<'_>, &PyErr),
) -> bool {
    let Ok(Some(module)) = registered(py, &module_name(path)) else {
        return false;
    };
    match loaded_mtime(py, &module) {
        Some(loaded) => loaded != mtime || reload_requested(py, &module, resource, report),
        None => false,
    }
}

/// The application object `callable` of a loaded script module.
fn callable_of<'py>(
    py: Python<'py>,
    module: &Bound<'py, PyAny>,
    callable: &str,
) -> Result<Bound<'py, PyAny>, LoadError> {
    match module.getattr(callable) {
        Ok(app) => Ok(app),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {
            Err(LoadError::NoCallable)
        }
        Err(e) => Err(LoadError::Failed(e)),
    }
}

/// A file's modification time in microseconds, as Apache's `apr_time_t` that requests compare
/// against.
pub fn modification_time(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime() * 1_000_000 + meta.mtime_nsec() / 1_000
}

/// [`modification_time`] of the file at `path`, 0 if it cannot be read (which then fails to
/// load and is logged). Not inlined: a file's metadata is 150 bytes that would otherwise sit in
/// the caller's frame, on the stack below which the application then runs.
#[inline(never)]
pub fn file_modification_time(path: &str) -> i64 {
    std::fs::metadata(path).map_or(0, |m| modification_time(&m))
}

/// What importing a script at process start did.
#[derive(Debug, PartialEq, Eq)]
pub enum Preloaded {
    Loaded,
    /// Already loaded from the file as it is (named twice, or by an alias and a directive).
    AlreadyCurrent,
    /// The path is a directory (a `WSGIScriptAlias` to a directory of scripts): nothing to load.
    Directory,
}

/// Imports the script at `path` into the attached interpreter before any request needs it
/// (`WSGIImportScript`), as the module its requests will use.
pub fn preload(py: Python<'_>, path: &str) -> PyResult<Preloaded> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Ok(Preloaded::Directory);
    }
    let mtime = modification_time(&meta);
    let name = module_name(path);
    let _guard = lock_loading(py);
    let existing = registered(py, &name)?;
    if existing
        .as_ref()
        .is_some_and(|m| is_current(py, m, mtime, true))
    {
        return Ok(Preloaded::AlreadyCurrent);
    }
    note_loading(py, path, existing.is_some());
    load_module(py, &name, path, mtime).map_err(LoadError::into_exception)?;
    Ok(Preloaded::Loaded)
}
