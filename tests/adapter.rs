//! PEP 3333 details of the adapter, end to end in real Apache: exc_info, SystemExit,
//! 100-continue, wsgi.input's line API, clients that go away, wsgiref.validate, ErrorDocument.

mod common;

use common::Apache;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Waits (bounded) until `path` has content; returns it.
fn wait_for_file(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.is_empty() => return text,
            _ => {}
        }
        if Instant::now() > deadline {
            return String::new();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exc_info_replaces_unsent_headers_and_reraises_once_they_are_sent() {
    let app = r#"
import sys
def application(environ, start_response):
    kind = environ["PATH_INFO"]
    if kind == "/before":
        start_response("200 OK", [("X-Doomed", "1")])
        try:
            raise ValueError("failed before the body")
        except ValueError:
            start_response("503 Try Later", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if kind == "/after":
        def body():
            yield b"first part"
            try:
                raise KeyError("failed after the body started")
            except KeyError:
                start_response("500 Error", [], sys.exc_info())
            yield b"never sent"
        start_response("200 OK", [])
        return body()
    if kind == "/twice":
        start_response("200 OK", [])
        try:
            start_response("200 OK", [])
        except Exception as e:
            message = ("%s: %s" % (type(e).__name__, e)).encode()
        return [b"second call refused: " + message]
"#;
    let apache = Apache::start(
        "excinfo",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let r = apache.get("/app/before");
    assert_eq!((r.status, r.text().as_str()), (503, "replaced"));
    assert_eq!(r.header("X-Doomed"), None, "the first headers are dropped");

    let r = apache.get("/app/after");
    assert_eq!(r.status, 200);
    assert!(!r.complete, "the response is visibly truncated");
    assert_eq!(r.text(), "first part");
    let log = apache.wait_for_log("failed after the body started");
    assert!(
        log.contains("KeyError: 'failed after the body started'"),
        "the original exception is re-raised and logged: {log}"
    );

    let r = apache.get("/app/twice");
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .starts_with("second call refused: AssertionError: "),
        "{}",
        r.text()
    );
}

#[test]
fn system_exit_is_a_500_and_the_process_stays() {
    let app = r#"
import os, sys
def application(environ, start_response):
    if environ["PATH_INFO"] == "/exit":
        sys.exit(3)
    start_response("200 OK", [])
    return [str(os.getpid()).encode()]
"#;
    let apache = Apache::start_with(
        "systemexit",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
        common::Options {
            processes: 1,
            ..Default::default()
        },
    );
    let pid = apache.get("/app/pid").text();
    assert_eq!(apache.get("/app/exit").status, 500);
    let log = apache.wait_for_log("SystemExit");
    assert!(log.contains("SystemExit: 3"), "{log}");
    assert_eq!(apache.get("/app/pid").text(), pid, "same process serves on");
}

/// Sends a request with `Expect: 100-continue` and no body; returns the first line the server
/// answers with, then (if it was `100 Continue`) sends `body` and returns the final response.
fn expect_continue(port: u16, path: &str, body: &[u8]) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    if first.contains(" 100 ") {
        let mut blank = String::new();
        reader.read_line(&mut blank).unwrap();
        stream.write_all(body).unwrap();
    }
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    (first.trim_end().to_string(), rest)
}

#[test]
fn read_zero_answers_expect_100_continue() {
    let app = r#"
def application(environ, start_response):
    inp = environ["wsgi.input"]
    if environ["PATH_INFO"] == "/ask":
        assert inp.read(0) == b""
        body = inp.read()
    else:
        body = b"not read"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"got " + body]
"#;
    let apache = Apache::start(
        "continue",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let (first, rest) = expect_continue(apache.port, "/app/ask", b"hello");
    assert_eq!(first, "HTTP/1.1 100 Continue");
    assert!(rest.ends_with("\r\n\r\ngot hello"), "{rest}");
    let (first, rest) = expect_continue(apache.port, "/app/skip", b"hello");
    assert_eq!(
        first, "HTTP/1.1 200 OK",
        "no 100 Continue unless the body is asked for"
    );
    assert!(rest.contains("got not read"), "{rest}");
}

#[test]
fn input_lines_by_readline_readlines_and_iteration() {
    let app = r#"
def application(environ, start_response):
    inp = environ["wsgi.input"]
    kind = environ["PATH_INFO"]
    if kind == "/readline":
        parts = [inp.readline(), inp.readline(3), inp.readline(), inp.readline(), inp.readline()]
    elif kind == "/readlines":
        parts = inp.readlines(5)
        parts.append(b"|")
        parts += inp.readlines()
    elif kind == "/readlines0":
        parts = inp.readlines(0)
        inp.close()
    else:
        parts = [b"<" + line + b">" for line in inp]
    parts.append(b"|" + inp.read() + b"|" + inp.read(10) + b"|")
    start_response("200 OK", [])
    return [b"".join(parts)]
"#;
    let apache = Apache::start(
        "inputlines",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let body = b"one\ntwo-two\nthree\nend";
    let post = |path: &str| apache.request("POST", path, &[], body).text();
    assert_eq!(post("/app/readline"), "one\ntwo-two\nthree\nend|||");
    assert_eq!(post("/app/readlines"), "one\ntwo-two\n|three\nend|||");
    // A hint of 0 (or less) is no limit, as in io; close() exists and does nothing.
    assert_eq!(post("/app/readlines0"), "one\ntwo-two\nthree\nend|||");
    assert_eq!(post("/app/iterate"), "<one\n><two-two\n><three\n><end>|||");
}

/// Streams without end until the client goes; close() leaves the file `closed`.
const ENDLESS: &str = r#"
import os, time
HERE = os.path.dirname(__file__)
class Endless:
    def __iter__(self):
        while True:
            yield b"x" * 65536
            time.sleep(0.01)
    def close(self):
        open(os.path.join(HERE, "closed"), "w").write("closed")
def application(environ, start_response):
    if environ["PATH_INFO"] == "/pid":
        start_response("200 OK", [])
        return [str(os.getpid()).encode()]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Endless()
"#;

/// Reads part of the endless response, then goes; the application's close() is called, the
/// server carries on, and the error log has no error for it: a client that leaves is no error
/// of the application's (C logs it at debug level only).
fn leave_mid_response(apache: &Apache) {
    let pid = apache.get("/app/pid").text();
    {
        let mut stream = TcpStream::connect(("127.0.0.1", apache.port)).unwrap();
        stream
            .write_all(b"GET /app/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut buf = vec![0; 200_000];
        stream.read_exact(&mut buf).unwrap();
        // Dropping the stream closes the connection with the response still streaming.
    }
    assert_eq!(wait_for_file(&apache.path("closed")), "closed");
    assert_eq!(apache.get("/app/pid").text(), pid, "the process carries on");
    std::thread::sleep(Duration::from_millis(300));
    let log = apache.error_log();
    for noise in [
        "Exception occurred",
        "failed to write response data",
        "Failed to proxy response",
        "connection to Apache lost",
    ] {
        assert!(!log.contains(noise), "{noise}:\n{log}");
    }
}

#[test]
fn a_client_that_goes_away_mid_response_still_gets_close_called() {
    let apache = Apache::start_with(
        "disconnect",
        &[("app.wsgi", ENDLESS)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
        common::Options {
            processes: 1,
            ..Default::default()
        },
    );
    leave_mid_response(&apache);
}

#[test]
fn a_client_that_goes_away_mid_response_in_daemon_mode_still_gets_close_called() {
    let apache = Apache::start(
        "disconnect_daemon",
        &[("app.wsgi", ENDLESS)],
        "WSGIDaemonProcess site processes=1 threads=2\n\
         WSGIScriptAlias /app {dir}/app.wsgi process-group=site",
    );
    leave_mid_response(&apache);
}

#[test]
fn validator_wrapped_apps_raise_no_warning() {
    let app = r#"
import wsgiref.validate, warnings
warnings.simplefilter("always")
def inner(environ, start_response):
    inp = environ["wsgi.input"]
    body = inp.read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.errors"].write("validated request\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body) + 2))])
    return [b"ok", body]
