//! Embedded mode end to end: real Apache httpd, real CPython, real HTTP requests.

mod common;

use common::apps::{environ_value, parse_environ, ENVIRON};
use common::{Apache, Options};

const HELLO: &str = r#"
def application(environ, start_response):
    body = b"Hello, world!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

#[test]
fn script_alias_serves_the_app_with_script_name_and_path_info_split() {
    let apache = Apache::start(
        "alias",
        &[("hello.wsgi", HELLO), ("environ.wsgi", ENVIRON)],
        "WSGIScriptAlias /hello {dir}/hello.wsgi\nWSGIScriptAlias /env {dir}/environ.wsgi",
    );
    let r = apache.get("/hello/x/y");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, world!");
    let env = parse_environ(&apache.get("/env/x/y?a=1&b=%20x").text());
    assert_eq!(environ_value(&env, "SCRIPT_NAME"), Some("/env"));
    assert_eq!(environ_value(&env, "PATH_INFO"), Some("/x/y"));
    assert_eq!(environ_value(&env, "QUERY_STRING"), Some("a=1&b=%20x"));
    let env = parse_environ(&apache.get("/env").text());
    assert_eq!(
        environ_value(&env, "PATH_INFO"),
        Some(""),
        "PATH_INFO is '' when absent"
    );
    let env = parse_environ(&apache.get("//env///x//y").text());
    assert_eq!(
        environ_value(&env, "SCRIPT_NAME"),
        Some("/env"),
        "runs of / collapse"
    );
    assert_eq!(environ_value(&env, "PATH_INFO"), Some("/x/y"));
    let r = apache.get("/hellox");
    assert_ne!(r.status, 200, "an alias matches whole path segments only");
}

#[test]
fn script_alias_at_root_gives_empty_script_name() {
    let apache = Apache::start(
        "root",
        &[("environ.wsgi", ENVIRON)],
        "WSGIScriptAlias / {dir}/environ.wsgi",
    );
    let env = parse_environ(&apache.get("/a/b").text());
    assert_eq!(environ_value(&env, "SCRIPT_NAME"), Some(""));
    assert_eq!(environ_value(&env, "PATH_INFO"), Some("/a/b"));
}

#[test]
fn script_alias_to_a_directory_maps_each_script() {
    let apache = Apache::start(
        "aliasdir",
        &[("apps/one.wsgi", ENVIRON), ("apps/two.wsgi", HELLO)],
        "WSGIScriptAlias /apps/ {dir}/apps/",
    );
    let env = parse_environ(&apache.get("/apps/one.wsgi/x").text());
    assert_eq!(environ_value(&env, "SCRIPT_NAME"), Some("/apps/one.wsgi"));
    assert_eq!(environ_value(&env, "PATH_INFO"), Some("/x"));
    assert_eq!(apache.get("/apps/two.wsgi").text(), "Hello, world!");
    assert_eq!(apache.get("/apps/three.wsgi").status, 404);
}

#[test]
fn a_python_that_cannot_start_is_a_500_with_a_reason() {
    let apache = Apache::start(
        "badhome",
        &[("hello.wsgi", HELLO)],
        "WSGIPythonHome /nonexistent/python\nWSGIScriptAlias /hello {dir}/hello.wsgi",
    );
    assert_eq!(apache.get("/hello").status, 500);
    let log = apache.wait_for_log("Python is not running");
    assert!(log.contains("Python could not be started"), "{log}");
    assert!(
        log.contains("Python is not running in this process"),
        "{log}"
    );
    assert!(!log.contains("exit signal"), "{log}");
}

#[test]
fn a_python_apache_cannot_read_is_pointed_out() {
    // Shown by a build for a Python that Apache's User cannot read (pyenv's, under /root): the
    // suite runs such builds with a readable copy as WSGIPythonHome, which this test leaves
    // out. A build for Debian's Python starts, and has nothing to show.
    if std::env::var("MOD_WSGI_PYTHON_HOME").is_err() || !common::is_root() {
        return;
    }
    let apache = Apache::start(
        "unreadablepython",
        &[("hello.wsgi", HELLO)],
        "# (no WSGIPythonHome)\nWSGIScriptAlias /hello {dir}/hello.wsgi",
    );
    assert_eq!(apache.get("/hello").status, 500);
    let log = apache.wait_for_log("Python could not be started");
    assert!(
        log.contains("WSGIPythonHome is not set, so Python looks for its library from"),
        "{log}"
    );
}

#[test]
fn script_alias_match_substitutes_groups() {
    let apache = Apache::start(
        "aliasmatch",
        &[("apps/one.wsgi", ENVIRON), ("apps/two.wsgi", HELLO)],
        "WSGIScriptAliasMatch ^/app/([^/]+) {dir}/apps/$1.wsgi",
    );
    let env = parse_environ(&apache.get("/app/one/rest").text());
    assert_eq!(environ_value(&env, "SCRIPT_NAME"), Some("/app/one"));
    assert_eq!(environ_value(&env, "PATH_INFO"), Some("/rest"));
    assert_eq!(apache.get("/app/two").text(), "Hello, world!");
    assert_eq!(apache.get("/app/three").status, 404);
}

