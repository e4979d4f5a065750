//! The adapter's objects that live in an interpreter: its handle types, created once when the
//! interpreter is prepared. Held as raw references (not `Py<T>`, DESIGN.md rule 6) and only
//! touched while attached to that interpreter.

use super::callbacks::{input_iter_slots, ADAPTER_METHODS, INPUT_METHODS, LOG_METHODS};
use crate::python::objects::{create_type, OwnedRef};
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::sync::OnceLock;

pub struct InterpObjects {
    adapter_type: OwnedRef,
    input_type: OwnedRef,
    log_type: OwnedRef,
}

impl InterpObjects {
    pub fn adapter_type<'py>(&self, py: Python<'py>) -> Borrowed<'_, 'py, PyType> {
        bind_type(&self.adapter_type, py)
    }
    pub fn input_type<'py>(&self, py: Python<'py>) -> Borrowed<'_, 'py, PyType> {
        bind_type(&self.input_type, py)
    }
    pub fn log_type<'py>(&self, py: Python<'py>) -> Borrowed<'_, 'py, PyType> {
        bind_type(&self.log_type, py)
    }
}

fn bind_type<'a, 'py>(r: &'a OwnedRef, py: Python<'py>) -> Borrowed<'a, 'py, PyType> {
    r.bind(py).cast::<PyType>().expect("created as a type")
}

static MAIN: OnceLock<InterpObjects> = OnceLock::new();

/// Creates the adapter's objects in the (main) interpreter.
pub fn prepare(py: Python<'_>) -> PyResult<()> {
    if MAIN.get().is_some() {
        return Ok(());
    }
    let objects = InterpObjects {
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
    if let Some(objects) = MAIN.get() {
        for owned in [
            &objects.adapter_type,
            &objects.input_type,
            &objects.log_type,
        ] {
            owned.release(py);
        }
    }
}
