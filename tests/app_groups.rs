//! Application groups end to end: each group a Python sub-interpreter of its own in every child
//! process, named as C mod_wsgi names it, `%{GLOBAL}` the main interpreter, and interpreters
//! destroyed (with their atexit callbacks) when a child exits, even with threads still running.

mod common;

use common::apps::{environ_value, parse_environ};
use common::{config_test, Apache, Options};
use std::time::{Duration, Instant};

/// Reports which interpreter serves it, and counts its requests in a module global.
const COUNTER: &str = r#"
import sys, threading, mod_wsgi
COUNT = 0
def application(environ, start_response):
    global COUNT
    COUNT += 1
    seen = getattr(sys, "_marker", None)
    sys._marker = environ["mod_wsgi.application_group"]
    lines = [
        "group=%s" % environ["mod_wsgi.application_group"],
        "module_group=%s" % mod_wsgi.application_group,
        "count=%d" % COUNT,
        "marker_seen=%s" % seen,
        "modules=%d" % id(sys.modules),
        "thread=%d" % threading.get_ident(),
        "main_thread=%s" % (threading.current_thread() is threading.main_thread()),
    ]
    body = ("\n".join(lines) + "\n").encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

fn report(apache: &Apache, path: &str) -> Vec<(String, String)> {
    let r = apache.get(path);
    assert_eq!(r.status, 200, "{path}: {}", apache.error_log());
    parse_environ(&String::from_utf8_lossy(&r.body))
}

fn value<'a>(facts: &'a [(String, String)], key: &str) -> &'a str {
    environ_value(facts, key).unwrap_or_else(|| panic!("{key} not reported: {facts:?}"))
}

#[test]
fn groups_are_separate_interpreters_and_one_script_is_one_module_per_group() {
    let apache = Apache::start(
        "groups",
        &[("counter.wsgi", COUNTER)],
        "WSGIScriptAlias /a {dir}/counter.wsgi application-group=alpha\n\
         WSGIScriptAlias /b {dir}/counter.wsgi application-group=beta\n\
         WSGIScriptAlias /main {dir}/counter.wsgi application-group=%{GLOBAL}\n\
         <Location /dir>\nWSGIApplicationGroup gamma\n</Location>\n\
         WSGIScriptAlias /dir {dir}/counter.wsgi",
    );
    for n in 1..=3 {
        let a = report(&apache, "/a");
        assert_eq!(value(&a, "group"), "alpha");
        assert_eq!(value(&a, "module_group"), "alpha");
        assert_eq!(value(&a, "count"), n.to_string());
    }
    // Same script, another group: its own module, globals and sys.
    let b = report(&apache, "/b");
    assert_eq!(value(&b, "group"), "beta");
    assert_eq!(value(&b, "module_group"), "beta");
    assert_eq!(value(&b, "count"), "1");
    assert_eq!(value(&b, "marker_seen"), "None");
    let main = report(&apache, "/main");
    assert_eq!(value(&main, "group"), "");
    assert_eq!(value(&main, "module_group"), "");
    assert_eq!(value(&main, "count"), "1");
    assert_eq!(value(&main, "marker_seen"), "None");
    // WSGIApplicationGroup in a <Location>.
    let dir = report(&apache, "/dir");
    assert_eq!(value(&dir, "group"), "gamma");
    assert_eq!(value(&dir, "count"), "1");
    let a = report(&apache, "/a");
    assert_eq!(value(&a, "count"), "4");
    assert_eq!(value(&a, "marker_seen"), "alpha");
    assert_ne!(value(&a, "modules"), value(&b, "modules"));
    assert_ne!(value(&a, "modules"), value(&main, "modules"));
    // No request thread is a group's threading.main_thread(), as none is the main interpreter's.
    assert_eq!(value(&a, "main_thread"), "False");
    assert_eq!(value(&main, "main_thread"), "False");
    let log = apache.error_log();
    assert_eq!(
        log.matches("Create interpreter 'alpha'").count(),
        1,
        "{log}"
    );
}

