//! The frame of a Python-callable method implemented in Rust: pyo3's trampoline (which marks the
//! thread attached and turns an `Err` into a raised exception) calls one of these, which turns a
//! Rust panic into a `RuntimeError` (pyo3's own PanicException type is per process, so it must not
//! reach a sub-interpreter), finds `self`'s payload and checks the arguments, then runs a safe
//! body. `wsgi/callbacks.rs` declares its methods with [`handle_method!`].

use super::objects::payload;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs a method body; a Rust panic becomes a Python exception here.
pub(super) fn guarded(
    body: impl FnOnce() -> PyResult<*mut ffi::PyObject>,
) -> PyResult<*mut ffi::PyObject> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let msg = crate::panic_message(&*panic);
        Err(PyRuntimeError::new_err(format!(
            "mod_wsgi-rs internal error: {msg}"
        )))
    })
}

/// The positional and keyword arguments of a call, with names for error messages.
pub struct Args<'py> {
    func: &'static str,
    positional: Vec<Bound<'py, PyAny>>,
    keywords: Option<Bound<'py, PyDict>>,
}

impl<'py> Args<'py> {
    /// The arguments CPython passed, checked against `params`. Not generic, so the methods
    /// share its code rather than each inlining a copy.
    ///
    /// # Safety
    /// `args` must be a tuple and `kwargs` null or a dict, borrowed for the call.
    #[inline(never)]
    unsafe fn new(
        py: Python<'py>,
        args: *mut ffi::PyObject,
        kwargs: *mut ffi::PyObject,
        func: &'static str,
        params: &[&str],
    ) -> PyResult<Args<'py>> {
        // SAFETY: by this function's contract.
        let (positional, keywords) = unsafe {
            let positional = Borrowed::from_ptr(py, args).cast_unchecked::<PyTuple>();
            let keywords = Borrowed::from_ptr_or_opt(py, kwargs)
                .map(|k| k.cast_unchecked::<PyDict>().to_owned());
            (positional, keywords)
        };
        let args = Args {
            func,
            positional: positional.iter().collect(),
            keywords,
        };
        args.check(params)?;
        Ok(args)
    }

    /// Argument `index`/`name`; None when absent or None.
    pub fn get(&self, index: usize, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let by_name = match &self.keywords {
            Some(k) => k.get_item(name)?,
            None => None,
        };
        let value = match (self.positional.get(index), by_name) {
            (Some(_), Some(_)) => {
                return Err(PyTypeError::new_err(format!(
                    "{}() got multiple values for argument '{name}'",
                    self.func
                )))
            }
            (Some(v), None) => Some(v.clone()),
            (None, v) => v,
        };
        Ok(value.filter(|v| !v.is_none()))
    }

    pub fn required(&self, index: usize, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.get(index, name)?.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{}() missing required argument '{name}'",
                self.func
            ))
        })
    }

    /// An optional size argument: absent, None or negative mean "no limit".
    pub fn size(&self, index: usize, name: &str) -> PyResult<Option<usize>> {
        match self.get(index, name)? {
            None => Ok(None),
            Some(v) => {
                let n: i64 = v.extract().map_err(|_| {
                    PyTypeError::new_err(format!("{}() argument must be an integer", self.func))
                })?;
                Ok(usize::try_from(n).ok())
            }
        }
    }

    fn check(&self, params: &[&str]) -> PyResult<()> {
        if self.positional.len() > params.len() {
            return Err(PyTypeError::new_err(format!(
                "{}() takes at most {} arguments ({} given)",
                self.func,
                params.len(),
                self.positional.len()
            )));
        }
        if let Some(k) = &self.keywords {
            for key in k.keys() {
                let key: String = key.extract()?;
                if !params.contains(&key.as_str()) {
                    return Err(PyTypeError::new_err(format!(
                        "{}() got an unexpected keyword argument '{key}'",
                        self.func
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The shared frame of every method: see the module documentation.
///
/// # Safety
/// `slf` must be an object of a handle type, or a payload capsule, whose payload is a `T` (true
/// for the `self` of a method in that type's table, and of a function bound to that capsule);
/// `args` is a tuple and `kwargs` null or a dict, as CPython passes
/// them to a `METH_VARARGS | METH_KEYWORDS` function.
pub unsafe fn method<'py, T>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
    name: &'static str,
    params: &[&str],
    body: impl FnOnce(&Bound<'py, PyAny>, &T, &Args<'py>) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<*mut ffi::PyObject> {
    guarded(|| {
        // SAFETY: by this function's contract: slf is a live handle (or capsule) with a T payload, and the
        // argument objects are borrowed for the duration of the call.
        let (this, payload, args) = unsafe {
            let this = Borrowed::from_ptr(py, slf).to_owned();
            let payload = payload::<T>(slf).expect("handle payload");
            (this, payload, Args::new(py, args, kwargs, name, params)?)
        };
        Ok(body(&this, payload, &args)?.into_ptr())
    })
}

/// The frame of a `tp_iternext` slot: `Ok(None)` ends the iteration.
///
/// # Safety
/// As for [`method`], for `slf`.
pub unsafe fn iternext<'py, T>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
    body: impl FnOnce(&T) -> PyResult<Option<Bound<'py, PyAny>>>,
) -> PyResult<*mut ffi::PyObject> {
    guarded(|| {
        // SAFETY: by this function's contract.
        let payload = unsafe { payload::<T>(slf).expect("handle payload") };
        let _ = py;
        // NULL with no exception set is how a tp_iternext slot says StopIteration.
        Ok(body(payload)?.map_or(std::ptr::null_mut(), Bound::into_ptr))
    })
}

/// `tp_iter` for objects that are their own iterator.
///
/// # Safety
/// Called by CPython with a live object.
pub unsafe extern "C" fn iter_self(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: returns a new reference to the live object it was called on.
    unsafe { ffi::Py_NewRef(slf) }
}

/// Declares `$name`, a method for a handle type whose payload is `$payload`, with Python name
/// `$py_name` and parameters `[$param, …]`. The body is a closure of (py, self, payload, args)
/// returning `PyResult<Bound<PyAny>>`.
#[macro_export]
macro_rules! handle_method {
    ($name:ident, $payload:ty, $py_name:literal, [$($param:literal),*],
     |$py:ident, $this:pat_param, $p:ident, $a:ident| $body:expr) => {
        unsafe fn $name<'py>(
            $py: pyo3::Python<'py>,
            slf: *mut pyo3::ffi::PyObject,
            args: *mut pyo3::ffi::PyObject,
            kwargs: *mut pyo3::ffi::PyObject,
        ) -> pyo3::PyResult<*mut pyo3::ffi::PyObject> {
            #[allow(unused_braces)]
            let body = |$this: &pyo3::Bound<'py, pyo3::PyAny>,
                        $p: &$payload,
                        $a: &$crate::python::method::Args<'py>|
             -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> { $body };
            let (py, name, params): (pyo3::Python<'py>, &'static str, &[&str]) =
                ($py, $py_name, &[$($param),*]);
            // SAFETY: this function is only listed in the method table of the type, or bound to
            // a capsule, whose payload is the one named, so `self` is one of its objects.
            unsafe {
                $crate::python::method::method::<$payload>(py, slf, args, kwargs, name, params, body)
            }
        }
    };
}

/// Declares `$name`, the `tp_iternext` slot of a handle type whose payload is `$payload`. The
/// body is a closure of (py, payload) returning `PyResult<Option<Bound<PyAny>>>`; `None` ends the
/// iteration.
#[macro_export]
macro_rules! handle_iternext {
    ($name:ident, $payload:ty, |$py:ident, $p:ident| $body:expr) => {
        unsafe fn $name<'py>(
            $py: pyo3::Python<'py>,
            slf: *mut pyo3::ffi::PyObject,
        ) -> pyo3::PyResult<*mut pyo3::ffi::PyObject> {
            #[allow(unused_braces)]
            let body =
                |$p: &$payload| -> pyo3::PyResult<Option<pyo3::Bound<'py, pyo3::PyAny>>> { $body };
            let py: pyo3::Python<'py> = $py;
            // SAFETY: this function is only installed as tp_iternext of the type whose payload
            // is the one named, so `self` is one of its objects.
            unsafe { $crate::python::method::iternext::<$payload>(py, slf, body) }
        }
    };
}
