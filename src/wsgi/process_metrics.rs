//! The accounting behind `mod_wsgi.process_metrics()` and `mod_wsgi.request_metrics()`, as C
//! mod_wsgi 4.9.4 keeps it, per process (every interpreter of the process shares it):
//!
//! - thread utilisation: the integral over time of the number of active requests (the
//!   "request busy time"), advanced at each request's start and end and when it is read;
//! - the requests completed, and which threads have served requests and how many each;
//! - once `request_metrics()` has been called: per sample period, the time each request spent
//!   in the server, queued for a daemon, in the daemon before the application, and in the
//!   application, as totals and in 16 buckets of doubling width from 5 ms, and the requests
//!   each thread finished.
//!
//! A request costs two short mutex sections (start and end) and, only while sampling, one more
//! at the end of the application. The Python objects are built in `process_metrics_py`.

use super::environ::CgiVars;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Buckets in each `*_time_buckets` list.
pub const BUCKETS: usize = 16;

/// The bucket a duration (seconds) is counted in: bucket `i` < 14 holds durations up to
/// 5 ms × 2^i (inclusive) above the previous bucket's limit; everything longer than 40.96 s is
/// in bucket 14. As in C mod_wsgi, the last bucket (15) is never used.
pub fn bucket_index(duration: f64) -> usize {
    let mut limit = 0.005;
    for i in 0..14 {
        if duration <= limit {
            return i;
        }
        limit *= 2.0;
    }
    14
}

/// Seconds from microseconds.
pub fn seconds(us: i64) -> f64 {
    us as f64 / 1_000_000.0
}

/// Microseconds since the Unix epoch (`apr_time_now()`).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Active requests over time, and the requests completed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Utilisation {
    active: i64,
    /// ∫ active dt, in request-microseconds, up to `last`.
    busy_us: i64,
    /// When `busy_us` was last advanced (0: never).
    last: i64,
    completed: u64,
}

impl Utilisation {
    fn advance(&mut self, now: i64) {
        if self.last != 0 {
            self.busy_us += self.active * (now - self.last).max(0);
        }
        self.last = now;
    }

    pub fn begin(&mut self, now: i64) {
        self.advance(now);
        self.active += 1;
    }

    pub fn end(&mut self, now: i64) {
        self.advance(now);
        self.active -= 1;
        self.completed += 1;
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// The busy time (seconds) and requests completed up to `now`.
    pub fn read(&mut self, now: i64) -> (f64, u64) {
        self.advance(now);
        (seconds(self.busy_us), self.completed)
    }

    pub fn active(&self) -> i64 {
        self.active
    }
}

/// The moments of one request, microseconds since the epoch; `queue_start` and `daemon_start`
/// are 0 unless the request went through a daemon process.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimes {
    pub request_start: i64,
    pub queue_start: i64,
    pub daemon_start: i64,
    pub application_start: i64,
    pub application_finish: i64,
}

/// Where a request's time went, in seconds: `[server, queue, daemon, application]`.
pub type Phases = [f64; 4];

impl RequestTimes {
    /// The times of a request from its environ's `mod_wsgi.request_start`, `mod_wsgi.queue_start`
    /// and `mod_wsgi.daemon_start` (a missing or malformed value is 0, as in C).
    pub fn from_vars(vars: &CgiVars, application_start: i64, application_finish: i64) -> Self {
        let time = |key: &str| {
            vars.get(key)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        RequestTimes {
            request_start: time("mod_wsgi.request_start"),
            queue_start: time("mod_wsgi.queue_start"),
            daemon_start: time("mod_wsgi.daemon_start"),
            application_start,
            application_finish,
        }
    }

    /// Server time runs from Apache accepting the request until it is queued for a daemon (or,
    /// in embedded mode, until the application starts); queue time until a daemon process took
    /// it; daemon time until the application started.
    pub fn phases(&self) -> Phases {
        let s = |from: i64, to: i64| seconds(to - from);
        let application = s(self.application_start, self.application_finish);
        if self.queue_start != 0 {
            [
                s(self.request_start, self.queue_start),
                s(self.queue_start, self.daemon_start),
                s(self.daemon_start, self.application_start),
                application,
            ]
        } else {
            [
                s(self.request_start, self.application_start),
                0.0,
                0.0,
                application,
            ]
        }
    }
}

/// What one sample period has collected.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub requests: u64,
    /// Total seconds per phase (`[server, queue, daemon, application]`).
    pub totals: Phases,
    /// Requests per bucket, per phase.
    pub buckets: [[u64; BUCKETS]; 4],
    /// Requests finished by each thread (index: thread id - 1).
    pub threads: Vec<u64>,
}

