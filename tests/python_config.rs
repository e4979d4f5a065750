//! The global Python directives end to end: real Apache, real CPython, and an application that
//! reports what its interpreter was started with.

mod common;

use common::apps::{environ_value, parse_environ};
use common::Apache;
use std::process::Command;

/// Reports the interpreter's settings as `key=value` lines.
const REPORT: &str = r#"
import os, signal, sys, warnings

def stripped():
    "docstring"
    assert False, "asserts run"

def application(environ, start_response):
    lines = []
    def add(key, value):
        lines.append("%s=%s" % (key, value))
    add("optimize", sys.flags.optimize)
    try:
        stripped()
        add("asserts", "stripped")
    except AssertionError:
        add("asserts", "run")
    add("docstrings", "kept" if stripped.__doc__ else "stripped")
    add("dont_write_bytecode", sys.dont_write_bytecode)
    here = os.path.dirname(__file__)
    sys.path.insert(0, os.path.join(here, "lib"))
    import helper
    add("pycache", os.path.isdir(os.path.join(here, "lib", "__pycache__")))
    add("warnoptions", "|".join(sys.warnoptions))
    try:
        warnings.warn("from the app", UserWarning)
        add("user_warning", "not raised")
    except UserWarning:
        add("user_warning", "raised")
    add("hash_randomization", sys.flags.hash_randomization)
    add("hash", hash("mod_wsgi-rs"))
    add("egg_cache", os.environ.get("PYTHON_EGG_CACHE", "<unset>"))
    for name in ("stdin", "stdout"):
        stream = getattr(sys, name)
        add(name + "_type", "%s.%s" % (type(stream).__module__, type(stream).__qualname__))
        try:
            if name == "stdin":
                stream.read()
            else:
                print("printed by the app")
            add(name, "usable")
        except OSError as e:
            add(name, "OSError: %s" % e)
    before = signal.getsignal(signal.SIGUSR2)
    handler = lambda signum, frame: None
    try:
        returned = signal.signal(signal.SIGUSR2, handler)
        add("signal", "returned the handler" if returned is handler else "returned %r" % returned)
    except ValueError as e:
        add("signal", "ValueError: %s" % e)
    add("signal_unchanged", signal.getsignal(signal.SIGUSR2) is before)
    add("pid", os.getpid())
    body = ("\n".join(lines) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

fn report(extra_conf: &str) -> (Apache, Vec<(String, String)>) {
    let apache = Apache::start(
        "pyconf",
        &[("report.wsgi", REPORT), ("lib/helper.py", "X = 1\n")],
        &format!("WSGIScriptAlias /report {{dir}}/report.wsgi\n{extra_conf}"),
    );
    let r = apache.get("/report");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    let facts = parse_environ(&r.text());
    (apache, facts)
}

fn fact<'a>(facts: &'a [(String, String)], key: &str) -> &'a str {
    environ_value(facts, key).unwrap_or_else(|| panic!("{key} not reported: {facts:?}"))
}