/// Decodes a Latin-1 response body (one character per byte).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[test]
fn environ_has_cgi_and_wsgi_keys_as_latin1_str() {
    let apache = Apache::start(
        "environ",
        &[("environ.wsgi", ENVIRON)],
        "WSGIScriptAlias /env {dir}/environ.wsgi",
    );
    let r = apache.request(
        "GET",
        "/env/caf%C3%A9",
        &[
            ("X-Custom-Header", "v\u{e9}"),
            ("Authorization", "Basic c2VjcmV0"),
            ("X_Spoof", "1"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let env = parse_environ(&latin1(&r.body));
    for (key, want) in [
        ("REQUEST_METHOD", "GET"),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("wsgi.url_scheme", "http"),
        ("wsgi.version", "(1, 0)"),
        ("wsgi.multithread", "True"),
        ("wsgi.run_once", "False"),
        ("wsgi.input_terminated", "True"),
        ("mod_wsgi.process_group", ""),
        ("mod_wsgi.callable_object", "application"),
        ("mod_wsgi.request_handler", "wsgi-script"),
        ("mod_wsgi.script_reloading", "1"),
        ("types", "str"),
    ] {
        assert_eq!(environ_value(&env, key), Some(want), "{key}");
    }
    assert_eq!(
        environ_value(&env, "python"),
        Some(common::python_version().as_str())
    );
    assert_eq!(
        environ_value(&env, "SERVER_PORT"),
        Some(apache.port.to_string().as_str())
    );
    // The default application group, %{RESOURCE}, as C mod_wsgi names it.
    assert_eq!(
        environ_value(&env, "mod_wsgi.application_group"),
        Some(format!("127.0.0.1:{}|/env", apache.port).as_str())
    );
    assert_eq!(
        environ_value(&env, "mod_wsgi.listener_port"),
        Some(apache.port.to_string().as_str())
    );
    // UTF-8 bytes of the path arrive as one Latin-1 character per byte ("bytes as str").
    assert_eq!(environ_value(&env, "PATH_INFO"), Some("/caf\u{c3}\u{a9}"));
    assert_eq!(
        environ_value(&env, "HTTP_X_CUSTOM_HEADER"),
        Some("v\u{c3}\u{a9}")
    );
    assert_eq!(
        environ_value(&env, "HTTP_AUTHORIZATION"),
        None,
        "Authorization is hidden by default"
    );
    assert_eq!(
        environ_value(&env, "HTTP_X_SPOOF"),
        None,
        "headers with '_' are dropped"
    );
}

#[test]
fn pass_authorization_option_and_directive() {
    let apache = Apache::start(
        "passauth",
        &[("environ.wsgi", ENVIRON)],
        "WSGIScriptAlias /opt {dir}/environ.wsgi pass-authorization=On\n\
         WSGIScriptAlias /dir {dir}/environ.wsgi\n\
         <Location /dir>\nWSGIPassAuthorization On\n</Location>\n\
         WSGIScriptAlias /off {dir}/environ.wsgi",
    );
    let auth = [("Authorization", "Basic c2VjcmV0")];
    for path in ["/opt", "/dir"] {
        let env = parse_environ(&apache.request("GET", path, &auth, b"").text());
        assert_eq!(
            environ_value(&env, "HTTP_AUTHORIZATION"),
            Some("Basic c2VjcmV0"),
            "{path}"
        );
    }
    let env = parse_environ(&apache.request("GET", "/off", &auth, b"").text());
    assert_eq!(environ_value(&env, "HTTP_AUTHORIZATION"), None);
}

#[test]
fn set_handler_requires_exec_cgi() {
    let apache = Apache::start(
        "sethandler",
        &[("cgi/ok/app.wsgi", HELLO), ("cgi/no/app.wsgi", HELLO)],
        "Alias /ok {dir}/cgi/ok\nAlias /no {dir}/cgi/no\n\
         <Directory {dir}/cgi/ok>\nOptions ExecCGI\nSetHandler wsgi-script\n</Directory>\n\
         <Directory {dir}/cgi/no>\nSetHandler wsgi-script\n</Directory>\n\
         <Directory {dir}/cgi>\nAddHandler wsgi-script .wsgi\n</Directory>",
    );
    assert_eq!(apache.get("/ok/app.wsgi").text(), "Hello, world!");
    assert_eq!(apache.get("/no/app.wsgi").status, 403);
    let log = apache.wait_for_log("Options ExecCGI is off");
    assert!(
        log.contains("Options ExecCGI is off in this directory"),
        "{log}"
    );
    assert_eq!(apache.get("/ok/missing.wsgi").status, 404);
}

#[test]
fn callable_object_is_configurable_and_missing_one_is_404() {
    let app = "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'custom']\n";
    let apache = Apache::start(
        "callable",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /opt {dir}/app.wsgi callable-object=app\n\
         WSGIScriptAlias /dir {dir}/app.wsgi\n<Location /dir>\nWSGICallableObject app\n</Location>\n\
         WSGIScriptAlias /none {dir}/app.wsgi",
    );
    assert_eq!(apache.get("/opt").text(), "custom");
    assert_eq!(apache.get("/dir").text(), "custom");
    assert_eq!(apache.get("/none").status, 404);
    let log = apache.wait_for_log("does not contain WSGI application");
    assert!(
        log.contains("does not contain WSGI application 'application'"),
        "{log}"
    );
}

/// What a script prints without a newline before it fails to load (or without defining its
/// application) is logged with its own request, once it has failed: left on the thread, it was
/// logged with the next request that thread served, in that request's virtual host and under
/// its client (found by the verification probe; the callable-less case predates it).
#[test]
fn partial_output_of_a_script_that_fails_to_load_is_logged_with_its_request() {
    let apache = Apache::start_with(
        "partial_line_failed_load",
        &[
            (
                "raises.wsgi",
                "import sys
sys.stdout.write('partial-before-raise')
raise RuntimeError('no')
",
            ),
            (
                "no_app.wsgi",
                "import sys
sys.stdout.write('partial-no-app')
",
            ),
        ],
        "WSGIScriptAlias /raises {dir}/raises.wsgi
         WSGIScriptAlias /no_app {dir}/no_app.wsgi",
        common::Options {
            threads: 1,
            ..common::Options::default()
        },
    );
    // Each line must be in the log before the thread serves another request.
    for (path, status, line) in [
        ("/raises", 500, "partial-before-raise"),
        ("/no_app", 404, "partial-no-app"),
    ] {
        assert_eq!(apache.get(path).status, status);
        let log = apache.wait_for_log(line);
        assert!(
            log.lines()
                .any(|l| l.contains("[client 127.0.0.1") && l.ends_with(line)),
            "{line} not logged with its request:\n{log}"
        );
    }
}

#[test]
fn script_failures_are_logged_in_cs_words() {
    // Log watchers match these lines: a script that cannot be compiled (or read) is "Could not
    // read/compile source file", one that fails as it runs "Failed to exec Python script
    // file", and SystemExit is "ignored".
    let apache = Apache::start(
        "script_failure_words",
        &[
            ("broken.wsgi", "def broken(:\n    pass\n"),
            ("exits.wsgi", "raise SystemExit(3)\n"),
            (
                "exits_later.wsgi",
                "def application(environ, start_response):\n    raise SystemExit(4)\n",
            ),
            ("unreadable.wsgi", HELLO),
        ],
        "WSGIScriptAlias /broken {dir}/broken.wsgi\n\
         WSGIScriptAlias /exits {dir}/exits.wsgi\n\
         WSGIScriptAlias /exits_later {dir}/exits_later.wsgi\n\
         WSGIScriptAlias /unreadable {dir}/unreadable.wsgi",
    );
    common::set_mode(&apache.path("unreadable.wsgi"), 0o000);
    for path in ["/broken", "/exits", "/exits_later"] {
        assert_eq!(apache.get(path).status, 500, "{path}");
    }
    if common::is_root() {
        // Root reads anything: only Apache's User is kept out.
        assert_eq!(apache.get("/unreadable").status, 500);
    }
    let log = apache.wait_for_log("SystemExit: 4");
    let path = |name: &str| apache.path(name).display().to_string();
    for line in [
        format!(
            "process='', application='127.0.0.1:{}|/broken'): Could not read/compile source file \
             '{}'.",
            apache.port,
            path("broken.wsgi")
        ),
        format!(
            "SystemExit exception raised when doing exec of Python script file '{}'.",
            path("exits.wsgi")
        ),
        format!(
            "SystemExit exception raised by WSGI script '{}' ignored.",
            path("exits.wsgi")
        ),
        format!(
            "SystemExit exception raised by WSGI script '{}' ignored.",
            path("exits_later.wsgi")
        ),
    ] {
        assert!(log.contains(&line), "{line}\nnot in:\n{log}");
    }
    if common::is_root() {
        let line = format!(
            "PermissionError: [Errno 13] Permission denied: '{}'",
            path("unreadable.wsgi")
        );
        assert!(log.contains(&line), "{line}\nnot in:\n{log}");
    }
    assert!(
        !log.contains(
            "Failed to exec Python script file '{}'."
                .replace("{}", &path("broken.wsgi"))
                .as_str()
        ),
        "{log}"
    );
}

#[test]
fn exceptions_are_500_with_a_traceback_and_the_child_survives() {
    let bad = "def helper():\n    raise ValueError('boom')\n\ndef application(environ, start_response):\n    helper()\n";
    let broken = "def broken(:\n    pass\n";
    let apache = Apache::start(
        "exception",
        &[("bad.wsgi", bad), ("broken.wsgi", broken), ("hello.wsgi", HELLO)],
        "WSGIScriptAlias /bad {dir}/bad.wsgi\nWSGIScriptAlias /broken {dir}/broken.wsgi\nWSGIScriptAlias /hello {dir}/hello.wsgi",
    );
    for _ in 0..3 {
        assert_eq!(apache.get("/bad").status, 500);
        assert_eq!(apache.get("/broken").status, 500);
        assert_eq!(apache.get("/hello").status, 200);
    }
    let log = apache.wait_for_log("SyntaxError");
    assert!(
        log.contains("Exception occurred processing WSGI script"),
        "{log}"
    );
    assert!(log.contains("Traceback (most recent call last):"), "{log}");
    assert!(
        log.contains("in helper"),
        "the traceback names the frames: {log}"
    );
    assert!(log.contains("ValueError: boom"), "{log}");
    assert!(log.contains("SyntaxError"), "{log}");
    assert!(!log.contains("exit signal"), "no child crashed: {log}");
}

#[test]
fn bad_headers_are_a_500_never_an_injected_header() {
    let app = r#"
def application(environ, start_response):
    kind = environ["PATH_INFO"]
    if kind == "/value":
        start_response("200 OK", [("X-Test", "a\r\nX-Injected: yes")])
    elif kind == "/name":
        start_response("200 OK", [("X Bad", "v")])
    elif kind == "/status":
        start_response("200 OK\r\nX-Injected: yes", [])
    elif kind == "/code-only":
        # PEP 3333 asks for "999 Message here"; C refuses a code alone too.
        start_response("200", [])
    elif kind == "/tuple":
        start_response("200 OK", (("X-A", "b"),))
    elif kind == "/bytes":
        start_response("200 OK", [(b"X-A", "b")])
    elif kind == "/body":
        start_response("200 OK", [])
        return ["text is not bytes"]
    elif kind == "/vt":
        start_response("200 OK", [("X-Test", "a\x0bb")])
    elif kind == "/caught":
        try:
            start_response("200 OK", [("X-Test", "a\x7fb")])
        except ValueError as e:
            start_response("200 OK", [("X-Error", type(e).__name__)])
            return [b"recovered"]
    return [b"should not be sent"]
"#;
    let apache = Apache::start(
        "badheaders",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    for path in [
        "/value",
        "/name",
        "/status",
        "/code-only",
        "/tuple",
        "/bytes",
        "/body",
        "/vt",
    ] {
        let r = apache.get(&format!("/app{path}"));
        assert_eq!(r.status, 500, "{path}");
        assert!(r.header("X-Injected").is_none(), "{path}");
        assert!(!r.text().contains("should not be sent"), "{path}");
    }
    let r = apache.get("/app/caught");
    assert_eq!(
        (r.status, r.header("X-Error"), r.text().as_str()),
        (200, Some("ValueError"), "recovered")
    );
    let log = apache.error_log();
    assert!(
        log.contains("TypeError: expected list object for headers"),
        "{log}"
    );
    // Refused inside the application (catchable), not by httpd's header check afterwards.
    assert!(!log.contains("AH02430"), "{log}");
    assert!(
        log.contains("sequence of byte string values expected, value of type str found"),
        "{log}"
    );
}

#[test]
fn streaming_write_input_and_close() {
    let app = r#"
import os
MARK = os.path.join(os.path.dirname(__file__), "closed")

class Body:
    def __init__(self, parts, fail=False):
        self.parts, self.fail = parts, fail
    def __iter__(self):
        for p in self.parts:
            yield p
        if self.fail:
            raise RuntimeError("mid-stream failure")
    def close(self):
        with open(MARK, "a") as f:
            f.write("closed\n")

def application(environ, start_response):
    path = environ["PATH_INFO"]
    inp = environ["wsgi.input"]
    if path == "/echo":
        data = inp.read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [data]
    if path == "/lines":
        first = inp.readline()
        rest = list(inp)
        out = b"first=%r rest=%r more=%r" % (first, rest, inp.read())
        start_response("200 OK", [])
        return [out]
    if path == "/sized":
        a = inp.read(3)
        b = inp.read(100)
        start_response("200 OK", [])
        return [b"%s|%s|%s" % (a, b, inp.read(5))]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return [b"returned"]
    if path == "/fail":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"partial-"], fail=True)
    if path == "/generator":
        start_response("200 OK", [])
        return Body([b"a", b"", b"b", b"c"])
    if path == "/short":
        start_response("200 OK", [("Content-Length", "100")])
        return Body([b"only this"])
    if path == "/long":
        start_response("200 OK", [("Content-Length", "4")])
        return [b"123456789"]
"#;
    let apache = Apache::start(
        "streaming",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = apache.request("POST", "/app/echo", &[], &body);
    assert_eq!(r.status, 200);
    assert!(
        r.body == body,
        "echoed {} of {} bytes",
        r.body.len(),
        body.len()
    );
    let r = apache.request("POST", "/app/lines", &[], b"one\ntwo\nthree");
    assert_eq!(
        r.text(),
        "first=b'one\\n' rest=[b'two\\n', b'three'] more=b''"
    );
    let r = apache.request("POST", "/app/sized", &[], b"abcdefgh");
    assert_eq!(r.text(), "abc|defgh|");
    let r = apache.get("/app/write");
    assert_eq!(r.text(), "written;returned");
    let r = apache.get("/app/generator");
    assert_eq!((r.text().as_str(), r.complete), ("abc", true));
    let r = apache.get("/app/fail");
    assert_eq!(r.status, 200);
    assert!(
        !r.complete,
        "an error mid-stream must truncate the response visibly"
    );
    assert_eq!(r.text(), "partial-");
    let r = apache.get("/app/short");
    assert!(
        !r.complete,
        "fewer bytes than Content-Length must not look complete"
    );
    let r = apache.get("/app/long");
    assert_eq!(
        (r.text().as_str(), r.complete),
        ("1234", true),
        "never more than Content-Length"
    );
    let closed = std::fs::read_to_string(apache.path("closed")).unwrap_or_default();
    assert_eq!(
        closed.lines().count(),
        3,
        "close() called after success, failure and truncation"
    );
    let log = apache.error_log();
    assert!(log.contains("RuntimeError: mid-stream failure"), "{log}");
    assert!(log.contains("Truncated response"), "{log}");
}

#[test]
fn wsgi_errors_lines_go_to_the_error_log() {
    let app = r#"
def application(environ, start_response):
    errors = environ["wsgi.errors"]
    errors.write("first line\nsecond ")
    errors.writelines(["line\n", "tail"])
    errors.flush()
    start_response("200 OK", [])
    return [b"ok"]
"#;
    let apache = Apache::start(
        "errors",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    assert_eq!(apache.get("/app").text(), "ok");
    let log = apache.wait_for_log("tail");
    for line in ["first line", "second line", "tail"] {
        assert!(
            log.lines().any(|l| l.contains("[wsgi:error]")
                && l.contains("[client 127.0.0.1")
                && l.ends_with(line)),
            "{line:?} missing: {log}"
        );
    }
}

#[test]
fn stdout_and_stderr_go_to_the_error_log_attributed_to_the_request() {
    let app = r#"
import io, sys, threading
print("printed at import")
def later():
    print("printed by a thread after its request")
    sys.stdout.write("left unfinished by a thread that then ends")
def application(environ, start_response):
    print("printed in a request")
    sys.stderr.write("stderr in a request\nunfinished stderr")
    errors = environ["wsgi.errors"]
    try:
        errors.fileno()
        fileno = "no error"
    except io.UnsupportedOperation:
        fileno = "UnsupportedOperation"
    facts = [sys.stdout.name, sys.stderr.name, sys.stdout.encoding, str(sys.stdout.isatty()),
             errors.name, errors.encoding, str(errors.isatty()), str(errors.closed), fileno,
             str((errors.writable(), errors.readable(), errors.seekable())),
             str(isinstance(errors, io.TextIOBase))]
    with errors as entered:
        facts.append(str(entered is errors))
    for name in ("seekable", "isatty", "close"):
        try:
            getattr(errors, name)(1)
        except TypeError as e:
            facts.append(str(e).split("(")[0])
    errors.write("still open after a with block\n")
    threading.Timer(0.2, later).start()
    start_response("200 OK", [])
    return [" ".join(facts).encode()]
"#;
    let apache = Apache::start(
        "stdout",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    assert_eq!(
        apache.get("/app").text(),
        "<stdout> <stderr> utf-8 False <wsgi.errors> utf-8 False False UnsupportedOperation \
         (True, False, False) True True seekable isatty close"
    );
    let log = apache.wait_for_log("left unfinished by a thread that then ends");
    let entry = |text: &str| {
        log.lines()
            .find(|l| l.ends_with(text))
            .unwrap_or_else(|| panic!("{text:?} missing: {log}"))
            .to_string()
    };
    for text in [
        "printed at import",
        "printed in a request",
        "stderr in a request",
        "unfinished stderr",
        "still open after a with block",
    ] {
        let line = entry(text);
        assert!(line.contains("[client 127.0.0.1"), "{line}");
    }
    for text in [
        "printed by a thread after its request",
        "left unfinished by a thread that then ends",
    ] {
        let line = entry(text);
        assert!(!line.contains("[client"), "{line}");
    }
}

#[test]
fn the_log_streams_take_what_common_code_gives_them() {
    // `sys.stdout.reconfigure(...)` at import, bytes through `.buffer`, and a lone surrogate (a
    // file name decoded with surrogateescape) all reach the log, as with C.
    let app = r#"
import io, sys
sys.stdout.reconfigure(encoding="utf-8", line_buffering=True)
def application(environ, start_response):
    errors = environ["wsgi.errors"]
    print("surrogate \udcff here", file=sys.stderr)
    errors.write("wsgi.errors surrogate \udcfe\n")
    sys.stdout.buffer.write("via buffer caf\u00e9\n".encode()[:-3])
    sys.stdout.buffer.write("\u00e9\n".encode())
    facts = [sys.stderr.errors, errors.errors, str(isinstance(errors, io.TextIOBase))]
    # The interpreter's set-up functions are not kept with the streams' code (6 KB each
    # interpreter).
    kept = type(sys.stdout).write.__globals__
    facts.append(str(any(n in kept for n in ("fill", "install_streams", "give_stream_api"))))
    start_response("200 OK", [])
    return [" ".join(facts).encode()]
"#;
    let apache = Apache::start(
        "log_stream_api",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let r = apache.get("/app");
    assert_eq!(
        (r.status, r.text()),
        (200, "replace replace True False".to_string()),
        "{}",
        apache.error_log()
    );
    let log = apache.wait_for_log("via buffer");
    for line in [
        "surrogate ? here",
        "wsgi.errors surrogate ?",
        // Apache escapes what is not ASCII: a UTF-8 character split across two writes is
        // whole again.
        "via buffer caf\\xc3\\xa9",
    ] {
        assert!(
            log.lines().any(|l| l.ends_with(line)),
            "{line} not in:\n{log}"
        );
    }
}

#[test]
fn an_interpreter_keeps_only_the_python_objects_requests_use() {
    // Each type and each Python function of our own is kept by every interpreter for its life
    // (a type about 3 KB, a function with its code about 1 KB). Functions that need Rust data but
    // no type hang off capsules; set-up functions are dropped once run; the class behind
    // `sys.stdout.buffer` is compiled only when an application first asks for it.
    let app = r#"
import gc, sys, types
def ours():
    gc.collect()
    objs = gc.get_objects()
    kinds = sorted(t.__qualname__ for t in objs if isinstance(t, type) and t.__module__ == "mod_wsgi")
    functions = sorted({f.__qualname__ for f in objs if isinstance(f, types.FunctionType)
                        and f.__module__ == "mod_wsgi" and f.__code__.co_filename == "<string>"})
    return "types " + " ".join(kinds) + "\nfunctions " + " ".join(functions)
at_import = ours()
def application(environ, start_response):
    shared = type(sys.stdout.buffer) is type(sys.stderr.buffer)
    body = at_import + "\nbuffer class shared " + str(shared) + "\nthen " + ours().split("\n")[0]
    start_response("200 OK", [])
    return [body.encode()]
"#;
    let apache = Apache::start(
        "python_objects_kept",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let r = apache.get("/app");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    let expected = "\
types Adapter FileWrapper Input Log LogStream Restricted
functions FileWrapper.__init__ FileWrapper.__iter__ FileWrapper.__next__ LogStream.__init__ \
LogStream.__repr__ LogStream.buffer LogStream.close LogStream.closed LogStream.encoding \
LogStream.errors LogStream.flush LogStream.name LogStream.reconfigure LogStream.writable \
LogStream.write Restricted.__getattribute__ Restricted.__init__ __dir__ __getattr__ signal \
subscribe_events subscribe_shutdown
buffer class shared True
then types Adapter FileWrapper Input Log LogStream Restricted _LogBuffer";
    assert_eq!(r.text(), expected);
}

#[test]
fn closing_the_log_streams_does_not_silence_later_requests() {
    // A `with sys.stdout:` block, a library closing what it was given, or the common
    // `io.TextIOWrapper(sys.stdout.buffer)` being collected close the server's streams; with C
    // the next request logs as before. write() answers how much it wrote, as a text stream's.
    let app = r#"
import io, sys
def application(environ, start_response):
    if environ["PATH_INFO"] == "/close":
        errors = environ["wsgi.errors"]
        written = [errors.write("abc\n"), sys.stdout.write("de\n")]
        with sys.stdout:
            pass
        sys.stderr.close()
        wrapper = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8")
        wrapper.write("through a wrapper\n")
        del wrapper
        errors.close()
        body = repr(written)
    else:
        print("printed after the streams were closed")
        print("to stderr after", file=sys.stderr)
        sys.stdout.buffer.write(b"bytes after\n")
        body = repr([sys.stdout.closed, sys.stderr.closed, sys.stdout.buffer.closed])
    start_response("200 OK", [])
    return [body.encode()]
"#;
    let apache = Apache::start_with(
        "close_log_streams",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
        Options {
            processes: 1,
            ..Default::default()
        },
    );
    let r = apache.get("/app/close");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "[4, 3]"),
        "{}",
        apache.error_log()
    );
    let r = apache.get("/app/after");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "[False, False, False]"),
        "{}",
        apache.error_log()
    );
    let log = apache.wait_for_log("bytes after");
    for line in [
        "through a wrapper",
        "printed after the streams were closed",
        "to stderr after",
    ] {
        assert!(log.contains(line), "{line} not in:\n{log}");
    }
}

#[test]
fn two_hundred_concurrent_requests_are_all_served() {
    let slow = r#"
import time
def application(environ, start_response):
    time.sleep(0.05)
    body = environ["QUERY_STRING"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"#;
    let apache = Apache::start_with(
        "concurrent",
        &[("slow.wsgi", slow)],
        "WSGIScriptAlias /slow {dir}/slow.wsgi",
        Options {
            threads: 64,
            processes: 4,
            ..Default::default()
        },
    );
    let port = apache.port;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                common::http_request(port, "GET", &format!("/slow?{i}"), &[], b"")
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap();
        assert_eq!((r.status, r.text()), (200, i.to_string()));
    }
}

#[test]
fn script_reloads_when_its_mtime_changes() {
    let v1 = "def application(e, sr):\n    sr('200 OK', [])\n    return [b'v1']\n";
    let v2 = "def application(e, sr):\n    sr('200 OK', [])\n    return [b'v2']\n";
    let apache = Apache::start(
        "reload",
        &[("app.wsgi", v1), ("fixed.wsgi", v1)],
        "WSGIScriptAlias /app {dir}/app.wsgi\nWSGIScriptAlias /fixed {dir}/fixed.wsgi\n\
         <Location /fixed>\nWSGIScriptReloading Off\n</Location>",
    );
    assert_eq!(apache.get("/app").text(), "v1");
    assert_eq!(apache.get("/fixed").text(), "v1");
    for name in ["app.wsgi", "fixed.wsgi"] {
        let path = apache.path(name);
        std::fs::write(&path, v2).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    assert_eq!(apache.get("/app").text(), "v2");
    assert_eq!(
        apache.get("/fixed").text(),
        "v1",
        "WSGIScriptReloading Off keeps the loaded script"
    );
}

#[test]
fn python_path_adds_site_directories_first() {
    let app = r#"
import sys, mylib, fromdotpth
def application(environ, start_response):
    start_response("200 OK", [])
    return [("%s %s %s" % (mylib.NAME, fromdotpth.NAME, sys.path[0])).encode()]
"#;
    let apache = Apache::start(
        "pythonpath",
        &[
            ("app.wsgi", app),
            ("lib/mylib.py", "NAME = 'mylib'\n"),
            ("lib/extra.pth", "{dir}/pth\n"),
            ("pth/fromdotpth.py", "NAME = 'pth'\n"),
        ],
        "WSGIPythonPath {dir}/lib\nWSGIScriptAlias /app {dir}/app.wsgi",
    );
    let dir = apache.dir.display().to_string();
    assert_eq!(apache.get("/app").text(), format!("mylib pth {dir}/lib"));
    // C's info line for each directory.
    let log = apache.error_log();
    assert!(
        log.lines()
            .any(|l| l.contains(":info]") && l.ends_with(&format!("Adding '{dir}/lib' to path."))),
        "{log}"
    );
}

#[test]
fn a_relative_python_path_entry_is_on_sys_path_once_in_absolute_form() {
    // As site.addsitedir makes it (C calls it): not also the relative text.
    let app = r#"
import os, sys
def application(environ, start_response):
    start_response("200 OK", [])
    return [repr((sys.path.count(os.path.abspath("some-rel-dir")), sys.path.count("some-rel-dir"))).encode()]
"#;
    let apache = Apache::start(
        "pythonpath_relative",
        &[("app.wsgi", app)],
        "WSGIPythonPath some-rel-dir\nWSGIScriptAlias /app {dir}/app.wsgi",
    );
    assert_eq!(
        apache.get("/app").text(),
        "(1, 0)",
        "{}",
        apache.error_log()
    );
}

#[test]
fn python_home_accepts_a_virtual_environment() {
    let venv = common::temp_dir("venv").join("env");
    let ok = std::process::Command::new(common::python())
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap()
        .success();
    assert!(ok, "python3 -m venv failed");
    let apache = Apache::start(
        "pythonhome",
        &[("environ.wsgi", ENVIRON)],
        &format!(
            "WSGIPythonHome {}\nWSGIScriptAlias /env {{dir}}/environ.wsgi",
            venv.display()
        ),
    );
    let env = parse_environ(&apache.get("/env").text());
    assert_eq!(environ_value(&env, "prefix"), Some(venv.to_str().unwrap()));
}

#[test]
fn python_is_finalised_at_child_exit() {
    let app = r#"
import atexit, os
MARK = os.path.join(os.path.dirname(__file__), "atexit-%d" % os.getpid())
atexit.register(lambda: open(MARK, "w").write("ran"))
def application(environ, start_response):
    # threading first imported on a request thread must not hang the child's exit.
    import threading
    threading.Thread(target=lambda: None).start()
    start_response("200 OK", [])
    return [str(os.getpid()).encode()]
"#;
    let mut apache = Apache::start(
        "finalize",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let pid = apache.get("/app").text();
    let log = apache.stop();
    let mark = apache.path(&format!("atexit-{pid}"));
    assert_eq!(
        std::fs::read_to_string(&mark).unwrap_or_default(),
        "ran",
        "atexit ran at child exit: {log}"
    );
    assert!(!log.contains("exit signal"), "{log}");
    assert!(!log.contains("still did not exit"), "{log}");
}

#[test]
fn server_banner_names_the_module_and_python() {
    let apache = Apache::start(
        "banner",
        &[("hello.wsgi", HELLO)],
        "ServerTokens Full\nWSGIScriptAlias /hello {dir}/hello.wsgi",
    );
    let r = apache.get("/hello");
    let server = r.header("Server").unwrap_or_default().to_string();
    assert!(
        server.contains(&format!("mod_wsgi-rs/{}", env!("CARGO_PKG_VERSION"))),
        "{server}"
    );
    assert!(server.contains("Python/3."), "{server}");
}

#[test]
fn request_body_framing_is_checked_before_the_app_runs() {
    let apache = Apache::start(
        "framing",
        &[("hello.wsgi", HELLO)],
        "WSGIScriptAlias /hello {dir}/hello.wsgi\nLimitRequestBody 10",
    );
    let r = apache.request(
        "POST",
        "/hello",
        &[("Transfer-Encoding", "chunked")],
        b"3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(
        r.status, 411,
        "chunked request bodies need WSGIChunkedRequest, not supported yet"
    );
    let r = apache.request("POST", "/hello", &[], b"more than ten bytes");
    assert_eq!(r.status, 413);
}

#[test]
fn eight_megabyte_bodies_round_trip_in_sized_reads() {
    let app = r#"
def application(environ, start_response):
    inp = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    chunks = []
    while remaining > 0:
        data = inp.read(min(65536, remaining))
        if not data:
            break
        chunks.append(data)
        remaining -= len(data)
    start_response("200 OK", [("Content-Length", str(sum(map(len, chunks))))])
    return iter(chunks)
"#;
    let apache = Apache::start(
        "bigbody",
        &[("echo.wsgi", app)],
        "WSGIScriptAlias /echo {dir}/echo.wsgi",
    );
    let body: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let r = apache.request("POST", "/echo", &[], &body);
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert!(
        r.body == body,
        "got {} bytes back, not the {} sent",
        r.body.len(),
        body.len()
    );
}

#[test]
fn file_wrapper_sends_real_files_and_iterates_the_rest() {
    let app = r#"
import io, os
HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data.bin")

class NoDescriptor(io.BytesIO):
    # A file-like whose fileno() names no open file.
    def fileno(self):
        return -1

class Tracked(io.FileIO):
    # Records where the file was when the server closed it: a file sent by sendfile is never
    # read through Python, so it is still at its starting offset.
    def close(self):
        if not self.closed:
            with open(os.path.join(HERE, "closed-at"), "a") as f:
                f.write("%d\n" % self.tell())
        super().close()

def application(environ, start_response):
    wrapper = environ["wsgi.file_wrapper"]
    kind = environ["PATH_INFO"]
    headers = [("Content-Type", "application/octet-stream")]
    f = Tracked(DATA, "r")
    if kind == "/offset":
        f.seek(1000)
    elif kind == "/declared":
        headers.append(("Content-Length", "5000"))
    elif kind == "/bytesio":
        f.close()
        f = io.BytesIO(b"not a real file" * 1000)
    elif kind == "/nodescriptor":
        f.close()
        f = NoDescriptor(b"no descriptor" * 1000)
    start_response("200 OK", headers)
    return wrapper(f, 4096)
"#;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let dir = common::temp_dir("filewrapper-data");
    let data_path = dir.join("data.bin");
    std::fs::write(&data_path, &data).unwrap();
    let apache = Apache::start(
        "filewrapper",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    std::fs::copy(&data_path, apache.path("data.bin")).unwrap();
    // close() runs after the response went out, so the client may see the body first.
    let closed_at = |count: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(apache.path("closed-at")).unwrap_or_default();
            if text.lines().count() >= count || std::time::Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };

    let r = apache.get("/app/whole");
    assert_eq!(
        r.header("Content-Length"),
        Some("3000000"),
        "the file's length is declared"
    );
    assert!(r.complete && r.body == data);
    assert_eq!(
        closed_at(1).lines().last(),
        Some("0"),
        "sent without reading it in Python"
    );

    let r = apache.get("/app/offset");
    assert!(
        r.complete && r.body == data[1000..],
        "sent from the file's position"
    );

    let r = apache.get("/app/declared");
    assert_eq!((r.body.len(), r.complete), (5000, true));
    assert!(
        r.body == data[..5000],
        "the application's Content-Length is honoured"
    );

    let r = apache.get("/app/bytesio");
    assert_eq!(
        r.text(),
        "not a real file".repeat(1000),
        "other file-likes are iterated"
    );
    assert_eq!(
        closed_at(4).lines().count(),
        4,
        "close() is called every time: {}",
        closed_at(4)
    );

    let r = apache.get("/app/nodescriptor");
    assert_eq!(
        (r.status, r.text()),
        (200, "no descriptor".repeat(1000)),
        "a descriptor that is not open is iterated, as C does"
    );
}

#[test]
fn chunked_request_bodies_with_wsgi_chunked_request_on() {
    let app = r#"
def application(environ, start_response):
    data = environ["wsgi.input"].read()
    start_response("200 OK", [("X-Content-Length", environ.get("CONTENT_LENGTH", "absent"))])
    return [data]
"#;
    let apache = Apache::start(
        "chunked",
        &[("echo.wsgi", app)],
        "WSGIScriptAlias /on {dir}/echo.wsgi\n<Location /on>\nWSGIChunkedRequest On\n</Location>\n\
         WSGIScriptAlias /off {dir}/echo.wsgi",
    );
    let chunked = [("Transfer-Encoding", "chunked")];
    let body = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
    let r = apache.request("POST", "/on", &chunked, body);
    assert_eq!((r.status, r.text().as_str()), (200, "hello, world"));
    assert_eq!(r.header("X-Content-Length"), Some("absent"));
    assert_eq!(apache.request("POST", "/off", &chunked, body).status, 411);
}

#[test]
fn head_requests_map_to_get_as_configured() {
    let app = r#"
def application(environ, start_response):
    start_response("200 OK", [("X-Method", environ["REQUEST_METHOD"]), ("Content-Type", "text/plain")])
    return [b"body for " + environ["REQUEST_METHOD"].encode()]
"#;
    let apache = Apache::start(
        "headget",
        &[("app.wsgi", app)],
        &format!(
            "LoadModule deflate_module {}/mod_deflate.so\n\
             WSGIScriptAlias /auto {{dir}}/app.wsgi\n<Location /auto>\nWSGIMapHEADToGET Auto\n</Location>\n\
             WSGIScriptAlias /filtered {{dir}}/app.wsgi\n<Location /filtered>\nWSGIMapHEADToGET Auto\nSetOutputFilter DEFLATE\n</Location>\n\
             WSGIScriptAlias /unset {{dir}}/app.wsgi\n<Location /unset>\nSetOutputFilter DEFLATE\n</Location>\n\
             WSGIScriptAlias /on {{dir}}/app.wsgi\n<Location /on>\nWSGIMapHEADToGET On\n</Location>\n\
             WSGIScriptAlias /off {{dir}}/app.wsgi\n<Location /off>\nWSGIMapHEADToGET Off\nSetOutputFilter DEFLATE\n</Location>",
            common::MODULES
        ),
    );
    let method = |path: &str| {
        let r = apache.request("HEAD", path, &[], b"");
        assert!(r.body.is_empty(), "a HEAD response has no body");
        r.header("X-Method").unwrap_or_default().to_string()
    };
    assert_eq!(method("/auto"), "HEAD", "Auto without a content filter");
    assert_eq!(method("/filtered"), "GET", "Auto with a content filter");
    // Without the directive C 4.9.4 leaves HEAD alone, whatever the filters (its server
    // configuration starts zeroed, which is Off, though Auto is documented).
    assert_eq!(method("/unset"), "HEAD", "no directive, as C");
    assert_eq!(method("/on"), "GET");
    assert_eq!(method("/off"), "HEAD");
    assert_eq!(apache.get("/auto").text(), "body for GET");
}

#[test]
fn mod_wsgi_and_apache_modules_and_their_environ_keys() {
    let app = r#"
import mod_wsgi, apache
def application(environ, start_response):
    out = [
        "module.version=%r" % (mod_wsgi.version,),
        "module.process_group=%r" % mod_wsgi.process_group,
        "module.application_group=%r" % mod_wsgi.application_group,
        "module.threads_per_process=%r" % mod_wsgi.threads_per_process,
        "module.maximum_processes=%r" % mod_wsgi.maximum_processes,
        "module.FileWrapper=%r" % (mod_wsgi.FileWrapper is environ["wsgi.file_wrapper"]),
        "apache.version=%r" % (apache.version,),
        "apache.mpm_name=%s" % apache.mpm_name,
        "apache.description=%s" % apache.description,
        "environ.mod_wsgi.version=%r" % (environ["mod_wsgi.version"],),
        "environ.apache.version=%r" % (environ["apache.version"] == apache.version,),
        "environ.thread_id=%s" % type(environ["mod_wsgi.thread_id"]).__name__,
        "environ.thread_requests=%s" % type(environ["mod_wsgi.thread_requests"]).__name__,
        "environ.total_requests=%s" % type(environ["mod_wsgi.total_requests"]).__name__,
        "environ.script_start=%r" % (int(environ["mod_wsgi.script_start"]) >= int(environ["mod_wsgi.request_start"]),),
        "environ.PATH=%r" % ("PATH" in environ,),
    ]
    start_response("200 OK", [])
    return [("\n".join(out) + "\n").encode()]
"#;
    let apache = Apache::start_with(
        "modules",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
        Options {
            threads: 6,
            processes: 2,
            ..Default::default()
        },
    );
    let env = parse_environ(&apache.get("/app").text());
    assert_eq!(
        environ_value(&env, "module.application_group"),
        Some(format!("'127.0.0.1:{}|/app'", apache.port).as_str())
    );
    for (key, want) in [
        ("module.version", "(4, 9, 4)"),
        ("module.process_group", "''"),
        ("module.threads_per_process", "6"),
        ("module.maximum_processes", "2"),
        ("module.FileWrapper", "True"),
        ("apache.mpm_name", "event"),
        ("environ.mod_wsgi.version", "(4, 9, 4)"),
        ("environ.apache.version", "True"),
        ("environ.thread_id", "int"),
        ("environ.thread_requests", "int"),
        ("environ.total_requests", "int"),
        ("environ.script_start", "True"),
        ("environ.PATH", "False"),
    ] {
        assert_eq!(environ_value(&env, key), Some(want), "{key}");
    }
    assert!(environ_value(&env, "apache.version")
        .unwrap_or("")
        .starts_with("(2, 4, "));
    assert!(environ_value(&env, "apache.description")
        .unwrap_or("")
        .starts_with("Apache/2.4"));
}

#[test]
fn scripts_are_modules_named_by_the_md5_of_their_path_without_loading_hashlib() {
    let app = r#"
import sys
HASHLIB_BEFORE = "hashlib" in sys.modules
def application(environ, start_response):
    import hashlib
    want = "_mod_wsgi_" + hashlib.md5(__file__.encode()).hexdigest()
    start_response("200 OK", [])
    return [("%s %s" % (__name__ == want and sys.modules[want].__file__ == __file__, HASHLIB_BEFORE)).encode()]
"#;
    let apache = Apache::start(
        "modulename",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    assert_eq!(apache.get("/app").text(), "True False");
}

#[test]
fn python_has_its_own_prefix_and_site_packages_without_python_home() {
    let app = r#"
import os, site, sys
def application(environ, start_response):
    start_response("200 OK", [])
    missing = [d for d in site.getsitepackages() if os.path.isdir(d) and d not in sys.path]
    return [("%s|%s" % (sys.prefix, missing)).encode()]
"#;
    let apache = Apache::start(
        "prefix",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let want = match std::env::var("MOD_WSGI_PYTHON_HOME") {
        Ok(home) => home,
        Err(_) => {
            let out = std::process::Command::new(common::python())
                .args(["-c", "import sys; print(sys.prefix)"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    assert_eq!(apache.get("/app").text(), format!("{want}|[]"));
}

#[test]
fn module_variables_reach_apaches_environment_of_the_request() {
    let apache = Apache::start(
        "module_vars",
        &[("app.wsgi", common::apps::MODULE_VARS_APP)],
        &format!(
            "{}\nWSGIScriptAlias /app {{dir}}/app.wsgi",
            common::apps::MODULE_VARS_LOG
        ),
    );
    common::apps::assert_module_vars_reach_the_access_log(&apache, "");
}

#[test]
fn a_page_that_includes_a_wsgi_url_keeps_what_follows_the_include() {
    // mod_include's `#include virtual` makes a subrequest: its end must not end the page.
    let hello = "def application(environ, start_response):\n\
                 \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
                 \x20   return [b'hello']\n";
    let page = "def application(environ, start_response):\n\
                \x20   start_response('200 OK', [('Content-Type', 'text/html')])\n\
                \x20   page = b'<p>X <!--#include virtual=\"/app\" --> Y</p>'\n\
                \x20   if environ['PATH_INFO'] == '/streamed':\n\
                \x20       return iter([page])\n\
                \x20   return [page]\n";
    let apache = Apache::start(
        "ssi_include",
        &[
            ("app.wsgi", hello),
            ("page.wsgi", page),
            (
                "static/one.shtml",
                "<p>A <!--#include virtual=\"/app\" --> B</p>",
            ),
            (
                "static/two.shtml",
                "<p>C <!--#include virtual=\"/dapp\" --> D</p>",
            ),
        ],
        &format!(
            "LoadModule include_module {}/mod_include.so\n\
             Alias /static {{dir}}/static\n\
             <Directory {{dir}}/static>\n\
             Options +Includes\n\
             AddType text/html .shtml\n\
             AddOutputFilter INCLUDES .shtml\n\
             </Directory>\n\
             WSGIDaemonProcess site threads=2\n\
             WSGIScriptAlias /app {{dir}}/app.wsgi\n\
             WSGIScriptAlias /dapp {{dir}}/app.wsgi process-group=site\n\
             <Location /page>\n\
             Options +Includes\n\
             SetOutputFilter INCLUDES\n\
             </Location>\n\
             WSGIScriptAlias /page {{dir}}/page.wsgi",
            common::MODULES
        ),
    );
    let r = apache.get("/static/one.shtml");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "<p>A hello B</p>"),
        "{}",
        apache.error_log()
    );
    let r = apache.get("/static/two.shtml");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "<p>C hello D</p>"),
        "{}",
        apache.error_log()
    );
    // A small WSGI page (a list) whose output goes through INCLUDES, including a WSGI URL of
    // embedded mode: its response goes down the filters once the application is done with
    // Python (a small response's end is kept until then), so the include is served.
    let r = apache.get("/page");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "<p>X hello Y</p>"),
        "{}",
        apache.error_log()
    );
    // A streamed one is sent while it runs: not supported (C does it), but a clear line and
    // the include's error text, not a panic.
    let r = apache.get("/page/streamed");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("<p>X "), "{}", r.text());
    assert!(r.text().ends_with(" Y</p>"), "{}", r.text());
    let log = apache.error_log();
    assert!(
        log.contains("A WSGI script cannot serve a subrequest made while a WSGI application runs"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
