//! The adapter's objects that live in an interpreter: its handle types, the keys and constant
//! part of every environ, created once per interpreter. Held as raw references (not `Py<T>`,
//! DESIGN.md rule 6) and only touched while attached to that interpreter.

use super::callbacks::{input_iter_slots, ADAPTER_METHODS, INPUT_METHODS, LOG_METHODS};
use super::process_log::{ProcessLog, PROCESS_LOG_METHODS};
use crate::python::objects::current_interpreter;
use crate::python::objects::{bound_function, create_type, new_capsule, sys_modules, OwnedRef};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule, PyString, PyType};
use std::sync::{Arc, Mutex, RwLock};

/// The C mod_wsgi release whose behaviour this module reproduces: `mod_wsgi.version` and
/// `environ['mod_wsgi.version']`, for applications that test it (our own version is
/// `mod_wsgi.rs_version`).
pub const MOD_WSGI_COMPAT_VERSION: (u32, u32, u32) = (4, 9, 4);

/// What the server tells every interpreter about itself, gathered once per process.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// The daemon process group this process belongs to; '' in Apache's own children.
    pub process_group: String,
    pub multithread: bool,
    pub multiprocess: bool,
    pub maximum_processes: i32,
    pub threads_per_process: i32,
    /// Apache's own `MaxRequestWorkers`-derived figures, which the `apache` module gives in a
    /// daemon process too (the `mod_wsgi` module gives the group's).
    pub apache_maximum_processes: i32,
    pub apache_threads_per_process: i32,
    pub apache_version: (u32, u32, u32),
    pub description: String,
    pub mpm_name: String,
    pub build_date: String,
    /// How `mod_wsgi.server_metrics()` reads Apache's scoreboard; None (metrics off for this
    /// process: `WSGIServerMetrics Off`, or a group without `server-metrics=On`) makes it
    /// return None.
    pub server_metrics: Option<super::metrics::ScoreboardReader>,
}

/// Strings the adapter uses on every request, interned once.
pub struct Names {
    pub close: OwnedRef,
    pub url_scheme: OwnedRef,
    pub input: OwnedRef,
    pub errors: OwnedRef,
    pub mtime: OwnedRef,
    pub reload_required: OwnedRef,
    pub script_start: OwnedRef,
    pub total_requests: OwnedRef,
    pub thread_id: OwnedRef,
    pub thread_requests: OwnedRef,
}

impl Names {
    /// Binds one of these names.
    pub fn get<'a, 'py>(py: Python<'py>, name: &'a OwnedRef) -> Borrowed<'a, 'py, PyString> {
        name.bind(py).cast::<PyString>().expect("interned as a str")
    }
}

/// What the adapter keeps per interpreter (the main one and each application group's).
pub struct InterpObjects {
    /// The application group: '' for the main interpreter.
    pub group: String,
    /// The process's daemon process group: '' in Apache's own children.
    pub process_group: String,
    /// Serialises loading scripts into this interpreter: two threads' first requests for a
    /// script import it once. Per interpreter, as the same script in two groups is two modules.
    pub load_lock: Mutex<()>,
    /// `wsgi.file_wrapper`, the class from file_wrapper.py.
    file_wrapper: OwnedRef,
    adapter_type: OwnedRef,
    input_type: OwnedRef,
    log_type: OwnedRef,
    pub names: Names,
    /// The environ keys that are the same for every request, copied to start each environ.
    base_environ: OwnedRef,
    /// The last request's CGI variables as `str`, for the next environ to reuse.
    pub environ_strings: super::environ_strings::EnvironStrings,
}

impl InterpObjects {
    pub fn file_wrapper<'py>(&self, py: Python<'py>) -> Borrowed<'_, 'py, PyType> {
        bind_type(&self.file_wrapper, py)
    }
    pub fn adapter_type<'py>(&self, py: Python<'py>) -> Borrowed<'_, 'py, PyType> {
        bind_type(&self.adapter_type, py)
    }
    pub fn input_type<'py>(&self, py: Python<'py>) -> Borrowed<'_, 'py, PyType> {
        bind_type(&self.input_type, py)
    }
    pub fn log_type<'py>(&self, py: Python<'py>) -> Borrowed<'_, 'py, PyType> {
        bind_type(&self.log_type, py)
    }

    /// A new environ holding the keys every request shares.
    pub fn new_environ<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.base_environ.bind(py).cast::<PyDict>()?.copy()
    }
}

fn bind_type<'a, 'py>(r: &'a OwnedRef, py: Python<'py>) -> Borrowed<'a, 'py, PyType> {
    r.bind(py).cast::<PyType>().expect("created as a type")
}

