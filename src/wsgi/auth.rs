//! The Python side of `WSGIAuthUserScript`, `WSGIAuthGroupScript` and `WSGIAccessScript`: the
//! script's `check_password`, `get_realm_hash`, `groups_for_user` and `allow_access`, called with
//! an environ of the request, and their answers read as C mod_wsgi reads them. The server layer
//! (`apache::auth`) turns the answers into Apache's statuses.

use super::environ::CgiVars;
use super::Level;
use crate::python::objects::latin1_str;
use crate::python::scoped::Scoped;
use crate::script::{file_modification_time, load_application, LoadError};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCFunction, PyDict, PyString, PyTuple};
use std::sync::Arc;

/// One call of a hook script's function.
pub struct HookCall<'a> {
    pub script: &'a str,
    /// The interpreter's name, for `environ['mod_wsgi.application_group']`.
    pub application_group: &'a str,
    pub reloading: bool,
    /// The request's variables (see `apache::auth::hook_environ`).
    pub vars: &'a CgiVars,
    pub log: &'a dyn Fn(Level, &str),
    /// What the environ's `mod_ssl.is_https` and `mod_ssl.var_lookup` ask, for the hooks that
    /// have them (the authentication and access hooks, not the dispatch script, as in C).
    pub tls: Option<&'a Arc<TlsSlot>>,
}

/// The connection's TLS facts, from mod_ssl, as a hook script may ask for them.
pub trait TlsLookup {
    fn is_https(&self) -> bool;
    /// mod_ssl's value of the variable `name` (`SSL_CLIENT_S_DN`, …); None without mod_ssl or
    /// without a value.
    fn var_lookup(&self, name: &[u8]) -> Option<Vec<u8>>;
}

/// The hook call's [`TlsLookup`], reachable from the environ's callables only during the call:
/// a script that keeps one gets `request object has expired` afterwards.
pub type TlsSlot = Scoped<Box<dyn TlsLookup>>;

/// Which function of which kind of script, for loading it and for the log.
#[derive(Clone, Copy)]
enum Hook {
    CheckPassword,
    RealmHash,
    GroupsForUser,
    AllowAccess,
}

impl Hook {
    fn function(self) -> &'static str {
        match self {
            Hook::CheckPassword => "check_password",
            Hook::RealmHash => "get_realm_hash",
            Hook::GroupsForUser => "groups_for_user",
            Hook::AllowAccess => "allow_access",
        }
    }

    /// What the log says when the script lacks the function (C mod_wsgi's words).
    fn missing(self, script: &str) -> String {
        let pid = std::process::id();
        match self {
            Hook::CheckPassword => format!(
                "mod_wsgi (pid={pid}): Target WSGI user authentication script '{script}' does \
                 not provide 'Basic' auth provider."
            ),
            Hook::RealmHash => format!(
                "mod_wsgi (pid={pid}): Target WSGI user authentication script '{script}' does \
                 not provide 'Digest' auth provider."
            ),
            Hook::GroupsForUser => format!(
                "mod_wsgi (pid={pid}): Target WSGI group authentication script '{script}' does \
                 not provide group provider."
            ),
            Hook::AllowAccess => format!(
                "mod_wsgi (pid={pid}): Target WSGI host access script '{script}' does not \
                 provide host validator."
            ),
        }
    }
}

/// What `check_password` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Authn {
    /// True, or a `str`: the user name the request continues with.
    Granted(Option<String>),
    Denied,
    /// None: the script does not know the user.
    NotFound,
    /// The script failed, or answered something else (logged).
    Error,
}

/// `check_password(environ, user, password)`.
pub fn check_password(py: Python<'_>, call: &HookCall<'_>, user: &str, password: &str) -> Authn {
    let answer = call_hook(py, call, Hook::CheckPassword, |environ| {
        (environ, user, password)
            .into_pyobject(py)
            .map(|t| t.into_any())
    });
    let Some(answer) = answer else {
        return Authn::Error;
    };
    let read = if answer.is_none() {
        Ok(Authn::NotFound)
    } else if answer.is(pyo3::types::PyBool::new(py, true)) {
        Ok(Authn::Granted(None))
    } else if answer.is(pyo3::types::PyBool::new(py, false)) {
        Ok(Authn::Denied)
    } else if let Ok(name) = answer.cast::<PyString>() {
        name.to_str().map(|n| Authn::Granted(Some(n.to_string())))
    } else {
        Err(PyTypeError::new_err(
            "Basic auth provider must return True, False None or user name as string",
        ))
    };
    read.unwrap_or_else(|e| {
        log_exception(py, call, &e);
        Authn::Error
    })
}

