//! The supervisor of one daemon process group: a small process forked from Apache's parent that
//! drops root, starts the group's processes and replaces each one the moment it ends (Apache's
//! parent would only notice a second later). It never runs Python.
//!
//! Signals: SIGTERM/SIGINT/SIGHUP stop the group (each process finishes what it is serving);
//! SIGUSR1 asks each process to finish gracefully and be replaced.
//!
//! A process that begins to stop on its own (SIGUSR1, `maximum-requests`, `restart-interval`,
//! a changed script, a timer) accepts nothing more, marks its scoreboard and rings with SIGCHLD:
//! its replacement starts at once, in a fresh scoreboard, while it finishes its requests (one
//! such process per slot at a time, so never more than twice `processes=` in all). Waiting
//! for it to end first left the group unable to take a request for as long as its longest
//! request ran (up to graceful-timeout) with `processes=1`.

use super::plan::GroupPlan;
use super::process::{self, Ended, Forked, CONTROL_SIGNALS};
use super::scoreboard::Scoreboard;
use crate::wsgi::Level;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A process that lived shorter than this is counted as a failed start.
const QUICK_DEATH: Duration = Duration::from_secs(2);
/// The longest wait before replacing a process that keeps failing to start.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

struct Slot {
    pid: Option<i32>,
    started: Instant,
    /// Consecutive failed starts, for the back-off.
    failures: u32,
    /// When the replacement is due (after a back-off).
    due: Option<Instant>,
    /// The requests the process serves, shared with it.
    board: Option<Arc<Scoreboard>>,
}

/// A process already replaced, finishing its requests before it ends.
struct Stopping {
    /// The slot it was replaced in.
    slot: usize,
    pid: i32,
    started: Instant,
    board: Option<Arc<Scoreboard>>,
}

/// The supervisor's whole life, in the forked process; never returns.
pub fn run(mut plan: GroupPlan) -> ! {
    let (signals, slots) = set_up(&mut plan);
    supervise(&plan, &signals, slots)
}

/// The supervisor's start: its identity and environment, the signals it waits for, and a slot
/// per process. Apart from the loop, so that its code is start-up code, unmapped once it has
/// run, not serving code every supervisor keeps.
#[inline(never)]
fn set_up(plan: &mut GroupPlan) -> (Vec<libc::c_int>, Vec<Slot>) {
    let name = plan.name.clone();
    plan.token =
        (plan.forget_inherited)(plan.listener, &name, plan.identity.uid, plan.identity.gid);
    process::set_thread_name(&format!("wsgi-sv:{name}"));
    if let Err(e) = prepare_process(plan) {
        plan.log(
            Level::Error,
            &format!(
                "mod_wsgi (pid={}): Failure to configure daemon process group '{name}': {e}. \
                 Trying again after {} seconds.",
                std::process::id(),
                MAX_BACKOFF.as_secs()
            ),
        );
        // As C mod_wsgi: a pause, so a configuration that cannot work does not become a fork
        // loop with Apache's parent restarting us.
        std::thread::sleep(MAX_BACKOFF);
        process::exit_now(1);
    }
    let mut signals = CONTROL_SIGNALS.to_vec();
    signals.push(libc::SIGCHLD);
    process::mask_signals(&signals, true);
    let slots: Vec<Slot> = (0..plan.options.processes.max(1))
        .map(|_| Slot {
            pid: None,
            started: Instant::now(),
            failures: 0,
            due: Some(Instant::now()),
            board: Scoreboard::new(plan.options.threads as usize)
                .ok()
                .map(Arc::new),
        })
        .collect();
    (signals, slots)
}

