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