/// `get_realm_hash(environ, user, realm)`: the hex MD5 of `user:realm:password`, None when the
/// user is not known; Err when the script failed (logged).
pub fn realm_hash(
    py: Python<'_>,
    call: &HookCall<'_>,
    user: &str,
    realm: &str,
) -> Result<Option<Vec<u8>>, Logged> {
    let answer = call_hook(py, call, Hook::RealmHash, |environ| {
        (environ, user, realm)
            .into_pyobject(py)
            .map(|t| t.into_any())
    })
    .ok_or(Logged)?;
    if answer.is_none() {
        return Ok(None);
    }
    let read = if let Ok(bytes) = answer.cast::<PyBytes>() {
        Ok(bytes.as_bytes().to_vec())
    } else if answer.is_instance_of::<PyString>() {
        latin1_bytes(&answer).map_err(|_| {
            PyTypeError::new_err(
                "Digest auth provider must return None or string object, value containing \
                 non 'latin-1' characters found",
            )
        })
    } else {
        Err(PyTypeError::new_err(
            "Digest auth provider must return None or string object",
        ))
    };
    read.map(Some).map_err(|e| log_exception(py, call, &e))
}

/// `groups_for_user(environ, user)`: the user's groups; Err when the script failed or answered
/// something other than an iterable of strings (logged).
pub fn groups_for_user(
    py: Python<'_>,
    call: &HookCall<'_>,
    user: &str,
) -> Result<Vec<Vec<u8>>, Logged> {
    let answer = call_hook(py, call, Hook::GroupsForUser, |environ| {
        (environ, user).into_pyobject(py).map(|t| t.into_any())
    })
    .ok_or(Logged)?;
    let not_strings = || {
        (call.log)(
            Level::Error,
            &format!(
                "mod_wsgi (pid={}): Groups for user returned from '{}' must be an iterable \
                 sequence of byte strings.",
                std::process::id(),
                call.script
            ),
        )
    };
    let items = match answer.try_iter() {
        Ok(items) => items,
        Err(e) => {
            not_strings();
            return Err(log_exception(py, call, &e));
        }
    };
    let mut groups = Vec::new();
    for item in items {
        let item = item.map_err(|e| log_exception(py, call, &e))?;
        if let Ok(bytes) = item.cast::<PyBytes>() {
            groups.push(bytes.as_bytes().to_vec());
        } else if item.is_instance_of::<PyString>() {
            match latin1_bytes(&item) {
                Ok(bytes) => groups.push(bytes),
                Err(_) => {
                    (call.log)(
                        Level::Error,
                        &format!(
                            "mod_wsgi (pid={}): Groups for user returned from '{}' must be an \
                             iterable sequence of byte strings, value containing non 'latin-1' \
                             characters found",
                            std::process::id(),
                            call.script
                        ),
                    );
                    return Err(Logged);
                }
            }
        } else {
            not_strings();
            return Err(Logged);
        }
    }
    Ok(groups)
}

/// `allow_access(environ, host)`: Some(true) allows, Some(false) refuses, None leaves it to the
/// rest of Apache's access control. A failure, or an answer that is not a bool or None, refuses
/// (logged), as in C mod_wsgi.
pub fn allow_access(py: Python<'_>, call: &HookCall<'_>, host: Option<&str>) -> Option<bool> {
    let Some(answer) = call_hook(py, call, Hook::AllowAccess, |environ| {
        (environ, host).into_pyobject(py).map(|t| t.into_any())
    }) else {
        return Some(false);
    };
    if answer.is_none() {
        return None;
    }
    match answer.extract::<bool>() {
        Ok(allow) if answer.is_instance_of::<pyo3::types::PyBool>() => Some(allow),
        _ => {
            (call.log)(
                Level::Error,
                &format!(
                    "mod_wsgi (pid={}): Indicator of host accessibility returned from '{}' \
                     must a boolean or None.",
                    std::process::id(),
                    call.script
                ),
            );
            Some(false)
        }
    }
}

/// Loads the script (again, if it changed) and calls its `hook` function with the arguments
/// `args` makes from the environ. None when that failed, which is logged.
fn call_hook<'py>(
    py: Python<'py>,
    call: &HookCall<'_>,
    hook: Hook,
    args: impl FnOnce(Bound<'py, PyDict>) -> PyResult<Bound<'py, PyAny>>,
) -> Option<Bound<'py, PyAny>> {
    let mtime = file_modification_time(call.script);
    let report = |py: Python<'_>, err: &PyErr| {
        log_exception(py, call, err);
    };
    let function = match load_application(
        py,
        call.script,
        None,
        mtime,
        call.reloading,
        hook.function(),
        &report,
    ) {
        Ok(function) => function,
        Err(LoadError::NoCallable) => {
            (call.log)(Level::Error, &hook.missing(call.script));
            return None;
        }
        Err(failed) => {
            log_load_failure(py, call, &failed);
            return None;
        }
    };
    let called = environ(py, call)
        .and_then(args)
        .and_then(|args| function.call1(args.cast_into::<pyo3::types::PyTuple>()?));
    called.map_err(|e| log_exception(py, call, &e)).ok()
}

