//! The state of one request's response, shared by the adapter and the Python callbacks through a
//! `Scoped` slot. Blocking calls to the server run with the GIL released.

use super::input::BodyReader;
use super::io::{Level, RequestIo, ResponseHead};
use crate::buf::UninitBuf;
use crate::python::detached;
use pyo3::Python;

pub struct RequestState {
    io: Box<dyn RequestIo>,
    /// Set by `start_response`; sent before the first body byte (or at the end).
    head: Option<ResponseHead>,
    headers_sent: bool,
    /// The response has ended (completely or truncated): nothing more may be sent.
    ended: bool,
    bytes_sent: u64,
    /// The application was told the request is a HEAD (`REQUEST_METHOD`): its response may
    /// declare a Content-Length and send no body.
    head_request: bool,
    input: BodyReader,
    /// The script, for log messages.
    pub script: String,
    /// What was read and written, for the `request_finished` event.
    pub io_stats: super::events::IoStats,
}

/// What `start_response` may be told.
pub enum StartError {
    /// Called again without `exc_info`.
    AlreadyStarted,
    /// Called with `exc_info` after headers went out: the caller re-raises the exception.
    HeadersSent,
}

impl RequestState {
    /// The server side of the request, given back once the application is done with it, for
    /// what it has kept to send ([`RequestIo::send_deferred`]).
    pub fn into_io(self) -> Box<dyn RequestIo> {
        self.io
    }

    pub fn new(io: Box<dyn RequestIo>, script: String, head_request: bool) -> Self {
        RequestState {
            io,
            head: None,
            headers_sent: false,
            ended: false,
            bytes_sent: 0,
            head_request,
            input: BodyReader::default(),
            script,
            io_stats: Default::default(),
        }
    }

    pub fn headers_sent(&self) -> bool {
        self.headers_sent
    }

    /// A write failed because nobody is left to send the response to (see
    /// [`RequestIo::client_gone`]).
    pub fn client_gone(&self) -> bool {
        self.io.client_gone()
    }

    pub fn started(&self) -> bool {
        self.head.is_some()
    }

    fn check_not_ended(&self) -> Result<(), String> {
        if self.ended {
            Err("the response has already been completed".to_string())
        } else {
            Ok(())
        }
    }

    /// Records the status and headers from `start_response`.
    pub fn start(&mut self, head: ResponseHead, has_exc_info: bool) -> Result<(), StartError> {
        if has_exc_info {
            if self.headers_sent {
                return Err(StartError::HeadersSent);
            }
        } else if self.head.is_some() {
            return Err(StartError::AlreadyStarted);
        }
        self.head = Some(head);
        Ok(())
    }

    /// Hands status and headers to the server. Not a blocking call (nothing is written until
    /// the first body byte or the end), so the GIL stays held.
    fn send_headers_if_needed(&mut self) -> Result<(), String> {
        if self.headers_sent {
            return Ok(());
        }
        let head = self.head.as_ref().ok_or("response has not been started")?;
        self.io.send_headers(head)?;
        self.headers_sent = true;
        Ok(())
    }

    /// The response declared its Content-Length and all of it has been sent.
    pub fn declared_length_sent(&self) -> bool {
        self.declared_length()
            .is_some_and(|len| self.headers_sent && self.bytes_sent >= len)
    }

    /// Sends body bytes (headers first if needed), never more than a declared Content-Length.
    pub fn write(&mut self, py: Python<'_>, data: &[u8], flush: bool) -> Result<(), String> {
        self.check_not_ended()?;
        let clock = self.io_stats.clock();
        self.send_headers_if_needed()?;
        let allowed = self.allowed(data.len());
        if allowed == 0 {
            self.io_stats.wrote(clock, data.len() as u64, true);
            return Ok(());
        }
        let io = &mut *self.io;
        let chunk = &data[..allowed];
        let written = detached(py, || io.write_body(chunk, flush));
        self.io_stats.wrote(clock, data.len() as u64, true);
        written?;
        self.bytes_sent += allowed as u64;
        Ok(())
    }

    /// Sends the last body bytes of the response and ends it in the same step when they complete
    /// it; bytes that fall short of a declared Content-Length are written as any others, and
    /// `finish` deals with the shortfall. With `nothing_after` (no `close()` follows, so the
    /// client would not wait on the application), small bytes may be kept and sent once the
    /// application is done ([`RequestIo::defer_last`]).
    pub fn write_last(
        &mut self,
        py: Python<'_>,
        data: &[u8],
        nothing_after: bool,
    ) -> Result<(), String> {
        self.check_not_ended()?;
        let allowed = self.allowed(data.len());
        let completes =
            self.declared_length().is_none() || self.completed_by(allowed) || !self.body_expected();
        if allowed == 0 || !completes {
            return self.write(py, data, false);
        }
        let clock = self.io_stats.clock();
        self.send_headers_if_needed()?;
        self.ended = true;
        let io = &mut *self.io;
        let chunk = &data[..allowed];
        let written = if nothing_after && io.defer_last(chunk) {
            Ok(())
        } else {
            detached(py, || io.write_last(chunk))
        };
        self.io_stats.wrote(clock, data.len() as u64, true);
        written?;
        self.bytes_sent += allowed as u64;
        Ok(())
    }