#[test]
fn the_default_group_is_resource_named_as_c_mod_wsgi_names_it() {
    let apache = Apache::start(
        "resource",
        &[("counter.wsgi", COUNTER)],
        "WSGIScriptAlias /app {dir}/counter.wsgi\n\
         WSGIScriptAlias /Other {dir}/counter.wsgi\n\
         WSGIScriptAlias / {dir}/counter.wsgi",
    );
    let port = apache.port;
    // What C mod_wsgi 4.9.4 reported for /app/x on port 18123: '127.0.0.1:18123|/app'.
    let app = report(&apache, "/app/x");
    assert_eq!(value(&app, "group"), format!("127.0.0.1:{port}|/app"));
    assert_eq!(
        value(&app, "module_group"),
        format!("127.0.0.1:{port}|/app")
    );
    let again = report(&apache, "//app//y");
    assert_eq!(value(&again, "group"), format!("127.0.0.1:{port}|/app"));
    assert_eq!(value(&again, "count"), "2");
    // The script name is lower-cased; a mount at / has an empty one.
    let other = report(&apache, "/Other/z");
    assert_eq!(value(&other, "group"), format!("127.0.0.1:{port}|/other"));
    assert_eq!(value(&other, "count"), "1");
    let root = report(&apache, "/elsewhere");
    assert_eq!(value(&root, "group"), format!("127.0.0.1:{port}|"));
    assert_eq!(value(&root, "count"), "1");
}

#[test]
fn server_and_env_groups() {
    let apache = Apache::start(
        "server-env",
        &[("counter.wsgi", COUNTER)],
        &format!(
            "LoadModule env_module {}/mod_env.so\n\
             WSGIScriptAlias /srv1 {{dir}}/counter.wsgi application-group=%{{SERVER}}\n\
             WSGIScriptAlias /srv2 {{dir}}/counter.wsgi application-group=%{{SERVER}}\n\
             WSGIScriptAlias /env {{dir}}/counter.wsgi application-group=%{{ENV:APP_GROUP}}\n\
             WSGIScriptAlias /meta {{dir}}/counter.wsgi application-group=%{{ENV:META_GROUP}}\n\
             WSGIScriptAlias /unset {{dir}}/counter.wsgi application-group=%{{ENV:UNSET_GROUP}}\n\
             <Location /env>\nSetEnv APP_GROUP from-setenv\n</Location>\n\
             <Location /meta>\nSetEnv META_GROUP %{{GLOBAL}}\n</Location>",
            common::MODULES
        ),
    );
    let port = apache.port;
    let s1 = report(&apache, "/srv1");
    let s2 = report(&apache, "/srv2");
    assert_eq!(value(&s1, "group"), format!("127.0.0.1:{port}"));
    assert_eq!(value(&s2, "group"), format!("127.0.0.1:{port}"));
    // Both URLs share the server's interpreter (and so the script's module).
    assert_eq!(value(&s2, "count"), "2");
    let env = report(&apache, "/env");
    assert_eq!(value(&env, "group"), "from-setenv");
    assert_eq!(value(&env, "module_group"), "from-setenv");
    // A variable whose value is itself a substitution is resolved again, as in C.
    let meta = report(&apache, "/meta");
    assert_eq!(value(&meta, "group"), "");
    // An unset variable leaves the value as the name, as in C.
    let unset = report(&apache, "/unset");
    assert_eq!(value(&unset, "group"), "%{ENV:UNSET_GROUP}");
}

/// Reports whether it runs in the main interpreter and on the thread's PyGILState state.
const WHERE: &str = r#"
import ctypes, threading, mod_wsgi
api = ctypes.pythonapi
for name in ("PyInterpreterState_Get", "PyInterpreterState_Main", "PyThreadState_Get",
             "PyGILState_GetThisThreadState"):
    getattr(api, name).restype = ctypes.c_void_p
