//! The timers of a daemon process, end to end: `inactivity-timeout`, `restart-interval`,
//! `request-timeout`, `startup-timeout` and `deadlock-timeout` each make the process stop, and
//! the supervisor replaces it; `eviction-timeout` bounds how long an evicted process waits.

mod common;

use common::{process_alive, Apache};
use std::time::{Duration, Instant};

/// Answers with its pid. `/slow` sleeps 5 seconds first (or as many as the query string says),
/// after creating the file `busy`; `/spin` creates the file `spinning`, then keeps the GIL for
/// good (catastrophic backtracking in `re`, which never releases it).
const PID: &str = r#"
import os, re, time
def application(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/slow":
        open("{dir}/busy", "w").close()
        time.sleep(float(environ.get("QUERY_STRING") or 5))
    if path == "/spin":
        open("{dir}/spinning", "w").close()
        re.match(r"(a+)+$", "a" * 40 + "b")
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

fn pid(apache: &Apache) -> i32 {
    let r = apache.get("/pid");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    r.text().parse().unwrap()
}

/// Signals a daemon process this test's Apache started.
fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) to a pid the test got from the process itself.
    unsafe { libc::kill(pid, sig) };
}

/// Waits (bounded) until `path` exists.
fn wait_for_file(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until process `pid` has ended; false if it is still there.
fn wait_for_exit(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while process_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn start(name: &str, options: &str) -> Apache {
    Apache::start(
        name,
        &[("pid.wsgi", PID)],
        &format!(
            "WSGIDaemonProcess site threads=2 {options}\n\
             WSGIScriptAlias /pid {{dir}}/pid.wsgi process-group=site"
        ),
    )
}

#[test]
fn an_idle_process_is_replaced_after_inactivity_timeout() {
    let apache = start("timers_inactivity", "inactivity-timeout=1");
    let before = pid(&apache);
    std::thread::sleep(Duration::from_millis(2500));
    let after = pid(&apache);
    assert_ne!(before, after);
    let log = apache.error_log();
    assert!(
        log.contains("Daemon process idle inactivity timer expired, stopping process 'site'."),
        "{log}"
    );
    // Replaced as it began to stop, not once it had ended.
    assert!(
        log.contains(&format!(
            "Process {before} of daemon group 'site' is stopping; starting its replacement while \
             it finishes its requests."
        )),
        "{log}"
    );
}

#[test]
fn restart_interval_replaces_the_process_without_failing_requests() {
    let apache = start("timers_restart", "restart-interval=2");
    let begin = Instant::now();
    let mut pids = Vec::new();
    while begin.elapsed() < Duration::from_millis(3500) {
        pids.push(pid(&apache));
        std::thread::sleep(Duration::from_millis(500));
    }
    pids.dedup();
    assert!(pids.len() >= 2, "{pids:?}");
    let log = apache.error_log();
    // "stopping process 'site'." when idle, "waiting for requests to complete 'site'." when not.
    assert!(log.contains("Application restart timer expired, "), "{log}");
}

#[test]
fn restart_interval_says_it_waits_for_running_requests() {
    let apache = start("timers_restart_busy", "restart-interval=2");
    let before = pid(&apache);
    let r = apache.get("/pid/slow?4");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    assert_eq!(r.text(), before.to_string());
    let log = apache.wait_for_log("Application restart timer expired");
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Application restart timer expired, waiting for requests \
             to complete 'site'."
        )),
        "{log}"
    );
}

#[test]
fn a_request_over_request_timeout_stops_the_process_and_is_a_502() {
    let apache = start("timers_request", "request-timeout=1 shutdown-timeout=1");
    let before = pid(&apache);
    let begin = Instant::now();
    let r = apache.get("/pid/slow");
    let took = begin.elapsed();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    let log = apache.wait_for_log("Daemon process request time limit exceeded");
    assert!(
        log.contains("Daemon process request time limit exceeded, stopping process 'site'."),
        "{log}"
    );
    // As C, where the stuck request is, for whoever reads the log.
    let log = apache.wait_for_log("Dumping stack trace for active Python threads.");
    let script = apache.path("pid.wsgi").display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("mod_wsgi (pid={before}): Thread "))
                && l.contains(&format!(
                    " executing file \"{script}\", line 7, in application"
                ))),
        "{log}"
    );
    let after = pid(&apache);
    assert_ne!(before, after);
}

