//! `mod_wsgi.server_metrics()`: Apache's scoreboard as a dict when `WSGIServerMetrics On`
//! (Apache's children) or `server-metrics=On` (a daemon group) says so, else None.

mod common;

use common::apps::{environ_value, parse_environ};
use common::Apache;
use std::time::{Duration, Instant};

/// Answers with `key=value` lines summarising `mod_wsgi.server_metrics()` ("None" when it is).
const METRICS_APP: &str = r#"
import os, mod_wsgi
def application(environ, start_response):
    m = mod_wsgi.server_metrics()
    if m is None:
        body = "None"
    else:
        def types(d):
            return ",".join("%s:%s" % (k, type(v).__name__) for k, v in sorted(d.items()))
        processes = m["processes"]
        workers = [w for p in processes for w in p["workers"]]
        lines = [
            "types=" + types(m),
            "process_types=" + types(processes[0]),
            "worker_types=" + types(workers[0]),
            "server_limit=%d" % m["server_limit"],
            "thread_limit=%d" % m["thread_limit"],
            "running_generation=%d" % m["running_generation"],
            "restart_time=%r" % m["restart_time"],
            "current_time=%r" % m["current_time"],
            "running_time=%d" % m["running_time"],
            "worker_counts=" + ",".join(str(len(p["workers"])) for p in processes),
            "pids=" + ",".join(str(p["pid"]) for p in processes),
            "statuses=" + "".join(w["status"] for w in workers),
            "busy=" + "|".join(w["request"] for w in workers if w["status"] == "W"),
            "me=%d" % os.getpid(),
        ]
        body = "\n".join(lines)
    body = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"#;

struct Metrics(Option<Vec<(String, String)>>);

impl Metrics {
    fn get(&self, key: &str) -> &str {
        let lines = self.0.as_ref().expect("metrics, not None");
        environ_value(lines, key).unwrap_or_else(|| panic!("no {key} in {lines:?}"))
    }

    fn number(&self, key: &str) -> f64 {
        self.get(key).parse().unwrap()
    }