def application(environ, start_response):
    gilstate = api.PyGILState_GetThisThreadState()
    lines = [
        "group=%s" % mod_wsgi.application_group,
        "thread=%d" % threading.get_ident(),
        "main_interpreter=%s" % (api.PyInterpreterState_Get() == api.PyInterpreterState_Main()),
        "on_gilstate=%s" % (gilstate == api.PyThreadState_Get()),
    ]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("\n".join(lines) + "\n").encode()]
"#;

#[test]
fn global_after_a_named_group_on_the_same_thread_is_the_main_interpreter() {
    // One worker thread, so every request runs on the same thread.
    let apache = Apache::start_with(
        "global-after-group",
        &[("where.wsgi", WHERE)],
        "WSGIScriptAlias /named {dir}/where.wsgi application-group=named\n\
         WSGIScriptAlias /global {dir}/where.wsgi application-group=%{GLOBAL}",
        Options {
            threads: 1,
            ..Default::default()
        },
    );
    // The thread's first request is in the named group (C mod_wsgi then binds the thread's
    // PyGILState state to the sub-interpreter, and runs %{GLOBAL} there).
    let named = report(&apache, "/named");
    assert_eq!(value(&named, "group"), "named");
    assert_eq!(value(&named, "main_interpreter"), "False");
    for _ in 0..2 {
        let global = report(&apache, "/global");
        assert_eq!(value(&global, "thread"), value(&named, "thread"));
        assert_eq!(value(&global, "group"), "");
        assert_eq!(value(&global, "main_interpreter"), "True");
        assert_eq!(value(&global, "on_gilstate"), "True");
        let named = report(&apache, "/named");
        assert_eq!(value(&named, "main_interpreter"), "False");
    }
}

/// Registers an atexit callback that leaves a file named after its group and process.
const ATEXIT: &str = r#"
import atexit, os, threading, time, mod_wsgi
HERE = os.path.dirname(__file__)
def mark(what):
    name = "%s-%s-%d" % (what, mod_wsgi.application_group or "main", os.getpid())
    with open(os.path.join(HERE, name), "w") as f:
        f.write("ran")
atexit.register(mark, "atexit")
def spin():
    while True:
        time.sleep(0.05)
POOL = []
def application(environ, start_response):
    kind = environ["QUERY_STRING"]
    if kind == "pool":
        # Its worker threads are non-daemon, stopped by a threading atexit hook at shutdown.
        from concurrent.futures import ThreadPoolExecutor
        POOL.append(ThreadPoolExecutor(max_workers=2))
        POOL[0].submit(lambda: None).result()
    elif kind:
        threading.Thread(target=spin, name="spinner-" + kind, daemon=(kind == "daemon")).start()
    start_response("200 OK", [])
    return [str(os.getpid()).encode()]
"#;

fn marker(apache: &Apache, group: &str, pid: &str) -> String {
    std::fs::read_to_string(apache.path(&format!("atexit-{group}-{pid}"))).unwrap_or_default()
}

#[test]
fn sub_interpreters_are_destroyed_with_their_atexit_callbacks_at_child_exit() {
    let mut apache = Apache::start(
        "atexit-groups",
        &[("atexit.wsgi", ATEXIT)],
        "WSGIScriptAlias /one {dir}/atexit.wsgi application-group=one\n\
         WSGIScriptAlias /two {dir}/atexit.wsgi application-group=two\n\
         WSGIScriptAlias /main {dir}/atexit.wsgi application-group=%{GLOBAL}",
    );
    let pid = apache.get("/one?pool").text();
    assert_eq!(apache.get("/two").text(), pid);
    assert_eq!(apache.get("/main?pool").text(), pid);
    let started = Instant::now();
    let log = apache.stop();
    // Nothing waited for the grace period given to threads that do not stop.
    assert!(started.elapsed() < Duration::from_secs(2), "{log}");
    for group in ["one", "two", "main"] {
        assert_eq!(marker(&apache, group, &pid), "ran", "{group}: {log}");
    }
    assert!(log.contains("Destroy interpreter 'one'"), "{log}");
    assert!(log.contains("Destroy interpreter 'two'"), "{log}");
    assert!(!log.contains("still did not exit"), "{log}");
    assert!(!log.contains("exit signal"), "{log}");
    assert!(!log.contains("still running at exit"), "{log}");
}