application = wsgiref.validate.validator(inner)
"#;
    let apache = Apache::start(
        "validator",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let r = apache.get("/app/x/y?q=1");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = apache.request("POST", "/app", &[("Content-Type", "text/plain")], b"data");
    assert_eq!((r.status, r.text().as_str()), (200, "okdata"));
    let r = apache.request("HEAD", "/app", &[], b"");
    assert_eq!(r.status, 200);
    apache.wait_for_log("validated request");
    // Give an unclosed-iterator warning from the validator's __del__ time to reach the log.
    std::thread::sleep(Duration::from_millis(200));
    let log = apache.error_log();
    for bad in [
        "Warning",
        "AssertionError",
        "Traceback",
        "Exception ignored",
    ] {
        assert!(!log.contains(bad), "{bad}: {log}");
    }
}

#[test]
fn error_document_applies_to_an_exception_before_the_body() {
    let app = r#"
def application(environ, start_response):
    raise RuntimeError("boom")
"#;
    let apache = Apache::start(
        "errordoc",
        &[("app.wsgi", app)],
        "ErrorDocument 500 \"custom failure page\"\nWSGIScriptAlias /app {dir}/app.wsgi",
    );
    let r = apache.get("/app");
    assert_eq!((r.status, r.text().as_str()), (500, "custom failure page"));
}

