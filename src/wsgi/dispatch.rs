//! The Python side of `WSGIDispatchScript`: the script's `process_group`, `application_group`
//! and `callable_object` functions, each optional, are asked in that order with one environ of
//! the request. A `str` answer replaces the configured value; None leaves it. As in C
//! mod_wsgi, a script that cannot be loaded is logged and changes nothing, while an exception
//! or an answer of another type fails the request.

use super::auth::{environ, log_exception, HookCall, Logged};
use crate::script::{file_modification_time, load_application, LoadError};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// What the dispatch script decided; None where it left the configuration as it is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub process_group: Option<String>,
    pub application_group: Option<String>,
    pub callable_object: Option<String>,
}

/// The script's functions, in the order C asks them, with what their answer names.
const QUESTIONS: [(&str, &str); 3] = [
    ("process_group", "Process group"),
    ("application_group", "Application group"),
    ("callable_object", "Callable object"),
];

/// Loads the dispatch script (again, if it changed) and asks its functions.
pub fn ask(py: Python<'_>, call: &HookCall<'_>) -> Result<Overrides, Logged> {
    let mtime = file_modification_time(call.script);
    let report = |py: Python<'_>, err: &PyErr| {
        log_exception(py, call, err);
    };
    let environ = environ(py, call).map_err(|e| log_exception(py, call, &e))?;
    // The dispatch script's own interpreter is in the environ, and no callable yet; the
    // reloading flag stays the string the application's environ has.
    let _ = environ.del_item("mod_wsgi.callable_object");
    environ
        .set_item(
            "mod_wsgi.script_reloading",
            if call.reloading { "1" } else { "0" },
        )
        .map_err(|e| log_exception(py, call, &e))?;
    let mut overrides = Overrides::default();
    for (function, what) in QUESTIONS {
        let asked = match load_application(
            py,
            call.script,
            None,
            mtime,
            call.reloading,
            function,
            &report,
        ) {
            Ok(asked) => asked,
            Err(LoadError::NoCallable) => continue,
            Err(failed) => {
                super::auth::log_load_failure(py, call, &failed);
                return Ok(Overrides::default());
            }
        };
        let answer = asked
            .call1((&environ,))
            .and_then(|answer| answer_text(&answer, what))
            .map_err(|e| log_exception(py, call, &e))?;
        let Some(answer) = answer else { continue };
        match function {
            "process_group" => overrides.process_group = Some(answer),
            "application_group" => overrides.application_group = Some(answer),
            _ => overrides.callable_object = Some(answer),
        }
    }
    Ok(overrides)
}

/// A function's answer: None, or a `str` of Latin-1 characters (a TypeError otherwise).
fn answer_text(answer: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<String>> {
    if answer.is_none() {
        return Ok(None);
    }
    let text = answer
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a string object")))?
        .to_str()?;
    if text.chars().any(|c| c as u32 > 0xff) {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a string of Latin-1 characters: {text:?}"
        )));
    }
    Ok(Some(text.to_string()))
}
