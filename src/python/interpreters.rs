//! Application groups: one Python sub-interpreter per group name in each process, created on
//! first use and destroyed when the child process exits, before the main interpreter is
//! finalised.
//!
//! Sub-interpreters are created and destroyed by one thread of ours, the interpreter thread,
//! started when the first one is needed. It imports `threading` into each new interpreter, so
//! that `threading.main_thread()` of an application group is the thread that will destroy it
//! (Python 3.11 and 3.12; 3.13 takes the process's main thread): no request thread is ever a
//! group's "main thread" (as none is the main interpreter's), and the wait for threads inside
//! `Py_EndInterpreter` never waits on a request thread.
//!
//! At exit every interpreter gets a bounded wait for the threads its application started. One
//! whose threads are still running (a non-daemon thread past the deadline, or any daemon thread)
//! cannot be destroyed: CPython aborts the process if `Py_EndInterpreter` finds another thread
//! state, and a thread state deleted under a running thread crashes it. Such an interpreter gets
//! its `atexit` callbacks run and is left as it is, and then the main interpreter cannot be
//! finalised either (`Py_FinalizeEx` aborts on a remaining sub-interpreter): it too just runs its
//! `atexit` callbacks.

use super::attach;
use super::setup;
use pyo3::ffi;
use pyo3::Python;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Prepares a new interpreter for the application group named (runs attached to it).
pub(super) type Prepare = dyn Fn(Python<'_>, &str) -> Result<(), String> + Send + Sync;

static PREPARE: OnceLock<Box<Prepare>> = OnceLock::new();

pub(super) fn set_prepare(prepare: Box<Prepare>) {
    let _ = PREPARE.set(prepare);
}

/// One application group: its interpreter once created. The mutex is held (without the GIL)
/// while the interpreter is being created, so two first requests create it once.
#[derive(Default)]
struct Group {
    interp: Mutex<Option<usize>>,
}

#[derive(Default)]
struct Registry {
    groups: HashMap<String, Arc<Group>>,
    /// Where to send work for the interpreter thread, once it runs.
    thread: Option<mpsc::Sender<Job>>,
    /// Thread states of request threads in sub-interpreters: (interpreter, thread state).
    worker_states: Vec<(usize, usize)>,
}

/// Never locked while holding the GIL by a thread that waits for the GIL under it.
static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An interpreter that had to be left running at exit.
#[derive(Debug, Clone)]
pub(super) struct Left {
    /// The interpreter and the threads still running in it.
    pub description: String,
    /// Whether a thread that is not a daemon thread is among them (one that did not end in
    /// time), as opposed to daemon threads only.
    pub stuck: bool,
}

enum Job {
    Create {
        name: String,
        reply: mpsc::Sender<Result<usize, String>>,
    },
    Destroy {
        deadline: Instant,
        reply: mpsc::Sender<Vec<Left>>,
    },
}

/// The interpreter of application group `name` (not ''), created on first use. Called with the
/// GIL released; blocks while the interpreter thread creates it.
pub(super) fn interpreter(name: &str) -> Result<usize, String> {
    let group = registry()
        .groups
        .entry(name.to_string())
        .or_default()
        .clone();
    let mut slot = lock(&group.interp);
    if let Some(interp) = *slot {
        return Ok(interp);
    }
    let stopped = || "the interpreter thread has stopped".to_string();
    let (reply, answer) = mpsc::channel();
    interpreter_thread()?
        .send(Job::Create {
            name: name.to_string(),
            reply,
        })
        .map_err(|_| stopped())?;
    let interp = answer.recv().map_err(|_| stopped())??;
    *slot = Some(interp);
    Ok(interp)
}

/// Records a request thread's state in sub-interpreter `interp`, to be deleted at exit.
pub(super) fn note_worker_thread_state(interp: usize, tstate: usize) {
    registry().worker_states.push((interp, tstate));
}

fn take_worker_states(interp: usize) -> Vec<usize> {
    let mut reg = registry();
    let (taken, kept) = reg
        .worker_states
        .drain(..)
        .partition::<Vec<_>, _>(|(i, _)| *i == interp);
    reg.worker_states = kept;
    taken.into_iter().map(|(_, t)| t).collect()
}

fn interpreter_thread() -> Result<mpsc::Sender<Job>, String> {
    let mut reg = registry();
    if let Some(sender) = &reg.thread {
        return Ok(sender.clone());
    }
    let (sender, jobs) = mpsc::channel();
    std::thread::Builder::new()
        .name("mod_wsgi-interp".into())
        .spawn(move || serve(jobs))
        .map_err(|e| format!("cannot start the interpreter thread: {e}"))?;
    reg.thread = Some(sender.clone());
    Ok(sender)
}

/// Destroys every sub-interpreter (at child exit, once no request can start). Returns a
/// description of each one that had to be left running; Err when the interpreter thread did not
/// answer in time (so none can be assumed destroyed).
pub(super) fn destroy_all(deadline: Instant) -> Result<Vec<Left>, String> {
    let Some(thread) = registry().thread.clone() else {
        return Ok(Vec::new());
    };
    let (reply, answer) = mpsc::channel();
    let gone = || "the interpreter thread has stopped".to_string();
    thread
        .send(Job::Destroy { deadline, reply })
        .map_err(|_| gone())?;
    // The thread's own waits end at the deadline; what remains is atexit callbacks and
    // finalisers, given a few seconds more.
    let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(3);
    answer.recv_timeout(wait).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => {
            "sub-interpreters were still being destroyed when the time for it ran out".to_string()
        }
        mpsc::RecvTimeoutError::Disconnected => gone(),
    })
}

