//! Python objects backed by Rust data, built with the raw C API because pyo3's `#[pyclass]` keeps
//! one type object per process, which must never reach a sub-interpreter (DESIGN.md rule 5).
//!
//! A "handle type" is created per interpreter with `PyType_FromSpec`; each of its objects owns an
//! `Arc<T>` payload. Method tables are static C data (shared safely by every interpreter) whose
//! functions go through pyo3's trampolines, which catch panics and turn `PyErr`s into exceptions.

use crate::buf::UninitBuf;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::ffi::{c_void, CStr};
use std::os::raw::c_int;
use std::ptr;
use std::sync::Arc;

/// The memory layout of every handle object.
#[repr(C)]
struct HandleObject {
    ob_base: ffi::PyObject,
    /// `Arc::into_raw` of the payload; released by `drop_payload`.
    payload: *const c_void,
    drop_payload: Option<unsafe fn(*const c_void)>,
}

unsafe fn drop_arc<T>(p: *const c_void) {
    // SAFETY: p came from Arc::<T>::into_raw in new_handle and is released once, here.
    drop(unsafe { Arc::from_raw(p as *const T) });
}

unsafe extern "C" fn handle_dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: obj is one of our handle objects, being deallocated with the GIL held.
    unsafe {
        let handle = obj as *mut HandleObject;
        if let Some(drop_payload) = (*handle).drop_payload.take() {
            drop_payload((*handle).payload);
        }
        let ty = ffi::Py_TYPE(obj);
        let free = ffi::PyType_GetSlot(ty, ffi::Py_tp_free);
        if free.is_null() {
            ffi::PyObject_Free(obj as *mut c_void);
        } else {
            let free: unsafe extern "C" fn(*mut c_void) = std::mem::transmute(free);
            free(obj as *mut c_void);
        }
        // Instances of heap types own a reference to their type.
        ffi::Py_DECREF(ty as *mut ffi::PyObject);
    }
}

/// A static, NULL-terminated method table.
#[repr(transparent)]
pub struct MethodTable<const N: usize>(pub [ffi::PyMethodDef; N]);

// SAFETY: the table is immutable C data; CPython only reads it.
unsafe impl<const N: usize> Sync for MethodTable<N> {}

impl<const N: usize> MethodTable<N> {
    fn as_mut_ptr(&'static self) -> *mut ffi::PyMethodDef {
        self.0.as_ptr() as *mut ffi::PyMethodDef
    }

    /// The definition named `name`, for binding as a standalone function.
    pub fn get(&'static self, name: &CStr) -> &'static ffi::PyMethodDef {
        self.0
            .iter()
            // SAFETY: every non-terminator entry's ml_name is a static C string.
            .find(|d| !d.ml_name.is_null() && unsafe { CStr::from_ptr(d.ml_name) } == name)
            .expect("method is in its table")
    }
}

/// Optional iterator protocol for a handle type.
pub struct IterSlots {
    pub iter: ffi::getiterfunc,
    pub next: ffi::iternextfunc,
}

/// Creates a handle type in the current interpreter. `name` must be `module.Type`.
pub fn create_type<'py, const N: usize>(
    py: Python<'py>,
    name: &'static CStr,
    methods: &'static MethodTable<N>,
    iter: Option<IterSlots>,
) -> PyResult<Bound<'py, PyType>> {
    let mut slots = vec![
        ffi::PyType_Slot {
            slot: ffi::Py_tp_dealloc,
            pfunc: handle_dealloc as *mut c_void,
        },
        ffi::PyType_Slot {
            slot: ffi::Py_tp_methods,
            pfunc: methods.as_mut_ptr() as *mut c_void,
        },
    ];
    if let Some(it) = iter {
        slots.push(ffi::PyType_Slot {
            slot: ffi::Py_tp_iter,
            pfunc: it.iter as *mut c_void,
        });
        slots.push(ffi::PyType_Slot {
            slot: ffi::Py_tp_iternext,
            pfunc: it.next as *mut c_void,
        });
    }
    slots.push(ffi::PyType_Slot {
        slot: 0,
        pfunc: ptr::null_mut(),
    });
    let mut spec = ffi::PyType_Spec {
        name: name.as_ptr(),
        basicsize: std::mem::size_of::<HandleObject>() as c_int,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION) as _,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: attached (py); spec and slots are valid for the call, and what the type keeps
    // (name, method table) is static.
    unsafe {
        let ty = ffi::PyType_FromSpec(&mut spec);
        Bound::from_owned_ptr_or_err(py, ty).map(|t| t.cast_into_unchecked())
    }
}