#[test]
fn requests_within_the_limits_are_served_by_the_same_process() {
    // The startup timer is disarmed by the script's first load; the GIL probe keeps getting the
    // GIL, so a short deadlock-timeout does not fire either.
    let apache = start(
        "timers_quiet",
        "inactivity-timeout=5 request-timeout=5 restart-interval=30 startup-timeout=1 \
         deadlock-timeout=3",
    );
    let first = pid(&apache);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(pid(&apache), first);
    }
    assert!(
        !apache.error_log().contains("timer expired"),
        "{}",
        apache.error_log()
    );
}

/// Fails to import while the file `down` exists (an application whose database is not up yet).
const FLAKY: &str = r#"
import os
if os.path.exists("{dir}/down"):
    raise RuntimeError("the database is not up yet")
def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

#[test]
fn a_process_whose_script_does_not_load_is_replaced_after_startup_timeout() {
    let apache = Apache::start(
        "timers_startup",
        &[("flaky.wsgi", FLAKY), ("down", "")],
        "WSGIDaemonProcess site threads=2 startup-timeout=2\n\
         WSGIScriptAlias /app {dir}/flaky.wsgi process-group=site",
    );
    let begin = Instant::now();
    let r = apache.get("/app");
    assert_eq!(r.status, 500, "{}", r.text());
    // Another failure does not push the timer out.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(apache.get("/app").status, 500);
    let log = apache.wait_for_log("Failed to exec Python script file");
    let failing: i32 = log
        .split("): Failed to exec Python script file")
        .next()
        .and_then(|head| head.rsplit("mod_wsgi (pid=").next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in\n{log}"));
    let log = apache.wait_for_log(&format!(
        "Process {failing} of daemon group 'site' is stopping; starting its replacement"
    ));
    let took = begin.elapsed();
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={failing}): Application startup timer expired, stopping process 'site'."
        )),
        "{log}"
    );
    // Not before the timer's 2 seconds from the first request.
    assert!(
        took >= Duration::from_millis(1900),
        "replaced after {took:?}"
    );
    std::fs::remove_file(apache.path("down")).unwrap();
    let r = apache.get("/app");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    assert_ne!(r.text().parse::<i32>().unwrap(), failing);
}

#[test]
fn a_process_whose_gil_is_held_is_replaced_after_deadlock_timeout() {
    let apache = start("timers_deadlock", "deadlock-timeout=2 shutdown-timeout=1");
    let before = pid(&apache);
    let begin = Instant::now();
    let r = apache.get("/pid/spin");
    let took = begin.elapsed();
    assert_eq!(r.status, 502, "{}", r.text());
    // 2 s of deadlock-timeout, then 1 s of shutdown-timeout; generous for a loaded machine.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let log = apache.wait_for_log("starting its replacement");
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Daemon process deadlock timer expired, stopping process \
             'site'."
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Aborting process 'site': requests still running after \
             shutdown-timeout"
        )),
        "{log}"
    );
    let after = pid(&apache);
    assert_ne!(before, after);
}

#[test]
fn an_evicted_process_waits_eviction_timeout_for_its_requests() {
    let apache = start(
        "timers_eviction",
        "graceful-timeout=60 eviction-timeout=1 shutdown-timeout=1",
    );
    let before = pid(&apache);
    let port = apache.port;
    let begin = Instant::now();
    let slow =
        std::thread::spawn(move || common::http_request(port, "GET", "/pid/slow?30", &[], b""));
    wait_for_file(&apache.path("busy"));
    signal(before, libc::SIGUSR1);
    assert!(
        wait_for_exit(before, Duration::from_secs(15)),
        "process {before} still running\n{}",
        apache.error_log()
    );
    let r = slow.join().unwrap();
    assert!(
        begin.elapsed() < Duration::from_secs(25),
        "{:?}",
        begin.elapsed()
    );
    assert_eq!(r.status, 502, "{}", r.text());
    let log = apache.error_log();
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Process eviction requested, waiting for requests to \
             complete 'site'."
        )),
        "{log}"
    );
    // As C: once eviction-timeout has run out, shutdown-timeout more.
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Daemon process graceful timer expired 'site': requests \
             still running after eviction-timeout (1 seconds); shutting down."
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Aborting process 'site': requests still running after \
             shutdown-timeout (1 seconds)."
        )),
        "{log}"
    );
    assert_ne!(pid(&apache), before);
}

