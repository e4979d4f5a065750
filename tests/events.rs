//! The request-tracking and event API of the `mod_wsgi` module (C mod_wsgi 4.9.4's
//! `active_requests`, `request_data()`, `subscribe_events()`, `subscribe_shutdown()`), in
//! embedded mode and in a daemon group.
//!
//! With `MOD_WSGI_EVENTS_C=/usr/lib/apache2/modules/mod_wsgi.so` the same tests run against C
//! mod_wsgi (its Python must be the tests' Python), which is how their expectations were checked.

mod common;

use common::apps::{environ_value, parse_environ};
use common::{Apache, Options};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn options() -> Options {
    Options {
        load_module: std::env::var("MOD_WSGI_EVENTS_C")
            .ok()
            .map(|m| format!("LoadModule wsgi_module \"{m}\"")),
        ..Options::default()
    }
}

/// Reports, for its request, what `mod_wsgi.active_requests` and `mod_wsgi.request_data()` say,
/// and what `request_data()` does in a thread serving no request. Nobody subscribes to events.
const TRACK: &str = r#"
import threading, mod_wsgi

def outside():
    result = []
    def probe():
        try:
            mod_wsgi.request_data()
            result.append("no error")
        except Exception as e:
            result.append("%s:%s" % (type(e).__name__, e))
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return result[0]

def application(environ, start_response):
    rid = environ["mod_wsgi.request_id"]
    data = mod_wsgi.request_data()
    data["mark"] = rid
    active = mod_wsgi.active_requests
    lines = [
        "rid=%s" % rid,
        "data_type=%s" % type(data).__name__,
        "same_data=%s" % (data is mod_wsgi.request_data()),
        "in_active=%s" % (rid in active),
        "active_is_data=%s" % (active.get(rid) is data),
        "active_type=%s" % type(active).__name__,
        "active_keys=%s" % ",".join(sorted(active)),
        "outside=%s" % outside(),
        "lists=%s,%s" % (type(mod_wsgi.event_callbacks).__name__,
                         type(mod_wsgi.shutdown_callbacks).__name__),
    ]
    body = "\n".join(lines).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

/// Subscribes a recorder that appends one line per event to `events.log`:
/// `name k=v k=v …`; a second callback raises for `/callback-error`; a shutdown callback writes
/// `shutdown.log`. `/replace` gets its application replaced by `request_started`.
const EVENTS: &str = r#"
import os, threading, mod_wsgi

LOG = "{dir}/events.log"
lock = threading.Lock()

def write(path, line):
    with lock:
        with open(path, "a") as f:
            f.write(line + "\n")

def replacement(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"replaced"]

def recorder(name, **kw):
    fields = {"pid": os.getpid(), "keys": ",".join(sorted(kw))}
    rid = kw.get("request_id")
    fields["rid"] = rid
    data = kw.get("request_data")
    if data is not None:
        try:
            fields["data_same"] = data is mod_wsgi.request_data()
        except Exception as e:
            fields["data_same"] = type(e).__name__
        data.setdefault("seen", []).append(name)
    if name == "request_started":
        env = kw["request_environ"]
        fields["path"] = env.get("PATH_INFO")
        fields["env_rid"] = env.get("mod_wsgi.request_id")
        fields["app"] = kw["application_object"].__name__
        fields["types"] = ",".join("%s:%s" % (k, type(v).__name__) for k, v in sorted(kw.items()))
        if fields["path"] == "/replace":
            write(LOG, "%s %s" % (name, " ".join("%s=%s" % i for i in fields.items())))
            return {"application_object": replacement}
    elif name == "response_started":
        fields["status"] = kw["response_status"].replace(" ", "_")
        fields["exc_none"] = kw["exception_info"] is None
    elif name == "request_exception":
        info = kw["exception_info"]
        fields["exc"] = "%s:%s:%d" % (type(info[1]).__name__, info[1], len(info))
    elif name == "request_finished":
        fields["types"] = ",".join("%s:%s" % (k, type(v).__name__) for k, v in sorted(kw.items()))
        fields["output_length"] = kw["output_length"]
        fields["output_writes"] = kw["output_writes"]
        fields["input_length"] = kw["input_length"]
        fields["seen"] = ",".join(data.get("seen", []))
    elif name == "process_stopping":
        fields["reason"] = repr(kw["shutdown_reason"])
    write(LOG, "%s %s" % (name, " ".join("%s=%s" % i for i in fields.items())))

def failing(name, **kw):
    env = kw.get("request_environ") or {}
    if env.get("PATH_INFO") == "/callback-error":
        raise RuntimeError("callback failed on purpose")

