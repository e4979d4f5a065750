//! The timers of a daemon process, end to end: `inactivity-timeout`, `restart-interval` and
//! `request-timeout` each make the process stop, and the supervisor replaces it.

mod common;

use common::Apache;
use std::time::{Duration, Instant};

/// Answers with its pid; `/slow` sleeps 5 seconds first.
const PID: &str = r#"
import os, time
def application(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(5)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

fn pid(apache: &Apache) -> i32 {
    let r = apache.get("/pid");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    r.text().parse().unwrap()
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
    assert!(
        log.contains(&format!(
            "Process {before} of daemon group 'site' has exited; starting its replacement."
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
    assert!(
        log.contains("Application restart timer expired, stopping process 'site'."),
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
    let after = pid(&apache);
    assert_ne!(before, after);
}

#[test]
fn requests_within_the_limits_are_served_by_the_same_process() {
    let apache = start(
        "timers_quiet",
        "inactivity-timeout=5 request-timeout=5 restart-interval=30",
    );
    let first = pid(&apache);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(pid(&apache), first);
    }
    assert!(
        !apache.error_log().contains("timer expired"),
        "{}",
        apache.error_log()
    );
}
