//! The daemon side of a proxied request: `RequestIo` whose every call becomes a frame to the
//! Apache child that forwarded the request, which performs it against Apache. Request body bytes
//! come only when the application asks for them (a `Pull`), so neither side ever buffers a whole
//! body; before any response frame goes out, the rest of the last pull's answer is taken in, so
//! the two directions cannot block each other.

use super::scoreboard::Scoreboard;
use super::wire::{self, DeclaredBody, FrameReader, FrameWriter, Kind};
use crate::buf::UninitBuf;
use crate::wsgi::{Level, RequestIo, ResponseHead};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How much body to ask for at least, so a `readline()` loop costs one round trip per 256 KiB
/// rather than one per line, and an application reading 64 KiB at a time one per four reads
/// (the answer comes in pieces the reads take straight from the connection's buffer).
/// echo_1m measured 4-5 % less CPU per request than with 64 KiB, and more with 1 MiB.
const MIN_PULL: usize = 256 * 1024;

/// The writing half of a connection, shared by the request's `RequestIo` and the logger of its
/// thread's `sys.stdout`/`sys.stderr`.
pub type SharedWriter = Arc<Mutex<FrameWriter<Conn>>>;

/// A connection, shared by its reading and writing halves.
pub type Conn = Arc<OwnedFd>;

pub fn lock(writer: &SharedWriter) -> std::sync::MutexGuard<'_, FrameWriter<Conn>> {
    writer.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where the lines logged for a request go: to the Apache child as `Log` frames while it reads
/// the connection, so they are logged against the request; once the response has ended (the
/// iterable's `close()` runs after that) or the connection has failed, nobody reads them there,
/// and they go to this process's own error log, tagged with the client as C tags them.
#[derive(Clone)]
pub struct RequestLog {
    writer: SharedWriter,
    ended: Arc<AtomicBool>,
    client: Arc<str>,
}

impl RequestLog {
    /// `client` is the request's `REMOTE_ADDR:REMOTE_PORT`.
    pub fn new(writer: SharedWriter, client: &str) -> RequestLog {
        RequestLog {
            writer,
            ended: Arc::new(AtomicBool::new(false)),
            client: client.into(),
        }
    }

    pub fn line(&self, level: Level, line: &str) {
        if !self.ended.load(Ordering::Acquire) {
            let mut payload = Vec::with_capacity(line.len() + 1);
            wire::encode_log(level, line, &mut payload);
            let mut w = lock(&self.writer);
            if w.frame(Kind::Log, &payload)
                .and_then(|()| w.flush())
                .is_ok()
            {
                return;
            }
            self.end();
        }
        crate::wsgi::process_log::server_log(level, &format!("[remote {}] {line}", self.client));
    }

    /// The Apache child reads no more `Log` frames.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }
}

pub struct DaemonIo {
    reader: FrameReader<Conn>,
    writer: SharedWriter,
    log: RequestLog,
    /// Body bytes received but not yet read by the application.
    pending: Vec<u8>,
    pending_at: usize,
    body_done: bool,
    /// Bytes of the current `Body` frame still to come as further pieces: read them before
    /// asking for more.
    body_rest: usize,
    /// A `Pull` has been sent and its `PullDone` (or end) has not arrived yet.
    pulling: bool,
    /// The failure Apache reported reading the body, taken in before the application asked for
    /// it: its next read raises it.
    body_error: Option<String>,
    /// Where the request is recorded as being served: cleared as the response ends, before the
    /// Apache child can send its next request.
    serving: Option<(Arc<Scoreboard>, usize)>,
    /// Writing the response failed: the Apache child let go of the connection (its client
    /// left, or it gave up on it).
    apache_gone: bool,
    /// What the request's head says of its body.
    declared: DeclaredBody,
    /// Body bytes handed to the application so far.
    received: u64,
    /// The response has ended (or been cut short).
    response_over: bool,
}

impl DaemonIo {
    pub fn new(reader: FrameReader<Conn>, writer: SharedWriter, log: RequestLog) -> DaemonIo {
        DaemonIo {
            reader,
            writer,
            log,
            pending: Vec::new(),
            pending_at: 0,
            body_done: false,
            body_rest: 0,
            pulling: false,
            body_error: None,
            serving: None,
            apache_gone: false,
            declared: DeclaredBody::default(),
            received: 0,
            response_over: false,
        }
    }