def on_shutdown(name, **kw):
    write("{dir}/shutdown.log", "%s pid=%d reason=%r keys=%s" % (
        name, os.getpid(), kw.get("shutdown_reason"), ",".join(sorted(kw))))

mod_wsgi.subscribe_events(recorder)
mod_wsgi.subscribe_events(failing)
mod_wsgi.subscribe_shutdown(on_shutdown)

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("boom")
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello ", b"world", body]
"#;

struct Event {
    name: String,
    fields: HashMap<String, String>,
}

impl Event {
    fn get(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {} {:?}", self.name, self.fields))
    }
}

fn events(apache: &Apache) -> Vec<Event> {
    std::fs::read_to_string(apache.path("events.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let name = parts.next().unwrap().to_string();
            let fields = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Event { name, fields }
        })
        .collect()
}

/// The events of the request whose `request_started` saw `path`, in order.
/// The events of the request to `path`. `request_finished` is published after the response
/// has reached the client, so wait (a while) for it to be recorded.
fn events_of(apache: &Apache, path: &str) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = request_events(apache, path);
        if found.iter().any(|e| e.name == "request_finished") || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn request_events(apache: &Apache, path: &str) -> Vec<Event> {
    let all = events(apache);
    let rid = all
        .iter()
        .find(|e| {
            e.name == "request_started" && e.fields.get("path").map(String::as_str) == Some(path)
        })
        .unwrap_or_else(|| panic!("no request_started for {path}"))
        .get("rid")
        .to_string();
    all.into_iter()
        .filter(|e| e.fields.get("rid") == Some(&rid))
        .collect()
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

fn track(apache: &Apache) -> Vec<(String, String)> {
    let r = apache.get("/track");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    parse_environ(&r.text())
}

fn check_tracking(apache: &Apache) {
    let first = track(apache);
    let v = |env: &[(String, String)], k: &str| environ_value(env, k).unwrap().to_string();
    assert_eq!(v(&first, "data_type"), "dict");
    assert_eq!(v(&first, "same_data"), "True");
    assert_eq!(v(&first, "in_active"), "True");
    assert_eq!(v(&first, "active_is_data"), "True");
    assert_eq!(v(&first, "active_type"), "dict");
    assert_eq!(v(&first, "active_keys"), v(&first, "rid"));
    assert_eq!(
        v(&first, "outside"),
        "RuntimeError:no active request for thread"
    );
    assert_eq!(v(&first, "lists"), "list,list");
    // The first request leaves active_requests once it has ended, which (in a daemon process)
    // can be just after its response reached us: soon only the current request is there.
    let deadline = Instant::now() + Duration::from_secs(5);
    let second = loop {
        let next = track(apache);
        assert_ne!(v(&first, "rid"), v(&next, "rid"));
        if v(&next, "active_keys") == v(&next, "rid") || Instant::now() > deadline {
            break next;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(v(&second, "active_keys"), v(&second, "rid"));
}

#[test]
fn active_requests_and_request_data_in_embedded_mode() {
    let mut apache = Apache::start_with(
        "events_track_embedded",
        &[("track.wsgi", TRACK)],
        "WSGIScriptAlias /track {dir}/track.wsgi",
        options(),
    );
    check_tracking(&apache);
    apache.stop();
}

#[test]
fn active_requests_and_request_data_in_a_daemon_group() {
    let mut apache = Apache::start_with(
        "events_track_daemon",
        &[("track.wsgi", TRACK)],
        "WSGIDaemonProcess track threads=4\n\
         WSGIScriptAlias /track {dir}/track.wsgi process-group=track",
        options(),
    );
    check_tracking(&apache);
    apache.stop();
}

/// Checks the events of one ordinary request, one that raises, one whose application a
/// callback replaces and one whose second callback raises.
fn check_events(apache: &Apache) {
    let r = apache.request("POST", "/events/ok", &[], b"!");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    assert_eq!(r.text(), "hello world!");
    let ok = events_of(apache, "/ok");
    assert_eq!(
        names(&ok),
        ["request_started", "response_started", "request_finished"]
    );
    let started = &ok[0];
    assert_eq!(started.get("rid"), started.get("env_rid"));
    assert_eq!(started.get("app"), "application");
    assert_eq!(started.get("data_same"), "True");
    assert_eq!(
        started.get("types"),
        "application_object:function,application_start:float,daemon_connects:int,\
         daemon_restarts:int,daemon_start:float,queue_start:float,request_data:dict,\
         request_environ:dict,request_id:str,request_start:float,thread_id:int"
    );
    assert_eq!(ok[1].get("status"), "200_OK");
    assert_eq!(ok[1].get("exc_none"), "True");
    assert_eq!(
        ok[1].get("keys"),
        "exception_info,request_data,request_id,response_headers,response_status"
    );
    let finished = &ok[2];
    let types = finished.get("types");
    for expected in [
        "application_finish:float",
        "application_time:float",
        "input_length:int",
        "input_reads:int",
        "input_time:float",
        "output_length:int",
        "output_time:float",
        "output_writes:int",
        "request_data:dict",
        "request_id:str",
    ] {
        assert!(types.contains(expected), "{expected} not in {types}");
    }
    assert_eq!(finished.get("output_length"), "12");
    assert_eq!(finished.get("output_writes"), "3");
    assert_eq!(finished.get("input_length"), "1");
    // The request's data dict is the same object throughout.
    assert_eq!(
        finished.get("seen"),
        "request_started,response_started,request_finished"
    );

    let r = apache.get("/events/raise");
    assert_eq!(r.status, 500);
    let raised = events_of(apache, "/raise");
    assert_eq!(
        names(&raised),
        ["request_started", "request_exception", "request_finished"]
    );
    assert_eq!(raised[1].get("exc"), "ValueError:boom:3");
    assert_eq!(
        raised[1].get("keys"),
        "exception_info,request_data,request_id"
    );

    let r = apache.get("/events/replace");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "replaced");

    let r = apache.get("/events/callback-error");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    assert_eq!(r.text(), "hello world");
    let log = apache.wait_for_log("callback failed on purpose");
    assert!(
        log.contains("Exception occurred within event callback."),
        "{log}"
    );
    assert!(
        log.contains("RuntimeError: callback failed on purpose"),
        "{log}"
    );
    // The recorder (subscribed first) still saw the whole request.
    assert_eq!(
        names(&events_of(apache, "/callback-error")),
        ["request_started", "response_started", "request_finished"]
    );
}

#[test]
fn events_in_embedded_mode() {
    let mut apache = Apache::start_with(
        "events_embedded",
        &[("events.wsgi", EVENTS)],
        "WSGIScriptAlias /events {dir}/events.wsgi",
        options(),
    );
    check_events(&apache);
    apache.stop();
    // Apache's child runs process_stopping as it exits: the event callbacks, then the shutdown
    // callbacks.
    let shutdown = std::fs::read_to_string(apache.path("shutdown.log")).unwrap_or_default();
    assert!(
        shutdown.contains("process_stopping")
            && shutdown.contains("reason='' keys=shutdown_reason"),
        "{shutdown}\n{}",
        apache.error_log()
    );
    let stopping: Vec<_> = events(&apache)
        .into_iter()
        .filter(|e| e.name == "process_stopping")
        .collect();
    assert_eq!(stopping.len(), 1);
    assert_eq!(stopping[0].get("reason"), "''");
    assert_eq!(stopping[0].get("keys"), "shutdown_reason");
}

#[test]
fn events_in_a_daemon_group() {
    let mut apache = Apache::start_with(
        "events_daemon",
        &[("events.wsgi", EVENTS)],
        "WSGIDaemonProcess ev threads=2\n\
         WSGIScriptAlias /events {dir}/events.wsgi process-group=ev",
        options(),
    );
    check_events(&apache);
    let started = &events_of(&apache, "/ok")[0];
    let pid = started.get("pid").to_string();
    apache.stop();
    let shutdown = std::fs::read_to_string(apache.path("shutdown.log")).unwrap_or_default();
    assert!(
        shutdown.contains(&format!("process_stopping pid={pid} reason=''")),
        "{shutdown}\n{}",
        apache.error_log()
    );
}

#[test]
fn a_daemon_timer_gives_its_shutdown_reason() {
    let mut apache = Apache::start_with(
        "events_daemon_reason",
        &[("events.wsgi", EVENTS)],
        "WSGIDaemonProcess ev threads=2 inactivity-timeout=1\n\
         WSGIScriptAlias /events {dir}/events.wsgi process-group=ev",
        options(),
    );
    let r = apache.get("/events/ok");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    let path = apache.path("shutdown.log");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut shutdown = String::new();
    while Instant::now() < deadline && !shutdown.contains("inactivity_timeout") {
        std::thread::sleep(Duration::from_millis(100));
        shutdown = std::fs::read_to_string(&path).unwrap_or_default();
    }
    assert!(
        shutdown.contains("process_stopping") && shutdown.contains("reason='inactivity_timeout'"),
        "{shutdown}\n{}",
        apache.error_log()
    );
    apache.stop();
}