/// Bytes the process has read through read-like system calls (sendfile counts; mmap does not).
fn bytes_read_by(pid: &str) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/<pid>/io")
}

#[test]
fn file_wrapper_uses_sendfile_only_with_wsgi_enable_sendfile_on() {
    let app = r#"
import os
DATA = os.path.join(os.path.dirname(__file__), "data.bin")
def application(environ, start_response):
    if environ["PATH_INFO"] == "/pid":
        start_response("200 OK", [])
        return [("%d %s" % (os.getpid(), environ["mod_wsgi.enable_sendfile"])).encode()]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(DATA, "rb"))
"#;
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let apache = Apache::start_with(
        "sendfile",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /off {dir}/app.wsgi\nWSGIScriptAlias /on {dir}/app.wsgi\n\
         <Location /on>\nWSGIEnableSendfile On\n</Location>",
        common::Options {
            processes: 1,
            ..Default::default()
        },
    );
    std::fs::write(apache.path("data.bin"), &data).unwrap();
    for (mount, flag, by_sendfile) in [("/off", "0", false), ("/on", "1", true)] {
        let pid_and_flag = apache.get(&format!("{mount}/pid")).text();
        let (pid, seen) = pid_and_flag.split_once(' ').unwrap();
        assert_eq!(
            seen, flag,
            "environ['mod_wsgi.enable_sendfile'] under {mount}"
        );
        let before = bytes_read_by(pid);
        let r = apache.get(&format!("{mount}/file"));
        assert!(
            r.complete && r.body == data,
            "{mount}: the file arrives whole"
        );
        let read = bytes_read_by(pid) - before;
        assert_eq!(
            read >= data.len() as u64,
            by_sendfile,
            "{mount}: {read} bytes read by system calls"
        );
    }
}