#[test]
fn without_eviction_timeout_an_evicted_process_finishes_its_requests() {
    let apache = start("timers_eviction_graceful", "graceful-timeout=60");
    let before = pid(&apache);
    let port = apache.port;
    let slow =
        std::thread::spawn(move || common::http_request(port, "GET", "/pid/slow?3", &[], b""));
    wait_for_file(&apache.path("busy"));
    signal(before, libc::SIGUSR1);
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    assert_eq!(r.text(), before.to_string());
    assert!(wait_for_exit(before, Duration::from_secs(15)));
    let log = apache.error_log();
    assert!(
        log.contains("Process eviction requested, waiting for requests to complete 'site'."),
        "{log}"
    );
    assert!(!log.contains("Aborting process"), "{log}");
    assert_ne!(pid(&apache), before);
}

#[test]
fn a_deadlocked_process_ends_at_once_when_shutdown_timeout_is_zero() {
    let apache = start(
        "timers_deadlock_now",
        "deadlock-timeout=2 shutdown-timeout=0",
    );
    let before = pid(&apache);
    let r = apache.get("/pid/spin");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(wait_for_exit(before, Duration::from_secs(15)));
    let log = apache.error_log();
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Aborting process 'site': the GIL is held and \
             shutdown-timeout is 0."
        )),
        "{log}"
    );
    assert_ne!(pid(&apache), before);
}

#[test]
fn a_deadlock_during_a_graceful_stop_ends_the_process_after_shutdown_timeout() {
    let apache = start(
        "timers_deadlock_graceful",
        "deadlock-timeout=3 shutdown-timeout=1 graceful-timeout=60",
    );
    let before = pid(&apache);
    let port = apache.port;
    let spin = std::thread::spawn(move || common::http_request(port, "GET", "/pid/spin", &[], b""));
    wait_for_file(&apache.path("spinning"));
    signal(before, libc::SIGUSR1);
    // Within deadlock-timeout + shutdown-timeout, not graceful-timeout's 60 seconds.
    assert!(
        wait_for_exit(before, Duration::from_secs(20)),
        "process {before} still running\n{}",
        apache.error_log()
    );
    assert_eq!(spin.join().unwrap().status, 502);
    let log = apache.error_log();
    assert!(
        log.contains("Process eviction requested, waiting for requests to complete 'site'."),
        "{log}"
    );
    assert!(
        log.contains("Daemon process deadlock timer expired, stopping process 'site'."),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Aborting process 'site': requests still running after \
             shutdown-timeout (1 seconds)."
        )),
        "{log}"
    );
    assert_ne!(pid(&apache), before);
}

#[test]
fn a_shutdown_during_a_graceful_stop_gets_shutdown_timeout_not_the_rest_of_graceful_timeout() {
    let apache = start(
        "timers_graceful_then_shutdown",
        "graceful-timeout=60 shutdown-timeout=1",
    );
    let before = pid(&apache);
    let port = apache.port;
    let slow =
        std::thread::spawn(move || common::http_request(port, "GET", "/pid/slow?30", &[], b""));
    wait_for_file(&apache.path("busy"));
    signal(before, libc::SIGUSR1);
    apache.wait_for_log("Process eviction requested, waiting for requests to complete");
    signal(before, libc::SIGTERM);
    assert!(
        wait_for_exit(before, Duration::from_secs(15)),
        "process {before} still running\n{}",
        apache.error_log()
    );
    assert_eq!(slow.join().unwrap().status, 502);
    let log = apache.error_log();
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Aborting process 'site': requests still running after \
             shutdown-timeout (1 seconds)."
        )),
        "{log}"
    );
}