#[test]
fn threads_still_running_in_a_sub_interpreter_do_not_hang_child_exit() {
    let mut apache = Apache::start(
        "stuck-thread",
        &[("atexit.wsgi", ATEXIT)],
        "WSGIScriptAlias /stuck {dir}/atexit.wsgi application-group=stuck\n\
         WSGIScriptAlias /daemon {dir}/atexit.wsgi application-group=daemonic\n\
         WSGIScriptAlias /main {dir}/atexit.wsgi application-group=%{GLOBAL}",
    );
    let pid = apache.get("/stuck?thread").text();
    assert_eq!(apache.get("/daemon?daemon").text(), pid);
    assert_eq!(apache.get("/main").text(), pid);
    let started = Instant::now();
    let log = apache.stop();
    let took = started.elapsed();
    // C mod_wsgi waits for the thread until Apache kills the child, about 10 s later.
    assert!(
        took < Duration::from_secs(8),
        "stopping took {took:?}: {log}"
    );
    assert!(!log.contains("SIGKILL"), "{log}");
    assert!(!log.contains("exit signal"), "{log}");
    assert!(
        log.contains("[wsgi:warn]") && log.contains("Threads still running at exit in"),
        "no warning: {log}"
    );
    assert!(log.contains("'stuck' ('spinner-thread')"), "{log}");
    assert!(
        log.contains("'daemonic' ('spinner-daemon' (daemon))"),
        "{log}"
    );
    // Every interpreter's atexit callbacks still ran.
    for group in ["stuck", "daemonic", "main"] {
        assert_eq!(marker(&apache, group, &pid), "ran", "{group}: {log}");
    }
}

#[test]
fn a_daemon_thread_in_a_sub_interpreter_leaves_it_without_waiting() {
    let mut apache = Apache::start(
        "daemon-thread",
        &[("atexit.wsgi", ATEXIT)],
        "WSGIScriptAlias /daemon {dir}/atexit.wsgi application-group=daemonic\n\
         WSGIScriptAlias /plain {dir}/atexit.wsgi application-group=plain",
    );
    let pid = apache.get("/daemon?daemon").text();
    assert_eq!(apache.get("/plain").text(), pid);
    let started = Instant::now();
    let log = apache.stop();
    assert!(started.elapsed() < Duration::from_secs(2), "{log}");
    assert!(
        log.contains("[wsgi:info]")
            && log.contains(
                "Daemon threads still running at exit in 'daemonic' ('spinner-daemon' (daemon))"
            ),
        "{log}"
    );
    assert!(log.contains("Destroy interpreter 'plain'"), "{log}");
    assert!(!log.contains("Destroy interpreter 'daemonic'"), "{log}");
    for group in ["daemonic", "plain"] {
        assert_eq!(marker(&apache, group, &pid), "ran", "{group}: {log}");
    }
    assert!(!log.contains("exit signal"), "{log}");
}

#[test]
fn a_daemon_thread_in_the_main_interpreter_does_not_stop_finalisation() {
    let mut apache = Apache::start(
        "main-daemon",
        &[("atexit.wsgi", ATEXIT)],
        "WSGIScriptAlias /main {dir}/atexit.wsgi application-group=%{GLOBAL}\n\
         WSGIScriptAlias /group {dir}/atexit.wsgi application-group=plain",
    );
    let pid = apache.get("/main?daemon").text();
    assert_eq!(apache.get("/group").text(), pid);
    let log = apache.stop();
    assert_eq!(marker(&apache, "main", &pid), "ran", "{log}");
    assert_eq!(marker(&apache, "plain", &pid), "ran", "{log}");
    assert!(log.contains("Destroy interpreter 'plain'"), "{log}");
    assert!(!log.contains("still running at exit"), "{log}");
    assert!(!log.contains("exit signal"), "{log}");
}