impl Sample {
    fn new(threads_maximum: usize) -> Sample {
        Sample {
            requests: 0,
            totals: [0.0; 4],
            buckets: [[0; BUCKETS]; 4],
            threads: vec![0; threads_maximum],
        }
    }

    /// Counts one request's phases; the queue and daemon phases are bucketed only in a daemon
    /// process (in embedded mode they stay all zero).
    pub fn record(&mut self, phases: &Phases, daemon: bool) {
        self.requests += 1;
        for (i, p) in phases.iter().enumerate() {
            self.totals[i] += p;
            if daemon || i == 0 || i == 3 {
                self.buckets[i][bucket_index(*p)] += 1;
            }
        }
    }

    /// Counts a request finished by thread `thread_id` (from 1); ids beyond the maximum are not
    /// counted.
    pub fn thread_finished(&mut self, thread_id: u64) {
        if let Some(n) = (thread_id as usize)
            .checked_sub(1)
            .and_then(|i| self.threads.get_mut(i))
        {
            *n += 1;
        }
    }
}

/// The process's counters at the start or end of a sample period.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub time: i64,
    pub busy: f64,
    pub requests: u64,
    pub cpu_user: f64,
    pub cpu_system: f64,
}

/// One sample period, as `request_metrics()` reports it (besides the pid and memory).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub start_time: f64,
    pub stop_time: f64,
    pub sample_period: f64,
    /// CPU seconds per second of the period.
    pub cpu_user_time: f64,
    pub cpu_system_time: f64,
    pub request_threads_maximum: usize,
    pub request_threads_started: usize,
    pub capacity_utilization: f64,
    pub request_count: u64,
    pub request_throughput: f64,
    pub buckets: [[u64; BUCKETS]; 4],
    pub request_threads_buckets: Vec<u64>,
    pub request_threads_active: usize,
    /// Mean seconds per request of each phase; queue and daemon are None in embedded mode.
    pub server_time: f64,
    pub queue_time: Option<f64>,
    pub daemon_time: Option<f64>,
    pub application_time: f64,
}

/// Sampling state once `request_metrics()` has been called.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    start: Snapshot,
    daemon: bool,
    threads_maximum: usize,
    sample: Sample,
}

impl Sampling {
    pub fn new(start: Snapshot, daemon: bool, threads_maximum: usize) -> Sampling {
        let threads_maximum = threads_maximum.max(1);
        Sampling {
            start,
            daemon,
            threads_maximum,
            sample: Sample::new(threads_maximum),
        }
    }

    /// Ends the period at `stop` and starts the next one.
    pub fn report(&mut self, stop: Snapshot, threads_started: usize) -> Report {
        let start = std::mem::replace(&mut self.start, stop);
        let sample = std::mem::replace(&mut self.sample, Sample::new(self.threads_maximum));
        let period = seconds(stop.time) - seconds(start.time);
        let per_second = |v: f64| if period > 0.0 { v / period } else { 0.0 };
        let mean = |total: f64| {
            if sample.requests > 0 {
                total / sample.requests as f64
            } else {
                0.0
            }
        };
        let request_count = stop.requests - start.requests;
        Report {
            start_time: seconds(start.time),
            stop_time: seconds(stop.time),
            sample_period: period,
            cpu_user_time: per_second(stop.cpu_user - start.cpu_user),
            cpu_system_time: per_second(stop.cpu_system - start.cpu_system),
            request_threads_maximum: self.threads_maximum,
            request_threads_started: threads_started,
            capacity_utilization: per_second(stop.busy - start.busy) / self.threads_maximum as f64,
            request_count,
            request_throughput: per_second(request_count as f64),
            buckets: sample.buckets,
            request_threads_active: sample.threads.iter().filter(|n| **n > 0).count(),
            request_threads_buckets: sample.threads,
            server_time: mean(sample.totals[0]),
            queue_time: self.daemon.then(|| mean(sample.totals[1])),
            daemon_time: self.daemon.then(|| mean(sample.totals[2])),
            application_time: mean(sample.totals[3]),
        }
    }
}

/// A thread that has served requests: its id (from 1, in the order threads first served) and
/// the applications it has called.
pub struct ThreadSlot {
    pub id: u64,
    requests: AtomicU64,
}