/// A sub-interpreter made by the interpreter thread, with that thread's state in it.
struct Created {
    name: String,
    interp: usize,
    tstate: usize,
}

/// The interpreter thread's loop.
fn serve(jobs: mpsc::Receiver<Job>) {
    let mut created: Vec<Created> = Vec::new();
    for job in jobs {
        match job {
            Job::Create { name, reply } => {
                let made = catch_unwind(AssertUnwindSafe(|| create(&name)))
                    .unwrap_or_else(|p| Err(crate::panic_message(&*p)));
                let _ = reply.send(made.map(|c| {
                    let interp = c.interp;
                    created.push(c);
                    interp
                }));
            }
            Job::Destroy { deadline, reply } => {
                let left = catch_unwind(AssertUnwindSafe(|| {
                    destroy(std::mem::take(&mut created), deadline)
                }))
                .unwrap_or_else(|p| {
                    vec![Left {
                        description: format!("(internal error: {})", crate::panic_message(&*p)),
                        stuck: true,
                    }]
                });
                let _ = reply.send(left);
                return;
            }
        }
    }
}

/// `Py_NewInterpreterFromConfig` with the settings of `Py_NewInterpreter` (a GIL shared with the
/// main interpreter, threads, daemon threads, fork and exec allowed, single-phase extension
/// modules allowed), which is what C mod_wsgi's applications run with. With `own_gil`
/// (`WSGIPerInterpreterGIL On`) the interpreter gets a GIL and an object allocator of its own,
/// which CPython allows only with extension modules that declare support for it.
///
/// # Safety
/// The GIL must be held, with a current thread state.
#[cfg(Py_3_12)]
unsafe fn new_interpreter(own_gil: bool) -> Result<*mut ffi::PyThreadState, String> {
    let config = ffi::PyInterpreterConfig {
        use_main_obmalloc: i32::from(!own_gil),
        allow_fork: 1,
        allow_exec: 1,
        allow_threads: 1,
        allow_daemon_threads: 1,
        check_multi_interp_extensions: i32::from(own_gil),
        gil: if own_gil {
            ffi::PyInterpreterConfig_OWN_GIL
        } else {
            ffi::PyInterpreterConfig_SHARED_GIL
        },
    };
    let mut tstate = std::ptr::null_mut();
    // SAFETY: by the caller's contract; config outlives the call.
    let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut tstate, &config) };
    // SAFETY: inspecting the status returned above.
    if unsafe { ffi::PyStatus_Exception(status) } != 0 || tstate.is_null() {
        return Err(super::runtime::status_error(
            "Py_NewInterpreterFromConfig() failed",
            &status,
        ));
    }
    Ok(tstate)
}