/// A package standing in for an extension module that refuses sub-interpreters.
const FAKE_EXTENSION: &str = r#"
raise ImportError("module fakeext._core does not support loading in subinterpreters")
"#;

const IMPORTS_EXTENSION: &str = r#"
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
if os.path.basename(__file__).startswith("eager"):
    import fakeext
def application(environ, start_response):
    import fakeext
    start_response("200 OK", [])
    return [b"imported"]
"#;

#[test]
fn extensions_that_refuse_sub_interpreters_get_a_hint_in_the_log() {
    let apache = Apache::start(
        "subinterp-hint",
        &[
            ("lib/fakeext/__init__.py", FAKE_EXTENSION),
            ("eager.wsgi", IMPORTS_EXTENSION),
            ("lazy.wsgi", IMPORTS_EXTENSION),
        ],
        "WSGIScriptAlias /eager {dir}/eager.wsgi\n\
         WSGIScriptAlias /lazy {dir}/lazy.wsgi application-group=lazy\n\
         WSGIScriptAlias /main {dir}/lazy.wsgi application-group=%{GLOBAL}",
    );
    let hint = "Run the application in the main interpreter with 'WSGIApplicationGroup %{GLOBAL}'";
    // Failing while the script loads…
    assert_eq!(apache.get("/eager").status, 500);
    let log = apache.wait_for_log(hint);
    let lines: Vec<&str> = log.lines().collect();
    let error = lines
        .iter()
        .position(|l| l.contains("ImportError: module fakeext._core does not support loading"))
        .unwrap_or_else(|| panic!("no traceback: {log}"));
    assert!(lines[error + 1].contains(hint), "{log}");
    assert!(
        lines[error + 1].contains(&format!("'127.0.0.1:{}|/eager'", apache.port)),
        "{log}"
    );
    // …and while a request runs.
    assert_eq!(apache.get("/lazy").status, 500);
    let deadline = Instant::now() + Duration::from_secs(10);
    while apache.error_log().matches(hint).count() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(apache.error_log().matches(hint).count(), 2);
    // The main interpreter gets the traceback, not the hint.
    assert_eq!(apache.get("/main").status, 500);
    let deadline = Instant::now() + Duration::from_secs(10);
    while apache
        .error_log()
        .matches("ImportError: module fakeext")
        .count()
        < 3
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = apache.error_log();
    assert_eq!(
        log.matches("ImportError: module fakeext").count(),
        3,
        "{log}"
    );
    assert_eq!(log.matches(hint).count(), 2, "{log}");
}

#[test]
fn application_group_values_are_checked_by_apache2_t() {
    for conf in [
        "WSGIApplicationGroup %{RESOURCE}",
        "WSGIApplicationGroup %{SERVER}",
        "WSGIApplicationGroup %{HOST}",
        "WSGIApplicationGroup %{ENV:GROUP}",
        "WSGIApplicationGroup site",
        "<Directory /tmp>\nWSGIApplicationGroup site\n</Directory>",
        "<VirtualHost *:80>\nWSGIApplicationGroup %{SERVER}\n</VirtualHost>",
        "WSGIScriptAlias /a /tmp/a.wsgi application-group=site",
        "WSGIScriptAliasMatch ^/b /tmp/b.wsgi application-group=%{RESOURCE}",
    ] {
        let (ok, out) = config_test("group-ok", conf);
        assert!(ok, "{conf}: {out}");
    }
    for (conf, expect) in [
        (
            "WSGIApplicationGroup %{RESOURSE}",
            "WSGIApplicationGroup '%{RESOURSE}': unknown substitution",
        ),
        (
            "WSGIScriptAlias /a /tmp/a.wsgi application-group=",
            "application-group must not be empty",
        ),
        (
            "WSGIScriptAlias /a /tmp/a.wsgi application-group=%{ENV:}",
            "unknown substitution",
        ),
    ] {
        let (ok, out) = config_test("group-bad", conf);
        assert!(!ok, "{conf} accepted");
        assert!(out.contains(expect), "{expect:?} not in {out}");
    }
}