/// Creates an object of handle type `ty` owning `payload`.
pub fn new_handle<'py, T: Send + Sync + 'static>(
    ty: &Bound<'py, PyType>,
    payload: Arc<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = ty.py();
    // SAFETY: attached; PyType_GenericAlloc zero-fills basicsize bytes and sets the type (and,
    // for a heap type, increfs it), so payload fields start null until set below.
    unsafe {
        let obj = ffi::PyType_GenericAlloc(ty.as_ptr() as *mut ffi::PyTypeObject, 0);
        let obj = Bound::from_owned_ptr_or_err(py, obj)?;
        let handle = obj.as_ptr() as *mut HandleObject;
        (*handle).payload = Arc::into_raw(payload) as *const c_void;
        (*handle).drop_payload = Some(drop_arc::<T>);
        Ok(obj)
    }
}

/// The name every payload capsule carries (checked before its pointer is read back).
const CAPSULE_NAME: &CStr = c"mod_wsgi.payload";

unsafe extern "C" fn capsule_destructor<T>(capsule: *mut ffi::PyObject) {
    // SAFETY: called once by CPython as a capsule made by new_capsule::<T> is freed; its pointer
    // came from Arc::<T>::into_raw and is released here only.
    unsafe {
        let p = ffi::PyCapsule_GetPointer(capsule, CAPSULE_NAME.as_ptr());
        if !p.is_null() {
            drop(Arc::from_raw(p as *const T));
        }
    }
}

/// An object owning `payload`, to be the `self` of module-level functions ([`bound_function`])
/// that need Rust data but no methods of their own: a capsule, whose type is built in, where a
/// handle type would add a heap type (about 3 KB) to every interpreter.
pub fn new_capsule<T: Send + Sync + 'static>(
    py: Python<'_>,
    payload: Arc<T>,
) -> PyResult<Bound<'_, PyAny>> {
    let p = Arc::into_raw(payload);
    // SAFETY: attached; the pointer is non-null (from Arc::into_raw) and the name static. On
    // failure no capsule owns the pointer, so the Arc is given back here.
    unsafe {
        let capsule = ffi::PyCapsule_New(
            p as *mut c_void,
            CAPSULE_NAME.as_ptr(),
            Some(capsule_destructor::<T>),
        );
        if capsule.is_null() {
            drop(Arc::from_raw(p));
        }
        Bound::from_owned_ptr_or_err(py, capsule)
    }
}

/// The payload of a handle object created by [`new_handle`], or of a capsule created by
/// [`new_capsule`], with the same `T`.
///
/// # Safety
/// `obj` must be a live handle object or payload capsule whose payload type is `T` (true of
/// `self` in the methods of the table its type was created with, and of the functions bound to
/// the capsule), and the returned reference must not outlive it.
pub unsafe fn payload<'a, T>(obj: *mut ffi::PyObject) -> Option<&'a T> {
    // SAFETY: by the caller's contract obj is one of our capsules or a HandleObject, whose
    // payload is null or an Arc<T>; PyCapsule_IsValid sets no exception.
    unsafe {
        let p = if ffi::PyCapsule_CheckExact(obj) != 0
            && ffi::PyCapsule_IsValid(obj, CAPSULE_NAME.as_ptr()) == 1
        {
            ffi::PyCapsule_GetPointer(obj, CAPSULE_NAME.as_ptr()) as *const T
        } else {
            (*(obj as *mut HandleObject)).payload as *const T
        };
        p.as_ref()
    }
}

/// A built-in function object calling `def` with `handle` as its `self`.
pub fn bound_function<'py>(
    handle: &Bound<'py, PyAny>,
    def: &'static ffi::PyMethodDef,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: attached; def is static and never written; the function holds a reference to
    // handle.
    unsafe {
        let f = ffi::PyCFunction_NewEx(
            def as *const ffi::PyMethodDef as *mut ffi::PyMethodDef,
            handle.as_ptr(),
            ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(handle.py(), f)
    }
}

/// A built-in function object calling `def` without a `self` (a module-level function that needs
/// no Rust data).
pub fn unbound_function<'py>(
    py: Python<'py>,
    def: &'static ffi::PyMethodDef,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: attached; def is static and never written; no self or module object.
    unsafe {
        let f = ffi::PyCFunction_NewEx(
            def as *const ffi::PyMethodDef as *mut ffi::PyMethodDef,
            ptr::null_mut(),
            ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, f)
    }
}

