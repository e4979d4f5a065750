//! Attaching Apache's worker threads to the interpreter (DESIGN.md rule 4).
//!
//! Each (interpreter, OS thread) pair gets one thread state, created on first use and kept for
//! the life of the process; attaching is `PyEval_RestoreThread`, detaching `PyEval_SaveThread`.
//! For the main interpreter the thread state is created by `PyGILState_Ensure`, so it is also the
//! thread's PyGILState state and C extensions using the simplified GIL API land in it.
//!
//! [`attached`] is the only way host code gets a `Python<'_>` token. It runs its closure through
//! pyo3's own method trampoline, which is what tells pyo3 that this thread is attached (so a
//! `PyErr` or `Py<T>` dropped inside is released at once rather than aborting under
//! `pyo3_disable_reference_pool`), without pyo3 ever calling `PyGILState_Ensure` itself.

use pyo3::ffi;
use pyo3::Python;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether Python was initialised (and not yet finalised) in this process.
static RUNNING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's cached thread states: (interpreter, thread state) pairs.
    static THREAD_STATES: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
    /// Set while this thread is inside [`attached`], to refuse re-entry.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Python is not running in this process (never started, failed to start, or finalised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRunning;

pub(super) fn set_running(running: bool) {
    RUNNING.store(running, Ordering::SeqCst);
}

pub fn is_running() -> bool {
    RUNNING.load(Ordering::SeqCst)
}

/// Records `tstate` (detached) as this thread's state for the main interpreter.
pub(super) fn remember_main_thread_state(tstate: *mut ffi::PyThreadState) {
    // SAFETY: tstate is a live thread state of the main interpreter.
    let interp = unsafe { ffi::PyThreadState_GetInterpreter(tstate) } as usize;
    THREAD_STATES.with(|c| c.borrow_mut().push((interp, tstate as usize)));
}

fn main_interpreter() -> *mut ffi::PyInterpreterState {
    // SAFETY: callable whenever Python is initialised, with or without an attached thread.
    unsafe { ffi::PyInterpreterState_Main() }
}

/// This thread's thread state for the main interpreter, created (detached) on first use.
fn main_thread_state() -> *mut ffi::PyThreadState {
    let interp = main_interpreter() as usize;
    if let Some(ts) = THREAD_STATES.with(|c| {
        c.borrow()
            .iter()
            .find(|(i, _)| *i == interp)
            .map(|(_, t)| *t)
    }) {
        return ts as *mut ffi::PyThreadState;
    }
    // SAFETY: Python is running and this thread is detached (not INSIDE), so PyGILState_Ensure
    // creates this thread's main-interpreter state and takes the GIL; SaveThread gives the GIL
    // back while keeping the state (its gilstate counter stays at 1, so it is never freed).
    let ts = unsafe {
        ffi::PyGILState_Ensure();
        ffi::PyEval_SaveThread()
    };
    THREAD_STATES.with(|c| c.borrow_mut().push((interp, ts as usize)));
    ts
}

/// This thread's main-interpreter thread state (created if needed), for finalisation.
pub(super) fn cached_main_thread_state() -> *mut ffi::PyThreadState {
    main_thread_state()
}

/// The closure [`attached`] runs, type-erased so one trampoline instantiation serves all.
type Job<'a> = &'a mut dyn FnMut(Python<'_>);

/// Called by pyo3's trampoline (which has marked the thread attached) with our job as `slf`.
unsafe fn run_job(py: Python<'_>, slf: *mut ffi::PyObject) -> pyo3::PyResult<*mut ffi::PyObject> {
    // SAFETY: `slf` is the `*mut Job` that `attached` passed, alive for this call.
    let job = unsafe { &mut *(slf as *mut Job<'_>) };
    job(py);
    // SAFETY: attached; returning a new reference to None as the trampoline expects.
    Ok(unsafe { ffi::Py_NewRef(ffi::Py_None()) })
}

/// Runs `f` attached to the main interpreter on this thread's cached thread state, then detaches.
/// A panic in `f` is carried across the attachment and resumed after detaching.
pub fn attached<R>(f: impl FnOnce(Python<'_>) -> R) -> Result<R, NotRunning> {
    if !is_running() {
        return Err(NotRunning);
    }
    assert!(
        !INSIDE.with(Cell::get),
        "attached() re-entered on one thread"
    );
    let tstate = main_thread_state();
    let mut f = Some(f);
    let mut outcome: Option<std::thread::Result<R>> = None;
    let mut body = |py: Python<'_>| {
        let f = f.take().expect("job runs once");
        outcome = Some(catch_unwind(AssertUnwindSafe(|| f(py))));
    };
    let mut job: Job<'_> = &mut body;
    INSIDE.with(|c| c.set(true));
    // SAFETY: tstate belongs to this thread and is detached; RestoreThread takes the GIL and
    // makes it current. The trampoline calls run_job with the pointer to `job`, which outlives
    // the call; its result is a new reference (None) or null with an exception set.
    unsafe {
        ffi::PyEval_RestoreThread(tstate);
        let trampoline = pyo3::impl_::trampoline::get_trampoline_function!(noargs, run_job);
        let result = trampoline(
            &mut job as *mut Job<'_> as *mut ffi::PyObject,
            ptr::null_mut(),
        );
        if result.is_null() {
            ffi::PyErr_Print();
        } else {
            ffi::Py_DECREF(result);
        }
        ffi::PyEval_SaveThread();
    }
    INSIDE.with(|c| c.set(false));
    match outcome.expect("trampoline ran the job") {
        Ok(value) => Ok(value),
        Err(panic) => resume_unwind(panic),
    }
}

/// Runs `f` with the GIL released, for blocking calls into Apache. `f` must not touch Python:
/// the `Send` bound keeps the `Python` token and Python references out of it.
pub fn detached<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
    py.detach(f)
}
