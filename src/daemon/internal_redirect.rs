//! The CGI-style internal redirect of daemon mode, in the Apache child: a daemon response with
//! status 200 and a `Location` that starts with '/' is not sent to the client. Its body is read
//! and dropped, and the handler then has Apache serve that local URL instead (as a GET), as
//! mod_cgi does for CGI scripts and C mod_wsgi does in daemon mode (not in embedded mode).
//!
//! The head still reaches Apache's `request_rec` (as in C), so the redirect starts from the
//! same request state: Apache carries the response's content type and `err_headers_out`
//! (`WWW-Authenticate`) into the redirected request, and nothing else of it.

use crate::buf::UninitBuf;
use crate::wsgi::{Level, PieceTaker, Pulled, RequestIo, ResponseHead};

/// The local URL a daemon response asks Apache to serve in its place, if it does.
///
/// Only the status code counts (any reason phrase). With several `Location` headers the last
/// is the one, as C keeps only the last; leading white space is not part of it (C strips it).
pub fn local_location(head: &ResponseHead) -> Option<&str> {
    if head.status != 200 {
        return None;
    }
    let location = head
        .headers
        .iter()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case("location"))?
        .1
        .trim_start_matches(|c: char| c.is_ascii_whitespace());
    location.starts_with('/').then_some(location)
}

/// The child's `RequestIo`, with a response that redirects internally held back.
pub struct InternalRedirect<'a> {
    inner: &'a mut dyn RequestIo,
    /// The URL to serve instead, once the head asked for one.
    location: Option<String>,
}

impl<'a> InternalRedirect<'a> {
    pub fn new(inner: &'a mut dyn RequestIo) -> InternalRedirect<'a> {
        InternalRedirect {
            inner,
            location: None,
        }
    }

    /// The local URL Apache is to serve in place of the response, if the head asked for one.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    fn held(&self) -> bool {
        self.location.is_some()
    }
}