    /// What the request's head says of its body: once the response has ended, a body read to
    /// its declared end is at its end without asking the Apache child, which may have gone
    /// (it stays to answer only while some of the body may remain; see client.rs).
    pub fn with_declared_body(mut self, declared: DeclaredBody) -> DaemonIo {
        self.declared = declared;
        self
    }

    /// Records in `board`'s `slot` that the request is over when its response ends.
    pub fn with_scoreboard(mut self, serving: Option<(Arc<Scoreboard>, usize)>) -> DaemonIo {
        self.serving = serving;
        self
    }

    /// The response is over: the request is no longer recorded as served, and the Apache child
    /// reads no more `Log` frames.
    fn finished(&mut self) {
        self.response_over = true;
        self.log.end();
        if let Some((board, slot)) = self.serving.take() {
            board.clear(slot);
        }
    }

    /// The outcome of writing response data to the Apache child, with its loss noted.
    fn lost(&mut self, written: std::io::Result<()>) -> Result<(), String> {
        written.map_err(|e| {
            self.apache_gone = true;
            format!("connection to Apache lost: {e}")
        })
    }

    fn send(&mut self, kind: Kind, payload: &[u8], flush: bool) -> Result<(), String> {
        forked_check()?;
        let sent = {
            let mut w = lock(&self.writer);
            w.frame(kind, payload)
                .and_then(|()| if flush { w.flush() } else { Ok(()) })
        };
        self.lost(sent)
    }

    /// Gives `take` the next body bytes (it returns how many it took, at most all): those left
    /// from the last frame, or else a new frame, asked from Apache unless the last frame has
    /// more pieces to come. What `take` leaves is kept for the next read, so a read as large as
    /// the frame copies it once, straight from the connection's buffer. `Ok(0)`: end of body.
    fn read_with(
        &mut self,
        wanted: usize,
        take: impl FnOnce(&[u8]) -> usize,
    ) -> Result<usize, String> {
        if self.pending_at < self.pending.len() {
            let n = take(&self.pending[self.pending_at..]);
            self.pending_at += n;
            return Ok(n);
        }
        if let Some(e) = self.body_error.take() {
            return Err(e);
        }
        if self.body_done || (self.response_over && self.declared.complete_at(self.received)) {
            return Ok(0);
        }
        let frame = loop {
            if !self.pulling {
                let ask = wanted.max(MIN_PULL) as u64;
                self.send(Kind::Pull, &ask.to_le_bytes(), true)?;
                self.pulling = true;
            }
            match self.reader.next_frame() {
                Ok(Some(frame)) if frame.kind == Kind::PullDone => self.pulling = false,
                Ok(Some(frame)) => break frame,
                Ok(None) => {
                    return Err("connection to Apache closed while reading the request body".into())
                }
                Err(e) => return Err(body_lost(e)),
            }
        };
        self.body_rest = frame.rest;
        match frame.kind {
            Kind::Body => {
                let n = take(frame.payload);
                self.pending.clear();
                self.pending.extend_from_slice(&frame.payload[n..]);
                self.pending_at = 0;
                Ok(n)
            }
            Kind::BodyEnd => {
                self.body_done = true;
                self.pulling = false;
                Ok(0)
            }
            Kind::BodyError => {
                self.pulling = false;
                Err(String::from_utf8_lossy(frame.payload).into_owned())
            }
            other => Err(format!(
                "unexpected {other:?} frame from Apache while reading the request body"
            )),
        }
    }
}

impl DaemonIo {
    /// Takes in what is left of the answer to the last `Pull`, keeping the body bytes for the
    /// application's next reads. The Apache child sends the whole answer before it reads any more
    /// of the response, so a response frame written while part of it is still on its way can
    /// wait for ever, both sides writing and neither reading: an application that yields output
    /// between reads of a large upload did that.
    fn finish_pull(&mut self) -> Result<(), String> {
        if !self.pulling && self.body_rest == 0 {
            return Ok(());
        }
        self.pending.drain(..self.pending_at);
        self.pending_at = 0;
        loop {
            while self.body_rest > 0 {
                let (reader, rest) = (&mut self.reader, self.body_rest);
                let (_, left) =
                    crate::buf::fill_tail(&mut self.pending, rest, |tail| reader.piece_into(tail))
                        .map_err(body_lost)?;
                self.body_rest = left;
            }
            if !self.pulling {
                return Ok(());
            }
            let frame = match self.reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    return Err("connection to Apache closed while reading the request body".into())
                }
                Err(e) => return Err(body_lost(e)),
            };
            match frame.kind {
                Kind::PullDone => self.pulling = false,
                Kind::Body => {
                    self.pending.extend_from_slice(frame.payload);
                    self.body_rest = frame.rest;
                }
                Kind::BodyEnd => {
                    self.body_done = true;
                    self.pulling = false;
                }
                Kind::BodyError => {
                    self.body_error = Some(String::from_utf8_lossy(frame.payload).into_owned());
                    self.pulling = false;
                }
                other => {
                    return Err(format!(
                        "unexpected {other:?} frame from Apache while reading the request body"
                    ))
                }
            }
        }
    }
}