#[test]
fn an_evicted_process_is_replaced_at_once_while_it_finishes_its_requests() {
    // One process: while it finishes a slow request, nothing else of the group could take a new
    // one. Its replacement starts as it begins to stop, not once it has ended.
    let apache = start("timers_replaced_at_once", "processes=1 graceful-timeout=60");
    let before = pid(&apache);
    let port = apache.port;
    let slow =
        std::thread::spawn(move || common::http_request(port, "GET", "/pid/slow?6", &[], b""));
    wait_for_file(&apache.path("busy"));
    signal(before, libc::SIGUSR1);
    let begin = Instant::now();
    // Once the process has taken the signal (until then its free thread may still take a
    // request, rightly).
    apache.wait_for_log(&format!(
        "Process {before} of daemon group 'site' is stopping"
    ));
    let after = pid(&apache);
    let took = begin.elapsed();
    assert_ne!(after, before);
    assert!(
        took < Duration::from_secs(4),
        "a new request waited {took:?} for the slow one\n{}",
        apache.error_log()
    );
    assert!(
        process_alive(before),
        "the old process finishes its request"
    );
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    assert_eq!(r.text(), before.to_string());
    assert!(wait_for_exit(before, Duration::from_secs(15)));
    let log = apache.wait_for_log(&format!(
        "Process {before} of daemon group 'site' has exited."
    ));
    assert!(
        log.contains(&format!(
            "Process {before} of daemon group 'site' is stopping; starting its replacement while \
             it finishes its requests."
        )),
        "{log}"
    );
    // Still one process serving, the replacement.
    assert_eq!(pid(&apache), after);
}

#[test]
fn after_graceful_timeout_requests_get_shutdown_timeout_more() {
    // As C: graceful-timeout, then shutdown-timeout; the 3-second request fits in 1 + 4.
    let apache = start(
        "timers_graceful_then_shutdown_timeout",
        "graceful-timeout=1 shutdown-timeout=4",
    );
    let before = pid(&apache);
    let port = apache.port;
    let slow =
        std::thread::spawn(move || common::http_request(port, "GET", "/pid/slow?3", &[], b""));
    wait_for_file(&apache.path("busy"));
    signal(before, libc::SIGUSR1);
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    assert_eq!(r.text(), before.to_string());
    assert!(wait_for_exit(before, Duration::from_secs(15)));
    let log = apache.error_log();
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Daemon process graceful timer expired 'site': requests \
             still running after graceful-timeout (1 seconds); shutting down."
        )),
        "{log}"
    );
    assert!(!log.contains("Aborting process"), "{log}");
}

/// Spins on the CPU for as many seconds as the query string says, then answers with its pid.
const SPIN_CPU: &str = r#"
import os, time
def application(environ, start_response):
    begin = time.process_time()
    while time.process_time() - begin < float(environ.get("QUERY_STRING") or 2):
        pass
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

#[test]
fn a_process_over_cpu_time_limit_finishes_its_requests_and_is_replaced() {
    // The kernel's SIGXCPU at the limit used to kill the process, and the request with it (a
    // 502); as in C, the process stops gracefully instead.
    let apache = Apache::start(
        "timers_cpu_limit",
        &[("spin.wsgi", SPIN_CPU)],
        "WSGIDaemonProcess site threads=2 cpu-time-limit=1\n\
         WSGIScriptAlias /spin {dir}/spin.wsgi process-group=site",
    );
    let r = apache.get("/spin?2.5");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let spun: i32 = r.text().parse().unwrap();
    let log = apache.wait_for_log("Exceeded CPU time limit");
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={spun}): Exceeded CPU time limit, waiting for requests to complete \
             'site'."
        )),
        "{log}"
    );
    assert!(wait_for_exit(spun, Duration::from_secs(15)));
    let r = apache.get("/spin?0");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    assert_ne!(r.text().parse::<i32>().unwrap(), spun);
    assert!(
        !apache.error_log().contains("SIGXCPU"),
        "{}",
        apache.error_log()
    );
}