/// The environ a hook function gets: the request's variables as Latin-1 `str`, the versions,
/// the interpreter's name, and `wsgi.errors` (the error log, through `sys.stderr`).
pub(super) fn environ<'py>(py: Python<'py>, call: &HookCall<'_>) -> PyResult<Bound<'py, PyDict>> {
    let environ = PyDict::new(py);
    for (key, value) in call.vars.iter() {
        environ.set_item(latin1_str(py, key)?, latin1_str(py, value)?)?;
    }
    environ.set_item("apache.version", py.import("apache")?.getattr("version")?)?;
    environ.set_item(
        "mod_wsgi.version",
        py.import("mod_wsgi")?.getattr("version")?,
    )?;
    environ.set_item("mod_wsgi.process_group", "")?;
    environ.set_item(
        "mod_wsgi.application_group",
        latin1_str(
            py,
            &crate::config::groups::latin1_bytes(call.application_group),
        )?,
    )?;
    environ.set_item("mod_wsgi.script_reloading", i32::from(call.reloading))?;
    environ.set_item("wsgi.errors", py.import("sys")?.getattr("stderr")?)?;
    if let Some(tls) = call.tls {
        environ.set_item("mod_ssl.is_https", ssl_is_https(py, tls.clone())?)?;
        environ.set_item("mod_ssl.var_lookup", ssl_var_lookup(py, tls.clone())?)?;
    }
    Ok(environ)
}

/// `environ['mod_ssl.is_https']()`: 1 on a TLS connection, else 0 (also without mod_ssl).
fn ssl_is_https(py: Python<'_>, tls: Arc<TlsSlot>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"ssl_is_https"),
        None,
        move |args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>| -> PyResult<i32> {
            only_positional(kwargs, "ssl_is_https")?;
            if !args.is_empty() {
                return Err(PyTypeError::new_err(format!(
                    "ssl_is_https() takes no arguments ({} given)",
                    args.len()
                )));
            }
            tls.with(args.py(), |tls| i32::from(tls.is_https()))
                .map_err(super::callbacks::scope_error)
        },
    )
}

/// `environ['mod_ssl.var_lookup'](name)`: mod_ssl's value of the variable as `str` (Latin-1),
/// None when it has none or is not loaded. `name` is a `str` of Latin-1 characters or `bytes`.
fn ssl_var_lookup(py: Python<'_>, tls: Arc<TlsSlot>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(
        py,
        Some(c"ssl_var_lookup"),
        None,
        move |args: &Bound<'_, PyTuple>,
              kwargs: Option<&Bound<'_, PyDict>>|
              -> PyResult<Option<Py<PyString>>> {
            only_positional(kwargs, "ssl_var_lookup")?;
            let (name,): (Bound<'_, PyAny>,) = args.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "ssl_var_lookup() takes exactly one argument ({} given)",
                    args.len()
                ))
            })?;
            let name = if let Ok(bytes) = name.cast::<PyBytes>() {
                bytes.as_bytes().to_vec()
            } else if name.is_instance_of::<PyString>() {
                latin1_bytes(&name).map_err(|_| {
                    PyTypeError::new_err(
                        "byte string value expected, value containing non 'latin-1' \
                         characters found",
                    )
                })?
            } else {
                return Err(PyTypeError::new_err(format!(
                    "byte string value expected, value of type {} found",
                    super::callbacks::type_name(&name)
                )));
            };
            if name.contains(&0) {
                return Err(PyValueError::new_err("embedded null byte in variable name"));
            }
            let py = args.py();
            let value = tls
                .with(py, |tls| tls.var_lookup(&name))
                .map_err(super::callbacks::scope_error)?;
            value
                .map(|v| latin1_str(py, &v).map(Bound::unbind))
                .transpose()
        },
    )
}

fn only_positional(kwargs: Option<&Bound<'_, PyDict>>, function: &str) -> PyResult<()> {
    match kwargs {
        Some(k) if !k.is_empty() => Err(PyTypeError::new_err(format!(
            "{function}() takes no keyword arguments"
        ))),
        _ => Ok(()),
    }
}

/// A `str` whose characters all fit in Latin-1, as those bytes.
fn latin1_bytes(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let text = value.cast::<PyString>()?.to_str()?;
    text.chars()
        .map(|c| u8::try_from(c as u32))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| PyTypeError::new_err("not Latin-1"))
}

/// A failure of the script that has been logged (with its traceback, if it raised).
#[derive(Debug)]
pub struct Logged;

/// Logs an exception from the script, with its traceback, as for an application's.
pub(super) fn log_exception(py: Python<'_>, call: &HookCall<'_>, err: &PyErr) -> Logged {
    (call.log)(
        Level::Error,
        &super::adapter::exception_headline(py, err, call.script),
    );
    for line in super::adapter::exception_report(py, err) {
        (call.log)(Level::Error, &line);
    }
    Logged
}

/// Logs why the script could not be loaded, as for a WSGI script.
pub(super) fn log_load_failure(py: Python<'_>, call: &HookCall<'_>, failed: &LoadError) {
    for line in failed.report(py, call.script) {
        (call.log)(Level::Error, &line);
    }
}
