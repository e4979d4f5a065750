//! One process of a daemon process group: starts Python, imports the group's start-up scripts,
//! then serves connections from Apache's children on `threads` threads until it is told to stop
//! (a signal, `maximum-requests`, a changed script, one of the `timers`), finishing what it is
//! serving first.

use super::gil_probe::GilProbe;
use super::plan::GroupPlan;
use super::process::{self, CONTROL_SIGNALS};
use super::scoreboard::Scoreboard;
use super::timers::{self, Activity, Slot};
use super::unix;
use crate::python;
use crate::wsgi::Level;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Why the process stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    Running = 0,
    /// Finish current requests (within graceful-timeout, or eviction-timeout for SIGUSR1) and be
    /// replaced: SIGUSR1, `maximum-requests`, a changed script, `restart-interval`,
    /// `inactivity-timeout`.
    Graceful = 1,
    /// Apache is stopping or restarting, or `request-timeout`, `startup-timeout` or
    /// `deadlock-timeout` expired: serve what is already queued, then end (within
    /// shutdown-timeout).
    Shutdown = 2,
}

/// What the threads of the process share.
pub struct State {
    reason: AtomicU8,
    /// The graceful stop came from SIGUSR1 (set with the reason, read after the wake-up).
    evicted: AtomicBool,
    /// Written once when stopping, which wakes every thread waiting for a connection.
    wake_write: OwnedFd,
    /// Where the free threads wait for a connection; the most recently freed is woken first.
    waiter: unix::ConnectionWaiter,
    stopped: (Mutex<bool>, Condvar),
    /// The stop came from the supervisor (Apache is stopping or restarting): the connections
    /// queued on the listener are served before the process ends. Any other shutdown leaves
    /// them to the replacement, which shares the listener.
    drain: AtomicBool,
    /// The connections queued when Apache stopped the group have all been taken.
    drained: AtomicBool,
    /// A request ran past request-timeout: where the threads are is logged as the process
    /// stops, as C does.
    pub dump_stacks: AtomicBool,
    requests: AtomicU64,
    /// When each thread's request started, for the timers.
    pub activity: Activity,
}

impl State {
    fn new(threads: usize, listener: BorrowedFd<'_>) -> std::io::Result<State> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 just created both descriptors; each is owned once.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let waiter = unix::ConnectionWaiter::new(listener, r)?;
        Ok(State {
            reason: AtomicU8::new(StopReason::Running as u8),
            evicted: AtomicBool::new(false),
            wake_write: w,
            waiter,
            stopped: (Mutex::new(false), Condvar::new()),
            drain: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            dump_stacks: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            activity: Activity::new(threads),
        })
    }

    pub fn reason(&self) -> StopReason {
        match self.reason.load(Ordering::Acquire) {
            0 => StopReason::Running,
            1 => StopReason::Graceful,
            _ => StopReason::Shutdown,
        }
    }

    /// Starts stopping for `reason` (a shutdown overrides a graceful stop, not the reverse);
    /// true if this call changed the reason.
    pub fn stop(&self, reason: StopReason) -> bool {
        self.stop_as(reason, false)
    }

    /// Starts a graceful stop because the process is evicted (SIGUSR1); true if this call
    /// started the stop.
    pub fn evict(&self) -> bool {
        self.stop_as(StopReason::Graceful, true)
    }

