//! The timers of one daemon process: `inactivity-timeout`, `restart-interval`,
//! `request-timeout`, `startup-timeout` and `deadlock-timeout`. The serving threads note when
//! their requests start and end and when their WSGI script has loaded in an [`Activity`]; the
//! GIL probe (`gil_probe`) notes there when it last got the GIL. One monitor thread reads it,
//! wakes at the nearest deadline (at least once a second) and stops the process when a timer
//! expires. The decisions themselves are [`check`] and [`stop_limit`].
//!
//! Differences from C mod_wsgi 4.9:
//! - activity is counted at request start and end only, not at every body read or write;
//! - `request-timeout` applies to each request (the oldest running one), as mod_wsgi 6 does,
//!   not to the mean over the process's threads;
//! - the monitor runs whenever one of these options is set, whatever `deadlock-timeout` is;
//! - after `deadlock-timeout` expires the process always ends: within shutdown-timeout, or at
//!   once when shutdown-timeout is 0 (nothing can finish without the GIL).
//!
//! As in C, the inactivity timer is armed by the first request, so a process nobody uses is not
//! replaced over and over; so is the startup timer, which the first successful load of the WSGI
//! script disarms for the life of the process.
//!
//! Inactivity and restart-interval stop the process gracefully (requests get graceful-timeout);
//! request-timeout, startup-timeout and deadlock-timeout shut it down, so a late request is cut
//! off after shutdown-timeout (the Apache child then answers 502) and the supervisor starts a
//! replacement. An eviction (SIGUSR1) is graceful with eviction-timeout instead of
//! graceful-timeout when that is set.

use super::plan::GroupPlan;
use super::worker::{State, StopReason};
use crate::config::daemon::DaemonOptions;
use crate::wsgi::Level;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest the monitor sleeps, so it sees requests that started since it last looked.
/// The GIL probe wakes this often too.
pub(super) const POLL: Duration = Duration::from_secs(1);

/// A time stored in an atomic: microseconds since [`Activity`] was made; `NONE`: not set.
const NONE: i64 = -1;
/// The startup timer after the script loaded: never armed again.
const DISARMED: i64 = -2;

/// The timer options of a process group; zero turns one off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub inactivity: Duration,
    pub restart_interval: Duration,
    pub request: Duration,
    pub startup: Duration,
    pub deadlock: Duration,
}

impl Limits {
    pub fn of(options: &DaemonOptions) -> Limits {
        Limits {
            inactivity: options.inactivity_timeout,
            restart_interval: options.restart_interval,
            request: options.request_timeout,
            startup: options.startup_timeout,
            deadlock: options.deadlock_timeout,
        }
    }

    pub fn any(&self) -> bool {
        [
            self.inactivity,
            self.restart_interval,
            self.request,
            self.startup,
            self.deadlock,
        ]
        .iter()
        .any(|d| !d.is_zero())
    }
}

/// What the process is doing, in times since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub now: Duration,
    /// The last request start or end; None before the first request.
    pub last_activity: Option<Duration>,
    /// When the oldest running request started; None when the process is idle.
    pub oldest_request: Option<Duration>,
    /// When the first request armed the startup timer; None before it and once a script loaded.
    pub startup_armed: Option<Duration>,
    /// When the GIL probe last got the GIL (or started); None without a probe.
    pub gil_seen: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Deadlock,
    RequestTime,
    Startup,
    RestartInterval,
    Inactivity,
}

impl Timer {
    /// How the process stops when this timer expires. Deadlock, request time and startup mean
    /// the application is stuck or broken: waiting graceful-timeout for it helps nobody.
    pub fn stops(self) -> StopReason {
        match self {
            Timer::Deadlock | Timer::RequestTime | Timer::Startup => StopReason::Shutdown,
            Timer::RestartInterval | Timer::Inactivity => StopReason::Graceful,
        }
    }

