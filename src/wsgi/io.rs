//! What the adapter needs from the server for one request. The Apache layer implements it; the
//! daemon-mode transport will too. Every method may block and is called with the GIL released.

use crate::buf::UninitBuf;

/// Severity of a log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

/// Status and headers as the application gave them, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub content_length: Option<u64>,
}

/// What [`RequestIo::pull_body`] hands the pieces of body it read to.
pub type PieceTaker<'a> = dyn FnMut(&[&[u8]]) -> std::io::Result<()> + 'a;

/// The outcome of [`RequestIo::pull_body`].
#[derive(Debug)]
pub struct Pulled {
    /// Body bytes read: 0 at the end of the body.
    pub bytes: usize,
    /// What the taker returned (`Ok` when it was not called).
    pub taken: std::io::Result<()>,
}

pub trait RequestIo: Send {
    /// Reads up to `buf.len()` bytes of the request body; `Ok(0)` at its end.
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, String>;
    /// Reads up to `dest.remaining()` bytes of the request body into `dest`; returns how many
    /// (0 at the end). The default goes through `read_body` and a small buffer.
    fn read_body_into(&mut self, dest: &mut UninitBuf<'_>) -> Result<usize, String> {
        let mut chunk = [0u8; 8192];
        let want = dest.remaining().min(chunk.len());
        let n = self.read_body(&mut chunk[..want])?;
        Ok(dest.extend_from_slice(&chunk[..n]))
    }
    /// Reads request body bytes that have already arrived, without waiting: 0 when none has
    /// (or at the end). Used only by the default `pull_body`; the default reads nothing.
    fn read_body_available(&mut self, _buf: &mut [u8]) -> Result<usize, String> {
        Ok(0)
    }
    /// Reads up to `max` bytes of the request body (waiting for some, then adding what has
    /// already arrived, so a fast upload moves in few large pulls and a slow one as it comes)
    /// and hands them to `take` as slices, in one or more calls of at most `chunk` bytes each
    /// (no call at the end of the body), stopping at the first error `take` returns. Returns how
    /// many bytes there were (0 at the end) and what `take` returned. The default reads into a
    /// buffer; Apache's implementation hands over its own buffers, uncopied.
    fn pull_body(
        &mut self,
        max: usize,
        chunk: usize,
        take: &mut PieceTaker<'_>,
    ) -> Result<Pulled, String> {
        let mut buf = vec![0u8; max.max(1)];
        let mut n = self.read_body(&mut buf)?;
        while n > 0 && n < buf.len() {
            match self.read_body_available(&mut buf[n..])? {
                0 => break,
                more => n += more,
            }
        }
        let taken = buf[..n]
            .chunks(chunk.max(1))
            .try_for_each(|piece| take(&[piece]));
        Ok(Pulled { bytes: n, taken })
    }
    /// Answers a pending `Expect: 100-continue` now (`wsgi.input.read(0)`), so the client sends
    /// the body; nothing happens when none is pending.
    fn expect_continue(&mut self);
    /// Sets the response status and headers; called once, before any body byte. Must not block:
    /// it is called with the GIL held.
    fn send_headers(&mut self, head: &ResponseHead) -> Result<(), String>;
    /// From now until the request ends, a write to the client fails once it has waited this
    /// long (the daemon-mode response-socket-timeout).
    fn set_send_timeout(&mut self, timeout: std::time::Duration);
    /// Sends body bytes; with `flush`, pushes them to the client now.
    fn write_body(&mut self, data: &[u8], flush: bool) -> Result<(), String>;
    /// Sends `len` bytes of the open file `fd` from `offset` as the next part of the body, the
    /// way the server sends static files (sendfile). The caller keeps `fd` open until this returns.
    fn send_file(&mut self, fd: i32, offset: u64, len: u64) -> Result<(), String>;
    /// Ends a complete response and pushes it to the client now.
    fn end_response(&mut self) -> Result<(), String>;
    /// Sends the last body bytes of a complete response and ends it: `write_body` and
    /// `end_response` in one step, which a server may pass on together.
    fn write_last(&mut self, data: &[u8]) -> Result<(), String> {
        self.write_body(data, false)?;
        self.end_response()
    }
    /// Like `write_last`, but keeps the bytes and the end to be sent by `send_deferred`, once
    /// the application is done and the GIL released: a small response then costs its thread
    /// one hold of the GIL, not one per write. False, with nothing kept, when this server
    /// cannot keep them without blocking. Must not block: it is called with the GIL held.
    fn defer_last(&mut self, _data: &[u8]) -> bool {
        false
    }
    /// Sends what `defer_last` kept (nothing if it kept nothing). Called without the GIL.
    fn send_deferred(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Ends a response that has started but cannot be completed, so the client sees it is
    /// truncated instead of a complete response.
    fn abort_response(&mut self);
    /// Whether a write failed because nobody is left to send the response to: the client closed
    /// or reset its connection (in a daemon process: the Apache child serving it let go). That
    /// is no error of the application's; C mod_wsgi logs it at debug level only. A write that
    /// timed out is not this.
    fn client_gone(&self) -> bool {
        false
    }
    /// Writes one line to the server's error log, attributed to this request.
    fn log(&mut self, level: Level, msg: &str);
}

/// Logs a failure's line, formatted here: a function of its own (and marked cold), so that the
/// formatting of what is rarely logged stays out of the body, and the pages, of the code that
/// serves requests.
#[cold]
#[inline(never)]
pub fn log_failure(io: &mut dyn RequestIo, level: Level, line: std::fmt::Arguments<'_>) {
    io.log(level, &line.to_string());
}
