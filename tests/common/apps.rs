//! WSGI applications the integration tests serve, as source text.
#![allow(dead_code)]

/// Echoes what the tests look at, as `key=value` lines.
pub const ENVIRON: &str = r#"
import sys
def application(environ, start_response):
    keys = sorted(k for k in environ if isinstance(environ[k], str))
    lines = ["%s=%s" % (k, environ[k]) for k in keys]
    lines.append("wsgi.version=%r" % (environ["wsgi.version"],))
    lines.append("wsgi.multithread=%r" % environ["wsgi.multithread"])
    lines.append("wsgi.multiprocess=%r" % environ["wsgi.multiprocess"])
    lines.append("wsgi.run_once=%r" % environ["wsgi.run_once"])
    lines.append("wsgi.input_terminated=%r" % environ["wsgi.input_terminated"])
    lines.append("types=%s" % ",".join(sorted({type(v).__name__ for k, v in environ.items() if "." not in k})))
    lines.append("python=%d.%d" % sys.version_info[:2])
    lines.append("prefix=%s" % sys.prefix)
    body = ("\n".join(lines) + "\n").encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain; charset=latin-1"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// Parses the ENVIRON app's output into (key, value) pairs.
pub fn parse_environ(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

pub fn environ_value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Answers as Werkzeug (Flask) does: the same headers for HEAD as for GET, Content-Length
/// included, and no body for HEAD; `/304` is a Not Modified that keeps its Content-Length.
pub const BODYLESS_ANSWERS: &str = r#"
def application(environ, start_response):
    body = b"hello world\n"
    if environ["PATH_INFO"] == "/304":
        start_response("304 Not Modified", [("Content-Length", str(len(body)))])
        return []
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
"#;

/// HEAD and 304 answers of [`BODYLESS_ANSWERS`] (mounted at `mount`) go out as the application
/// gave them, with no error logged: a Content-Length there describes a body not sent.
pub fn assert_bodyless_answers_pass(apache: &super::Apache, mount: &str) {
    let r = apache.request("HEAD", mount, &[], b"");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    assert_eq!(r.header("Content-Length"), Some("12"), "{:?}", r.headers);
    let r = apache.request("GET", &format!("{mount}/304"), &[], b"");
    assert_eq!(r.status, 304, "{}", apache.error_log());
    let r = apache.get(mount);
    assert_eq!((r.status, r.text()), (200, "hello world\n".to_string()));
    let log = apache.error_log();
    assert!(!log.contains("Truncated response"), "{log}");
}

/// Sends `data.bin` beside the script with `wsgi.file_wrapper`, Content-Length declared, as
/// Django's FileResponse does (it leaves Range requests to the server).
pub const FILE_RESPONSE: &str = r#"
import os
def application(environ, start_response):
    path = os.path.join(os.path.dirname(environ["SCRIPT_FILENAME"]), "data.bin")
    f = open(path, "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(os.fstat(f.fileno()).st_size))])
    return environ["wsgi.file_wrapper"](f, 65536)
"#;

/// A Range request for part of [`FILE_RESPONSE`] (mounted at `mount`) gets that part (206), as
/// Apache serves its own files; without Range, the whole file.
pub fn assert_file_ranges_are_served(apache: &super::Apache, mount: &str) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(apache.path("data.bin"), &data).unwrap();
    let r = apache.request("GET", mount, &[("Range", "bytes=1000-1009")], b"");
    assert_eq!(r.status, 206, "{:?}\n{}", r.headers, apache.error_log());
    assert_eq!(r.header("Content-Range"), Some("bytes 1000-1009/300000"));
    assert_eq!(r.body, &data[1000..1010]);
    let r = apache.get(mount);
    assert_eq!(r.status, 200);
    assert!(r.body == data, "the whole file");
}

/// Reads the whole body without handling errors, answering with how much it read.
pub const UNGUARDED_READER: &str = "def application(environ, start_response):\n\
                                    \x20   data = environ['wsgi.input'].read()\n\
                                    \x20   start_response('200 OK', [])\n\
                                    \x20   return [b'%d' % len(data)]\n";

/// A `wsgi.file_wrapper` response whose Content-Length promises more than the file has (a file
/// that shrank after its size was read).
pub const SHORT_FILE: &str = r#"
import os
def application(environ, start_response):
    path = os.path.join(os.path.dirname(environ["SCRIPT_FILENAME"]), "short.bin")
    f = open(path, "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", "2000")])
    return environ["wsgi.file_wrapper"](f, 65536)