/// `hash("mod_wsgi-rs")` in a separate process of the same Python with `PYTHONHASHSEED=seed`.
fn reference_hash(seed: &str) -> String {
    let out = Command::new(common::python())
        .env("PYTHONHASHSEED", seed)
        .args(["-c", "print(hash('mod_wsgi-rs'))"])
        .output()
        .expect("run the test Python");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn defaults_match_c_mod_wsgi() {
    let (apache, facts) = report("");
    assert_eq!(fact(&facts, "optimize"), "0");
    assert_eq!(fact(&facts, "asserts"), "run");
    assert_eq!(fact(&facts, "dont_write_bytecode"), "False");
    assert_eq!(fact(&facts, "pycache"), "True");
    assert_eq!(fact(&facts, "warnoptions"), "");
    assert_eq!(fact(&facts, "hash_randomization"), "1");
    assert_eq!(fact(&facts, "egg_cache"), "<unset>");
    // C mod_wsgi 4.9.4 restricts neither stream unless asked (its documentation says otherwise).
    assert_eq!(fact(&facts, "stdin"), "usable");
    assert_eq!(fact(&facts, "stdout"), "usable");
    // …but does ignore signal handlers registered by applications.
    assert_eq!(fact(&facts, "signal"), "returned the handler");
    assert_eq!(fact(&facts, "signal_unchanged"), "True");
    let log = apache.wait_for_log("Callback registration for signal 12 ignored.");
    assert!(
        log.contains(&format!(
            "mod_wsgi (pid={}): Callback registration for signal 12 ignored.",
            fact(&facts, "pid")
        )),
        "{log}"
    );
    assert!(!log.contains("WSGIVerboseDebugging"), "{log}");
}

#[test]
fn compiler_bytecode_and_warnings_settings_reach_python() {
    let (_apache, facts) = report(
        "WSGIPythonOptimize 2\nWSGIDontWriteBytecode On\n\
         WSGIPythonWarnings ignore::DeprecationWarning\nWSGIPythonWarnings error::UserWarning",
    );
    assert_eq!(fact(&facts, "optimize"), "2");
    assert_eq!(fact(&facts, "asserts"), "stripped");
    assert_eq!(fact(&facts, "docstrings"), "stripped");
    assert_eq!(fact(&facts, "dont_write_bytecode"), "True");
    assert_eq!(fact(&facts, "pycache"), "False", "no .pyc written");
    assert_eq!(
        fact(&facts, "warnoptions"),
        "ignore::DeprecationWarning|error::UserWarning"
    );
    assert_eq!(fact(&facts, "user_warning"), "raised");
}

#[test]
fn optimize_one_strips_asserts_but_keeps_docstrings() {
    let (_apache, facts) = report("WSGIPythonOptimize 1\nWSGIDontWriteBytecode Off");
    assert_eq!(fact(&facts, "optimize"), "1");
    assert_eq!(fact(&facts, "asserts"), "stripped");
    assert_eq!(fact(&facts, "docstrings"), "kept");
    assert_eq!(fact(&facts, "dont_write_bytecode"), "False");
}

#[test]
fn a_fixed_hash_seed_gives_the_same_hashes_as_another_process() {
    let (_apache, facts) = report("WSGIPythonHashSeed 12345");
    assert_eq!(fact(&facts, "hash_randomization"), "1");
    assert_eq!(fact(&facts, "hash"), reference_hash("12345"));
    assert_ne!(fact(&facts, "hash"), reference_hash("54321"));

    let (_apache, facts) = report("WSGIPythonHashSeed 0");
    assert_eq!(fact(&facts, "hash_randomization"), "0");
    assert_eq!(fact(&facts, "hash"), reference_hash("0"));

    let (_apache, facts) = report("WSGIPythonHashSeed random");
    assert_eq!(fact(&facts, "hash_randomization"), "1");
}

#[test]
fn python_eggs_sets_the_egg_cache() {
    let (apache, facts) = report("WSGIPythonEggs {dir}/eggs");
    assert_eq!(
        fact(&facts, "egg_cache"),
        apache.path("eggs").display().to_string()
    );
}

#[test]
fn restricted_stdin_and_stdout_raise_oserror() {
    let (mut apache, facts) = report("WSGIRestrictStdin On\nWSGIRestrictStdout On");
    assert_eq!(fact(&facts, "stdin_type"), "mod_wsgi.Restricted");
    assert_eq!(
        fact(&facts, "stdin"),
        "OSError: sys.stdin access restricted by mod_wsgi"
    );
    assert_eq!(fact(&facts, "stdout_type"), "mod_wsgi.Restricted");
    assert_eq!(
        fact(&facts, "stdout"),
        "OSError: sys.stdout access restricted by mod_wsgi"
    );
    let log = apache.stop();
    assert!(!log.contains("printed by the app"), "{log}");
    // CPython flushes sys.stdout as it finalises; the restricted object is out of the way by then.
    assert!(!log.contains("Exception ignored"), "{log}");
}

#[test]
fn unrestricted_stdin_and_stdout_are_left_alone() {
    let (_apache, facts) = report("WSGIRestrictStdin Off\nWSGIRestrictStdout Off");
    assert_ne!(fact(&facts, "stdin_type"), "mod_wsgi.Restricted");
    assert_eq!(fact(&facts, "stdin"), "usable");
    assert_ne!(fact(&facts, "stdout_type"), "mod_wsgi.Restricted");
    assert_eq!(fact(&facts, "stdout"), "usable");
}

#[test]
fn restricted_signal_registration_is_ignored_and_logged_with_the_stack() {
    let (apache, facts) = report("WSGIRestrictSignal On");
    assert_eq!(fact(&facts, "signal"), "returned the handler");
    assert_eq!(fact(&facts, "signal_unchanged"), "True");
    let log = apache.wait_for_log("in application");
    let pid = fact(&facts, "pid");
    assert!(
        log.contains(&format!("[wsgi:warn] [pid {pid}:tid "))
            && log.contains(&format!(
                "mod_wsgi (pid={pid}): Callback registration for signal 12 ignored."
            )),
        "{log}"
    );
    assert!(
        log.contains("report.wsgi\", line ")
            && log.contains("signal.signal(signal.SIGUSR2, handler)"),
        "the caller's stack is logged: {log}"
    );
}

/// Registers a signal handler in a process forked by the application.
const FORK: &str = r#"
import os, signal
def application(environ, start_response):
    handler = lambda signum, frame: None
    child = os.fork()
    if child == 0:
        try:
            signal.signal(signal.SIGUSR2, handler)
            os._exit(0 if signal.getsignal(signal.SIGUSR2) is handler else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"exit=%d" % os.waitstatus_to_exitcode(status)]
"#;

#[test]
fn a_process_forked_by_the_application_may_register_signal_handlers() {
    let apache = Apache::start(
        "pyconf-fork",
        &[("fork.wsgi", FORK)],
        // The main interpreter: Python 3.11 aborts a process forked from a sub-interpreter
        // (as it does under C mod_wsgi).
        "WSGIRestrictSignal On\nWSGIScriptAlias /fork {dir}/fork.wsgi application-group=%{GLOBAL}",
    );
    assert_eq!(
        apache.get("/fork").text(),
        "exit=0",
        "{}",
        apache.error_log()
    );
    assert!(!apache.error_log().contains("Callback registration"));
}

#[test]
fn unrestricted_signal_registration_reaches_python() {
    let (apache, facts) = report("WSGIRestrictSignal Off");
    // CPython's own signal.signal ran: from a request thread it refuses, as it would anywhere
    // but the main thread.
    assert!(
        fact(&facts, "signal").starts_with("ValueError: signal only works in main thread"),
        "{facts:?}"
    );
    assert!(!apache.error_log().contains("Callback registration"));
}

#[test]
fn verbose_debugging_is_accepted_with_a_notice() {
    let (apache, _facts) = report("WSGIVerboseDebugging On");
    let log = apache.error_log();
    let notices = log
        .lines()
        .filter(|l| l.contains("WSGIVerboseDebugging") && l.contains("LogLevel wsgi:debug"))
        .count();
    assert_eq!(notices, 1, "one notice per start: {log}");
    assert!(log.contains("[wsgi:notice]"), "{log}");
}

const ATEXIT: &str = r#"
import atexit, os
MARK = os.path.join(os.path.dirname(__file__), "atexit-%d" % os.getpid())
atexit.register(lambda: open(MARK, "w").write("ran"))
def application(environ, start_response):
    start_response("200 OK", [])
    return [str(os.getpid()).encode()]
"#;

/// Serves ATEXIT, stops Apache, and says whether the child's atexit callbacks ran.
fn atexit_ran(destroy: &str) -> bool {
    // The default number of threads: with two, httpd's event MPM itself sometimes crashes when
    // told to stop this soon after its child started (core dumps show only MPM frames).
    let mut apache = Apache::start(
        "destroy",
        &[("app.wsgi", ATEXIT)],
        &format!("WSGIDestroyInterpreter {destroy}\nWSGIScriptAlias /app {{dir}}/app.wsgi"),
    );
    let pid = apache.get("/app").text();
    let log = apache.stop();
    assert!(!log.contains("exit signal"), "{log}");
    assert!(
        log.contains("caught SIGTERM, shutting down"),
        "stopped normally: {log}"
    );
    std::fs::read_to_string(apache.path(&format!("atexit-{pid}"))).is_ok_and(|t| t == "ran")
}

#[test]
fn destroy_interpreter_off_skips_finalisation() {
    assert!(atexit_ran("On"), "Python is finalised at child exit");
    assert!(
        !atexit_ran("Off"),
        "with WSGIDestroyInterpreter Off, Python is not finalised (so atexit callbacks do not run)"
    );
}

const HELLO: &str = r#"
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"embedded"]
"#;

