//! `mod_wsgi.server_metrics()`: Apache's scoreboard as a dict in Apache's children unless
//! `WSGIServerMetrics Off`, and in a daemon group with `server-metrics=On`, else None.
//! `mod_wsgi.process_metrics()` and `mod_wsgi.request_metrics()`: the process's own figures.

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
fn embedded_server_metrics_are_on_unless_turned_off() {
    // As C mod_wsgi 4.9.4, whose flag starts unset (-1) and is tested for being non-zero.
    let apache = start(
        "metrics_embedded_default",
        "ExtendedStatus On\nWSGIScriptAlias /metrics {dir}/metrics.wsgi",
    );
    check_scoreboard(&metrics(&apache), &apache);
    let apache = start(
        "metrics_embedded_off",
        "WSGIServerMetrics Off\nWSGIScriptAlias /metrics {dir}/metrics.wsgi",
    );
    assert!(metrics(&apache).0.is_none());
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

/// `/process` answers with `mod_wsgi.process_metrics()`, `/request` with
/// `mod_wsgi.request_metrics()`, as `key=value` lines (`keys` lists each key with its type, in
/// the dict's order); `/sleep` sleeps 0.2 s; anything else just answers.
const PROCESS_APP: &str = r#"
import os, time, mod_wsgi
def types(d):
    return ",".join("%s:%s" % (k, type(v).__name__) for k, v in d.items())
def application(environ, start_response):
    path = environ["PATH_INFO"]
    lines = ["thread_id=%s" % environ["mod_wsgi.thread_id"], "me=%d" % os.getpid()]
    if path == "/sleep":
        time.sleep(0.2)
    elif path == "/process":
        # CPU time is counted in clock ticks, which a process that has done little may not have
        # been charged yet: spend one (bounded) so the figure can be checked.
        deadline = time.monotonic() + 1.0
        while sum(os.times()[:2]) == 0 and time.monotonic() < deadline:
            pass
        m = mod_wsgi.process_metrics()
        lines.append("keys=" + types(m))
        lines.append("thread_keys=" + ";".join(types(t) for t in m["threads"]))
        lines.append("threads=" + ",".join(
            "%d:%d" % (t["thread_id"], t["request_count"]) for t in m["threads"]))
        lines += ["%s=%r" % (k, v) for k, v in m.items() if k != "threads"]
    elif path == "/request":
        m = mod_wsgi.request_metrics()
        lines.append("keys=" + types(m))
        for k, v in m.items():
            if isinstance(v, list):
                lines.append("%s=%s" % (k, ",".join(map(str, v))))
            else:
                lines.append("%s=%r" % (k, v))
    body = "\n".join(lines).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"#;

/// The `key=value` lines of one answer of PROCESS_APP.
struct Figures(Vec<(String, String)>);

impl Figures {
    fn get(&self, key: &str) -> &str {
        environ_value(&self.0, key).unwrap_or_else(|| panic!("no {key} in {:?}", self.0))
    }

    fn number(&self, key: &str) -> f64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key}: {}", self.get(key)))
    }

    fn list(&self, key: &str) -> Vec<u64> {
        let v = self.get(key);
        if v.is_empty() {
            return Vec::new();
        }
        v.split(',').map(|n| n.parse().unwrap()).collect()
    }

    fn sum(&self, key: &str) -> u64 {
        self.list(key).iter().sum()
    }

    /// (thread id, request count) of each thread of `process_metrics()`.
    fn threads(&self) -> Vec<(u64, u64)> {
        let v = self.get("threads");
        v.split(',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                let (id, n) = t.split_once(':').unwrap();
                (id.parse().unwrap(), n.parse().unwrap())
            })
            .collect()
    }
}

/// As [`figures`], once the requests answered before have been counted: a request is
/// completed (as in C) just after its response has gone, so the next may arrive first.
fn settled_figures(apache: &Apache, path: &str) -> Figures {
    std::thread::sleep(Duration::from_millis(150));
    figures(apache, path)
}

fn figures(apache: &Apache, path: &str) -> Figures {
    let r = apache.get(path);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    Figures(parse_environ(&r.text()))
}