/// # Safety
/// The GIL must be held, with a current thread state.
#[cfg(not(Py_3_12))]
unsafe fn new_interpreter(own_gil: bool) -> Result<*mut ffi::PyThreadState, String> {
    // Refused by `apache2 -t` for Python 3.11.
    debug_assert!(!own_gil, "WSGIPerInterpreterGIL needs Python 3.12");
    // SAFETY: by the caller's contract.
    let tstate = unsafe { ffi::Py_NewInterpreter() };
    if tstate.is_null() {
        return Err("Py_NewInterpreter() failed".to_string());
    }
    Ok(tstate)
}

/// Creates and prepares the interpreter of group `name` (on the interpreter thread).
fn create(name: &str) -> Result<Created, String> {
    let main = attach::main_thread_state();
    let own_gil = super::runtime::per_interpreter_gil();
    // SAFETY: `main` is this thread's detached main-interpreter state; restoring it takes the GIL
    // with a current thread state, as creating an interpreter requires. Afterwards the new
    // interpreter's state is current (or `main` again on failure), holding the GIL (its own one,
    // the main GIL having been released, with `own_gil`); SaveThread detaches it.
    let tstate = unsafe {
        ffi::PyEval_RestoreThread(main);
        let made = new_interpreter(own_gil);
        ffi::PyEval_SaveThread();
        made?
    };
    attach::remember_thread_state(tstate);
    // SAFETY: tstate is the live thread state just created.
    let interp = unsafe { ffi::PyThreadState_GetInterpreter(tstate) } as usize;
    super::runtime::log_info(&format!(
        "mod_wsgi (pid={}): Create interpreter '{name}'{}.",
        std::process::id(),
        if own_gil {
            " with a GIL of its own"
        } else {
            ""
        }
    ));
    let prepare = PREPARE.get().expect("set when Python started");
    let prepared = catch_unwind(AssertUnwindSafe(|| {
        attach::run_on(tstate, |py| prepare(py, name))
    }))
    .unwrap_or_else(|panic| Err(crate::panic_message(&*panic)));
    match prepared {
        Ok(()) => Ok(Created {
            name: name.to_string(),
            interp,
            tstate: tstate as usize,
        }),
        Err(e) => {
            // What was made before the failure must not outlive the interpreter.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                attach::run_on(tstate, super::runtime::release)
            }));
            // A fresh interpreter with no other thread: ending it cannot block.
            // SAFETY: tstate is this thread's detached state of that interpreter.
            unsafe { end_interpreter(tstate) };
            attach::forget_thread_state(interp);
            Err(e)
        }
    }
}

/// Destroys the interpreter whose thread state `tstate` (this thread's, detached) is.
///
/// # Safety
/// No other thread state of the interpreter may exist.
unsafe fn end_interpreter(tstate: *mut ffi::PyThreadState) {
    // SAFETY: by the caller's contract; the state is this thread's and detached.
    unsafe {
        ffi::PyEval_RestoreThread(tstate);
        end_current_interpreter(tstate);
    }
}