impl ThreadSlot {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// The process's accounting.
struct Monitor {
    utilisation: Utilisation,
    sampling: Option<Sampling>,
    /// Threads that have served requests, in order of their first; never removed (as C's).
    threads: Vec<&'static ThreadSlot>,
}

static MONITOR: Mutex<Monitor> = Mutex::new(Monitor {
    utilisation: Utilisation {
        active: 0,
        busy_us: 0,
        last: 0,
        completed: 0,
    },
    sampling: None,
    threads: Vec::new(),
});

/// Whether `request_metrics()` has been called: only then are request times recorded.
static SAMPLING: AtomicBool = AtomicBool::new(false);

fn monitor() -> MutexGuard<'static, Monitor> {
    MONITOR.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    static THIS_THREAD: Cell<Option<&'static ThreadSlot>> = const { Cell::new(None) };
}

/// This thread's slot, registered as a request thread on first use.
fn this_thread() -> &'static ThreadSlot {
    THIS_THREAD.with(|t| match t.get() {
        Some(slot) => slot,
        None => {
            let slot = {
                let mut m = monitor();
                let slot: &'static ThreadSlot = Box::leak(Box::new(ThreadSlot {
                    id: m.threads.len() as u64 + 1,
                    requests: AtomicU64::new(0),
                }));
                m.threads.push(slot);
                slot
            };
            t.set(Some(slot));
            slot
        }
    })
}

/// A request being handled by this thread, from before its script is loaded until it is
/// answered; ending it (dropping) counts it as completed.
pub struct ActiveRequest {
    thread: &'static ThreadSlot,
}

impl ActiveRequest {
    pub fn begin() -> ActiveRequest {
        let thread = this_thread();
        monitor().utilisation.begin(now_us());
        ActiveRequest { thread }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let now = now_us();
        let mut m = monitor();
        m.utilisation.end(now);
        if let Some(s) = &mut m.sampling {
            s.sample.thread_finished(self.thread.id);
        }
    }
}

/// The requests this process has completed (`mod_wsgi.total_requests`, as C counts them).
pub fn requests_completed() -> u64 {
    monitor().utilisation.completed()
}

/// An application call, for the environ: this thread's id, the applications it called before
/// this one, and when this one starts (`mod_wsgi.script_start`).
pub struct ApplicationCall {
    pub thread_id: u64,
    pub thread_requests: u64,
    pub start: i64,
}

/// Counts an application call on this thread (C mod_wsgi counts a thread's request when it
/// calls the application) and notes when it started, for [`application_finished`].
pub fn application_called() -> ApplicationCall {
    let thread = this_thread();
    let start = now_us();
    APPLICATION_START.with(|s| s.set(Some(start)));
    ApplicationCall {
        thread_id: thread.id,
        thread_requests: thread.requests.fetch_add(1, Ordering::Relaxed),
        start,
    }
}

thread_local! {
    static APPLICATION_START: Cell<Option<i64>> = const { Cell::new(None) };
}

/// Ends this thread's application call: while `request_metrics()` samples, records the
/// request's times (from its environ's `mod_wsgi.*_start` values and the call's start).
pub fn application_finished(vars: &CgiVars) {
    let Some(started) = APPLICATION_START.with(|s| s.take()) else {
        return;
    };
    if !SAMPLING.load(Ordering::Relaxed) {
        return;
    }
    let phases = RequestTimes::from_vars(vars, started, now_us()).phases();
    if let Some(s) = &mut monitor().sampling {
        let daemon = s.daemon;
        s.sample.record(&phases, daemon);
    }
}

/// The process-wide figures `process_metrics()` reports.
pub struct ProcessFigures {
    pub busy: f64,
    pub requests: u64,
    pub active: i64,
    /// (thread id, applications called) of each request thread.
    pub threads: Vec<(u64, u64)>,
}

pub fn process_figures(now: i64) -> ProcessFigures {
    let mut m = monitor();
    let (busy, requests) = m.utilisation.read(now);
    ProcessFigures {
        busy,
        requests,
        active: m.utilisation.active(),
        threads: m.threads.iter().map(|t| (t.id, t.requests())).collect(),
    }
}

/// One call of `request_metrics()` at `now`, with the process's CPU times then: None on the
/// first call, which starts sampling; later, the period since the previous call.
pub fn sample(
    now: i64,
    cpu_user: f64,
    cpu_system: f64,
    daemon: bool,
    threads_maximum: usize,
) -> Option<Report> {
    let mut m = monitor();
    let (busy, requests) = m.utilisation.read(now);
    let snapshot = Snapshot {
        time: now,
        busy,
        requests,
        cpu_user,
        cpu_system,
    };
    let started = m.threads.len();
    match &mut m.sampling {
        Some(s) => Some(s.report(snapshot, started)),
        None => {
            m.sampling = Some(Sampling::new(snapshot, daemon, threads_maximum));
            SAMPLING.store(true, Ordering::Relaxed);
            None
        }
    }
}

