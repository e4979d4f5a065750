//! The adapter's objects that live in an interpreter: its handle types, the keys and constant
//! part of every environ, created once per interpreter. Held as raw references (not `Py<T>`,
//! DESIGN.md rule 6) and only touched while attached to that interpreter.

use super::adapter::ProcessModel;
use super::callbacks::{input_iter_slots, ADAPTER_METHODS, INPUT_METHODS, LOG_METHODS};
use crate::python::objects::{create_type, OwnedRef};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyType};
use std::sync::OnceLock;

/// Strings the adapter uses on every request, interned once.
pub struct Names {
    pub close: OwnedRef,
    pub url_scheme: OwnedRef,
    pub input: OwnedRef,
    pub errors: OwnedRef,
    pub mtime: OwnedRef,
}

impl Names {
    /// Binds one of these names.
    pub fn get<'a, 'py>(py: Python<'py>, name: &'a OwnedRef) -> Borrowed<'a, 'py, PyString> {
        name.bind(py).cast::<PyString>().expect("interned as a str")
    }
}

pub struct InterpObjects {
    /// `wsgi.file_wrapper`, the class from file_wrapper.py.
    file_wrapper: OwnedRef,
    adapter_type: OwnedRef,
    input_type: OwnedRef,
    log_type: OwnedRef,
    pub names: Names,
    /// The environ keys that are the same for every request, copied to start each environ.
    base_environ: OnceLock<OwnedRef>,
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
    pub fn new_environ<'py>(
        &self,
        py: Python<'py>,
        model: ProcessModel,
    ) -> PyResult<Bound<'py, PyDict>> {
        let base = match self.base_environ.get() {
            Some(base) => base,
            None => {
                let base = PyDict::new(py);
                base.set_item("wsgi.version", (1, 0))?;
                base.set_item("wsgi.input_terminated", true)?;
                base.set_item("wsgi.multithread", model.multithread)?;
                base.set_item("wsgi.multiprocess", model.multiprocess)?;
                base.set_item("wsgi.run_once", false)?;
                base.set_item("wsgi.file_wrapper", self.file_wrapper.bind(py))?;
                // Another thread may have won the race; either copy is the same.
                let _ = self.base_environ.set(OwnedRef::new(base.into_any()));
                self.base_environ.get().expect("just set")
            }
        };
        base.bind(py).cast::<PyDict>()?.copy()
    }
}

fn bind_type<'a, 'py>(r: &'a OwnedRef, py: Python<'py>) -> Borrowed<'a, 'py, PyType> {
    r.bind(py).cast::<PyType>().expect("created as a type")
}

static MAIN: OnceLock<InterpObjects> = OnceLock::new();

fn interned(py: Python<'_>, s: &str) -> OwnedRef {
    OwnedRef::new(PyString::intern(py, s).into_any())
}

/// Runs file_wrapper.py in a namespace of its own and returns its class.
fn file_wrapper_class(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__name__", "mod_wsgi")?;
    let source = std::ffi::CString::new(include_str!("file_wrapper.py")).expect("no NUL");
    py.run(&source, Some(&namespace), None)?;
    Ok(namespace
        .get_item("FileWrapper")?
        .expect("defined")
        .cast_into::<PyType>()?)
}

/// Creates the adapter's objects in the (main) interpreter.
pub fn prepare(py: Python<'_>) -> PyResult<()> {
    if MAIN.get().is_some() {
        return Ok(());
    }
    let objects = InterpObjects {
        file_wrapper: OwnedRef::new(file_wrapper_class(py)?.into_any()),
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
        log_type: OwnedRef::new(create_type(py, c"mod_wsgi.Log", &LOG_METHODS, None)?.into_any()),
        names: Names {
            close: interned(py, "close"),
            url_scheme: interned(py, "wsgi.url_scheme"),
            input: interned(py, "wsgi.input"),
            errors: interned(py, "wsgi.errors"),
            mtime: interned(py, "__mtime__"),
        },
        base_environ: OnceLock::new(),
    };
    let _ = MAIN.set(objects);
    Ok(())
}

/// The objects of the interpreter this thread is attached to.
pub fn objects(_py: Python<'_>) -> &'static InterpObjects {
    MAIN.get().expect("interpreter prepared at start-up")
}

/// Drops our references before the interpreter is finalised.
pub fn release(py: Python<'_>) {
    if let Some(o) = MAIN.get() {
        let names = &o.names;
        for owned in [
            &o.adapter_type,
            &o.input_type,
            &o.log_type,
            &names.close,
            &names.url_scheme,
        ]
        .into_iter()
        .chain([&names.input, &names.errors, &names.mtime])
        .chain(o.base_environ.get())
        {
            owned.release(py);
        }
    }
}