const PROCESS_KEYS: &str = "pid:int,request_busy_time:float,request_count:int,\
    memory_max_rss:int,memory_rss:int,cpu_user_time:float,cpu_system_time:float,\
    restart_time:float,current_time:float,running_time:int,request_threads:int,\
    active_requests:int,threads:list";

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `process_metrics()` in the one process serving `prefix` (an Apache child or a daemon
/// process): its keys and types, and the counts after some requests.
fn check_process_metrics(apache: &Apache, prefix: &str) -> Figures {
    let before = figures(apache, &format!("{prefix}/process"));
    assert_eq!(before.get("keys"), PROCESS_KEYS);
    assert_eq!(before.get("thread_keys"), "thread_id:int,request_count:int");
    assert_eq!(before.get("pid"), before.get("me"));
    // This request is the one active; the requests before it have completed.
    assert_eq!(before.number("active_requests"), 1.0);
    let threads = before.threads();
    assert_eq!(before.number("request_threads"), threads.len() as f64);
    assert!(threads
        .iter()
        .any(|t| t.0.to_string() == before.get("thread_id")));
    let served: u64 = threads.iter().map(|t| t.1).sum();
    assert_eq!(
        before.number("request_count"),
        served as f64 - 1.0,
        "{threads:?}"
    );
    let (restart, now) = (before.number("restart_time"), before.number("current_time"));
    assert!(restart > 0.0 && restart <= now, "{restart} {now}");
    assert!((now - epoch_now()).abs() < 60.0);
    assert_eq!(before.number("running_time"), (now - restart).trunc());
    let (rss, max_rss) = (before.number("memory_rss"), before.number("memory_max_rss"));
    assert!(rss > 1e6 && max_rss >= rss, "{rss} {max_rss}");
    assert!(before.number("cpu_user_time") + before.number("cpu_system_time") > 0.0);

    for _ in 0..3 {
        figures(apache, &format!("{prefix}/sleep"));
    }
    let after = settled_figures(apache, &format!("{prefix}/process"));
    assert_eq!(after.get("pid"), before.get("pid"));
    assert_eq!(
        after.number("request_count"),
        before.number("request_count") + 4.0
    );
    let served_after: u64 = after.threads().iter().map(|t| t.1).sum();
    assert_eq!(served_after, served + 4);
    // Three requests slept 0.2 s each: at least 0.6 s of request time was added.
    let busy = after.number("request_busy_time") - before.number("request_busy_time");
    assert!((0.6..30.0).contains(&busy), "{busy}");
    assert_eq!(after.number("restart_time"), restart);
    after
}

#[test]
fn process_metrics_in_an_apache_child() {
    let apache = start_process_app("metrics_process_embedded", "");
    let m = check_process_metrics(&apache, "/m");
    // Embedded: the Apache child, numbered threads from 1.
    let ids: Vec<u64> = m.threads().iter().map(|t| t.0).collect();
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, expected);
}

#[test]
fn process_metrics_in_a_daemon_process() {
    let apache = start_process_app(
        "metrics_process_daemon",
        "WSGIDaemonProcess site threads=2\n",
    );
    let m = check_process_metrics(&apache, "/d");
    assert!(m.threads().len() <= 2, "{:?}", m.threads());
    // The daemon's figures are its own: the Apache child has served none of these requests.
    let child = figures(&apache, "/m/process");
    assert_ne!(child.get("pid"), m.get("pid"));
    assert_eq!(child.number("request_count"), 0.0);
}

/// Apache with PROCESS_APP at /m (embedded) and, when `extra` defines group `site`, /d in it.
fn start_process_app(name: &str, extra: &str) -> Apache {
    let daemon = if extra.contains("WSGIDaemonProcess site") {
        "WSGIScriptAlias /d {dir}/process.wsgi process-group=site application-group=%{GLOBAL}\n"
    } else {
        ""
    };
    Apache::start(
        name,
        &[("process.wsgi", PROCESS_APP)],
        &format!("{extra}{daemon}WSGIScriptAlias /m {{dir}}/process.wsgi"),
    )
}

const REQUEST_KEYS: &str = "pid:int,start_time:float,stop_time:float,sample_period:float,\
    cpu_user_time:float,cpu_system_time:float,memory_max_rss:int,memory_rss:int,\
    request_threads_maximum:int,request_threads_started:int,capacity_utilization:float,\
    request_count:int,request_throughput:float,server_time_buckets:list,\
    queue_time_buckets:list,daemon_time_buckets:list,application_time_buckets:list,\
    request_threads_buckets:list,request_threads_active:int,server_time:float,";