/// Keeps the group's processes running until the supervisor is told to stop, then stops them
/// and exits. Serving code (scripts/hot-symbols.sh profiles this loop so), from where the
/// start-up code is let go: returning into start-up code would map it again.
#[inline(never)]
fn supervise(plan: &GroupPlan, signals: &[libc::c_int], mut slots: Vec<Slot>) -> ! {
    process::release_start_up_code();
    let mut replaced: Vec<Stopping> = Vec::new();
    let mut stopping = false;
    loop {
        if !stopping {
            replace_stopping(plan, &mut slots, &mut replaced);
            start_due(plan, &mut slots);
        } else if slots.iter().all(|s| s.pid.is_none()) && replaced.is_empty() {
            process::exit_now(0);
        }
        let next_due = slots.iter().filter_map(|s| s.due).min();
        let timeout = next_due
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(60));
        match process::wait_signal(signals, timeout) {
            Some(libc::SIGCHLD) | None => {}
            Some(libc::SIGUSR1) if !stopping => forward(&slots, libc::SIGUSR1),
            Some(libc::SIGUSR1) => {}
            Some(_) => {
                if !stopping {
                    stopping = true;
                    forward(&slots, libc::SIGTERM);
                    forward_replaced(&replaced, libc::SIGTERM);
                }
            }
        }
        while let Some((pid, ended)) = process::reap_one() {
            if let Some(slot) = slots.iter_mut().find(|s| s.pid == Some(pid)) {
                slot.pid = None;
                if !stopping {
                    note_death(plan, slot, pid, ended);
                }
            } else if let Some(at) = replaced.iter().position(|r| r.pid == pid) {
                let old = replaced.swap_remove(at);
                if !stopping {
                    note_replaced_death(plan, &old, ended);
                }
            }
        }
        // Apache's parent gone (killed without stopping us): nothing will use the group again.
        // SAFETY: getppid has no preconditions.
        if !stopping && unsafe { libc::getppid() } != plan.apache_pid {
            stopping = true;
            forward(&slots, libc::SIGTERM);
            forward_replaced(&replaced, libc::SIGTERM);
        }
    }
}

/// What every process of the group shares, done once here: identity, limits, environment.
fn prepare_process(plan: &GroupPlan) -> Result<(), String> {
    let o = &plan.options;
    if o.cpu_priority != 0 {
        process::set_priority(o.cpu_priority).map_err(|e| e.to_string())?;
    }
    process::become_user(&plan.identity).map_err(|e| {
        format!(
            "cannot run as user '{}' (uid={}, gid={}): {e}",
            plan.identity.user_name, plan.identity.uid, plan.identity.gid
        )
    })?;
    // As C does: HOME is the home directory of the user the processes run as, not what Apache's
    // parent was started with (root's, or that of whoever ran sudo), so `~` and the caches kept
    // under it point where the user may write.
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if let Ok(account) = crate::config::accounts::lookup_user(&format!("#{euid}")) {
        // SAFETY (of set_var): the supervisor is single-threaded here.
        std::env::set_var("HOME", account.home);
    }
    if !process::die_with_parent(libc::SIGTERM, plan.apache_pid) {
        return Err("Apache's parent process has already exited".into());
    }
    if let Some(dir) = &plan.working_directory {
        if let Err(e) = std::env::set_current_dir(dir) {
            let msg = format!("cannot change directory to '{dir}': {e}");
            if plan.working_directory_required {
                return Err(msg);
            }
            plan.log(
                Level::Warning,
                &format!(
                    "mod_wsgi (pid={}): Daemon process group '{}': {msg}; staying in '/'.",
                    std::process::id(),
                    plan.name
                ),
            );
            let _ = std::env::set_current_dir("/");
        }
    }
    if let Some(mask) = o.umask {
        process::set_umask(mask);
    }
    // SAFETY (of set_var): the supervisor is single-threaded here.
    if let Some(lang) = &o.lang {
        std::env::set_var("LANG", lang);
    }
    if let Some(locale) = &o.locale {
        std::env::set_var("LC_ALL", locale);
        // Every category, as C sets it (Python itself sets only LC_CTYPE from the environment),
        // so that dates, numbers and collation follow it too.
        if !process::set_locale(locale) {
            plan.log(
                Level::Error,
                &format!(
                    "mod_wsgi (pid={}): Unsupported locale setting {locale} specified for daemon \
                     process group {}. Consider using 'C.UTF-8' as fallback setting.",
                    std::process::id(),
                    plan.name
                ),
            );
        }
    }
    if !o.cpu_time_limit.is_zero() {
        let soft = o.cpu_time_limit.as_secs();
        let hard = soft + 1 + o.shutdown_timeout.as_secs();
        process::set_limit(libc::RLIMIT_CPU, soft, hard).map_err(|e| e.to_string())?;
    }
    if let Some(bytes) = o.memory_limit {
        process::set_limit(libc::RLIMIT_DATA, bytes, bytes).map_err(|e| e.to_string())?;
    }
    if let Some(bytes) = o.virtual_memory_limit {
        process::set_limit(libc::RLIMIT_AS, bytes, bytes).map_err(|e| e.to_string())?;
    }
    process::ignore(libc::SIGPIPE);
    // As in Apache's own processes (and C's daemons): a write past RLIMIT_FSIZE fails with
    // EFBIG, which the application sees as an OSError, instead of killing the process.
    process::ignore(libc::SIGXFSZ);
    // Apache's parent's handlers, inherited; the control signals are blocked (since the fork)
    // and taken by the loop. SIGWINCH is Apache's graceful stop, nothing of the supervisor's.
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGCHLD,
        libc::SIGWINCH,
    ] {
        process::default_action(sig);
    }
    Ok(())
}