/// Each prepared interpreter's objects, by interpreter. Entries are leaked boxes: an
/// interpreter lives until the process exits, and [`release`] drops its Python references first.
static PREPARED: RwLock<Vec<(usize, &'static InterpObjects)>> = RwLock::new(Vec::new());

fn prepared() -> std::sync::RwLockReadGuard<'static, Vec<(usize, &'static InterpObjects)>> {
    PREPARED.read().unwrap_or_else(|p| p.into_inner())
}

fn interned(py: Python<'_>, s: &str) -> OwnedRef {
    OwnedRef::new(PyString::intern(py, s).into_any())
}

/// The globals of Python `source` (one of this crate's .py files), run in a namespace of its
/// own as if it were module `mod_wsgi`.
struct Source<'py>(Bound<'py, PyDict>);

impl<'py> Source<'py> {
    fn run(py: Python<'py>, source: &str) -> PyResult<Source<'py>> {
        let namespace = PyDict::new(py);
        namespace.set_item("__name__", "mod_wsgi")?;
        let source = std::ffi::CString::new(source).expect("no NUL in our sources");
        py.run(&source, Some(&namespace), None)?;
        Ok(Source(namespace))
    }

    fn get(&self, name: &str) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.0.get_item(name)?.expect("defined by the source"))
    }

    /// A function the interpreter's set-up calls once, taken out of the namespace: the classes
    /// the source defines keep the namespace (their methods' globals), and with it each
    /// function still in it, with its code, for the interpreter's life (6 KB for modules.py's).
    fn take(&self, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let function = self.get(name)?;
        self.0.del_item(name)?;
        Ok(function)
    }
}

fn base_environ<'py>(
    py: Python<'py>,
    info: &ServerInfo,
    file_wrapper: &Bound<'py, PyType>,
) -> PyResult<Bound<'py, PyDict>> {
    // Keys interned, as the CGI variables' are (environ_strings): found by identity.
    let base = PyDict::new(py);
    base.set_item(PyString::intern(py, "wsgi.version"), (1, 0))?;
    base.set_item(PyString::intern(py, "wsgi.input_terminated"), true)?;
    base.set_item(PyString::intern(py, "wsgi.multithread"), info.multithread)?;
    base.set_item(PyString::intern(py, "wsgi.multiprocess"), info.multiprocess)?;
    base.set_item(PyString::intern(py, "wsgi.run_once"), false)?;
    base.set_item(PyString::intern(py, "wsgi.file_wrapper"), file_wrapper)?;
    base.set_item(
        PyString::intern(py, "mod_wsgi.version"),
        MOD_WSGI_COMPAT_VERSION,
    )?;
    base.set_item(PyString::intern(py, "apache.version"), info.apache_version)?;
    Ok(base)
}

/// Registers the `mod_wsgi` and `apache` modules in this interpreter's `sys.modules`.
fn add_modules(
    py: Python<'_>,
    source: &Source<'_>,
    info: &ServerInfo,
    group: &str,
    file_wrapper: &Bound<'_, PyType>,
) -> PyResult<()> {
    let modules = sys_modules(py)?;
    let mod_wsgi = PyModule::new(py, "mod_wsgi")?;
    let apache = PyModule::new(py, "apache")?;
    let facts = PyDict::new(py);
    facts.set_item("mod_wsgi_version", MOD_WSGI_COMPAT_VERSION)?;
    facts.set_item("rs_version", crate::VERSION)?;
    // '' in Apache's own children (embedded mode) as in environ; the application group names
    // this interpreter ('' for the main one).
    facts.set_item("process_group", &info.process_group)?;
    facts.set_item("application_group", group)?;
    facts.set_item("maximum_processes", info.maximum_processes)?;
    facts.set_item("threads_per_process", info.threads_per_process)?;
    facts.set_item("apache_maximum_processes", info.apache_maximum_processes)?;
    facts.set_item(
        "apache_threads_per_process",
        info.apache_threads_per_process,
    )?;
    facts.set_item("apache_version", info.apache_version)?;
    facts.set_item("description", &info.description)?;
    facts.set_item("mpm_name", &info.mpm_name)?;
    facts.set_item("build_date", &info.build_date)?;
    source
        .take("fill")?
        .call1((&mod_wsgi, &apache, facts, file_wrapper))?;
    mod_wsgi.setattr(
        "server_metrics",
        super::metrics::server_metrics_function(py, info.server_metrics)?,
    )?;
    super::process_metrics_py::add_functions(
        py,
        &mod_wsgi,
        !info.process_group.is_empty(),
        info.threads_per_process,
    )?;
    modules.set_item("mod_wsgi", mod_wsgi)?;
    modules.set_item("apache", apache)?;
    Ok(())
}