#[test]
fn requests_under_wsgi_ignore_activity_do_not_keep_a_process_from_going_idle() {
    let apache = Apache::start(
        "timers_ignore_activity",
        &[("pid.wsgi", PID)],
        "WSGIDaemonProcess site threads=2 inactivity-timeout=2\n\
         WSGIScriptAlias /pid {dir}/pid.wsgi process-group=site\n\
         WSGIScriptAlias /health {dir}/pid.wsgi process-group=site\n\
         <Location /health>\n\
         WSGIIgnoreActivity On\n\
         </Location>",
    );
    let first = pid(&apache);
    // A health check every 200 ms: each would push the deadline out if it counted.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut replaced = None;
    while Instant::now() < deadline && replaced.is_none() {
        let r = apache.get("/health");
        assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
        let served_by: i32 = r.text().parse().unwrap();
        if served_by != first {
            replaced = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        replaced.is_some(),
        "the health checks kept pid {first} alive:\n{}",
        apache.error_log()
    );
    let log = apache.error_log();
    assert!(
        log.contains("Daemon process idle inactivity timer expired, stopping process 'site'."),
        "{log}"
    );
}

/// The pids whose parent is `parent` (its live children), from /proc.
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1;
                    let mut fields = after.split_whitespace();
                    let state = fields.next()?;
                    let ppid: i32 = fields.next()?.parse().ok()?;
                    Some(ppid == parent && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn recycling_under_load_never_runs_more_than_twice_the_processes() {
    // Each process ends after a request, and a long request keeps each stopping process
    // alive: without a bound, the replacement that stops beside the first would get a
    // replacement of its own, a third process.
    let apache = Apache::start(
        "timers_recycle_bound",
        &[("pid.wsgi", PID)],
        "WSGIDaemonProcess site processes=1 threads=2 maximum-requests=1\n\
         WSGIScriptAlias /pid {dir}/pid.wsgi process-group=site",
    );
    let log = apache.wait_for_log("(supervisor pid ");
    let supervisor: i32 = log
        .split("(supervisor pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no supervisor pid in\n{log}"));
    let port = apache.port;
    let busy = apache.path("busy");
    // A long request, then a quick one: the first process has served one and stops.
    let long = |busy: &std::path::Path| {
        let _ = std::fs::remove_file(busy);
        let slow = std::thread::spawn(move || {
            common::http_request(port, "GET", "/pid/slow?4", &[], b"").status
        });
        wait_for_file(busy);
        slow
    };
    let first = long(&busy);
    assert_eq!(apache.get("/pid").status, 200);
    // The same on its replacement.
    let second = long(&busy);
    assert_eq!(apache.get("/pid").status, 200);
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        most = most.max(children_of(supervisor).len());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(second.join().unwrap(), 200);
    assert!(
        most <= 2,
        "{most} daemon processes at once\n{}",
        apache.error_log()
    );
    // Served again once the first has ended.
    assert_eq!(apache.get("/pid").status, 200, "{}", apache.error_log());
}

#[test]
fn without_graceful_timeout_maximum_requests_shuts_down_at_once() {
    // As C: no graceful-timeout means a process that reached maximum-requests shuts down, and
    // its other requests get shutdown-timeout, not for ever.
    let apache = Apache::start(
        "timers_no_graceful_timeout",
        &[("pid.wsgi", PID)],
        "WSGIDaemonProcess site threads=2 maximum-requests=1 graceful-timeout=0 \
         shutdown-timeout=1\n\
         WSGIScriptAlias /pid {dir}/pid.wsgi process-group=site",
    );
    let port = apache.port;
    let begin = Instant::now();
    let slow =
        std::thread::spawn(move || common::http_request(port, "GET", "/pid/slow?8", &[], b""));
    wait_for_file(&apache.path("busy"));
    let before = pid(&apache);
    let r = slow.join().unwrap();
    let took = begin.elapsed();
    assert_eq!(r.status, 502, "{}\n{}", r.text(), apache.error_log());
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let log = apache.wait_for_log("Aborting process");
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={before}): Aborting process 'site': requests still running after \
             shutdown-timeout (1 seconds)."
        )),
        "{log}"
    );
}

/// `queue-timeout`: a request that waited longer than it for a thread of the group is answered
/// 504 when a process takes it, and logged once, against the request, as in C (the daemon
/// logged the line too, in the process's own name).
#[test]
fn a_request_queued_over_queue_timeout_is_a_504_logged_once() {
    let apache = Apache::start(
        "timers_queue",
        &[("pid.wsgi", PID)],
        "WSGIDaemonProcess site threads=1 queue-timeout=1\n\
         WSGIScriptAlias /pid {dir}/pid.wsgi process-group=site",
    );
    pid(&apache);
    let busy = apache.path("busy");
    let queued = std::thread::scope(|scope| {
        let slow = scope.spawn(|| apache.get("/pid/slow?2.5"));
        wait_for_file(&busy);
        let queued = apache.get("/pid");
        assert_eq!(slow.join().unwrap().status, 200);
        queued
    });
    assert_eq!(queued.status, 504, "{}", apache.error_log());
    let log = apache.wait_for_log("Queue timeout expired");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Queue timeout expired for WSGI daemon process 'site'"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("[client 127.0.0.1"), "{log}");
}
