//! What the main interpreter needs before it serves requests, and before it is finalised.

use super::runtime::PythonSettings;
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Puts the `WSGIPythonPath` directories (as site directories, so their `.pth` files are
/// honoured) at the front of `sys.path`, then runs the caller's own preparation.
pub fn prepare_main_interpreter(
    py: Python<'_>,
    settings: &PythonSettings,
    prepare: impl FnOnce(Python<'_>) -> PyResult<()>,
) -> Result<(), String> {
    let describe = |e: PyErr| format!("cannot prepare the Python interpreter: {e}");
    // `threading` records the thread that first imports it as the main thread, and at
    // finalisation waits for that thread's state to go away. Importing it here, on the thread
    // that will finalise, keeps an import from a request thread from hanging the child's exit.
    py.import("threading").map_err(describe)?;
    add_site_directories(py, &settings.path).map_err(describe)?;
    prepare(py).map_err(describe)
}

fn add_site_directories(py: Python<'_>, dirs: &[String]) -> PyResult<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    let sys_path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    let before: Vec<String> = sys_path.extract()?;
    let site = py.import("site")?;
    for dir in dirs {
        site.call_method1("addsitedir", (dir,))?;
    }
    let now: Vec<String> = sys_path.extract()?;
    let mut front: Vec<String> = now
        .iter()
        .filter(|p| !before.contains(p))
        .cloned()
        .collect();
    // A directory already on sys.path is still moved to the front, as asked.
    for dir in dirs {
        if !front.contains(dir) {
            front.push(dir.clone());
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