"#;

/// [`SHORT_FILE`] (mounted at `mount`) sends the head and the 1000 bytes the file has, then
/// closes the connection: a truncated response, as any other short one, not Apache's 502 page.
pub fn assert_short_file_is_truncated(apache: &super::Apache, mount: &str) {
    std::fs::write(apache.path("short.bin"), vec![b'f'; 1000]).unwrap();
    let r = apache.get(mount);
    assert_eq!(r.status, 200, "{:?}\n{}", r.headers, apache.error_log());
    assert_eq!(r.header("Content-Length"), Some("2000"));
    assert_eq!(r.body, vec![b'f'; 1000]);
    assert!(!r.complete, "a short response must not look complete");
    let log = apache.wait_for_log("Truncated response");
    assert!(
        log.contains("Content-Length was 2000 but only 1000 bytes were returned."),
        "{log}"
    );
}

/// Answers with its request id, or for `/redirected`, with what an internal redirect passed on
/// of the request it replaces (`REDIRECT_mod_wsgi.script_name`); `/fail` raises.
pub const MODULE_VARS_APP: &str = r#"
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/fail":
        raise RuntimeError("fails, for ErrorDocument")
    if path == "/redirected":
        body = environ.get("REDIRECT_mod_wsgi.script_name", "-")
    else:
        body = environ["mod_wsgi.request_id"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"#;

/// The access-log format of [`assert_module_vars_reach_the_access_log`].
pub const MODULE_VARS_LOG: &str = "LogFormat \"%U pg=%{mod_wsgi.process_group}e \
     ag=%{mod_wsgi.application_group}e id=%{mod_wsgi.request_id}e \
     qs=%{mod_wsgi.queue_start}e sn=%{mod_wsgi.script_name}e\" wsgivars\n\
     CustomLog \"{dir}/access.log\" wsgivars\n\
     ErrorDocument 500 /app/redirected";

/// The `mod_wsgi.*` variables are in Apache's environment of the request, as C puts them there:
/// the access log shows them (with [`MODULE_VARS_LOG`], [`MODULE_VARS_APP`] at /app), and an
/// ErrorDocument's request sees them as `REDIRECT_mod_wsgi.*`. `group` is the process group
/// ('' in embedded mode), which also decides whether `queue_start` is there.
pub fn assert_module_vars_reach_the_access_log(apache: &super::Apache, group: &str) {
    let r = apache.get("/app/id");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    let id = r.text();
    let r = apache.get("/app/fail");
    // The ErrorDocument page is the application's own answer, status and all (as in C).
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "/app"),
        "{}",
        apache.error_log()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(apache.path("access.log")).unwrap_or_default();
        if log.lines().count() >= 2 || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let line = log
        .lines()
        .find(|l| l.starts_with("/app/id "))
        .unwrap_or_else(|| panic!("no line for /app/id in\n{log}"));
    let expected = format!(
        "/app/id pg={group} ag=127.0.0.1:{}|/app id={id} ",
        apache.port
    );
    assert!(line.starts_with(&expected), "{line}\nnot {expected}");
    assert!(line.ends_with(" sn=/app"), "{line}");
    let queue_start = line
        .split(" qs=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    if group.is_empty() {
        assert_eq!(queue_start, "-", "{line}");
    } else {
        assert!(queue_start.parse::<u64>().is_ok(), "{line}");
    }
}