/// Destroys the interpreter of `tstate`, this thread's current state (the GIL held). Runs its
/// wait for threads (none are left by then) and its `atexit` callbacks; afterwards this thread
/// is detached.
///
/// # Safety
/// No other thread state of the interpreter may exist.
unsafe fn end_current_interpreter(tstate: *mut ffi::PyThreadState) {
    // SAFETY: by the caller's contract.
    unsafe { ffi::Py_EndInterpreter(tstate) };
    // Python 3.12 and later release the GIL as the interpreter goes; 3.11 leaves this thread
    // holding it with no current thread state, so switch to the main state and let go.
    #[cfg(not(Py_3_12))]
    // SAFETY: this thread holds the GIL and its main state is detached.
    unsafe {
        ffi::PyThreadState_Swap(attach::main_thread_state());
        ffi::PyEval_SaveThread();
    }
}

/// How many thread states of `interp` exist besides `ours`.
///
/// # Safety
/// The GIL must be held (so no Python thread of it starts or ends meanwhile).
unsafe fn other_thread_states(interp: usize, ours: usize) -> usize {
    let mut count = 0;
    // SAFETY: by the caller's contract; the list is walked while the GIL keeps it stable.
    unsafe {
        let mut ts = ffi::PyInterpreterState_ThreadHead(interp as *mut ffi::PyInterpreterState);
        while !ts.is_null() {
            if ts as usize != ours {
                count += 1;
            }
            ts = ffi::PyThreadState_Next(ts);
        }
    }
    count
}

enum Ending {
    /// Nothing else runs in it: destroy it.
    Destroy,
    /// Threads still run in it (described): leave it.
    Leave(setup::Running),
}

/// Destroys the interpreters made by this thread (at exit), in the order they were created.
fn destroy(created: Vec<Created>, deadline: Instant) -> Vec<Left> {
    let mut left = Vec::new();
    for c in created {
        let workers = take_worker_states(c.interp);
        let tstate = c.tstate as *mut ffi::PyThreadState;
        // SAFETY: tstate is this thread's detached state of the interpreter; the GIL it takes is
        // held (with it current) for the trampoline, and the request threads whose states are
        // deleted are no longer serving requests (Python is no longer running for them).
        let ending = unsafe {
            ffi::PyEval_RestoreThread(tstate);
            catch_unwind(AssertUnwindSafe(|| {
                attach::in_trampoline(|py| {
                    super::runtime::stopping(py);
                    let running = setup::join_threads(py, deadline);
                    for ts in &workers {
                        let ts = *ts as *mut ffi::PyThreadState;
                        ffi::PyThreadState_Clear(ts);
                        ffi::PyThreadState_Delete(ts);
                    }
                    setup::before_finalize(py);
                    if other_thread_states(c.interp, c.tstate) == 0 {
                        super::runtime::release(py);
                        Ending::Destroy
                    } else {
                        setup::run_exit_callbacks(py);
                        Ending::Leave(running)
                    }
                })
            }))
        }
        .unwrap_or_else(|panic| {
            Ending::Leave(setup::Running {
                non_daemon: vec![format!("internal error: {}", crate::panic_message(&*panic))],
                daemon: Vec::new(),
            })
        });
        match ending {
            Ending::Destroy => {
                // SAFETY: no other thread state of the interpreter exists (checked above, with
                // the GIL held since), and tstate is still current.
                unsafe { end_current_interpreter(tstate) };
                attach::forget_thread_state(c.interp);
                super::runtime::log_info(&format!(
                    "mod_wsgi (pid={}): Destroy interpreter '{}'.",
                    std::process::id(),
                    c.name
                ));
            }
            Ending::Leave(running) => {
                // SAFETY: detaching the state restored above.
                unsafe { ffi::PyEval_SaveThread() };
                let mut threads = running.all();
                // Thread states made by C code, not the threading module, count as stuck.
                let stuck = !running.non_daemon.is_empty() || threads.is_empty();
                if threads.is_empty() {
                    threads.push("threads not started by the threading module".into());
                }
                left.push(Left {
                    description: format!("'{}' ({})", c.name, threads.join(", ")),
                    stuck,
                });
            }
        }
    }
    left
}