/// A method-table entry (`METH_VARARGS | METH_KEYWORDS`) for `$f`, an
/// `unsafe fn(Python, slf, args, kwargs) -> PyResult<*mut PyObject>`.
#[macro_export]
macro_rules! py_method {
    ($name:expr, $f:path) => {
        pyo3::ffi::PyMethodDef {
            ml_name: $name.as_ptr(),
            ml_meth: pyo3::ffi::PyMethodDefPointer {
                PyCFunctionWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(
                    cfunction_with_keywords,
                    $f
                ),
            },
            ml_flags: pyo3::ffi::METH_VARARGS | pyo3::ffi::METH_KEYWORDS,
            ml_doc: std::ptr::null(),
        }
    };
}

/// The terminator of a method table.
pub const METHOD_TABLE_END: ffi::PyMethodDef = ffi::PyMethodDef::zeroed();

/// A strong reference kept by Rust beyond one attachment (in a static, say). Not a `Py<T>`:
/// nothing releases it implicitly (DESIGN.md rule 6); [`OwnedRef::release`] does, while attached.
pub struct OwnedRef(ptr::NonNull<ffi::PyObject>);

// SAFETY: only dereferenced by threads attached to the interpreter that owns the object.
unsafe impl Send for OwnedRef {}
// SAFETY: as above.
unsafe impl Sync for OwnedRef {}

impl OwnedRef {
    pub fn new(obj: Bound<'_, PyAny>) -> OwnedRef {
        OwnedRef(ptr::NonNull::new(obj.into_ptr()).expect("a live object"))
    }

    /// Borrows the object; the caller must be attached to the interpreter that owns it.
    pub fn bind<'a, 'py>(&'a self, py: Python<'py>) -> Borrowed<'a, 'py, PyAny> {
        // SAFETY: we hold a strong reference, and callers only bind while attached to its
        // interpreter (the one interpreter of this process until application groups land).
        unsafe { Borrowed::from_ptr(py, self.0.as_ptr()) }
    }

    /// Gives the reference back. Using the `OwnedRef` afterwards is a bug; this is only called
    /// just before the interpreter is finalised, after which nothing binds it.
    pub fn release(&self, _py: Python<'_>) {
        // SAFETY: attached (py), and the strong reference we own is released exactly once.
        unsafe { ffi::Py_DECREF(self.0.as_ptr()) }
    }
}

/// A `str` decoded from bytes as Latin-1: WSGI's "bytes as str" for environ values.
pub fn latin1_str<'py>(
    py: Python<'py>,
    bytes: &[u8],
) -> PyResult<Bound<'py, pyo3::types::PyString>> {
    // SAFETY: attached; the pointer and length describe a valid slice; Latin-1 decoding cannot
    // fail for any byte, and a null result (out of memory) becomes an error.
    unsafe {
        let s = ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr() as *const std::os::raw::c_char,
            bytes.len() as ffi::Py_ssize_t,
            ptr::null(),
        );
        Bound::from_owned_ptr_or_err(py, s).map(|s| s.cast_into_unchecked())
    }
}

/// The interpreter this thread is attached to, as a key (its `PyInterpreterState` address).
pub fn current_interpreter(_py: Python<'_>) -> usize {
    // SAFETY: attached (the token proves it), so there is a current thread state and interpreter.
    unsafe { ffi::PyInterpreterState_Get() as usize }
}

/// `sys.modules` of the attached interpreter.
pub fn sys_modules(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    // SAFETY: attached; PyImport_GetModuleDict returns a borrowed reference (never null once the
    // interpreter is initialised), which we turn into an owned one.
    unsafe {
        let modules = ffi::PyImport_GetModuleDict();
        Ok(Borrowed::from_ptr_or_err(py, modules)?
            .to_owned()
            .cast_into::<pyo3::types::PyDict>()?)
    }
}

/// A new `bytes` of up to `capacity` bytes written in place by `fill` (a short result is copied
/// into a right-sized object). Saves a copy, and the zeroing, of request bodies.
pub fn bytes_filled_by(
    py: Python<'_>,
    capacity: usize,
    fill: impl FnOnce(&mut UninitBuf<'_>) -> PyResult<()>,
) -> PyResult<Bound<'_, pyo3::types::PyBytes>> {
    // SAFETY: attached; PyBytes_FromStringAndSize(NULL, n) returns a new bytes object of n
    // uninitialised bytes that nothing else references yet, so handing its buffer to `fill` as
    // MaybeUninit (even with the GIL released inside `fill`) is sound. UninitBuf counts only the
    // bytes written, and only those are read back as a slice.
    unsafe {
        let obj = ffi::PyBytes_FromStringAndSize(ptr::null(), capacity as ffi::Py_ssize_t);
        let obj = Bound::from_owned_ptr_or_err(py, obj)?;
        let data = ffi::PyBytes_AsString(obj.as_ptr()) as *mut u8;
        let storage =
            std::slice::from_raw_parts_mut(data as *mut std::mem::MaybeUninit<u8>, capacity);
        let mut buf = UninitBuf::new(storage);
        fill(&mut buf)?;
        let n = buf.filled();
        if n == capacity {
            Ok(obj.cast_into_unchecked::<pyo3::types::PyBytes>())
        } else {
            let written = std::slice::from_raw_parts(data, n);
            Ok(pyo3::types::PyBytes::new(py, written))
        }
    }
}