/// `request_metrics()` in the process serving `prefix`: {} on the first call, then each
/// period's figures.
fn check_request_metrics(apache: &Apache, prefix: &str, daemon: bool, threads: u64) {
    let first = figures(apache, &format!("{prefix}/request"));
    assert_eq!(
        first.get("keys"),
        "",
        "the first call returns an empty dict"
    );
    for _ in 0..3 {
        figures(apache, &format!("{prefix}/sleep"));
    }
    let m = settled_figures(apache, &format!("{prefix}/request"));
    let phases = if daemon {
        "queue_time:float,daemon_time:float"
    } else {
        "queue_time:NoneType,daemon_time:NoneType"
    };
    assert_eq!(
        m.get("keys"),
        format!("{REQUEST_KEYS}{phases},application_time:float")
    );
    assert_eq!(m.get("pid"), m.get("me"));
    // The requests that finished in the period: the first call's and the three sleeps.
    assert_eq!(m.number("request_count"), 4.0);
    for key in [
        "server_time_buckets",
        "queue_time_buckets",
        "daemon_time_buckets",
        "application_time_buckets",
    ] {
        assert_eq!(m.list(key).len(), 16, "{key}");
        let expected = if daemon || key.starts_with("server") || key.starts_with("app") {
            4
        } else {
            0
        };
        assert_eq!(m.sum(key), expected, "{key}: {}", m.get(key));
    }
    // Three applications ran 0.2 s: the bucket up to 0.32 s (index 6).
    assert!(
        m.list("application_time_buckets")[6] >= 3,
        "{}",
        m.get("application_time_buckets")
    );
    let app_mean = m.number("application_time");
    assert!((0.15..5.0).contains(&app_mean), "{app_mean}");
    assert!(m.number("server_time") >= 0.0);
    if daemon {
        assert!(m.number("queue_time") >= 0.0 && m.number("daemon_time") >= 0.0);
    } else {
        assert_eq!(
            (m.get("queue_time"), m.get("daemon_time")),
            ("None", "None")
        );
    }
    assert_eq!(m.number("request_threads_maximum"), threads as f64);
    assert_eq!(m.list("request_threads_buckets").len(), threads as usize);
    assert_eq!(m.sum("request_threads_buckets"), 4);
    let active = m
        .list("request_threads_buckets")
        .iter()
        .filter(|n| **n > 0)
        .count();
    assert_eq!(m.number("request_threads_active"), active as f64);
    assert!(m.number("request_threads_started") >= active as f64);
    let period = m.number("sample_period");
    assert!(period >= 0.6, "{period}");
    assert!((m.number("stop_time") - m.number("start_time") - period).abs() < 1e-3);
    assert!((m.number("request_throughput") - 4.0 / period).abs() < 1e-6);
    let capacity = m.number("capacity_utilization");
    assert!(capacity > 0.0 && capacity <= 1.0, "{capacity}");

    // The next period starts where this one stopped, with only this call's request finished.
    let next = settled_figures(apache, &format!("{prefix}/request"));
    assert_eq!(next.number("start_time"), m.number("stop_time"));
    assert_eq!(next.number("request_count"), 1.0);
    assert_eq!(next.sum("application_time_buckets"), 1);
    assert_eq!(next.sum("request_threads_buckets"), 1);
}

#[test]
fn request_metrics_in_an_apache_child() {
    let apache = start_process_app("metrics_request_embedded", "");
    check_request_metrics(&apache, "/m", false, 8);
}

#[test]
fn request_metrics_in_a_daemon_process() {
    let apache = start_process_app(
        "metrics_request_daemon",
        "WSGIDaemonProcess site threads=3\n",
    );
    check_request_metrics(&apache, "/d", true, 3);
}

const COUNT_APP: &str = r#"
import time
def application(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(1.5)
    body = str(environ["mod_wsgi.total_requests"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

#[test]
fn total_requests_counts_the_requests_completed() {
    // As in C: a request still running is not counted, though it started earlier.
    let mut apache = Apache::start_with(
        "metrics_total_requests",
        &[("count.wsgi", COUNT_APP)],
        "WSGIDaemonProcess counting processes=1 threads=4\n\
         WSGIScriptAlias /count {dir}/count.wsgi process-group=counting",
        common::Options::default(),
    );
    let count = |apache: &Apache| {
        let r = apache.get("/count");
        assert_eq!(r.status, 200, "{}", apache.error_log());
        r.text().parse::<u64>().unwrap()
    };
    assert_eq!(count(&apache), 0);
    let port = apache.port;
    let slow =
        std::thread::spawn(move || common::http_request(port, "GET", "/count/slow", &[], b""));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(count(&apache), 1, "the slow request still runs");
    assert_eq!(slow.join().unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&apache), 3);
    apache.stop();
}