/// Moves each process that has begun to stop out of its slot, with its scoreboard, and makes the
/// slot due at once with a fresh scoreboard, so its replacement starts while it finishes.
// Never inlined: scripts/hot-symbols.sh starts a new part of the supervisor's profile here.
#[inline(never)]
fn replace_stopping(plan: &GroupPlan, slots: &mut [Slot], replaced: &mut Vec<Stopping>) {
    for (index, slot) in slots.iter_mut().enumerate() {
        let Some(pid) = slot.pid else { continue };
        if !slot.board.as_ref().is_some_and(|b| b.stopping()) {
            continue;
        }
        // One process finishing per slot at most, so the group never runs more than twice
        // `processes=`: a replacement that stops while its predecessor still finishes is
        // replaced when it ends, as before.
        if replaced.iter().any(|old| old.slot == index) {
            continue;
        }
        // Without a scoreboard of its own the replacement would share the old one; then it
        // waits for the old process to end, as it would without one.
        let Ok(board) = Scoreboard::new(plan.options.threads as usize) else {
            continue;
        };
        replaced.push(Stopping {
            slot: index,
            pid,
            started: slot.started,
            board: slot.board.replace(Arc::new(board)),
        });
        slot.pid = None;
        slot.failures = 0;
        slot.due = Some(Instant::now());
        plan.log(
            Level::Info,
            &format!(
                "mod_wsgi (pid={}): Process {pid} of daemon group '{}' is stopping; starting its \
                 replacement while it finishes its requests.",
                std::process::id(),
                plan.name
            ),
        );
    }
}

/// The requests a process that died was serving, as the end of its log line (after its age, so
/// that the age is not read as the last request's).
fn serving(requests: Vec<String>) -> String {
    match requests.len() {
        0 => String::new(),
        1 => format!(", while serving request {}", requests[0]),
        _ => format!(", while serving requests {}", requests.join(", ")),
    }
}