/// Compiles a script's source (bytes, honouring a PEP 263 coding declaration and a UTF-8 BOM,
/// as the builtin `compile()` does) into a module code object named after `path`.
///
/// Not the builtin `compile()`: that first checks whether its argument is an `ast.AST`, which
/// builds the `ast` module's 120-odd types in the interpreter (about 300 KiB, kept for its life).
pub fn compile_module_source<'py>(
    py: Python<'py>,
    source: &[u8],
    path: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let source = std::ffi::CString::new(source).map_err(|_| {
        pyo3::exceptions::PySyntaxError::new_err("source code string cannot contain null bytes")
    })?;
    let filename = pyo3::types::PyString::new(py, path);
    // SAFETY: attached; source is NUL-terminated and outlives the call; filename is a live str;
    // null flags mean the defaults (no inherited future flags); -1 is the interpreter's own
    // optimisation level. The result is a new reference or null with an exception set.
    unsafe {
        let code = ffi::Py_CompileStringObject(
            source.as_ptr(),
            filename.as_ptr(),
            ffi::Py_file_input,
            ptr::null_mut(),
            -1,
        );
        Bound::from_owned_ptr_or_err(py, code)
    }
}

/// Runs module code `code` (from [`compile_module_source`]) in `globals`, a module's dict, as the
/// builtin `exec(code, globals)` does, `__builtins__` included, but without the call through
/// `exec` (three C frames and pyo3's call, 400 bytes deeper on the calling thread's stack).
pub fn exec_module_code(
    py: Python<'_>,
    code: &Bound<'_, PyAny>,
    globals: &Bound<'_, pyo3::types::PyDict>,
) -> PyResult<()> {
    prepare_globals(py, code, globals)?;
    // SAFETY: attached; code is a code object and globals a dict (checked above), both alive
    // for the call.
    let result = unsafe { eval_code(code.as_ptr(), globals.as_ptr()) };
    // SAFETY: attached; a new reference, or null with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, result).map(drop) }
}

/// What `exec()` checks and gives the globals before it runs code: the interpreter's builtins
/// dict as `__builtins__`. Apart, so that its frame is gone while the code runs.
#[inline(never)]
fn prepare_globals(
    py: Python<'_>,
    code: &Bound<'_, PyAny>,
    globals: &Bound<'_, pyo3::types::PyDict>,
) -> PyResult<()> {
    if !code.is_instance_of::<pyo3::types::PyCode>() {
        return Err(pyo3::exceptions::PyTypeError::new_err("not a code object"));
    }
    if !globals.contains("__builtins__")? {
        globals.set_item("__builtins__", py.import("builtins")?.dict())?;
    }
    Ok(())
}

/// `PyEval_EvalCode` from a frame of its own that holds nothing else.
///
/// # Safety
/// Attached; `code` a code object and `globals` a dict, alive for the call.
#[inline(never)]
unsafe fn eval_code(code: *mut ffi::PyObject, globals: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: by this function's contract.
    unsafe { ffi::PyEval_EvalCode(code, globals, globals) }
}

/// The text of `s` for a log line: a lone surrogate (from a file name decoded with
/// `surrogateescape`, say), which UTF-8 cannot carry, becomes `?`, as C mod_wsgi logs it,
/// rather than failing the write.
pub fn log_text<'a>(
    s: &'a Bound<'_, pyo3::types::PyString>,
) -> PyResult<std::borrow::Cow<'a, str>> {
    if let Ok(text) = s.to_str() {
        return Ok(std::borrow::Cow::Borrowed(text));
    }
    let bytes = s.call_method1("encode", ("utf-8", "replace"))?;
    let bytes = bytes.cast::<pyo3::types::PyBytes>()?;
    Ok(std::borrow::Cow::Owned(
        String::from_utf8_lossy(bytes.as_bytes()).into_owned(),
    ))
}