/// Holds the main interpreter's GIL for the seconds asked: a C call through `ctypes.PyDLL` keeps
/// the GIL.
const HOLD_GIL: &str = r#"
import ctypes
libc = ctypes.PyDLL(None)
def application(environ, start_response):
    libc.usleep(int(float(environ["QUERY_STRING"]) * 1e6))
    start_response("200 OK", [])
    return [b"held"]
"#;

/// Answers after the seconds asked, without holding its GIL meanwhile.
const SLEEP: &str = r#"
import time
def application(environ, start_response):
    time.sleep(float(environ["QUERY_STRING"] or 0))
    start_response("200 OK", [])
    return [b"slept"]
"#;

/// How long a request to the group takes while the main interpreter's GIL is held for 2 s.
fn latency_while_main_gil_is_held(extra: &str) -> (Duration, String) {
    let mut apache = Apache::start_with(
        "own-gil",
        &[("hold.wsgi", HOLD_GIL), ("sleep.wsgi", SLEEP)],
        &format!(
            "{extra}\nWSGIScriptAlias /hold {{dir}}/hold.wsgi application-group=%{{GLOBAL}}\n\
             WSGIScriptAlias /group {{dir}}/sleep.wsgi application-group=group"
        ),
        Options {
            threads: 2,
            ..Default::default()
        },
    );
    let port = apache.port;
    // Both worker threads serve the group once, so each has its thread states.
    let warm: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || common::http_request(port, "GET", "/group?0.5", &[], b""))
        })
        .collect();
    for w in warm {
        assert_eq!(w.join().unwrap().status, 200);
    }
    let hold = std::thread::spawn(move || common::http_request(port, "GET", "/hold?2", &[], b""));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = apache.get("/group");
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(hold.join().unwrap().status, 200);
    (took, apache.stop())
}

#[test]
fn per_interpreter_gil_gives_each_group_a_gil_of_its_own_on_python_3_12_and_later() {
    let minor: u32 = common::python_version()
        .strip_prefix("3.")
        .and_then(|m| m.parse().ok())
        .unwrap();
    if minor < 12 {
        let (ok, out) = config_test("own-gil-311", "WSGIPerInterpreterGIL On");
        assert!(!ok, "accepted on Python 3.{minor}");
        assert!(
            out.contains("WSGIPerInterpreterGIL On needs Python 3.12 or later"),
            "{out}"
        );
        let (ok, out) = config_test("own-gil-311-off", "WSGIPerInterpreterGIL Off");
        assert!(ok, "{out}");
        return;
    }
    let (ok, out) = config_test(
        "own-gil-vhost",
        "<VirtualHost *:80>\nWSGIPerInterpreterGIL On\n</VirtualHost>",
    );
    assert!(!ok, "accepted in a virtual host: {out}");
    // Shared (the default): the group waits for the main interpreter's GIL.
    let (took, _) = latency_while_main_gil_is_held("");
    assert!(took >= Duration::from_millis(1200), "{took:?}");
    // Its own: it does not.
    let (took, log) = latency_while_main_gil_is_held("WSGIPerInterpreterGIL On");
    assert!(took < Duration::from_millis(1200), "{took:?}: {log}");
    assert!(
        log.contains("Create interpreter 'group' with a GIL of its own"),
        "{log}"
    );
    assert!(log.contains("Destroy interpreter 'group'"), "{log}");
    assert!(!log.contains("exit signal"), "{log}");
    assert!(
        log.contains("WSGIPerInterpreterGIL On is experimental"),
        "the start-up notice: {log}"
    );
}
