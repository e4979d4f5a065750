//! Daemon mode's CGI-style internal redirect: a daemon response with status 200 and a
//! `Location` that starts with '/' is not sent; the Apache child drops its body and serves that
//! local URL instead, as a GET (as mod_cgi does, and C mod_wsgi in daemon mode). Other statuses,
//! absolute URLs and embedded mode pass the response through unchanged.

mod common;

use common::Apache;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Answers with the status and Location its query string names (`status=302&location=/x`);
/// reads the request body first, as an application handling a form post would, unless told
/// not to (`unread=1`).
const SOURCE_APP: &str = r#"
import urllib.parse
def application(environ, start_response):
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    status = query.get("status", ["200 OK"])[0]
    location = query["location"][0]
    received = b"" if "unread" in query else environ["wsgi.input"].read()
    body = ("source body (%d bytes received)" % len(received)).encode()
    start_response(status, [("Content-Type", "text/x-source"),
                            ("Content-Length", str(len(body))),
                            ("X-Source", "yes"),
                            ("Location", location)])
    return [body]
"#;

/// Reports how the redirected request reached it.
const TARGET_APP: &str = r#"
import mod_wsgi
def application(environ, start_response):
    body = environ["wsgi.input"].read()
    lines = ["method=%s" % environ["REQUEST_METHOD"],
             "query=%s" % environ.get("QUERY_STRING", ""),
             "redirect_url=%s" % environ.get("REDIRECT_URL", "-"),
             "redirect_status=%s" % environ.get("REDIRECT_STATUS", "-"),
             "content_length=%s" % environ.get("CONTENT_LENGTH", "-"),
             "body=%r" % body,
             "group=%s" % mod_wsgi.process_group]
    out = ("\n".join(lines) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Target", "yes")])
    return [out]
"#;

fn start() -> Apache {
    Apache::start(
        "daemon_redirect",
        &[
            ("source.wsgi", SOURCE_APP),
            ("target.wsgi", TARGET_APP),
            ("static/page.txt", "a static page\n"),
        ],
        "WSGIDaemonProcess site threads=2\n\
         WSGIScriptAlias /source {dir}/source.wsgi process-group=site\n\
         WSGIScriptAlias /embedded {dir}/source.wsgi\n\
         WSGIScriptAlias /target {dir}/target.wsgi process-group=site\n\
         Alias /static {dir}/static",
    )
}

#[test]
fn status_200_with_a_local_location_is_served_as_that_url() {
    let apache = start();
    let log = || apache.error_log();

    // Another WSGI application, with the query string of the Location.
    let r = apache.get("/source?location=/target%3Fa%3D1");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), log());
    let text = r.text();
    assert!(text.contains("method=GET\n"), "{text}");
    assert!(text.contains("query=a=1\n"), "{text}");
    assert!(text.contains("redirect_url=/source\n"), "{text}");
    assert!(text.contains("group=site\n"), "{text}");
    assert!(!text.contains("source body"), "{text}");
    // The source's headers went with its body; the target's are sent.
    assert_eq!(r.header("X-Source"), None);
    assert_eq!(r.header("Location"), None);
    assert_eq!(r.header("X-Target"), Some("yes"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));

    // A POST is redirected as a GET without its body (which the source application read).
    let r = apache.request(
        "POST",
        "/source?location=/target",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"field=value",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), log());
    let text = r.text();
    assert!(text.contains("method=GET\n"), "{text}");
    assert!(text.contains("content_length=-\n"), "{text}");
    assert!(text.contains("body=b''\n"), "{text}");

    // A body the application left unread is not the redirected request's either.
    let r = apache.request(
        "POST",
        "/source?location=/target&unread=1",
        &[],
        b"field=value",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), log());
    assert!(r.text().contains("body=b''\n"), "{}", r.text());

    // A static file, with the type Apache gives it.
    let r = apache.get("/source?status=200+Fine&location=/static/page.txt");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "a static page\n"),
        "{}",
        log()
    );
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("X-Source"), None);
}

#[test]
fn other_statuses_absolute_urls_and_embedded_mode_pass_through() {
    let apache = start();
    let source_body = "source body (0 bytes received)";
    for (path, status, location) in [
        ("/source?status=302+Found&location=/x", 302, "/x"),
        (
            "/source?status=201+Created&location=/target",
            201,
            "/target",
        ),
        (
            "/source?location=http://127.0.0.1/target",
            200,
            "http://127.0.0.1/target",
        ),
        ("/embedded?location=/target", 200, "/target"),
    ] {
        let r = apache.get(path);
        assert_eq!(
            r.status,
            status,
            "{path}: {}\n{}",
            r.text(),
            apache.error_log()
        );
        assert_eq!(r.text(), source_body, "{path}");
        assert_eq!(r.header("Location"), Some(location), "{path}");
        assert_eq!(r.header("X-Source"), Some("yes"), "{path}");
        assert_eq!(r.header("X-Target"), None, "{path}");
    }
}

#[test]
fn an_unread_body_does_not_become_the_next_request_on_the_connection() {
    let apache = start();
    let mut stream = TcpStream::connect(("127.0.0.1", apache.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let host = format!("127.0.0.1:{}", apache.port);
    let body = "x".repeat(3000);
    // Two requests at once on a kept-alive connection; the first one's body is never read by
    // its application.
    let requests = format!(
        "POST /source?location=/target&unread=1 HTTP/1.1\r\nHost: {host}\r\n\
         Content-Length: {}\r\n\r\n{body}\
         GET /static/page.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(requests.as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    assert_eq!(
        out.matches("HTTP/1.1 200 OK\r\n").count(),
        2,
        "{out}\n{}",
        apache.error_log()
    );
    assert!(out.contains("method=GET\n"), "{out}");
    assert!(out.ends_with("a static page\n"), "{out}");
}