/// When this process started serving (set once, when Python starts in it).
static PROCESS_START: OnceLock<i64> = OnceLock::new();

pub fn process_start() -> i64 {
    *PROCESS_START.get_or_init(now_us)
}

/// The resident set size now and at its peak, in bytes, from `/proc/self/status` (0 when
/// unknown).
pub fn memory_rss() -> (u64, u64) {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| parse_memory(&s))
        .unwrap_or((0, 0))
}

/// `VmRSS` and `VmHWM` of a `/proc/PID/status` text, in bytes.
pub fn parse_memory(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let rss = field("VmRSS:");
    (rss, field("VmHWM:").max(rss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double_from_five_milliseconds_and_the_last_is_unused() {
        assert_eq!(bucket_index(0.0), 0);
        assert_eq!(bucket_index(0.005), 0);
        assert_eq!(bucket_index(0.0051), 1);
        assert_eq!(bucket_index(0.01), 1);
        assert_eq!(bucket_index(0.3), 6);
        assert_eq!(bucket_index(40.96), 13);
        assert_eq!(bucket_index(41.0), 14);
        assert_eq!(bucket_index(1e9), 14);
        assert_eq!(bucket_index(-1.0), 0);
    }

    #[test]
    fn busy_time_is_the_integral_of_active_requests() {
        let mut u = Utilisation::default();
        u.begin(1_000_000);
        assert_eq!(u.read(1_500_000), (0.5, 0));
        u.begin(2_000_000);
        // 1 request for 1 s, then 2 for 0.5 s.
        u.end(2_500_000);
        assert_eq!(u.active(), 1);
        assert_eq!(u.read(2_500_000), (2.0, 1));
        u.end(3_000_000);
        assert_eq!(u.read(10_000_000), (2.5, 2));
        // A clock going back adds nothing.
        u.begin(9_000_000);
        assert_eq!(u.read(8_000_000), (2.5, 2));
    }

    #[test]
    fn embedded_and_daemon_phases() {
        let embedded = RequestTimes {
            request_start: 1_000_000,
            application_start: 1_020_000,
            application_finish: 1_320_000,
            ..RequestTimes::default()
        };
        let p = embedded.phases();
        assert!(
            (p[0] - 0.02).abs() < 1e-9 && (p[3] - 0.3).abs() < 1e-9,
            "{p:?}"
        );
        assert_eq!((p[1], p[2]), (0.0, 0.0));
        let daemon = RequestTimes {
            request_start: 1_000_000,
            queue_start: 1_000_100,
            daemon_start: 1_000_300,
            application_start: 1_022_300,
            application_finish: 1_023_300,
        };
        let p = daemon.phases();
        for (got, want) in p.iter().zip([0.0001, 0.0002, 0.022, 0.001]) {
            assert!((got - want).abs() < 1e-9, "{p:?}");
        }
    }

    #[test]
    fn times_come_from_the_environ() {
        let mut vars = CgiVars::default();
        vars.set("mod_wsgi.request_start", "100");
        vars.set("mod_wsgi.queue_start", "x");
        vars.set("mod_wsgi.daemon_start", "300");
        let t = RequestTimes::from_vars(&vars, 400, 500);
        assert_eq!(
            t,
            RequestTimes {
                request_start: 100,
                queue_start: 0,
                daemon_start: 300,
                application_start: 400,
                application_finish: 500,
            }
        );
    }

    #[test]
    fn queue_and_daemon_buckets_count_only_in_daemon_processes() {
        let mut s = Sample::new(2);
        s.record(&[0.001, 0.0, 0.0, 0.3], false);
        assert_eq!(s.buckets[0][0], 1);
        assert_eq!(s.buckets[3][6], 1);
        assert_eq!(s.buckets[1], [0; BUCKETS]);
        assert_eq!(s.buckets[2], [0; BUCKETS]);
        s.record(&[0.001, 0.002, 0.02, 0.3], true);
        assert_eq!(s.buckets[1][0], 1);
        assert_eq!(s.buckets[2][2], 1);
        assert_eq!(s.requests, 2);
        s.thread_finished(2);
        s.thread_finished(3);
        s.thread_finished(0);
        assert_eq!(s.threads, vec![0, 1]);
    }

    #[test]
    fn a_report_covers_the_period_since_the_previous_one() {
        let start = Snapshot {
            time: 10_000_000,
            busy: 1.0,
            requests: 5,
            cpu_user: 1.0,
            cpu_system: 0.5,
        };
        let mut s = Sampling::new(start, false, 4);
        s.sample.record(&[0.01, 0.0, 0.0, 0.2], false);
        s.sample.record(&[0.03, 0.0, 0.0, 0.4], false);
        s.sample.thread_finished(1);
        s.sample.thread_finished(1);
        let stop = Snapshot {
            time: 12_000_000,
            busy: 3.0,
            requests: 7,
            cpu_user: 2.0,
            cpu_system: 0.5,
        };
        let r = s.report(stop, 3);
        assert_eq!(
            (r.start_time, r.stop_time, r.sample_period),
            (10.0, 12.0, 2.0)
        );
        assert_eq!((r.cpu_user_time, r.cpu_system_time), (0.5, 0.0));
        assert_eq!(r.request_threads_maximum, 4);
        assert_eq!(r.request_threads_started, 3);
        // 2 s of busy time over 2 s and 4 threads.
        assert_eq!(r.capacity_utilization, 0.25);
        assert_eq!((r.request_count, r.request_throughput), (2, 1.0));
        assert!((r.server_time - 0.02).abs() < 1e-9);
        assert!((r.application_time - 0.3).abs() < 1e-9);
        assert_eq!((r.queue_time, r.daemon_time), (None, None));
        assert_eq!(r.request_threads_buckets, vec![2, 0, 0, 0]);
        assert_eq!(r.request_threads_active, 1);
        assert_eq!(r.buckets[0][1] + r.buckets[0][3], 2);
        // The next period starts empty where this one stopped.
        let r = s.report(
            Snapshot {
                time: 13_000_000,
                ..stop
            },
            3,
        );
        assert_eq!((r.start_time, r.request_count), (12.0, 0));
        assert_eq!((r.server_time, r.application_time), (0.0, 0.0));
        assert_eq!(r.buckets, [[0; BUCKETS]; 4]);
        assert_eq!(r.request_threads_buckets, vec![0; 4]);
    }

    #[test]
    fn a_daemon_report_has_queue_and_daemon_means() {
        let mut s = Sampling::new(Snapshot::default(), true, 0);
        s.sample.record(&[0.001, 0.002, 0.004, 0.1], true);
        let r = s.report(
            Snapshot {
                time: 1_000_000,
                ..Snapshot::default()
            },
            1,
        );
        assert_eq!(r.request_threads_maximum, 1);
        assert_eq!((r.queue_time, r.daemon_time), (Some(0.002), Some(0.004)));
    }

    #[test]
    fn an_empty_period_divides_by_nothing() {
        let mut s = Sampling::new(Snapshot::default(), false, 1);
        let r = s.report(Snapshot::default(), 0);
        assert_eq!(r.sample_period, 0.0);
        assert_eq!((r.capacity_utilization, r.request_throughput), (0.0, 0.0));
    }

    #[test]
    fn memory_comes_from_proc_status() {
        let status = "Name:\tapache2\nVmHWM:\t   20000 kB\nVmRSS:\t   14000 kB\n";
        assert_eq!(parse_memory(status), (14000 * 1024, 20000 * 1024));
        assert_eq!(parse_memory("VmRSS: 8 kB\n"), (8192, 8192));
        assert_eq!(parse_memory(""), (0, 0));
        let (rss, peak) = memory_rss();
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
    }

    #[test]
    fn threads_are_numbered_in_order_of_their_first_request() {
        let first = std::thread::spawn(|| {
            let r = ActiveRequest::begin();
            let call = application_called();
            let again = application_called();
            assert_eq!(again.thread_id, call.thread_id);
            assert_eq!(again.thread_requests, call.thread_requests + 1);
            assert!(again.start >= call.start);
            drop(r);
            call.thread_id
        })
        .join()
        .unwrap();
        let second = std::thread::spawn(|| {
            let _r = ActiveRequest::begin();
            application_called().thread_id
        })
        .join()
        .unwrap();
        assert!(second > first);
        let f = process_figures(now_us());
        let counts: Vec<_> = f.threads.iter().filter(|t| t.0 == first).collect();
        assert_eq!(counts, vec![&(first, 2)]);
        assert!(f.requests >= 2);
    }
}