    /// The `shutdown_reason` of the `process_stopping` event, as C names it ('' for the
    /// deadlock timer, which C gives no reason).
    pub fn shutdown_reason(self) -> &'static str {
        match self {
            Timer::Deadlock => "",
            Timer::RequestTime => "request_timeout",
            Timer::Startup => "startup_timeout",
            Timer::RestartInterval => "restart_interval",
            Timer::Inactivity => "inactivity_timeout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Expired(Timer),
    WakeIn(Duration),
}

/// Whether a timer has expired and, if not, how long until the monitor should look again.
/// When several have expired, the first of [`Timer`]'s order wins: deadlock (the cause of any
/// other symptom), then those that stop the process harder.
pub fn check(limits: &Limits, s: &Snapshot) -> Verdict {
    let set = |d: Duration| (!d.is_zero()).then_some(d);
    let after =
        |limit: Duration, since: Option<Duration>| set(limit).zip(since).map(|(l, t)| t + l);
    let restart = set(limits.restart_interval);
    // A running request is activity, however long it runs.
    // So is a request under WSGIIgnoreActivity On, as in C: it only does not push the
    // deadline out.
    let idle = match s.oldest_request {
        None => after(limits.inactivity, s.last_activity),
        Some(_) => None,
    };
    let timers = [
        (after(limits.deadlock, s.gil_seen), Timer::Deadlock),
        (after(limits.request, s.oldest_request), Timer::RequestTime),
        (after(limits.startup, s.startup_armed), Timer::Startup),
        (restart, Timer::RestartInterval),
        (idle, Timer::Inactivity),
    ];
    if let Some((_, timer)) = timers
        .iter()
        .find(|(deadline, _)| deadline.is_some_and(|d| d <= s.now))
    {
        return Verdict::Expired(*timer);
    }
    let nearest = timers.iter().filter_map(|(d, _)| *d).min();
    Verdict::WakeIn(nearest.map_or(POLL, |d| (d - s.now).min(POLL)))
}

/// How long the requests of a stopping process get before it is ended, and the option that
/// says so (for the log). An eviction (SIGUSR1) uses eviction-timeout when it is set, as C's
/// 'G' signal does; every other graceful stop uses graceful-timeout.
pub fn stop_limit(
    reason: StopReason,
    evicted: bool,
    options: &DaemonOptions,
) -> (Duration, &'static str) {
    match reason {
        StopReason::Shutdown => (options.shutdown_timeout, "shutdown-timeout"),
        _ if evicted && !options.eviction_timeout.is_zero() => {
            (options.eviction_timeout, "eviction-timeout")
        }
        _ => (options.graceful_timeout, "graceful-timeout"),
    }
}

/// What the threads of a process report for its timers: request starts and ends (one slot per
/// thread), the first successful load of a WSGI script, and the GIL probe's last success.
pub struct Activity {
    origin: Instant,
    last: AtomicI64,
    started: Vec<AtomicI64>,
    /// Whether each slot's request is one that does not count as activity.
    quiet: Vec<AtomicBool>,
    /// `mod_wsgi.request_id` of each slot's request, for the log.
    ids: Vec<Mutex<String>>,
    /// NONE until the first request arms it, then its time, DISARMED once a script loaded.
    startup: AtomicI64,
    gil_seen: AtomicI64,
}

impl Activity {
    pub fn new(threads: usize) -> Activity {
        Activity {
            origin: Instant::now(),
            last: AtomicI64::new(NONE),
            started: (0..threads).map(|_| AtomicI64::new(NONE)).collect(),
            quiet: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            ids: (0..threads).map(|_| Mutex::new(String::new())).collect(),
            startup: AtomicI64::new(NONE),
            gil_seen: AtomicI64::new(NONE),
        }
    }

    fn now(&self) -> i64 {
        self.origin.elapsed().as_micros() as i64
    }

