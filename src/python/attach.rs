//! Attaching Apache's worker threads to an interpreter (DESIGN.md rule 4).
//!
//! Each (interpreter, OS thread) pair gets one thread state, created on first use and kept for
//! the life of the process; attaching is `PyEval_RestoreThread`, detaching `PyEval_SaveThread`.
//! For the main interpreter the thread state is created by `PyGILState_Ensure`, so it is also the
//! thread's PyGILState state and C extensions using the simplified GIL API land in it. A thread's
//! main-interpreter state is always made before its first sub-interpreter state (CPython binds
//! the first thread state a thread gets as its PyGILState state), so that stays true on a thread
//! that served an application group first.
//!
//! [`attached`] (main interpreter) and [`attached_to`] (an application group) are the only ways
//! host code gets a `Python<'_>` token. They run their closure through pyo3's own method
//! trampoline, which is what tells pyo3 that this thread is attached (so a `PyErr` or `Py<T>`
//! dropped inside is released at once rather than aborting under `pyo3_disable_reference_pool`),
//! without pyo3 ever calling `PyGILState_Ensure` itself.

use super::interpreters;
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
    /// The application groups this thread has used: (group name, interpreter).
    static GROUPS: RefCell<Vec<(String, usize)>> = const { RefCell::new(Vec::new()) };
    /// Set while this thread is inside [`attached`], to refuse re-entry.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Python is not running in this process (never started, failed to start, or finalised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRunning;

/// Why [`attached_to`] could not run its closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    NotRunning,
    /// The application group's interpreter could not be created (the reason).
    NoInterpreter(String),
}

impl From<NotRunning> for AttachError {
    fn from(_: NotRunning) -> Self {
        AttachError::NotRunning
    }
}

pub(super) fn set_running(running: bool) {
    RUNNING.store(running, Ordering::SeqCst);
}

pub fn is_running() -> bool {
    RUNNING.load(Ordering::SeqCst)
}

/// Records `tstate` (detached, of this thread) as this thread's state for its interpreter.
pub(super) fn remember_thread_state(tstate: *mut ffi::PyThreadState) {
    // SAFETY: tstate is a live thread state.
    let interp = unsafe { ffi::PyThreadState_GetInterpreter(tstate) } as usize;
    THREAD_STATES.with(|c| c.borrow_mut().push((interp, tstate as usize)));
}

/// Forgets this thread's state for `interp` (after the interpreter was destroyed).
pub(super) fn forget_thread_state(interp: usize) {
    THREAD_STATES.with(|c| c.borrow_mut().retain(|(i, _)| *i != interp));
}

fn cached_thread_state(interp: usize) -> Option<*mut ffi::PyThreadState> {
    THREAD_STATES.with(|c| {
        c.borrow()
            .iter()
            .find(|(i, _)| *i == interp)
            .map(|(_, t)| *t as *mut ffi::PyThreadState)
    })
}

fn main_interpreter() -> *mut ffi::PyInterpreterState {
    // SAFETY: callable whenever Python is initialised, with or without an attached thread.
    unsafe { ffi::PyInterpreterState_Main() }
}