/// Replaces `sys.stdout` and `sys.stderr` with writers into the error log.
fn install_log_streams(py: Python<'_>, source: &Source<'_>) -> PyResult<()> {
    // Both streams write through the same two functions: the partial line is kept per thread.
    let raw = new_capsule(py, Arc::new(ProcessLog))?;
    let write = bound_function(&raw, PROCESS_LOG_METHODS.get(c"write"))?;
    let flush = bound_function(&raw, PROCESS_LOG_METHODS.get(c"flush"))?;
    let buffer_class = bound_function(&raw, PROCESS_LOG_METHODS.get(c"log_buffer_class"))?;
    source
        .take("install_streams")?
        .call1((py.import("sys")?, write, flush, buffer_class))?;
    Ok(())
}

/// Creates the adapter's objects and modules in the interpreter this thread is attached to, the
/// main one (`group` '') or application group `group`'s.
pub fn prepare(py: Python<'_>, info: &ServerInfo, group: &str) -> PyResult<()> {
    let interp = current_interpreter(py);
    if prepared().iter().any(|(i, _)| *i == interp) {
        return Ok(());
    }
    let file_wrapper = Source::run(py, include_str!("file_wrapper.py"))?
        .get("FileWrapper")?
        .cast_into::<PyType>()?;
    let source = Source::run(py, include_str!("modules.py"))?;
    add_modules(py, &source, info, group, &file_wrapper)?;
    super::events::install(py)?;
    install_log_streams(py, &source)?;
    let log_type = create_type(py, c"mod_wsgi.Log", &LOG_METHODS, None)?;
    source
        .take("give_stream_api")?
        .call1((&log_type, "<wsgi.errors>"))?;
    let objects = InterpObjects {
        group: group.to_string(),
        process_group: info.process_group.clone(),
        load_lock: Mutex::new(()),
        base_environ: OwnedRef::new(base_environ(py, info, &file_wrapper)?.into_any()),
        environ_strings: Default::default(),
        file_wrapper: OwnedRef::new(file_wrapper.into_any()),
        adapter_type: OwnedRef::new(
            create_type(py, c"mod_wsgi.Adapter", &ADAPTER_METHODS, None)?.into_any(),
        ),
        input_type: OwnedRef::new(
            create_type(
                py,
                c"mod_wsgi.Input",
                &INPUT_METHODS,
                Some(input_iter_slots()),
            )?
            .into_any(),
        ),
        log_type: OwnedRef::new(log_type.into_any()),
        names: Names {
            close: interned(py, "close"),
            url_scheme: interned(py, "wsgi.url_scheme"),
            input: interned(py, "wsgi.input"),
            errors: interned(py, "wsgi.errors"),
            mtime: interned(py, "__mtime__"),
            reload_required: interned(py, "reload_required"),
            script_start: interned(py, "mod_wsgi.script_start"),
            total_requests: interned(py, "mod_wsgi.total_requests"),
            thread_id: interned(py, "mod_wsgi.thread_id"),
            thread_requests: interned(py, "mod_wsgi.thread_requests"),
        },
    };
    let objects: &'static InterpObjects = Box::leak(Box::new(objects));
    PREPARED
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push((interp, objects));
    Ok(())
}

/// The objects of the interpreter this thread is attached to.
pub fn objects(py: Python<'_>) -> &'static InterpObjects {
    let interp = current_interpreter(py);
    prepared()
        .iter()
        .find(|(i, _)| *i == interp)
        .map(|(_, o)| *o)
        .expect("interpreter prepared when it was created")
}

/// Drops our references to the objects of the interpreter this thread is attached to, just
/// before that interpreter is destroyed (or Python finalised); its objects are gone afterwards.
pub fn release(py: Python<'_>) {
    super::events::release(py);
    let interp = current_interpreter(py);
    let found = {
        let mut prepared = PREPARED.write().unwrap_or_else(|p| p.into_inner());
        let at = prepared.iter().position(|(i, _)| *i == interp);
        at.map(|at| prepared.remove(at).1)
    };
    if let Some(o) = found {
        let names = &o.names;
        for owned in [
            &o.adapter_type,
            &o.input_type,
            &o.log_type,
            &names.close,
            &names.url_scheme,
        ]
        .into_iter()
        .chain([
            &names.input,
            &names.errors,
            &names.mtime,
            &names.reload_required,
            &names.script_start,
            &names.total_requests,
            &names.thread_id,
            &names.thread_requests,
        ])
        .chain([&o.base_environ, &o.file_wrapper])
        {
            owned.release(py);
        }
        o.environ_strings.release(py);
    }
}