    /// Thread `slot` has started request `id`; a `quiet` one (`WSGIIgnoreActivity On`) does not
    /// move the time of the last activity, neither as it starts nor as it ends.
    pub fn begin(&self, slot: usize, id: &str, quiet: bool) {
        if let Some(m) = self.ids.get(slot) {
            let mut held = m.lock().unwrap_or_else(|p| p.into_inner());
            held.clear();
            held.push_str(id);
        }
        let now = self.now();
        if let Some(q) = self.quiet.get(slot) {
            q.store(quiet, Ordering::Release);
        }
        if let Some(s) = self.started.get(slot) {
            s.store(now, Ordering::Release);
        }
        if !quiet {
            self.last.store(now, Ordering::Release);
        }
        // The first request of the process arms the startup timer (only the first: a failed
        // load does not push it out).
        if self.startup.load(Ordering::Acquire) == NONE {
            let _ = self
                .startup
                .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Thread `slot` is done with its connection (whether or not a request started).
    pub fn end(&self, slot: usize) {
        if let Some(s) = self.started.get(slot) {
            let quiet = self
                .quiet
                .get(slot)
                .is_some_and(|q| q.load(Ordering::Acquire));
            if s.swap(NONE, Ordering::AcqRel) != NONE && !quiet {
                self.last.store(self.now(), Ordering::Release);
            }
        }
    }

    /// A request's WSGI script module has loaded: the application started, so the startup timer
    /// is off for good.
    pub fn script_loaded(&self) {
        if self.startup.load(Ordering::Acquire) != DISARMED {
            self.startup.store(DISARMED, Ordering::Release);
        }
    }

    /// The GIL probe has just held the GIL.
    pub fn gil_acquired(&self) {
        self.gil_seen.store(self.now(), Ordering::Release);
    }

    /// Whether a request is running.
    pub fn busy(&self) -> bool {
        self.started
            .iter()
            .any(|s| s.load(Ordering::Acquire) != NONE)
    }

    /// The current snapshot and the slot of the oldest running request.
    fn snapshot(&self) -> (Snapshot, Option<usize>) {
        let time = |us: i64| (us >= 0).then(|| Duration::from_micros(us as u64));
        let oldest = self
            .started
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.load(Ordering::Acquire)))
            .filter(|(_, t)| *t != NONE)
            .min_by_key(|(_, t)| *t);
        let snap = Snapshot {
            now: Duration::from_micros(self.now() as u64),
            last_activity: time(self.last.load(Ordering::Acquire)),
            oldest_request: oldest.and_then(|(_, t)| time(t)),
            startup_armed: time(self.startup.load(Ordering::Acquire)),
            gil_seen: time(self.gil_seen.load(Ordering::Acquire)),
        };
        (snap, oldest.map(|(i, _)| i))
    }

    fn request_id(&self, slot: usize) -> String {
        self.ids.get(slot).map_or_else(String::new, |m| {
            m.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }
}

/// One serving thread's slot in the [`Activity`]: what serving a connection reports.
pub struct Slot<'a> {
    pub activity: &'a Activity,
    pub index: usize,
}

impl Slot<'_> {
    /// The request `id` is accepted and about to run; `quiet`: under `WSGIIgnoreActivity On`.
    pub fn started(&self, id: &str, quiet: bool) {
        self.activity.begin(self.index, id, quiet)
    }