/// Logs how a process that was already replaced ended: only its failure is news.
fn note_replaced_death(plan: &GroupPlan, old: &Stopping, ended: Ended) {
    if ended == Ended::Exited(0) {
        plan.log(
            Level::Info,
            &format!(
                "mod_wsgi (pid={}): Process {} of daemon group '{}' has exited.",
                std::process::id(),
                old.pid,
                plan.name
            ),
        );
        return;
    }
    let serving = serving(old.board.as_ref().map(|b| b.take()).unwrap_or_default());
    plan.log(
        Level::Error,
        &format!(
            "mod_wsgi (pid={}): Process {} of daemon group '{}' {ended} as it stopped, {:.1} \
             seconds after it started{serving}; it had been replaced already.",
            std::process::id(),
            old.pid,
            plan.name,
            old.started.elapsed().as_secs_f64()
        ),
    );
}

fn start_due(plan: &GroupPlan, slots: &mut [Slot]) {
    let now = Instant::now();
    for slot in slots.iter_mut() {
        if slot.pid.is_some() || slot.due.is_none_or(|d| d > now) {
            continue;
        }
        match process::fork() {
            Ok(Forked::Child) => super::worker::run(plan.clone(), slot.board.clone()),
            Ok(Forked::Parent(pid)) => {
                slot.pid = Some(pid);
                slot.started = Instant::now();
                slot.due = None;
            }
            Err(e) => {
                plan.log(
                    Level::Error,
                    &format!(
                        "mod_wsgi (pid={}): Cannot start a process of daemon group '{}': {e}",
                        std::process::id(),
                        plan.name
                    ),
                );
                slot.due = Some(now + Duration::from_secs(1));
            }
        }
    }
}

/// Logs how a process ended and schedules its replacement: at once, unless it keeps dying as it
/// starts (then after a growing pause, so a broken application does not become a fork loop).
fn note_death(plan: &GroupPlan, slot: &mut Slot, pid: i32, ended: Ended) {
    let lived = slot.started.elapsed();
    let planned = ended == Ended::Exited(0);
    if planned {
        slot.failures = 0;
        plan.log(
            Level::Info,
            &format!(
                "mod_wsgi (pid={}): Process {pid} of daemon group '{}' has exited; starting its \
                 replacement.",
                std::process::id(),
                plan.name
            ),
        );
    } else {
        // A process that got as far as serving did not fail to start, however soon it died.
        let served = slot.board.as_ref().is_some_and(|b| b.take_ready());
        slot.failures = if lived < QUICK_DEATH && !served {
            slot.failures + 1
        } else {
            0
        };
        let serving = serving(slot.board.as_ref().map(|b| b.take()).unwrap_or_default());
        let pause = backoff(slot.failures);
        let next = if pause.is_zero() {
            "starting its replacement".to_string()
        } else {
            format!(
                "it failed as it started {} times in a row: starting its replacement in {} \
                 seconds",
                slot.failures,
                pause.as_secs_f64()
            )
        };
        plan.log(
            Level::Error,
            &format!(
                "mod_wsgi (pid={}): Process {pid} of daemon group '{}' {ended}, {:.1} \
                 seconds after it started{serving}; {next}.",
                std::process::id(),
                plan.name,
                lived.as_secs_f64()
            ),
        );
    }
    if let Some(board) = &slot.board {
        board.take();
        board.take_ready();
    }
    slot.due = Some(Instant::now() + backoff(slot.failures));
}

/// The pause before restarting a process after `failures` consecutive failed starts.
fn backoff(failures: u32) -> Duration {
    if failures < 3 {
        return Duration::ZERO;
    }
    let ms = 250u64.saturating_mul(1 << (failures - 3).min(10));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

// Never inlined: scripts/hot-symbols.sh starts a new part of the supervisor's profile here.
#[inline(never)]
fn forward(slots: &[Slot], signal: i32) {
    for pid in slots.iter().filter_map(|s| s.pid) {
        process::kill(pid, signal);
    }
}

fn forward_replaced(replaced: &[Stopping], signal: i32) {
    for old in replaced {
        process::kill(old.pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_at_once_until_starts_keep_failing() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(2), Duration::ZERO);
        assert_eq!(backoff(3), Duration::from_millis(250));
        assert_eq!(backoff(4), Duration::from_millis(500));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