    /// Sends up to `available` bytes of file `fd` from `offset` (sendfile), within a declared
    /// Content-Length; without one (and before the headers went out) declares the file's length.
    pub fn send_file(
        &mut self,
        py: Python<'_>,
        fd: i32,
        offset: u64,
        available: u64,
    ) -> Result<(), String> {
        self.check_not_ended()?;
        let head = self.head.as_mut().ok_or("response has not been started")?;
        let len = match head.content_length {
            Some(declared) => available.min(declared.saturating_sub(self.bytes_sent)),
            None if !self.headers_sent => {
                head.content_length = Some(available);
                head.headers
                    .push(("Content-Length".to_string(), available.to_string()));
                available
            }
            None => available,
        };
        self.send_headers_if_needed()?;
        if len > 0 {
            let io = &mut *self.io;
            let clock = self.io_stats.clock();
            detached(py, || io.send_file(fd, offset, len))?;
            self.io_stats.wrote(clock, len, false);
            self.bytes_sent += len;
        }
        Ok(())
    }

    /// Completes the response after the application's iterable is exhausted (unless its last
    /// piece already did).
    pub fn finish(&mut self, py: Python<'_>) -> Result<(), String> {
        if self.ended {
            return Ok(());
        }
        self.send_headers_if_needed()?;
        if let Some(declared) = self.declared_length() {
            if self.bytes_sent < declared && self.body_expected() {
                let msg = format!(
                    "mod_wsgi (pid={}): Truncated response for WSGI script '{}': Content-Length \
                     was {declared} but only {} bytes were returned.",
                    std::process::id(),
                    self.script,
                    self.bytes_sent
                );
                self.log(py, Level::Error, &msg);
                self.abort(py);
                return Ok(());
            }
        }
        self.ended = true;
        let io = &mut *self.io;
        detached(py, || io.end_response())
    }

    /// How many of `len` more body bytes may go out: never more than a declared Content-Length.
    fn allowed(&self, len: usize) -> usize {
        match self.declared_length() {
            Some(declared) => declared.saturating_sub(self.bytes_sent).min(len as u64) as usize,
            None => len,
        }
    }

    /// Whether `len` more body bytes complete the Content-Length the response declared.
    pub fn completed_by(&self, len: usize) -> bool {
        self.declared_length()
            .is_some_and(|declared| self.bytes_sent + len as u64 >= declared)
    }

    /// The Content-Length the response declared, if it has started and declared one.
    fn declared_length(&self) -> Option<u64> {
        self.head.as_ref().and_then(|h| h.content_length)
    }

    /// Whether the response must carry the body its Content-Length declares: not the answer to a
    /// HEAD request, nor a 1xx, 204 or 304, whose Content-Length describes a body not sent
    /// (RFC 9110, 8.6).
    fn body_expected(&self) -> bool {
        let status = self.head.as_ref().map_or(200, |h| h.status);
        !(self.head_request || status < 200 || status == 204 || status == 304)
    }

    /// Visibly truncates a response that has started (unless it has already ended).
    pub fn abort(&mut self, py: Python<'_>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let io = &mut *self.io;
        detached(py, || io.abort_response());
    }

    pub fn read_input(&mut self, py: Python<'_>, size: Option<usize>) -> Result<Vec<u8>, String> {
        let clock = self.io_stats.clock();
        let RequestState { io, input, .. } = self;
        let data = detached(py, || {
            input.read(&mut |buf: &mut [u8]| io.read_body(buf), size)
        })?;
        self.io_stats.read(clock, data.len());
        Ok(data)
    }

    /// Reads into `dest` until it is full or the body ends.
    pub fn read_input_into(
        &mut self,
        py: Python<'_>,
        dest: &mut UninitBuf<'_>,
    ) -> Result<(), String> {
        let (clock, before) = (self.io_stats.clock(), dest.filled());
        let RequestState { io, input, .. } = self;
        detached(py, || {
            input.read_into(&mut |buf: &mut UninitBuf<'_>| io.read_body_into(buf), dest)
        })?;
        self.io_stats.read(clock, dest.filled() - before);
        Ok(())
    }

    pub fn readline_input(
        &mut self,
        py: Python<'_>,
        size: Option<usize>,
    ) -> Result<Vec<u8>, String> {
        let clock = self.io_stats.clock();
        let RequestState { io, input, .. } = self;
        let line = detached(py, || {
            input.readline(&mut |buf: &mut [u8]| io.read_body(buf), size)
        })?;
        self.io_stats.read(clock, line.len());
        Ok(line)
    }

    /// `wsgi.input.read(0)`: lets a client waiting for `100 Continue` send its body.
    pub fn expect_continue(&mut self, py: Python<'_>) {
        let io = &mut *self.io;
        detached(py, || io.expect_continue());
    }

    pub fn log(&mut self, py: Python<'_>, level: Level, msg: &str) {
        let io = &mut *self.io;
        detached(py, || io.log(level, msg));
    }
}