#[test]
fn restrict_embedded_refuses_embedded_requests_and_does_not_start_python() {
    let apache = Apache::start(
        "restrictembedded",
        &[("app.wsgi", HELLO)],
        "WSGIRestrictEmbedded On\nWSGIScriptAlias /app {dir}/app.wsgi",
    );
    assert_eq!(apache.get("/app").status, 500);
    let log = apache.wait_for_log("Embedded mode of mod_wsgi disabled");
    let script = apache.path("app.wsgi").display().to_string();
    assert!(
        log.contains(&format!(
            "Embedded mode of mod_wsgi disabled by runtime configuration: {script}"
        )),
        "{log}"
    );
    assert!(
        log.contains("Python not started: WSGIRestrictEmbedded On"),
        "{log}"
    );
    assert!(!log.contains("Initializing Python"), "{log}");

    // Off (and the default) runs the application embedded.
    for conf in ["WSGIRestrictEmbedded Off\n", ""] {
        let apache = Apache::start(
            "restrictembeddedoff",
            &[("app.wsgi", HELLO)],
            &format!("{conf}WSGIScriptAlias /app {{dir}}/app.wsgi"),
        );
        let r = apache.get("/app");
        assert_eq!(
            (r.status, r.text()),
            (200, "embedded".to_string()),
            "{conf}"
        );
        assert!(apache.error_log().contains("Initializing Python"));
    }
}

#[test]
fn restrict_embedded_still_starts_python_for_scripts_imported_at_start() {
    let imported = r#"
print("imported while embedded mode is restricted")
"#;
    let apache = Apache::start(
        "restrictembeddedimport",
        &[("init.wsgi", imported), ("app.wsgi", HELLO)],
        "WSGIRestrictEmbedded On\n\
         WSGIImportScript {dir}/init.wsgi process-group=%{GLOBAL} application-group=%{GLOBAL}\n\
         WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let log = apache.wait_for_log("imported while embedded mode is restricted");
    assert!(
        log.contains("imported while embedded mode is restricted"),
        "{log}"
    );
    assert_eq!(apache.get("/app").status, 500);
}