/// This thread's thread state for the main interpreter, created (detached) on first use.
pub(super) fn main_thread_state() -> *mut ffi::PyThreadState {
    let interp = main_interpreter() as usize;
    if let Some(ts) = cached_thread_state(interp) {
        return ts;
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

/// This thread's thread state for sub-interpreter `interp`, created (detached) on first use.
fn sub_thread_state(interp: usize) -> *mut ffi::PyThreadState {
    if let Some(ts) = cached_thread_state(interp) {
        return ts;
    }
    // The main-interpreter state first, so that it is the one PyGILState binds to this thread.
    main_thread_state();
    // SAFETY: interp is a live sub-interpreter (registered until the child exits, and RUNNING is
    // checked by the caller); PyThreadState_New needs no GIL and returns a detached state.
    let ts = unsafe { ffi::PyThreadState_New(interp as *mut ffi::PyInterpreterState) };
    assert!(!ts.is_null(), "PyThreadState_New failed");
    THREAD_STATES.with(|c| c.borrow_mut().push((interp, ts as usize)));
    interpreters::note_worker_thread_state(interp, ts as usize);
    ts
}

/// The closure [`run_on`] runs, type-erased so one trampoline instantiation serves all.
type Job<'a> = &'a mut dyn FnMut(Python<'_>);

/// Called by pyo3's trampoline (which has marked the thread attached) with our job as `slf`.
unsafe fn run_job(py: Python<'_>, slf: *mut ffi::PyObject) -> pyo3::PyResult<*mut ffi::PyObject> {
    // SAFETY: `slf` is the `*mut Job` that `in_trampoline` passed, alive for this call.
    let job = unsafe { &mut *(slf as *mut Job<'_>) };
    job(py);
    // SAFETY: attached; returning a new reference to None as the trampoline expects.
    Ok(unsafe { ffi::Py_NewRef(ffi::Py_None()) })
}

/// Runs `f` through pyo3's trampoline on the thread state that is current.
/// A panic in `f` is carried across the trampoline and resumed afterwards.
///
/// # Safety
/// This thread must hold the GIL with a current thread state (and not be inside a trampoline).
pub(super) unsafe fn in_trampoline<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
    let mut f = Some(f);
    let mut outcome: Option<std::thread::Result<R>> = None;
    let mut body = |py: Python<'_>| {
        let f = f.take().expect("job runs once");
        outcome = Some(catch_unwind(AssertUnwindSafe(|| f(py))));
    };
    let mut job: Job<'_> = &mut body;
    INSIDE.with(|c| c.set(true));
    // SAFETY: by the caller's contract the GIL is held; the trampoline calls run_job with the
    // pointer to `job`, which outlives the call; its result is a new reference (None) or null
    // with an exception set.
    unsafe {
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
    }
    INSIDE.with(|c| c.set(false));
    match outcome.expect("trampoline ran the job") {
        Ok(value) => value,
        Err(panic) => resume_unwind(panic),
    }
}

/// Attaches `tstate` (this thread's, detached), runs `f`, and detaches.
pub(super) fn run_on<R>(tstate: *mut ffi::PyThreadState, f: impl FnOnce(Python<'_>) -> R) -> R {
    assert!(
        !INSIDE.with(Cell::get),
        "attached() re-entered on one thread"
    );
    // SAFETY: tstate belongs to this thread and is detached; RestoreThread takes the GIL and
    // makes it current, SaveThread (also after a panic, which in_trampoline carries out)
    // releases it again.
    unsafe {
        ffi::PyEval_RestoreThread(tstate);
        let result = catch_unwind(AssertUnwindSafe(|| in_trampoline(f)));
        ffi::PyEval_SaveThread();
        result.unwrap_or_else(|panic| resume_unwind(panic))
    }
}

/// Whether this thread is inside [`attached`] or [`attached_to`] (possibly with the GIL released
/// for a call into Apache), where attaching again is not supported.
pub fn inside_python() -> bool {
    INSIDE.with(Cell::get)
}

/// Runs `f` attached to the main interpreter on this thread's cached thread state, then detaches.
/// A panic in `f` is carried across the attachment and resumed after detaching.
pub fn attached<R>(f: impl FnOnce(Python<'_>) -> R) -> Result<R, NotRunning> {
    match group_thread_state("") {
        Ok(tstate) => Ok(run_on(tstate, f)),
        // The main interpreter's thread state fails only when Python is not running.
        Err(_) => Err(NotRunning),
    }
}

/// Runs `f` attached to the interpreter of application group `group` ('' is the main
/// interpreter, as `%{GLOBAL}` names it), creating that interpreter on its first use in the
/// process. The GIL is not held while waiting for an interpreter to be created.
pub fn attached_to<R>(group: &str, f: impl FnOnce(Python<'_>) -> R) -> Result<R, AttachError> {
    // Only the call of `f` is generic: an application runs on the stack below this frame, which
    // two inlined copies of the way to a thread state made 700 bytes.
    Ok(run_on(group_thread_state(group)?, f))
}

/// This thread's thread state (detached) for the interpreter of application group `group` ('' is
/// the main interpreter), the interpreter created on its first use in the process.
#[inline(never)]
fn group_thread_state(group: &str) -> Result<*mut ffi::PyThreadState, AttachError> {
    if !is_running() {
        return Err(AttachError::NotRunning);
    }
    assert!(
        !INSIDE.with(Cell::get),
        "attached() re-entered on one thread"
    );
    if group.is_empty() {
        return Ok(main_thread_state());
    }
    sub_interpreter_thread_state(group)
}

/// This thread's thread state for application group `group`'s sub-interpreter. Apart from
/// [`group_thread_state`]: a server whose applications all run in the main interpreter
/// (`%{GLOBAL}`) never runs this, so its code stays out of that server's pages.
#[inline(never)]
fn sub_interpreter_thread_state(group: &str) -> Result<*mut ffi::PyThreadState, AttachError> {
    let known = GROUPS.with(|g| {
        g.borrow()
            .iter()
            .find(|(name, _)| name == group)
            .map(|(_, i)| *i)
    });
    let interp = match known {
        Some(interp) => interp,
        None => {
            let interp = interpreters::interpreter(group).map_err(AttachError::NoInterpreter)?;
            GROUPS.with(|g| g.borrow_mut().push((group.to_string(), interp)));
            interp
        }
    };
    Ok(sub_thread_state(interp))
}

/// Runs `f` with the GIL released, for blocking calls into Apache. `f` must not touch Python:
/// the `Send` bound keeps the `Python` token and Python references out of it.
pub fn detached<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
    py.detach(f)
}
