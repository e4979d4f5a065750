//! `WSGIDispatchScript path [application-group=…]`: the script's `process_group`,
//! `application_group` and `callable_object` functions choose, per request, where and with what
//! callable the application runs. Each behaviour here was checked against C mod_wsgi 4.9.4 first
//! (`MOD_WSGI_SO=/usr/lib/apache2/modules/mod_wsgi.so`).

mod common;

use common::{config_test, Apache};

const DISPATCH: &str = r#"
import os
def process_group(environ):
    with open("{dir}/dispatch.log", "a") as f:
        f.write("%d [%s] [%s] %s %r\n" % (os.getpid(), environ.get("mod_wsgi.process_group"),
                environ.get("mod_wsgi.application_group"),
                "mod_wsgi.callable_object" in environ,
                environ.get("mod_wsgi.script_reloading")))
    if environ["PATH_INFO"].startswith("/admin"):
        return "admin"
    return None
def application_group(environ):
    if environ["PATH_INFO"].startswith("/named"):
        return "named"
    if environ["PATH_INFO"].startswith("/bad"):
        return 42
    return None
def callable_object(environ):
    if environ["PATH_INFO"].startswith("/other"):
        return "other"
    if environ["PATH_INFO"].startswith("/raise"):
        raise RuntimeError("dispatch failed")
    return None
"#;

const APP: &str = r#"
import os
def report(name, environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %d [%s] [%s]" % (name, os.getpid(), environ["mod_wsgi.process_group"],
             environ["mod_wsgi.application_group"])).encode()]
def application(environ, start_response):
    return report("application", environ, start_response)
def other(environ, start_response):
    return report("other", environ, start_response)
"#;

/// The words of an answer: callable, pid, [process group], [application group].
fn words(apache: &Apache, path: &str) -> Vec<String> {
    let r = apache.get(path);
    assert_eq!(r.status, 200, "{path}: {}", apache.error_log());
    r.text().split(' ').map(str::to_string).collect()
}

#[test]
fn the_dispatch_script_chooses_process_group_application_group_and_callable() {
    let mut apache = Apache::start(
        "dispatch",
        &[("dispatch.py", DISPATCH), ("app.wsgi", APP)],
        "DocumentRoot {dir}\n\
         WSGIDaemonProcess admin processes=1 threads=2\n\
         WSGIDispatchScript {dir}/dispatch.py\n\
         WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let port = apache.port;
    let plain = words(&apache, "/app/x");
    assert_eq!(plain[0], "application");
    assert_eq!(plain[2], "[]");
    assert_eq!(plain[3], format!("[127.0.0.1:{port}|/app]"));

    let admin = words(&apache, "/app/admin");
    assert_eq!(
        (admin[0].as_str(), admin[2].as_str()),
        ("application", "[admin]")
    );
    assert_ne!(admin[1], plain[1], "served by the daemon process");

    let named = words(&apache, "/app/named");
    assert_eq!((named[2].as_str(), named[3].as_str()), ("[]", "[named]"));

    let other = words(&apache, "/app/other");
    assert_eq!(other[0], "other");

    // The script runs in Apache's child, in the main interpreter, before the callable is known.
    let log = std::fs::read_to_string(apache.path("dispatch.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    for line in &lines {
        assert!(line.ends_with(" [] [] False '1'"), "{line}");
    }
    assert_eq!(lines[0].split(' ').next(), Some(plain[1].as_str()));

    // An answer that is not a string, or an exception, fails the request, logged.
    assert_eq!(apache.get("/app/bad").status, 500);
    assert_eq!(apache.get("/app/raise").status, 500);
    let log = apache.stop();
    // C's words for the answer that is not a string.
    assert!(
        log.contains("TypeError: ") && log.contains(" must be a string object"),
        "{log}"
    );
    assert!(log.contains("RuntimeError: dispatch failed"), "{log}");
}

#[test]
fn a_dispatch_script_that_cannot_be_loaded_is_logged_and_changes_nothing() {
    let mut apache = Apache::start(
        "dispatch_broken",
        &[
            ("dispatch.py", "def process_group(environ:\n"),
            ("app.wsgi", APP),
        ],
        "DocumentRoot {dir}\n\
         WSGIDispatchScript {dir}/dispatch.py\n\
         WSGIScriptAlias /app {dir}/app.wsgi application-group=%{GLOBAL}",
    );
    let answer = words(&apache, "/app/x");
    assert_eq!(
        (answer[0].as_str(), answer[3].as_str()),
        ("application", "[]")
    );
    let log = apache.stop();
    assert!(log.contains("SyntaxError"), "{log}");
}

#[test]
fn a_dispatch_script_line_without_a_path_or_with_another_option_fails_the_config_test() {
    for line in [
        "WSGIDispatchScript",
        "WSGIDispatchScript /srv/d.py process-group=x",
    ] {
        let (ok, out) = config_test("dispatch_config", line);
        assert!(!ok, "{line}: accepted\n{out}");
        assert!(out.contains("WSGIDispatchScript"), "{line}: {out}");
    }
}

#[test]
fn under_restrict_embedded_python_starts_in_apaches_children_for_the_dispatch_script() {
    let apache = Apache::start(
        "dispatch_restricted",
        &[
            (
                "dispatch.py",
                "def process_group(environ):\n    return 'site'\n",
            ),
            ("app.wsgi", APP),
        ],
        "DocumentRoot {dir}\n\
         WSGIRestrictEmbedded On\n\
         WSGIDaemonProcess site processes=1 threads=2\n\
         WSGIDispatchScript {dir}/dispatch.py\n\
         WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let answer = words(&apache, "/app/x");
    assert_eq!(
        (answer[0].as_str(), answer[2].as_str()),
        ("application", "[site]")
    );
}