#[test]
fn a_body_cut_short_by_the_client_is_an_oserror_in_the_app() {
    let app = r#"
import os
def application(environ, start_response):
    try:
        data = environ["wsgi.input"].read()
        outcome = "read %d bytes" % len(data)
    except OSError as e:
        outcome = "OSError: %s" % e
    with open(os.path.join(os.path.dirname(__file__), "outcome"), "w") as f:
        f.write(outcome)
    start_response("200 OK", [])
    return [b"done"]
"#;
    let apache = Apache::start(
        "cutshort",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    {
        let mut stream = TcpStream::connect(("127.0.0.1", apache.port)).unwrap();
        stream
            .write_all(b"POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly this")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // Dropping the stream closes the connection with most of the body unsent.
    }
    let outcome = wait_for_file(&apache.path("outcome"));
    assert!(
        // C's words (APR's), which people search for.
        outcome.starts_with(
            "OSError: Apache/mod_wsgi request data read error: Partial results \
                             are valid but processing is incomplete"
        ),
        "{outcome}"
    );
}

#[test]
fn the_response_reaches_the_client_before_close_runs_to_completion() {
    // close() holds the request until the client has the whole response: that works only if
    // the response is on the wire before close() returns.
    let app = r#"
import os, time
HERE = os.path.dirname(__file__)
class Body:
    def __iter__(self):
        yield b"complete body"
    def close(self):
        released = os.path.join(HERE, "released")
        deadline = time.time() + 10
        while not os.path.exists(released) and time.time() < deadline:
            time.sleep(0.01)
        with open(os.path.join(HERE, "close-saw"), "w") as f:
            f.write("released" if os.path.exists(released) else "timed out")
def application(environ, start_response):
    start_response("200 OK", [("Content-Length", "13")])
    return Body()
"#;
    let apache = Apache::start(
        "earlyend",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let mut stream = TcpStream::connect(("127.0.0.1", apache.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"complete body") {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    std::fs::write(apache.path("released"), "yes").unwrap();
    assert!(
        got.ends_with(b"complete body"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(wait_for_file(&apache.path("close-saw")), "released");
}

#[test]
fn header_values_go_out_as_latin1_in_both_modes() {
    // PEP 3333: a native string's characters are the bytes, one each, both ways, so a request
    // header echoed back arrives as it was sent.
    let app = "def application(environ, start_response):\n\
               \x20   name = 'r\\xe9sum\\xe9.pdf'\n\
               \x20   start_response('200 OK', [\n\
               \x20       ('Content-Disposition', 'attachment; filename=\"%s\"' % name),\n\
               \x20       ('X-Echo', environ.get('HTTP_X_IN', ''))])\n\
               \x20   return [b'ok']\n";
    let apache = Apache::start(
        "latin1_headers",
        &[("app.wsgi", app)],
        "WSGIDaemonProcess site threads=2\n\
         WSGIScriptAlias /embedded {dir}/app.wsgi application-group=%{GLOBAL}\n\
         WSGIScriptAlias /daemon {dir}/app.wsgi process-group=site application-group=%{GLOBAL}",
    );
    for path in ["/embedded", "/daemon"] {
        // "café" in UTF-8: the environ holds the two bytes of é as two characters.
        let r = apache.request("GET", path, &[("X-In", "caf\u{e9}")], b"");
        assert_eq!(r.status, 200, "{path}: {}", apache.error_log());
        assert_eq!(
            r.header("Content-Disposition"),
            Some("attachment; filename=\"r\u{e9}sum\u{e9}.pdf\""),
            "{path}"
        );
        assert_eq!(r.header("X-Echo"), Some("caf\u{c3}\u{a9}"), "{path}");
    }
}

#[test]
fn a_content_length_beyond_apaches_range_is_a_500_not_a_negative_length() {
    let app = "def application(environ, start_response):\n\
               \x20   start_response('200 OK', [('Content-Length', environ['QUERY_STRING'])])\n\
               \x20   return [b'body']\n";
    let apache = Apache::start(
        "huge_content_length",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    for huge in ["9223372036854775808", "18446744073709551615"] {
        let r = apache.get(&format!("/app?{huge}"));
        assert_eq!(r.status, 500, "{huge}: {:?}", r.headers);
        assert!(
            !r.headers.iter().any(|(_, v)| v.starts_with('-')),
            "{:?}",
            r.headers
        );
    }
    assert!(apache.error_log().contains("is too large"));
    assert_eq!(apache.get("/app?4").status, 200);
}

#[test]
fn threads_of_one_request_take_turns_with_its_objects_in_both_modes() {
    // A thread writing to wsgi.errors releases the GIL inside; the request's own thread must
    // neither deadlock with it nor be refused while it does.
    let app = "import threading\n\
               def application(environ, start_response):\n\
               \x20   err = environ['wsgi.errors']\n\
               \x20   def logger():\n\
               \x20       for i in range(500):\n\
               \x20           err.write('from the thread %d\\n' % i)\n\
               \x20   t = threading.Thread(target=logger)\n\
               \x20   t.start()\n\
               \x20   failures = 0\n\
               \x20   for i in range(500):\n\
               \x20       try:\n\
               \x20           err.write('from the request %d\\n' % i)\n\
               \x20           start_response('200 OK', [], (None, None, None))\n\
               \x20       except RuntimeError:\n\
               \x20           failures += 1\n\
               \x20   t.join()\n\
               \x20   return [b'failures: %d' % failures]\n";
    let apache = Apache::start(
        "threads_take_turns",
        &[("app.wsgi", app)],
        "WSGIDaemonProcess site threads=2\n\
         WSGIScriptAlias /embedded {dir}/app.wsgi\n\
         WSGIScriptAlias /daemon {dir}/app.wsgi process-group=site",
    );
    for path in ["/embedded", "/daemon"] {
        let r = apache.get(path);
        assert_eq!(r.status, 200, "{path}: {}", apache.error_log());
        assert_eq!(r.text(), "failures: 0", "{path}");
    }
    let log = apache.error_log();
    assert_eq!(log.matches("from the thread 499").count(), 2, "{log}");
}

#[test]
fn a_thread_still_reading_the_body_when_the_application_returns_does_not_hang_the_process() {
    // The request waits (without the GIL) for the thread's read, which ends when the client
    // sends the body; the process goes on serving.
    let app = "import threading, time\n\
               def application(environ, start_response):\n\
               \x20   if environ['REQUEST_METHOD'] == 'GET':\n\
               \x20       start_response('200 OK', [])\n\
               \x20       return [b'alive']\n\
               \x20   inp = environ['wsgi.input']\n\
               \x20   threading.Thread(target=inp.read, daemon=True).start()\n\
               \x20   time.sleep(0.2)\n\
               \x20   start_response('200 OK', [])\n\
               \x20   return [b'ok']\n";
    let apache = Apache::start(
        "thread_reading_body",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let mut s = TcpStream::connect(("127.0.0.1", apache.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(
        b"POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    s.write_all(b"0123456789").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        apache.error_log()
    );
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    assert_eq!(apache.get("/app").text(), "alive");
}

#[test]
fn after_a_failed_body_read_later_reads_fail_at_once() {
    // As in C: a body that timed out is not waited for again by each later read.
    let app = "import time\n\
               def application(environ, start_response):\n\
               \x20   inp = environ['wsgi.input']\n\
               \x20   try:\n\
               \x20       inp.read(10)\n\
               \x20   except OSError:\n\
               \x20       pass\n\
               \x20   start = time.monotonic()\n\
               \x20   messages = []\n\
               \x20   for _ in range(3):\n\
               \x20       try:\n\
               \x20           inp.read(10)\n\
               \x20       except OSError as e:\n\
               \x20           messages.append(str(e))\n\
               \x20   start_response('200 OK', [])\n\
               \x20   return [('%.2f %s' % (time.monotonic() - start, messages[-1])).encode()]\n";
    let apache = Apache::start(
        "failed_read_sticks",
        &[("app.wsgi", app)],
        "Timeout 1\nWSGIScriptAlias /app {dir}/app.wsgi",
    );
    let mut s = TcpStream::connect(("127.0.0.1", apache.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"POST /app HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let seconds: f64 = body
        .lines()
        .find_map(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or(99.0);
    assert!(seconds < 0.5, "later reads took {seconds} s: {answer}");
    assert!(
        answer.contains("Input is already in error state"),
        "{answer}"
    );
}

#[test]
fn head_and_not_modified_answers_may_declare_a_length_they_do_not_send() {
    let apache = Apache::start(
        "bodyless",
        &[("app.wsgi", common::apps::BODYLESS_ANSWERS)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    common::apps::assert_bodyless_answers_pass(&apache, "/app");
}

#[test]
fn range_requests_for_file_wrapper_responses_get_206() {
    let apache = Apache::start(
        "file_ranges",
        &[("file.wsgi", common::apps::FILE_RESPONSE)],
        "WSGIScriptAlias /file {dir}/file.wsgi",
    );
    common::apps::assert_file_ranges_are_served(&apache, "/file");
}

#[test]
fn a_file_wrapper_response_shorter_than_its_content_length_is_truncated_not_a_502() {
    let apache = Apache::start(
        "short_file",
        &[("file.wsgi", common::apps::SHORT_FILE)],
        "WSGIScriptAlias /file {dir}/file.wsgi",
    );
    common::apps::assert_short_file_is_truncated(&apache, "/file");
}

#[test]
fn the_traceback_of_a_failing_iterable_comes_before_what_its_close_logs() {
    // As in C: the error is logged when it happens, then close() runs.
    let app = r#"
import sys
class Body:
    def __iter__(self):
        raise RuntimeError("iteration failed")
    def close(self):
        print("close() ran", file=sys.stderr)
def application(environ, start_response):
    start_response("200 OK", [])
    return Body()
"#;
    let apache = Apache::start(
        "iter_then_close",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    assert_eq!(apache.get("/app").status, 500);
    let log = apache.wait_for_log("close() ran");
    let traceback = log.find("RuntimeError: iteration failed");
    let closed = log.find("close() ran");
    assert!(
        traceback.is_some() && traceback < closed,
        "the traceback must come first:\n{log}"
    );
}

#[test]
fn a_client_too_slow_to_send_its_body_gets_408_not_500() {
    // The application's read times out (`Timeout`) and the OSError escapes it. C answers 500 in
    // embedded mode (408 in daemon mode); a slow client is not a server error.
    let apache = Apache::start(
        "slow_body_408",
        &[("app.wsgi", common::apps::UNGUARDED_READER)],
        "Timeout 1\nWSGIScriptAlias /app {dir}/app.wsgi",
    );
    let answer = common::stalled_upload(apache.port, "/app", 10, b"abc");
    let log = apache.wait_for_log("OSError");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}\n{log}");
    assert!(
        log.contains(
            "OSError: Apache/mod_wsgi request data read error: The timeout specified has expired \
             (the client sent nothing more of the body in the time allowed: Apache's Timeout, or \
             mod_reqtimeout's RequestReadTimeout)."
        ),
        "{log}"
    );
}

#[test]
fn iteration_stops_once_the_declared_content_length_is_sent() {
    // PEP 3333: the server "should stop iterating over the response when enough data has been
    // sent"; close() still runs. An endless generator would otherwise keep the thread for ever.
    let app = "import os\n\
               MARK = os.path.join(os.path.dirname(__file__), 'yields')\n\
               def application(environ, start_response):\n\
               \x20   start_response('200 OK', [('Content-Length', '10')])\n\
               \x20   def body():\n\
               \x20       n = 0\n\
               \x20       try:\n\
               \x20           while True:\n\
               \x20               n += 1\n\
               \x20               yield b'abcd'\n\
               \x20       finally:\n\
               \x20           with open(MARK, 'w') as f:\n\
               \x20               f.write(str(n))\n\
               \x20   return body()\n";
    let apache = Apache::start(
        "stop_at_content_length",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let r = apache.get("/app");
    assert_eq!((r.status, r.complete), (200, true));
    assert_eq!(r.text(), "abcdabcdab");
    assert_eq!(wait_for_file(&apache.path("yields")), "3");
}

/// The environ's names, and the values that repeat, are the same `str` objects from one
/// request to the next (kept per interpreter instead of decoded again); values that change are
/// the new ones, and a user's own headers (cookies, credentials) are never kept.
#[test]
fn environ_strings_are_reused_across_requests_and_follow_each_request() {
    let app = r#"
last = {}
def application(environ, start_response):
    global last
    renewed = sorted(k for k in environ if k in last and last[k][0] is not k)
    same = lambda k: k in last and last[k][1] is environ[k]
    body = repr((renewed, same('SERVER_NAME'), same('HTTP_COOKIE'),
                 environ.get('HTTP_X_A'), environ.get('HTTP_X_B'), environ['QUERY_STRING']))
    last = {k: (k, v) for k, v in environ.items()}
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [body.encode('latin-1')]
"#;
    let apache = Apache::start(
        "environ_strings",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let cookie = ("Cookie", "session=s3cret");
    let long = "v".repeat(300);
    let ask = |query: &str, headers: &[(&str, &str)]| {
        let r = apache.request("GET", &format!("/app?{query}"), headers, b"");
        assert_eq!(r.status, 200, "{}", apache.error_log());
        String::from_utf8_lossy(&r.body).into_owned()
    };
    ask("q=0", &[cookie, ("X-A", "one")]);
    assert_eq!(
        ask("q=1", &[cookie, ("X-A", "one")]),
        "([], True, False, 'one', None, 'q=1')"
    );
    // X-B where X-A was: every name is still the same object, the values are this request's.
    assert_eq!(
        ask("q=2", &[cookie, ("X-B", "two")]),
        "([], True, False, None, 'two', 'q=2')"
    );
    assert_eq!(
        ask("q=3", &[cookie, ("X-A", &long)]),
        format!("([], True, False, '{long}', None, 'q=3')")
    );
    // Sent as UTF-8, decoded as Latin-1 in the environ, and encoded back by the app.
    assert_eq!(
        ask("q=4", &[cookie, ("X-A", "\u{e9}t\u{e9}")]),
        "([], True, False, '\u{e9}t\u{e9}', None, 'q=4')"
    );
}

/// A list subclass is iterated as its own `__iter__` says, as C does (only exact lists and
/// tuples are indexed directly).
#[test]
fn a_list_subclass_is_iterated_with_its_own_iter() {
    let app = r#"
class Upper(list):
    def __iter__(self):
        return iter([item.upper() for item in list.__iter__(self)])
def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return Upper([b'ab', b'cd'])
"#;
    let apache = Apache::start(
        "list_subclass",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let r = apache.get("/app");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "ABCD"),
        "{}",
        apache.error_log()
    );
}

/// An item another thread appends to the returned list while its last item is being written
/// (the GIL released) comes after the end of the response: the response is complete as it was,
/// and nothing is logged.
#[test]
fn a_list_grown_while_its_last_item_is_written_ends_with_that_item() {
    let app = r#"
import os, threading, time
def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    body = [b'a' * 10, b'x' * 30000000]
    def grow():
        while not os.path.exists('{dir}/go'):
            time.sleep(0.01)
        body.append(b'EXTRA')
        open('{dir}/appended', 'w').close()
    threading.Thread(target=grow, daemon=True).start()
    return body
"#;
    let apache = Apache::start(
        "list_grown",
        &[("app.wsgi", app)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let mut s = TcpStream::connect(("127.0.0.1", apache.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // A first MiB: the last item's write is under way, and blocks on this client.
    let mut got = vec![0u8; 1 << 20];
    s.read_exact(&mut got).unwrap();
    std::fs::write(apache.path("go"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !apache.path("appended").exists() {
        assert!(Instant::now() < deadline, "the app's thread did not append");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.read_to_end(&mut got).unwrap();
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // Chunked (a list of two items): complete, with its last chunk, and nothing appended.
    let mut rest = &got[head_end..];
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size");
        let size = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    assert_eq!(body.len(), 30_000_010);
    assert!(body.ends_with(b"xxx"));
    let log = apache.error_log();
    assert!(!log.contains("Exception occurred"), "{log}");
}