impl RequestIo for InternalRedirect<'_> {
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        self.inner.read_body(buf)
    }

    fn read_body_into(&mut self, dest: &mut UninitBuf<'_>) -> Result<usize, String> {
        self.inner.read_body_into(dest)
    }

    fn pull_body(
        &mut self,
        max: usize,
        chunk: usize,
        take: &mut PieceTaker<'_>,
    ) -> Result<Pulled, String> {
        self.inner.pull_body(max, chunk, take)
    }

    fn expect_continue(&mut self) {
        self.inner.expect_continue()
    }

    fn send_headers(&mut self, head: &ResponseHead) -> Result<(), String> {
        self.location = local_location(head).map(str::to_string);
        self.inner.send_headers(head)
    }

    fn write_body(&mut self, data: &[u8], flush: bool) -> Result<(), String> {
        if self.held() {
            // Drained, so the application finishes normally (C reads it to the end too).
            return Ok(());
        }
        self.inner.write_body(data, flush)
    }

    fn send_file(&mut self, fd: i32, offset: u64, len: u64) -> Result<(), String> {
        if self.held() {
            return Ok(());
        }
        self.inner.send_file(fd, offset, len)
    }

    fn end_response(&mut self) -> Result<(), String> {
        if self.held() {
            // The redirected request's response is the one that ends it.
            return Ok(());
        }
        self.inner.end_response()
    }

    fn client_gone(&self) -> bool {
        self.inner.client_gone()
    }

    fn abort_response(&mut self) {
        // A body cut short is dropped all the same: as in C, the redirect still happens.
        if !self.held() {
            self.inner.abort_response()
        }
    }

    fn set_send_timeout(&mut self, timeout: std::time::Duration) {
        // response-socket-timeout is for sending this response, which is not sent.
        if !self.held() {
            self.inner.set_send_timeout(timeout);
        }
    }

    fn log(&mut self, level: Level, msg: &str) {
        self.inner.log(level, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status_line: &str, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status: status_line[..3].parse().unwrap(),
            status_line: status_line.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_length: None,
        }
    }

    /// Status line, headers, and the redirect expected.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

    #[test]
    fn only_status_200_with_a_local_location_redirects() {
        let cases: &[Case] = &[
            ("200 OK", &[("Location", "/other")], Some("/other")),
            ("200 Whatever", &[("location", "/a?b=c")], Some("/a?b=c")),
            ("200 OK", &[("LOCATION", "  /spaced")], Some("/spaced")),
            (
                "200 OK",
                &[("Location", "http://x/"), ("Location", "/last")],
                Some("/last"),
            ),
            (
                "200 OK",
                &[("Location", "/first"), ("Location", "http://x/")],
                None,
            ),
            ("200 OK", &[("Location", "http://example.com/x")], None),
            ("200 OK", &[("Location", "other")], None),
            ("200 OK", &[("Location", "")], None),
            ("200 OK", &[("Content-Location", "/x")], None),
            ("200 OK", &[], None),
            ("201 Created", &[("Location", "/x")], None),
            ("302 Found", &[("Location", "/x")], None),
            ("404 Not Found", &[("Location", "/x")], None),
        ];
        for (status, headers, expected) in cases {
            assert_eq!(
                local_location(&head(status, headers)),
                *expected,
                "{status} {headers:?}"
            );
        }
    }

    #[derive(Default)]
    struct Recorder {
        events: Vec<String>,
    }

    impl RequestIo for Recorder {
        fn read_body(&mut self, _buf: &mut [u8]) -> Result<usize, String> {
            self.events.push("read".into());
            Ok(0)
        }
        fn expect_continue(&mut self) {
            self.events.push("continue".into());
        }
        fn send_headers(&mut self, head: &ResponseHead) -> Result<(), String> {
            self.events.push(format!("headers {}", head.status));
            Ok(())
        }
        fn write_body(&mut self, data: &[u8], _flush: bool) -> Result<(), String> {
            self.events
                .push(format!("body {}", String::from_utf8_lossy(data)));
            Ok(())
        }
        fn send_file(&mut self, _fd: i32, _offset: u64, len: u64) -> Result<(), String> {
            self.events.push(format!("file {len}"));
            Ok(())
        }
        fn end_response(&mut self) -> Result<(), String> {
            self.events.push("end".into());
            Ok(())
        }
        fn set_send_timeout(&mut self, timeout: std::time::Duration) {
            self.events.push(format!("timeout {}", timeout.as_secs()));
        }
        fn abort_response(&mut self) {
            self.events.push("abort".into());
        }
        fn log(&mut self, _level: Level, msg: &str) {
            self.events.push(format!("log {msg}"));
        }
    }

    /// Plays one response through the wrapper; returns what Apache saw and the location held.
    fn play(head: &ResponseHead) -> (Vec<String>, Option<String>) {
        let mut rec = Recorder::default();
        let mut io = InternalRedirect::new(&mut rec);
        io.read_body(&mut [0; 4]).unwrap();
        io.send_headers(head).unwrap();
        io.set_send_timeout(std::time::Duration::from_secs(7));
        io.write_body(b"app page", false).unwrap();
        io.send_file(3, 0, 10).unwrap();
        io.log(Level::Info, "hello");
        io.end_response().unwrap();
        io.abort_response();
        let location = io.location().map(str::to_string);
        (rec.events, location)
    }

    #[test]
    fn a_redirecting_response_reaches_apache_as_its_head_only() {
        let (events, location) = play(&head("200 OK", &[("Location", "/other")]));
        assert_eq!(location.as_deref(), Some("/other"));
        assert_eq!(events, ["read", "headers 200", "log hello"]);
    }

    #[test]
    fn other_responses_pass_through() {
        for h in [
            head("302 Found", &[("Location", "/other")]),
            head("200 OK", &[("Location", "https://example.com/")]),
            head("200 OK", &[]),
        ] {
            let (events, location) = play(&h);
            assert_eq!(location, None);
            assert_eq!(
                events,
                [
                    "read",
                    &format!("headers {}", h.status),
                    "timeout 7",
                    "body app page",
                    "file 10",
                    "log hello",
                    "end",
                    "abort"
                ],
                "{}",
                h.status_line
            );
        }
    }
}