    /// The request's WSGI script module is loaded.
    pub fn script_loaded(&self) {
        self.activity.script_loaded()
    }
}

/// Starts the monitor thread if the group sets any of the timers (deadlock-timeout is on by
/// default, so normally it runs; it only reads atomics, once a second at most).
pub fn spawn_monitor(plan: &Arc<GroupPlan>, state: Arc<State>) {
    let limits = Limits::of(&plan.options);
    if !limits.any() {
        return;
    }
    let plan = Arc::clone(plan);
    let _ = std::thread::Builder::new()
        .name("wsgi:monitor".into())
        .spawn(move || monitor(&plan, &state, &limits));
}

/// Until the process shuts down: sleep, look, stop the process when a timer has expired. After a
/// graceful stop it goes on watching the timers that shut the process down.
fn monitor(plan: &GroupPlan, state: &State, limits: &Limits) {
    let (tag, name) = (plan.tag(), &plan.name);
    while state.reason() != StopReason::Shutdown {
        let (snap, oldest) = state.activity.snapshot();
        let timer = match check(limits, &snap) {
            Verdict::WakeIn(wait) => {
                std::thread::sleep(wait);
                continue;
            }
            Verdict::Expired(timer) => timer,
        };
        let message = match timer {
            Timer::RequestTime => {
                let ran = snap.now - snap.oldest_request.unwrap_or_default();
                let id = oldest.map(|i| state.activity.request_id(i));
                let which = match id.as_deref() {
                    Some(id) if !id.is_empty() => format!("request {id}"),
                    _ => "a request".into(),
                };
                format!(
                    "{tag}: Daemon process request time limit exceeded, stopping process \
                     '{name}'. The oldest, {which}, has run for {:.1} seconds.",
                    ran.as_secs_f64()
                )
            }
            Timer::Deadlock => format!(
                "{tag}: Daemon process deadlock timer expired, stopping process '{name}'. \
                 The GIL has not been free for {:.1} seconds.",
                (snap.now - snap.gil_seen.unwrap_or_default()).as_secs_f64()
            ),
            Timer::Startup => {
                format!("{tag}: Application startup timer expired, stopping process '{name}'.")
            }
            // As C: with requests running, it says it waits for them.
            Timer::RestartInterval if state.activity.busy() => format!(
                "{tag}: Application restart timer expired, waiting for requests to complete \
                 '{name}'."
            ),
            Timer::RestartInterval => {
                format!("{tag}: Application restart timer expired, stopping process '{name}'.")
            }
            Timer::Inactivity => format!(
                "{tag}: Daemon process idle inactivity timer expired, stopping process '{name}'."
            ),
        };
        let reason = timer.stops();
        let before = state.reason();
        // Logged first, so it comes before the process's "Shutdown requested".
        if (before as u8) < reason as u8 {
            plan.log(Level::Info, &message);
            crate::wsgi::events::set_shutdown_reason(timer.shutdown_reason());
            if timer == Timer::RequestTime {
                state.dump_stacks.store(true, Ordering::Release);
            }
            state.stop(reason);
        }
        if timer == Timer::Deadlock {
            // Nothing in the process can finish while the GIL is held, so make sure it ends.
            let limit = plan.options.shutdown_timeout;
            if limit.is_zero() {
                plan.log(
                    Level::Error,
                    &format!(
                        "{tag}: Aborting process '{name}': the GIL is held and shutdown-timeout \
                         is 0."
                    ),
                );
                super::process::exit_now(1);
            }
        }
        if reason == StopReason::Graceful {
            // Only the timers that shut the process down are left to watch for.
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    fn snap(now: f64, last: Option<f64>, oldest: Option<f64>) -> Snapshot {
        Snapshot {
            now: s(now),
            last_activity: last.map(s),
            oldest_request: oldest.map(s),
            ..Snapshot::default()
        }
    }

    fn limits(inactivity: f64, restart: f64, request: f64) -> Limits {
        Limits {
            inactivity: s(inactivity),
            restart_interval: s(restart),
            request: s(request),
            ..Limits::default()
        }
    }

    #[test]
    fn no_timers_means_no_monitor_and_a_poll() {
        assert!(!Limits::default().any());
        assert!(limits(0.0, 0.0, 1.0).any());
        // deadlock-timeout is on unless turned off, so the monitor normally runs.
        assert!(Limits::of(&DaemonOptions::default()).any());
        let off = DaemonOptions {
            deadlock_timeout: Duration::ZERO,
            ..DaemonOptions::default()
        };
        assert!(!Limits::of(&off).any());
        assert_eq!(
            check(&Limits::default(), &snap(100.0, Some(1.0), Some(1.0))),
            Verdict::WakeIn(POLL)
        );
    }

    #[test]
    fn inactivity_is_armed_by_the_first_request_and_waits_for_idle() {
        let l = limits(5.0, 0.0, 0.0);
        // Never used: not armed.
        assert_eq!(check(&l, &snap(60.0, None, None)), Verdict::WakeIn(POLL));
        // Idle since 10 s: expires at 15 s.
        assert_eq!(
            check(&l, &snap(14.5, Some(10.0), None)),
            Verdict::WakeIn(s(0.5))
        );
        assert_eq!(
            check(&l, &snap(15.0, Some(10.0), None)),
            Verdict::Expired(Timer::Inactivity)
        );
        // A long request is activity.
        assert_eq!(
            check(&l, &snap(60.0, Some(10.0), Some(10.0))),
            Verdict::WakeIn(POLL)
        );
    }

    #[test]
    fn restart_interval_counts_from_process_start() {
        let l = limits(0.0, 3.0, 0.0);
        assert_eq!(check(&l, &snap(2.8, None, None)), Verdict::WakeIn(s(0.2)));
        assert_eq!(check(&l, &snap(0.0, None, None)), Verdict::WakeIn(POLL));
        assert_eq!(
            check(&l, &snap(3.0, Some(2.9), Some(2.9))),
            Verdict::Expired(Timer::RestartInterval)
        );
    }

    #[test]
    fn request_timeout_applies_to_the_oldest_request_and_wins() {
        let l = limits(0.0, 0.0, 2.0);
        assert_eq!(
            check(&l, &snap(10.0, Some(9.0), None)),
            Verdict::WakeIn(POLL)
        );
        assert_eq!(
            check(&l, &snap(10.0, Some(9.5), Some(8.5))),
            Verdict::WakeIn(s(0.5))
        );
        assert_eq!(
            check(&l, &snap(10.5, Some(9.5), Some(8.5))),
            Verdict::Expired(Timer::RequestTime)
        );
        let all = Limits {
            startup: s(1.0),
            ..limits(1.0, 1.0, 1.0)
        };
        let started = Snapshot {
            startup_armed: Some(s(5.0)),
            ..snap(10.0, Some(5.0), Some(5.0))
        };
        assert_eq!(check(&all, &started), Verdict::Expired(Timer::RequestTime));
    }

    #[test]
    fn startup_is_armed_by_the_first_request_and_shuts_down() {
        let l = Limits {
            startup: s(3.0),
            ..Limits::default()
        };
        assert!(l.any());
        // Not armed (no request yet, or the script loaded): never expires.
        assert_eq!(check(&l, &snap(100.0, None, None)), Verdict::WakeIn(POLL));
        let armed = |now| Snapshot {
            startup_armed: Some(s(10.0)),
            ..snap(now, Some(10.0), None)
        };
        assert_eq!(check(&l, &armed(12.5)), Verdict::WakeIn(s(0.5)));
        assert_eq!(check(&l, &armed(13.0)), Verdict::Expired(Timer::Startup));
        assert_eq!(Timer::Startup.stops(), StopReason::Shutdown);
    }

    #[test]
    fn deadlock_counts_from_the_last_time_the_probe_got_the_gil_and_wins() {
        let l = Limits {
            deadlock: s(300.0),
            ..Limits::default()
        };
        assert!(l.any());
        let seen = |now, at| Snapshot {
            gil_seen: Some(s(at)),
            ..snap(now, None, None)
        };
        // No probe (Python not started yet): nothing to check.
        assert_eq!(check(&l, &snap(1000.0, None, None)), Verdict::WakeIn(POLL));
        assert_eq!(check(&l, &seen(299.0, 0.0)), Verdict::WakeIn(POLL));
        assert_eq!(check(&l, &seen(299.9, 0.0)), Verdict::WakeIn(s(0.1)));
        assert_eq!(
            check(&l, &seen(300.0, 0.0)),
            Verdict::Expired(Timer::Deadlock)
        );
        // The probe got it again: pushed out.
        assert_eq!(check(&l, &seen(300.0, 299.0)), Verdict::WakeIn(POLL));
        // A request stuck past its own limit because of the deadlock: deadlock is the cause.
        let both = Limits {
            request: s(1.0),
            ..l
        };
        let stuck = Snapshot {
            gil_seen: Some(s(0.0)),
            ..snap(400.0, Some(1.0), Some(1.0))
        };
        assert_eq!(check(&both, &stuck), Verdict::Expired(Timer::Deadlock));
        assert_eq!(Timer::Deadlock.stops(), StopReason::Shutdown);
    }

    #[test]
    fn graceful_timers_stop_gracefully() {
        assert_eq!(Timer::Inactivity.stops(), StopReason::Graceful);
        assert_eq!(Timer::RestartInterval.stops(), StopReason::Graceful);
        assert_eq!(Timer::RequestTime.stops(), StopReason::Shutdown);
    }

    #[test]
    fn an_eviction_gets_eviction_timeout_when_set() {
        let mut o = DaemonOptions {
            graceful_timeout: s(15.0),
            shutdown_timeout: s(5.0),
            ..DaemonOptions::default()
        };
        // Not set: an eviction is like any graceful stop.
        assert_eq!(
            stop_limit(StopReason::Graceful, true, &o),
            (s(15.0), "graceful-timeout")
        );
        o.eviction_timeout = s(2.0);
        assert_eq!(
            stop_limit(StopReason::Graceful, true, &o),
            (s(2.0), "eviction-timeout")
        );
        assert_eq!(
            stop_limit(StopReason::Graceful, false, &o),
            (s(15.0), "graceful-timeout")
        );
        assert_eq!(
            stop_limit(StopReason::Shutdown, true, &o),
            (s(5.0), "shutdown-timeout")
        );
    }

    #[test]
    fn the_first_request_arms_startup_and_a_loaded_script_disarms_it_for_good() {
        let a = Activity::new(2);
        a.gil_acquired();
        let (s0, _) = a.snapshot();
        assert_eq!(s0.startup_armed, None);
        assert!(s0.gil_seen.is_some());
        assert!(!a.busy());
        a.begin(0, "one", false);
        assert!(a.busy());
        let armed = a.snapshot().0.startup_armed;
        assert!(armed.is_some());
        std::thread::sleep(Duration::from_millis(2));
        // A second request (the first failed to load the script) does not push it out.
        a.end(0);
        a.begin(1, "two", false);
        assert_eq!(a.snapshot().0.startup_armed, armed);
        a.script_loaded();
        assert_eq!(a.snapshot().0.startup_armed, None);
        a.end(1);
        a.begin(0, "three", false);
        assert_eq!(a.snapshot().0.startup_armed, None);
    }

    #[test]
    fn a_quiet_request_does_not_move_the_last_activity() {
        let a = Activity::new(2);
        a.begin(0, "health", true);
        let (s0, oldest) = a.snapshot();
        assert_eq!(
            s0.last_activity, None,
            "a quiet request does not arm the timer"
        );
        assert_eq!(oldest, Some(0), "request-timeout still sees it");
        a.end(0);
        assert_eq!(a.snapshot().0.last_activity, None);
        a.begin(1, "real", false);
        assert!(a.snapshot().0.last_activity.is_some());
        a.end(1);
        let last = a.snapshot().0.last_activity;
        std::thread::sleep(Duration::from_millis(2));
        a.begin(1, "health", true);
        std::thread::sleep(Duration::from_millis(2));
        a.end(1);
        assert_eq!(a.snapshot().0.last_activity, last);
    }

    #[test]
    fn activity_tracks_the_oldest_running_request() {
        let a = Activity::new(3);
        let (s0, oldest) = a.snapshot();
        assert_eq!(
            (s0.last_activity, s0.oldest_request, oldest),
            (None, None, None)
        );
        a.begin(2, "first", false);
        std::thread::sleep(Duration::from_millis(2));
        a.begin(0, "second", false);
        let (s1, oldest) = a.snapshot();
        assert_eq!(oldest, Some(2));
        assert_eq!(a.request_id(2), "first");
        assert!(s1.oldest_request < s1.last_activity);
        // Time is kept in microseconds: let some pass before the next activity.
        std::thread::sleep(Duration::from_millis(2));
        a.end(2);
        a.end(1); // a connection that never started a request changes nothing
        let (s2, oldest) = a.snapshot();
        assert_eq!(oldest, Some(0));
        assert!(s2.last_activity > s1.last_activity);
        a.end(0);
        a.end(7); // out of range: ignored
        assert_eq!(a.snapshot().1, None);
    }
}