    /// Whether the stop is an eviction.
    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    fn stop_as(&self, reason: StopReason, evicted: bool) -> bool {
        let changed = self
            .reason
            .fetch_max(reason as u8, Ordering::AcqRel)
            .lt(&(reason as u8));
        if changed {
            // Before the wake-up below, so whoever is woken reads it.
            self.evicted.store(evicted, Ordering::Release);
            // SAFETY: writing one byte from a valid buffer to our own pipe.
            unsafe { libc::write(self.wake_write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
            let (lock, cvar) = &self.stopped;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cvar.notify_all();
        }
        changed
    }

    fn wait_for_stop(&self) {
        let (lock, cvar) = &self.stopped;
        let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !*stopped {
            stopped = cvar.wait(stopped).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Whether the process is to stop, waiting at most `limit` for it.
    fn wait_for_stop_within(&self, limit: Duration) -> bool {
        let (lock, cvar) = &self.stopped;
        let stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (stopped, _) = cvar
            .wait_timeout_while(stopped, limit, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *stopped
    }
}

/// Parks the main thread while the process serves, having dropped the start-up code's pages
/// once the threads it started are under way (see `process::release_start_up_code`; this
/// function and `State::wait_for_stop` are serving code).
#[inline(never)]
fn wait_serving(state: &State) {
    if !state.wait_for_stop_within(START_UP_SETTLES) {
        process::release_start_up_code();
        state.wait_for_stop();
    }
}

/// How long after start-up the threads it started have surely left its code.
const START_UP_SETTLES: Duration = Duration::from_secs(1);

/// The process's whole life, in the process the supervisor forked; never returns.
pub fn run(plan: GroupPlan, board: Option<Arc<Scoreboard>>) -> ! {
    // Shared, not cloned, by the threads: a thread's closure is moved onto its stack when it
    // starts, and a request thread's stack then kept the 2 KB plan below everything it served.
    let plan = Arc::new(plan);
    // SAFETY: getppid has no preconditions.
    let supervisor = unsafe { libc::getppid() };
    process::mask_signals(&[libc::SIGCHLD], false);
    // Before any thread starts, so that every thread inherits the signals unblocked.
    let signals = match process::forward_signals(&DAEMON_SIGNALS) {
        Ok(signals) => signals,
        Err(e) => {
            plan.log(
                Level::Error,
                &format!("{}: Cannot catch the control signals: {e}", plan.tag()),
            );
            process::exit_now(1);
        }
    };
    if !process::die_with_parent(libc::SIGTERM, supervisor) {
        process::exit_now(0);
    }
    let name = plan.name.clone();
    let tag = plan.tag();
    if let Some(title) = &plan.options.display_name {
        (plan.set_title)(title);
    }
    process::set_thread_name(&format!("wsgi:{name}"));
    plan.log(
        Level::Info,
        &format!(
            "{tag}: Starting process '{name}' with uid={}, gid={} and threads={}.",
            plan.identity.uid, plan.identity.gid, plan.options.threads
        ),
    );
    // SAFETY: the listener stays open for the life of the process.
    let listener = unsafe { BorrowedFd::borrow_raw(plan.listener) };
    let state = match State::new(plan.options.threads as usize, listener) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            plan.log(
                Level::Error,
                &format!("{tag}: Cannot set up waiting for connections: {e}"),
            );
            process::exit_now(1);
        }
    };
    spawn_signal_thread(&plan, state.clone(), signals);
    process::watch_for_forks();
    let info = plan.server_info.clone();
    let prepare =
        move |py: pyo3::Python<'_>, group: &str| crate::wsgi::interp::prepare(py, &info, group);
    if let Err(e) = python::initialize(&plan.python, prepare, crate::wsgi::interp::release) {
        plan.log(
            Level::Error,
            &format!("{tag}: Python could not be started in daemon process '{name}': {e}"),
        );
        process::exit_now(1);
    }
    for import in &plan.imports {
        super::serve::import_at_start(&plan, import);
    }
    process::release_start_up_memory();
    // Only now: what start-up allocated and freed has been given back already.
    process::keep_freed_heap_memory();
    if let Some(board) = &board {
        board.mark_ready();
    }
    let threads: Vec<_> = (0..plan.options.threads)
        .map(|i| {
            let (plan, state, board) = (Arc::clone(&plan), state.clone(), board.clone());
            let mut builder = std::thread::Builder::new().name(format!("wsgi:{name}:{i}"));
            if let Some(size) = plan.options.stack_size {
                builder = builder.stack_size(size);
            }
            builder.spawn(move || accept_loop(&plan, &state, board, i as usize))
        })
        .filter_map(Result::ok)
        .collect();
    let probe = GilProbe::spawn(plan.options.deadlock_timeout, state.clone());
    timers::spawn_monitor(&plan, state.clone());
    wait_serving(&state);
    let reason = state.reason();
    let (limit, why) = timers::stop_limit(reason, state.evicted(), &plan.options);
    plan.log(
        Level::Info,
        &format!("{tag}: Shutdown requested '{name}' ({reason:?})."),
    );
    // The threads accept nothing more: have the supervisor start the replacement now, while
    // the requests in progress finish (it ignores this when it is stopping the group itself).
    if let Some(board) = &board {
        board.mark_stopping();
        process::kill(supervisor, libc::SIGCHLD);
    }
    if reason == StopReason::Graceful {
        spawn_graceful_deadline(&plan, state.clone(), limit, why);
        spawn_escalation_watch(&plan, state.clone());
    } else {
        spawn_reaper(&plan, limit, why);
    }
    if state.dump_stacks.load(Ordering::Acquire) {
        // With the reaper running: a GIL that never comes free ends the wait with the process.
        log_thread_stacks(&plan);
    }
    for t in threads {
        let _ = t.join();
    }
    // Requests are done; what is left is Python's own shutdown (atexit handlers, threads the
    // application started), bounded by shutdown-timeout.
    spawn_reaper(&plan, plan.options.shutdown_timeout, "shutdown-timeout");
    if let Some(probe) = probe {
        probe.stop();
    }
    python::finalize();
    plan.log(Level::Info, &format!("{tag}: Stopping process '{name}'."));
    process::exit_now(0);
}

/// The signals the signal thread waits for: the supervisor's, and SIGXCPU, which the kernel
/// sends once the process has used `cpu-time-limit` seconds of CPU (its default action would
/// kill the process with every request in it).
const DAEMON_SIGNALS: [i32; 5] = [
    CONTROL_SIGNALS[0],
    CONTROL_SIGNALS[1],
    CONTROL_SIGNALS[2],
    CONTROL_SIGNALS[3],
    libc::SIGXCPU,
];

/// Logs where every Python thread of the process is (see `wsgi::stacks`).
fn log_thread_stacks(plan: &GroupPlan) {
    let stacks = python::attached(|py| {
        crate::wsgi::stacks::thread_stacks(py).unwrap_or_else(|e| {
            vec![format!(
                "{}: Failed to get current frames for active threads: {e}",
                plan.tag()
            )]
        })
    });
    for line in stacks.unwrap_or_default() {
        plan.log(Level::Info, &line);
    }
}

fn spawn_signal_thread(plan: &GroupPlan, state: Arc<State>, signals: process::ForwardedSignals) {
    let (log, tag, name) = (plan.log, plan.tag(), plan.name.clone());
    let _ = std::thread::Builder::new()
        .name("wsgi:signals".into())
        .spawn(move || loop {
            // Logged first, so it comes before the process's "Shutdown requested".
            let announce = |why: &str, reason: &'static str| {
                let what = if state.activity.busy() {
                    "waiting for requests to complete"
                } else {
                    "triggering immediate shutdown"
                };
                log(Level::Info, &format!("{tag}: {why}, {what} '{name}'."));
                crate::wsgi::events::set_shutdown_reason(reason);
            };
            match signals.next() {
                // As C: finish the requests in progress (within graceful-timeout) and be
                // replaced; the hard limit (shutdown-timeout and a second more of CPU) stays
                // the kernel's.
                Some(libc::SIGXCPU) if state.reason() == StopReason::Running => {
                    announce("Exceeded CPU time limit", "cpu_time_limit");
                    state.stop(StopReason::Graceful);
                }
                Some(libc::SIGUSR1) if state.reason() == StopReason::Running => {
                    announce("Process eviction requested", "graceful_signal");
                    state.evict();
                }
                Some(libc::SIGXCPU | libc::SIGUSR1) => {}
                Some(_) => {
                    state.drain.store(true, Ordering::Release);
                    state.stop(StopReason::Shutdown);
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        });
}

/// During a graceful stop, waits for a shutdown (Apache stopping, request-timeout, a deadlock)
/// and gives the requests shutdown-timeout from then, not what is left of graceful-timeout.
fn spawn_escalation_watch(plan: &GroupPlan, state: Arc<State>) {
    let plan = plan.clone();
    let _ = std::thread::Builder::new()
        .name("wsgi:escalation".into())
        .spawn(move || {
            while state.reason() != StopReason::Shutdown {
                std::thread::sleep(Duration::from_millis(100));
            }
            spawn_reaper(&plan, plan.options.shutdown_timeout, "shutdown-timeout");
        });
}

/// Once graceful-timeout (or eviction-timeout) has run out with requests still running, the
/// stop becomes a shutdown, which gives them shutdown-timeout more, as C mod_wsgi does; with no
/// shutdown-timeout the process ends then. Without a graceful-timeout, as in C, a stop of the
/// process's own (maximum-requests, a timer, the CPU limit) is a shutdown at once, and an
/// eviction (SIGUSR1) waits for its requests however long they take.
fn spawn_graceful_deadline(
    plan: &GroupPlan,
    state: Arc<State>,
    limit: Duration,
    why: &'static str,
) {
    if limit.is_zero() {
        if !state.evicted() {
            state.stop(StopReason::Shutdown);
        }
        return;
    }
    if plan.options.shutdown_timeout.is_zero() {
        spawn_reaper(plan, limit, why);
        return;
    }
    let (log, tag, name) = (plan.log, plan.tag(), plan.name.clone());
    let _ = std::thread::Builder::new()
        .name("wsgi:graceful".into())
        .spawn(move || {
            std::thread::sleep(limit);
            if state.stop(StopReason::Shutdown) {
                log(
                    Level::Info,
                    &format!(
                        "{tag}: Daemon process graceful timer expired '{name}': requests still \
                         running after {why} ({} seconds); shutting down.",
                        limit.as_secs()
                    ),
                );
            }
        });
}

/// Ends the process `limit` from now if it has not ended by itself (zero: no limit).
pub(super) fn spawn_reaper(plan: &GroupPlan, limit: Duration, why: &'static str) {
    if limit.is_zero() {
        return;
    }
    let (log, name) = (plan.log, plan.name.clone());
    let _ = std::thread::Builder::new()
        .name("wsgi:reaper".into())
        .spawn(move || {
            std::thread::sleep(limit);
            log(
                Level::Error,
                &format!(
                    "mod_wsgi (pid={}): Aborting process '{name}': requests still running after \
                     {why} ({} seconds).",
                    std::process::id(),
                    limit.as_secs()
                ),
            );
            process::exit_now(1);
        });
}

/// What thread `slot` does: wait for a connection, serve it, repeat.
fn accept_loop(plan: &GroupPlan, state: &State, board: Option<Arc<Scoreboard>>, slot: usize) {
    // SAFETY: the listener stays open for the life of the process.
    let listener = unsafe { BorrowedFd::borrow_raw(plan.listener) };
    loop {
        let conn = {
            match state.reason() {
                StopReason::Running => match state.waiter.next() {
                    Ok(unix::Woken::Connection(conn)) => conn,
                    Ok(unix::Woken::Stop | unix::Woken::Nothing) => continue,
                    Err(e) => {
                        // Nothing can wait for connections any more: let a new process do it.
                        plan.log(
                            Level::Error,
                            &format!("{}: Cannot wait for connections: {e}", plan.tag()),
                        );
                        state.stop(StopReason::Graceful);
                        continue;
                    }
                },
                // Apache has removed the socket, so nothing new arrives: serve what was already
                // queued instead of dropping it.
                StopReason::Shutdown
                    if state.drain.load(Ordering::Acquire)
                        && !state.drained.load(Ordering::Acquire) =>
                {
                    match unix::accept(listener) {
                        Ok(conn) => conn,
                        Err(_) => {
                            state.drained.store(true, Ordering::Release);
                            return;
                        }
                    }
                }
                _ => return,
            }
        };
        let timers = Slot {
            activity: &state.activity,
            index: slot,
        };
        let outcome =
            super::serve::connection(plan, conn, board.clone().map(|b| (b, slot)), &timers);
        if process::forked_by_application() {
            // The application forked and this copy returned here: it is no daemon process.
            plan.log(
                Level::Warning,
                &format!(
                    "{}: A process the application forked from daemon process group '{}' \
                     returned from the application without exec; it exits.",
                    plan.tag(),
                    plan.name
                ),
            );
            process::exit_now(0);
        }
        state.activity.end(slot);
        if outcome == super::serve::Served::NoRequest {
            continue;
        }
        let served = state.requests.fetch_add(1, Ordering::AcqRel) + 1;
        let max = plan.options.maximum_requests;
        if outcome == super::serve::Served::RestartRequired {
            if state.stop(StopReason::Graceful) {
                plan.log(
                    Level::Info,
                    &format!(
                        "{}: Force restart of process '{}': its WSGI script changed.",
                        plan.tag(),
                        plan.name
                    ),
                );
            }
        } else if max > 0 && served >= max && state.stop(StopReason::Graceful) {
            plan.log(
                Level::Info,
                &format!(
                    "{}: Maximum requests reached, restarting process '{}'.",
                    plan.tag(),
                    plan.name
                ),
            );
        }
    }
}