impl RequestIo for DaemonIo {
    /// The daemon does not talk to the client: the Apache child applies the timeout.
    fn set_send_timeout(&mut self, _timeout: std::time::Duration) {}

    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.read_with(buf.len(), |bytes| {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            n
        })?;
        self.received += n as u64;
        Ok(n)
    }

    fn read_body_into(&mut self, dest: &mut UninitBuf<'_>) -> Result<usize, String> {
        if dest.remaining() == 0 {
            return Ok(0);
        }
        let n = if self.pending_at == self.pending.len() && self.body_rest > 0 {
            // The rest of a large Body frame goes from the connection straight into dest.
            let (n, rest) = self.reader.piece_into(dest).map_err(body_lost)?;
            self.body_rest = rest;
            n
        } else {
            self.read_with(dest.remaining(), |bytes| dest.extend_from_slice(bytes))?
        };
        self.received += n as u64;
        Ok(n)
    }

    fn expect_continue(&mut self) {
        let _ = self.send(Kind::Continue, &[], true);
    }

    fn send_headers(&mut self, head: &ResponseHead) -> Result<(), String> {
        let mut payload = Vec::with_capacity(256);
        wire::encode_response_head(head, &mut payload);
        // Buffered, not flushed: this is called with the GIL held and must not block.
        self.send(Kind::Headers, &payload, false)
    }

    fn write_body(&mut self, data: &[u8], flush: bool) -> Result<(), String> {
        forked_check()?;
        self.finish_pull()?;
        let written = lock(&self.writer).data(data, flush);
        self.lost(written)
    }

    fn send_file(&mut self, fd: i32, offset: u64, len: u64) -> Result<(), String> {
        forked_check()?;
        self.finish_pull()?;
        // SAFETY: the caller keeps fd open until this returns (RequestIo's contract).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let written = lock(&self.writer).send_file_frame(offset, len, fd);
        self.lost(written)
    }

    fn client_gone(&self) -> bool {
        self.apache_gone
    }

    fn end_response(&mut self) -> Result<(), String> {
        let pulled = self.finish_pull();
        self.finished();
        pulled?;
        self.send(
            Kind::End,
            &wire::end_payload(wire::EndStatus::Complete),
            true,
        )
    }

    fn defer_last(&mut self, data: &[u8]) -> bool {
        // Nothing to take in first (finish_pull), and all of it fits the buffer: no I/O.
        if forked_check().is_err() || self.pulling || self.body_rest > 0 {
            return false;
        }
        let end = wire::end_payload(wire::EndStatus::Complete);
        if !lock(&self.writer).buffer_frames(&[(Kind::Data, data), (Kind::End, &end)]) {
            return false;
        }
        self.finished();
        true
    }

    fn send_deferred(&mut self) -> Result<(), String> {
        let flushed = lock(&self.writer).flush();
        self.lost(flushed)
    }

    fn abort_response(&mut self) {
        let _ = self.finish_pull();
        self.finished();
        let _ = self.send(Kind::Abort, &[], true);
    }

    fn log(&mut self, level: Level, msg: &str) {
        if forked_check().is_ok() {
            self.log.line(level, msg);
        }
    }
}

/// A copy of the process the application forked shares the connection with the real one: it
/// must not write into the response.
fn forked_check() -> Result<(), String> {
    if super::process::forked_by_application() {
        return Err(
            "this process was forked by the application: it cannot answer the request".into(),
        );
    }
    Ok(())
}

/// The error `wsgi.input` raises when the connection to Apache fails mid-body: in C's words for
/// a timeout (the Apache child had no more of the body for `socket-timeout`), which is the
/// client's doing, not a lost connection.
fn body_lost(e: std::io::Error) -> String {
    if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        return "Apache/mod_wsgi request data read error: The timeout specified has expired (no \
                more of the body arrived within the group's socket-timeout)"
            .into();
    }
    format!("connection to Apache lost while reading the request body: {e}")
}
