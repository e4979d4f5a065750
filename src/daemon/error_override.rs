//! `WSGIErrorOverride On` in the Apache child: a daemon response with an error status (4xx/5xx)
//! is not passed on; its body is read and dropped, and the handler returns the status so that
//! Apache answers with its own error page or `ErrorDocument`, as C mod_wsgi does.
//!
//! The response head is still given to Apache (then the handler puts the status back to 200, as
//! C does), because Apache's error response keeps the headers a handler put in
//! `err_headers_out`: an application's `WWW-Authenticate` survives its 401, while its other
//! headers and body give way to Apache's.

use crate::buf::UninitBuf;
use crate::wsgi::{Level, PieceTaker, Pulled, RequestIo, ResponseHead};

/// The child's `RequestIo`, with error responses held back when the option is on.
pub struct ErrorOverride<'a> {
    inner: &'a mut dyn RequestIo,
    enabled: bool,
    /// The error status held back, once the head showed one.
    overridden: Option<u16>,
}

impl<'a> ErrorOverride<'a> {
    pub fn new(inner: &'a mut dyn RequestIo, enabled: bool) -> ErrorOverride<'a> {
        ErrorOverride {
            inner,
            enabled,
            overridden: None,
        }
    }

    /// The status to hand to Apache's error handling, if the response was held back.
    pub fn overridden(&self) -> Option<u16> {
        self.overridden
    }
}

/// Apache's `ap_is_HTTP_ERROR`.
fn is_error(status: u16) -> bool {
    (400..600).contains(&status)
}

impl RequestIo for ErrorOverride<'_> {
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

    fn client_gone(&self) -> bool {
        self.inner.client_gone()
    }

    fn send_headers(&mut self, head: &ResponseHead) -> Result<(), String> {
        if self.enabled && is_error(head.status) {
            self.overridden = Some(head.status);
        }
        self.inner.send_headers(head)
    }

    fn write_body(&mut self, data: &[u8], flush: bool) -> Result<(), String> {
        match self.overridden {
            // Drained, so the application finishes normally (as C reads it to the end).
            Some(_) => Ok(()),
            None => self.inner.write_body(data, flush),
        }
    }

    fn send_file(&mut self, fd: i32, offset: u64, len: u64) -> Result<(), String> {
        match self.overridden {
            Some(_) => Ok(()),
            None => self.inner.send_file(fd, offset, len),
        }
    }

    fn end_response(&mut self) -> Result<(), String> {
        match self.overridden {
            // Apache's error response is the one that ends the request.
            Some(_) => Ok(()),
            None => self.inner.end_response(),
        }
    }

    fn abort_response(&mut self) {
        // Nothing of a held-back response reached the client: Apache's error page still can.
        if self.overridden.is_none() {
            self.inner.abort_response()
        }
    }

    fn set_send_timeout(&mut self, timeout: std::time::Duration) {
        self.inner.set_send_timeout(timeout);
    }

    fn log(&mut self, level: Level, msg: &str) {
        self.inner.log(level, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        fn set_send_timeout(&mut self, _timeout: std::time::Duration) {
            unreachable!("not called by ErrorOverride on its own")
        }
        fn abort_response(&mut self) {
            self.events.push("abort".into());
        }
        fn log(&mut self, _level: Level, msg: &str) {
            self.events.push(format!("log {msg}"));
        }
    }

    fn head(status: u16) -> ResponseHead {
        ResponseHead {
            status,
            status_line: format!("{status} Whatever"),
            headers: vec![],
            content_length: None,
        }
    }

    /// Plays one response through the wrapper; returns what Apache saw and the held status.
    fn play(enabled: bool, status: u16) -> (Vec<String>, Option<u16>) {
        let mut rec = Recorder::default();
        let mut io = ErrorOverride::new(&mut rec, enabled);
        io.read_body(&mut [0; 4]).unwrap();
        io.send_headers(&head(status)).unwrap();
        io.write_body(b"app page", false).unwrap();
        io.send_file(3, 0, 10).unwrap();
        io.log(Level::Info, "hello");
        io.end_response().unwrap();
        io.abort_response();
        let held = io.overridden();
        (rec.events, held)
    }

    #[test]
    fn error_statuses_are_held_back_and_their_body_dropped() {
        for status in [400, 401, 404, 500, 503, 599] {
            let (events, held) = play(true, status);
            assert_eq!(held, Some(status));
            assert_eq!(
                events,
                ["read", &format!("headers {status}"), "log hello"],
                "{status}"
            );
        }
    }

    #[test]
    fn other_statuses_and_the_option_off_pass_through() {
        for (enabled, status) in [(true, 200), (true, 302), (true, 304), (false, 404)] {
            let (events, held) = play(enabled, status);
            assert_eq!(held, None);
            assert_eq!(
                events,
                [
                    "read".to_string(),
                    format!("headers {status}"),
                    "body app page".into(),
                    "file 10".into(),
                    "log hello".into(),
                    "end".into(),
                    "abort".into()
                ],
                "{enabled} {status}"
            );
        }
    }
}