    fn pids(&self) -> Vec<i32> {
        self.get("pids")
            .split(',')
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

fn metrics_at(apache: &Apache, path: &str) -> Metrics {
    let r = apache.get(path);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let text = r.text();
    Metrics((text != "None").then(|| parse_environ(&text)))
}

fn metrics(apache: &Apache) -> Metrics {
    metrics_at(apache, "/metrics/probe")
}

fn start(name: &str, extra: &str) -> Apache {
    Apache::start(name, &[("metrics.wsgi", METRICS_APP)], extra)
}

/// Checks the dict against what C mod_wsgi 4.9.4 returns (its keys and value types) and the
/// test server (one process slot of 8 threads, tests/common), with the request itself busy
/// (Apache records request lines with `ExtendedStatus On`).
fn check_scoreboard(m: &Metrics, apache: &Apache) {
    assert_eq!(
        m.get("types"),
        "current_time:float,processes:list,restart_time:float,running_generation:int,\
         running_time:int,server_limit:int,thread_limit:int"
    );
    assert_eq!(
        m.get("process_types"),
        "generation:int,pid:int,process_num:int,quiescing:bool,workers:list"
    );
    assert_eq!(
        m.get("worker_types"),
        "access_count:int,bytes_served:int,client:str,generation:int,last_used:float,\
         request:str,start_time:float,status:str,stop_time:float,thread_num:int,vhost:str"
    );
    assert_eq!(m.get("server_limit"), "1");
    assert_eq!(m.get("thread_limit"), "8");
    assert_eq!(m.get("worker_counts"), "8");
    let (restart, now) = (m.number("restart_time"), m.number("current_time"));
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(restart > 0.0 && restart <= now, "{restart} {now}");
    assert!((now - wall).abs() < 60.0, "{now} vs {wall}");
    assert_eq!(m.number("running_time"), (now - restart).trunc());
    assert!(m.pids()[0] > 0, "{:?}", m.pids());
    let statuses = m.get("statuses");
    assert_eq!(statuses.len(), 8, "{statuses}");
    // The Apache child's worker carrying this request is busy writing, with the request line.
    assert!(
        m.get("busy")
            .split('|')
            .any(|r| r == "GET /metrics/probe HTTP/1.1"),
        "statuses {statuses}, busy {}\n{}",
        m.get("busy"),
        apache.error_log()
    );
}

#[test]
fn embedded_server_metrics_on_reports_the_scoreboard() {
    let apache = start(
        "metrics_embedded_on",
        "ExtendedStatus On\nWSGIServerMetrics On\nWSGIScriptAlias /metrics {dir}/metrics.wsgi",
    );
    let m = metrics(&apache);
    check_scoreboard(&m, &apache);
    assert_eq!(m.get("running_generation"), "0");
    // Once the child's threads are all up, the 7 not serving this request are ready ('_').
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let statuses = metrics(&apache).get("statuses").to_string();
        if statuses.matches('_').count() == 7 && statuses.matches('W').count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "statuses {statuses}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Embedded: the process running the application is the Apache child in the scoreboard.
    let me: i32 = m.get("me").parse().unwrap();
    assert!(m.pids().contains(&me), "{me} not in {:?}", m.pids());
}

#[test]
fn embedded_server_metrics_are_none_unless_enabled() {
    for (name, directive) in [
        ("metrics_embedded_default", ""),
        ("metrics_embedded_off", "WSGIServerMetrics Off"),
    ] {
        let apache = start(
            name,
            &format!("{directive}\nWSGIScriptAlias /metrics {{dir}}/metrics.wsgi"),
        );
        assert!(metrics(&apache).0.is_none(), "{name}");
    }
}

#[test]
fn daemon_group_with_server_metrics_reports_apaches_scoreboard() {
    let apache = start(
        "metrics_daemon_on",
        "ExtendedStatus On\n\
         WSGIDaemonProcess site threads=2 server-metrics=On\n\
         WSGIScriptAlias /metrics {dir}/metrics.wsgi process-group=site",
    );
    let m = metrics(&apache);
    check_scoreboard(&m, &apache);
    // The daemon process is not one of Apache's children.
    let me: i32 = m.get("me").parse().unwrap();
    assert!(!m.pids().contains(&me), "{me} in {:?}", m.pids());
}

#[test]
fn daemon_group_metrics_are_none_unless_the_group_enables_them() {
    // WSGIServerMetrics is for Apache's children only; a group needs server-metrics=On.
    let apache = start(
        "metrics_daemon_off",
        "WSGIServerMetrics On\n\
         WSGIDaemonProcess site threads=2\n\
         WSGIDaemonProcess other threads=2 server-metrics=Off\n\
         WSGIScriptAlias /metrics {dir}/metrics.wsgi process-group=site\n\
         WSGIScriptAlias /other-metrics {dir}/metrics.wsgi process-group=other",
    );
    assert!(metrics(&apache).0.is_none());
    assert!(metrics_at(&apache, "/other-metrics/probe").0.is_none());
}

#[test]
fn daemon_metrics_survive_a_graceful_restart() {
    let apache = start(
        "metrics_daemon_restart",
        "ExtendedStatus On\n\
         WSGIDaemonProcess site threads=2 server-metrics=On\n\
         WSGIScriptAlias /metrics {dir}/metrics.wsgi process-group=site",
    );
    check_scoreboard(&metrics(&apache), &apache);
    let pid: i32 = std::fs::read_to_string(apache.path("httpd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling the Apache parent this test started.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until the new generation's child serves the request (with ServerLimit 1 it starts only
    // once the old child, shown gracefully finishing, has left its slot).
    loop {
        let m = metrics(&apache);
        if m.get("running_generation") == "1"
            && m.get("busy")
                .split('|')
                .any(|r| r == "GET /metrics/probe HTTP/1.1")
        {
            check_scoreboard(&m, &apache);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics from the new generation\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn server_metrics_directives_are_checked_by_the_config_test() {
    for (extra, expected) in [
        (
            "WSGIServerMetrics maybe",
            "WSGIServerMetrics must be On or Off, not 'maybe'",
        ),
        (
            "<VirtualHost 127.0.0.1:80>\nWSGIServerMetrics On\n</VirtualHost>",
            "WSGIServerMetrics",
        ),
        (
            "WSGIDaemonProcess site server-metrics=yes",
            "server-metrics",
        ),
    ] {
        let (ok, out) = common::config_test("metrics_badconf", extra);
        assert!(!ok, "{extra}: accepted");
        assert!(out.contains(expected), "{extra}: {out}");
    }
}
