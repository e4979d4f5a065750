//! A `.wsgi` file as a Python module: named `_mod_wsgi_<md5 of its path>` in the `sys.modules` of
//! the interpreter (application group) it runs in, loaded on first use and loaded afresh when its
//! modification time changes. The same script in two groups is two modules, loaded separately.

use crate::python::detached;
use crate::python::objects::sys_modules;
use crate::wsgi::interp::Names;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Why no application could be had from a script.
pub enum LoadError {
    /// Reading, compiling or running the script failed.
    Failed(PyErr),
    /// The script ran but has no attribute of the callable's name.
    NoCallable,
}

/// Module names by script path, so the digest is computed once per script.
static MODULE_NAMES: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

fn module_names() -> MutexGuard<'static, Option<HashMap<String, String>>> {
    MODULE_NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn module_name(path: &str) -> String {
    if let Some(name) = module_names().get_or_insert_with(HashMap::new).get(path) {
        return name.clone();
    }
    let name = format!("_mod_wsgi_{}", crate::md5::hex_digest(path.as_bytes()));
    module_names()
        .get_or_insert_with(HashMap::new)
        .insert(path.to_string(), name.clone());
    name
}

/// The loaded module for `path` if it is current (or reloading is off).
fn current_module<'py>(
    py: Python<'py>,
    name: &str,
    mtime: i64,
    reloading: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(module) = sys_modules(py)?.get_item(name)? else {
        return Ok(None);
    };
    // `__mtime__` is set only once the script has run to completion, so a module that another
    // thread is still executing is not current: its caller waits for the load lock instead.
    let mtime_name = Names::get(py, &crate::wsgi::interp::objects(py).names.mtime);
    let Some(loaded_mtime) = module
        .getattr(mtime_name)
        .and_then(|m| m.extract::<i64>())
        .ok()
    else {
        return Ok(None);
    };
    Ok((!reloading || loaded_mtime == mtime).then_some(module))
}

/// Runs the script's code in a new module registered as `name`; on failure nothing stays
/// registered, so the next request tries again.
fn load_module<'py>(
    py: Python<'py>,
    name: &str,
    path: &str,
    mtime: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let source = std::fs::read(path)?;
    let builtins = py.import("builtins")?;
    let code =
        builtins
            .getattr("compile")?
            .call1((PyBytes::new(py, &source), path, "exec", 0, true))?;
    let module = PyModule::new(py, name)?;
    module.setattr("__file__", path)?;
    let modules = sys_modules(py)?;
    modules.set_item(name, &module)?;
    let ran = builtins.getattr("exec")?.call1((code, module.dict()));
    if let Err(e) = ran.and_then(|_| module.setattr("__mtime__", mtime)) {
        let _ = modules.del_item(name);
        return Err(e);
    }
    Ok(module.into_any())
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
/// microseconds), loading or reloading the script as needed.
pub fn load_application<'py>(
    py: Python<'py>,
    path: &str,
    mtime: i64,
    reloading: bool,
    callable: &str,
) -> Result<Bound<'py, PyAny>, LoadError> {
    let name = module_name(path);
    let module = match current_module(py, &name, mtime, reloading).map_err(LoadError::Failed)? {
        Some(m) => m,
        None => {
            let _guard = lock_loading(py);
            match current_module(py, &name, mtime, reloading).map_err(LoadError::Failed)? {
                Some(m) => m,
                None => load_module(py, &name, path, mtime).map_err(LoadError::Failed)?,
            }
        }
    };
    match module.getattr(callable) {
        Ok(app) => Ok(app),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => {
            Err(LoadError::NoCallable)
        }
        Err(e) => Err(LoadError::Failed(e)),
    }
}
