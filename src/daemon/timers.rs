//! The timers of one daemon process: `inactivity-timeout`, `restart-interval` and
//! `request-timeout`. The serving threads note when their requests start and end in an
//! [`Activity`]; one monitor thread reads it, wakes at the nearest deadline (at least once a
//! second) and stops the process when a timer expires. The decision itself is [`check`].
//!
//! Differences from C mod_wsgi 4.9:
//! - activity is counted at request start and end only, not at every body read or write;
//! - `request-timeout` applies to each request (the oldest running one), as mod_wsgi 6 does,
//!   not to the mean over the process's threads;
//! - the monitor runs whenever one of these options is set, whatever `deadlock-timeout` is.
//!
//! As in C, the inactivity timer is armed by the first request, so a process nobody uses is not
//! replaced over and over.
//!
//! Inactivity and restart-interval stop the process gracefully (requests get graceful-timeout);
//! request-timeout shuts it down, so the late request is cut off after shutdown-timeout (the
//! Apache child then answers 502) and the supervisor starts a replacement.

use super::plan::GroupPlan;
use super::worker::{State, StopReason};
use crate::wsgi::Level;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest the monitor sleeps, so it sees requests that started since it last looked.
const POLL: Duration = Duration::from_secs(1);

/// A time stored in an atomic: microseconds since [`Activity`] was made; `NONE`: not set.
const NONE: i64 = -1;

/// The timer options of a process group; zero turns one off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub inactivity: Duration,
    pub restart_interval: Duration,
    pub request: Duration,
}

impl Limits {
    pub fn any(&self) -> bool {
        !(self.inactivity.is_zero() && self.restart_interval.is_zero() && self.request.is_zero())
    }
}

/// What the process is doing, in times since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub now: Duration,
    /// The last request start or end; None before the first request.
    pub last_activity: Option<Duration>,
    /// When the oldest running request started; None when the process is idle.
    pub oldest_request: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Inactivity,
    RestartInterval,
    RequestTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Expired(Timer),
    WakeIn(Duration),
}

/// Whether a timer has expired and, if not, how long until the monitor should look again.
/// When several have expired, request-timeout wins: it stops the process harder.
pub fn check(limits: &Limits, s: &Snapshot) -> Verdict {
    let set = |d: Duration| (!d.is_zero()).then_some(d);
    let request = set(limits.request)
        .zip(s.oldest_request)
        .map(|(limit, start)| start + limit);
    let restart = set(limits.restart_interval);
    // A running request is activity, however long it runs.
    let idle = match s.oldest_request {
        None => set(limits.inactivity)
            .zip(s.last_activity)
            .map(|(limit, last)| last + limit),
        Some(_) => None,
    };
    let timers = [
        (request, Timer::RequestTime),
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

/// The request start and end times of a process's threads, one slot per thread.
pub struct Activity {
    origin: Instant,
    last: AtomicI64,
    started: Vec<AtomicI64>,
    /// `mod_wsgi.request_id` of each slot's request, for the log.
    ids: Vec<Mutex<String>>,
}

impl Activity {
    pub fn new(threads: usize) -> Activity {
        Activity {
            origin: Instant::now(),
            last: AtomicI64::new(NONE),
            started: (0..threads).map(|_| AtomicI64::new(NONE)).collect(),
            ids: (0..threads).map(|_| Mutex::new(String::new())).collect(),
        }
    }

    fn now(&self) -> i64 {
        self.origin.elapsed().as_micros() as i64
    }

    /// Thread `slot` has started request `id`.
    pub fn begin(&self, slot: usize, id: &str) {
        if let Some(m) = self.ids.get(slot) {
            let mut held = m.lock().unwrap_or_else(|p| p.into_inner());
            held.clear();
            held.push_str(id);
        }
        let now = self.now();
        if let Some(s) = self.started.get(slot) {
            s.store(now, Ordering::Release);
        }
        self.last.store(now, Ordering::Release);
    }

    /// Thread `slot` is done with its connection (whether or not a request started).
    pub fn end(&self, slot: usize) {
        if let Some(s) = self.started.get(slot) {
            if s.swap(NONE, Ordering::AcqRel) != NONE {
                self.last.store(self.now(), Ordering::Release);
            }
        }
    }

    /// The current snapshot and the slot of the oldest running request.
    fn snapshot(&self) -> (Snapshot, Option<usize>) {
        let time = |us: i64| (us != NONE).then(|| Duration::from_micros(us as u64));
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
        };
        (snap, oldest.map(|(i, _)| i))
    }

    fn request_id(&self, slot: usize) -> String {
        self.ids.get(slot).map_or_else(String::new, |m| {
            m.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }
}

/// Starts the monitor thread if the group sets any of the timers.
pub fn spawn_monitor(plan: &GroupPlan, state: Arc<State>) {
    let limits = Limits {
        inactivity: plan.options.inactivity_timeout,
        restart_interval: plan.options.restart_interval,
        request: plan.options.request_timeout,
    };
    if !limits.any() {
        return;
    }
    let plan = plan.clone();
    let _ = std::thread::Builder::new()
        .name("wsgi:monitor".into())
        .spawn(move || monitor(&plan, &state, &limits));
}

/// Until the process shuts down: sleep, look, stop the process when a timer has expired. After a
/// graceful stop it goes on watching request-timeout.
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
            Timer::RestartInterval => {
                format!("{tag}: Application restart timer expired, stopping process '{name}'.")
            }
            Timer::Inactivity => format!(
                "{tag}: Daemon process idle inactivity timer expired, stopping process '{name}'."
            ),
        };
        let reason = match timer {
            Timer::RequestTime => StopReason::Shutdown,
            _ => StopReason::Graceful,
        };
        // Logged first, so it comes before the process's "Shutdown requested".
        if (state.reason() as u8) < reason as u8 {
            plan.log(Level::Info, &message);
            state.stop(reason);
        }
        if reason == StopReason::Graceful {
            // Only request-timeout is left to watch for.
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
        }
    }

    fn limits(inactivity: f64, restart: f64, request: f64) -> Limits {
        Limits {
            inactivity: s(inactivity),
            restart_interval: s(restart),
            request: s(request),
        }
    }

    #[test]
    fn no_timers_means_no_monitor_and_a_poll() {
        assert!(!Limits::default().any());
        assert!(limits(0.0, 0.0, 1.0).any());
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
        let all = limits(1.0, 1.0, 1.0);
        assert_eq!(
            check(&all, &snap(10.0, Some(5.0), Some(5.0))),
            Verdict::Expired(Timer::RequestTime)
        );
    }

    #[test]
    fn activity_tracks_the_oldest_running_request() {
        let a = Activity::new(3);
        let (s0, oldest) = a.snapshot();
        assert_eq!(
            (s0.last_activity, s0.oldest_request, oldest),
            (None, None, None)
        );
        a.begin(2, "first");
        std::thread::sleep(Duration::from_millis(2));
        a.begin(0, "second");
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
