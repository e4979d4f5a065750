//! The daemon-mode wire protocol: the `RequestIo` trait serialised as frames over a UNIX stream
//! socket, one request per connection.
//!
//! A frame is one kind byte, the payload length as u32 little-endian, and the payload (at most
//! [`MAX_PAYLOAD`] bytes). The Apache child sends a `Request` frame; the daemon answers with
//! `Accepted` and then drives the request: every `RequestIo` call becomes a frame that the Apache
//! child executes against Apache's own `RequestIo`. Only `Pull` expects an answer: `Body` frames
//! (as the bytes come from Apache, so that no more than [`PULL_CHUNK`] of them are held at a time)
//! closed by `PullDone`, or else `BodyEnd` or `BodyError`.
//!
//! [`FrameWriter`] and [`FrameReader`] work on anything that lends a socket descriptor (`AsFd`):
//! an `OwnedFd`, a `&OwnedFd`, a `BorrowedFd`, a `UnixStream`, an `Arc<OwnedFd>`, … so one socket
//! can have a reader and a writer at the same time. Neither closes anything but what it owns.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::unix::{recv_into, recv_with_fds, send_vectored};
use crate::buf::UninitBuf;
use crate::wsgi::environ::CgiVars;
use crate::wsgi::{Level, ResponseHead};

/// Version of the `Request` frame layout and of the protocol as a whole.
pub const PROTOCOL_VERSION: u8 = 1;
/// Largest payload of one frame.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// The most request body the Apache child reads from Apache before sending it on: Apache's
/// buffers for it stay with the connection for reuse, so more would be memory kept idle.
pub const PULL_CHUNK: usize = 64 << 10;
/// Kind byte plus u32 length.
pub const HEADER_LEN: usize = 5;

/// Small frames collect in the writer's buffer up to this size.
const WRITE_BUFFER: usize = 64 << 10;
/// What a reader's or writer's buffer starts with: enough for most requests' heads and small
/// responses. A connection serves one request, so a buffer allocated (and, for the reader,
/// zeroed) at full size would cost that much for every request; it grows when a frame needs it.
const INITIAL_BUFFER: usize = 8 << 10;
/// Past this a reader's buffer is given back to the kernel when dropped (a daemon's request
/// reader stops growing here).
const GROWN_BUFFER: usize = 16 << 10;
/// Payloads from this size on are sent straight from the caller's memory (one `sendmsg` with the
/// buffered frames, the header and the payload), never copied.
const LARGE_PAYLOAD: usize = 16 << 10;
/// The reader's buffer by default. A larger frame of a kind that may arrive in pieces is
/// delivered in pieces of at most this size; any other larger frame grows the buffer, which
/// shrinks back afterwards.
/// A 64 KiB block (what the daemon asks for at a time, what applications commonly yield) with its
/// frame header fits.
pub const READ_BUFFER: usize = (64 << 10) + HEADER_LEN;
/// Descriptors that may wait for their `File` frame. More means the peer is not speaking our
/// protocol (each `File` frame carries one and the reader does not read far ahead).
const MAX_QUEUED_FDS: usize = 16;

#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    // Apache child -> daemon
    /// [`RequestHead`].
    Request = b'H',
    /// Request body bytes (answer to `Pull`, at least 1 byte).
    Body = b'B',
    /// Answer to `Pull`: end of the body.
    BodyEnd = b'E',
    /// Answer to `Pull`: reading from the client failed; UTF-8 message.
    BodyError = b'X',
    /// Answer to `Pull`: the `Body` frames sent for it are all there is for now.
    PullDone = b'K',
    // daemon -> Apache child
    /// First frame of every answer: u32 LE pid of the daemon process.
    Accepted = b'A',
    /// This process is restarting; reconnect and resend. UTF-8 reason.
    Restart = b'Q',
    /// u16 LE HTTP status + UTF-8 message: the request was refused (e.g. 504 queue timeout).
    Reject = b'J',
    /// [`ResponseHead`].
    Headers = b'R',
    /// Body bytes.
    Data = b'D',
    /// Body bytes, then flush to the client.
    DataFlush = b'F',
    /// u64 LE offset + u64 LE length; exactly one descriptor attached (SCM_RIGHTS).
    File = b'S',
    /// u64 LE: up to this many body bytes wanted; answered by `Body` frames and `PullDone`, or
    /// by `BodyEnd` or `BodyError`.
    Pull = b'P',
    /// Answer a pending `Expect: 100-continue` now (no reply).
    Continue = b'C',
    /// u8 level (0 Error, 1 Warning, 2 Info, 3 Debug) + UTF-8 line.
    Log = b'L',
    /// u8: 0 = response complete, 1 = failed before headers (Apache answers 500).
    End = b'Z',
    /// The response started but is truncated.
    Abort = b'T',
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::Request,
        Kind::Body,
        Kind::BodyEnd,
        Kind::BodyError,
        Kind::PullDone,
        Kind::Accepted,
        Kind::Restart,
        Kind::Reject,
        Kind::Headers,
        Kind::Data,
        Kind::DataFlush,
        Kind::File,
        Kind::Pull,
        Kind::Continue,
        Kind::Log,
        Kind::End,
        Kind::Abort,
    ];

    /// Body bytes, which the reader may hand out in pieces rather than buffer whole frames.
    pub fn arrives_in_pieces(self) -> bool {
        matches!(self, Kind::Data | Kind::DataFlush | Kind::Body)
    }

    pub fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| *k as u8 == b)
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The connection ended before the rest of a `kind` frame.
fn closed_inside(kind: Kind) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("daemon connection closed inside a {:?} frame", kind),
    )
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// What the Apache child tells the daemon about a request.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Secret that proves the request comes from this server's Apache children.
    pub token: [u8; 32],
    /// SCRIPT_FILENAME.
    pub script: Vec<u8>,
    pub application_group: String,
    pub callable_object: String,
    pub script_reloading: bool,
    pub vars: CgiVars,
}

/// What a request's head says of its body: how long it is, or that there is none. The Apache
/// child and the daemon judge by it alike whether the body has all been read.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct DeclaredBody {
    /// Its Content-Length.
    pub length: Option<u64>,
    /// Neither a Content-Length nor a Transfer-Encoding: there is no body.
    pub none: bool,
}

impl DeclaredBody {
    /// Whether `received` bytes are all of it, as declared.
    pub fn complete_at(&self, received: u64) -> bool {
        self.none || self.length.is_some_and(|len| received >= len)
    }
}

impl RequestHead {
    pub fn declared_body(&self) -> DeclaredBody {
        let length = self
            .vars
            .get("CONTENT_LENGTH")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        DeclaredBody {
            length,
            none: length.is_none() && self.vars.get("HTTP_TRANSFER_ENCODING").is_none(),
        }
    }
}

impl std::fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHead")
            .field("token", &"<secret>")
            .field("script", &String::from_utf8_lossy(&self.script))
            .field("application_group", &self.application_group)
            .field("callable_object", &self.callable_object)
            .field("script_reloading", &self.script_reloading)
            .field("vars", &self.vars.len())
            .finish()
    }
}

/// A length as u32. Anything longer than u32::MAX cannot be part of a frame anyway
/// (MAX_PAYLOAD), so saturating makes an over-long payload that the writer refuses.
fn len_u32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes()
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&len_u32(b.len()));
    out.extend_from_slice(b);
}

/// Reads a payload front to back; every shortfall is an InvalidData error naming `what`.
struct Decoder<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Decoder<'a> {
    fn new(payload: &'a [u8], what: &'static str) -> Self {
        Decoder {
            rest: payload,
            what,
        }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if n > self.rest.len() {
            return Err(invalid(format!(
                "truncated {} payload: {} bytes wanted, {} left",
                self.what,
                n,
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn bool(&mut self) -> io::Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(invalid(format!("bad flag {} in {} payload", b, self.what))),
        }
    }

    /// A u32-length-prefixed byte string.
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A u32-length-prefixed UTF-8 string.
    fn string(&mut self, field: &str) -> io::Result<&'a str> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map_err(|_| invalid(format!("{} in {} payload is not UTF-8", field, self.what)))
    }

    /// The rest as UTF-8.
    fn rest_str(&mut self) -> io::Result<&'a str> {
        let b = std::mem::take(&mut self.rest);
        std::str::from_utf8(b).map_err(|_| invalid(format!("{} text is not UTF-8", self.what)))
    }

    fn finish(self) -> io::Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(invalid(format!(
                "{} trailing bytes after {} payload",
                self.rest.len(),
                self.what
            )))
        }
    }
}

/// Appends the `Request` payload for `h` to `out`.
pub fn encode_request_head(h: &RequestHead, out: &mut Vec<u8>) {
    out.push(PROTOCOL_VERSION);
    out.extend_from_slice(&h.token);
    put_bytes(out, &h.script);
    put_bytes(out, h.application_group.as_bytes());
    put_bytes(out, h.callable_object.as_bytes());
    out.push(h.script_reloading as u8);
    out.extend_from_slice(&len_u32(h.vars.len()));
    for (k, v) in h.vars.iter() {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

pub fn decode_request_head(payload: &[u8]) -> io::Result<RequestHead> {
    let mut d = Decoder::new(payload, "request head");
    let version = d.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(invalid(format!(
            "daemon protocol version mismatch: the peer speaks version {}, this process version {} \
             (are Apache and the daemon processes running different builds of mod_wsgi-rs?)",
            version, PROTOCOL_VERSION
        )));
    }
    let token = d.array::<32>()?;
    let script = d.bytes()?.to_vec();
    let application_group = d.string("application group")?.to_string();
    let callable_object = d.string("callable object")?.to_string();
    let script_reloading = d.bool()?;
    let count = d.u32()? as usize;
    // Each pair takes at least 8 bytes, so a lying count cannot make us allocate much.
    let mut vars = CgiVars::with_capacity(count.min(d.rest.len() / 8), d.rest.len());
    for _ in 0..count {
        let k = d.bytes()?;
        let v = d.bytes()?;
        vars.push(k, v);
    }
    d.finish()?;
    Ok(RequestHead {
        token,
        script,
        application_group,
        callable_object,
        script_reloading,
        vars,
    })
}

/// Appends the `Headers` payload: u16 status, status line, u8 has-length + u64 content length,
/// u32 count, then (name, value) pairs; strings u32-length-prefixed.
pub fn encode_response_head(h: &ResponseHead, out: &mut Vec<u8>) {
    out.extend_from_slice(&h.status.to_le_bytes());
    put_bytes(out, h.status_line.as_bytes());
    out.push(h.content_length.is_some() as u8);
    out.extend_from_slice(&h.content_length.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&len_u32(h.headers.len()));
    for (k, v) in &h.headers {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v.as_bytes());
    }
}

pub fn decode_response_head(payload: &[u8]) -> io::Result<ResponseHead> {
    let mut d = Decoder::new(payload, "response head");
    let status = d.u16()?;
    let status_line = d.string("status line")?.to_string();
    let has_length = d.bool()?;
    let length = d.u64()?;
    let count = d.u32()? as usize;
    let mut headers = Vec::with_capacity(count.min(d.rest.len() / 8));
    for _ in 0..count {
        let k = d.string("header name")?.to_string();
        let v = d.string("header value")?.to_string();
        headers.push((k, v));
    }
    d.finish()?;
    Ok(ResponseHead {
        status,
        status_line,
        headers,
        content_length: has_length.then_some(length),
    })
}

/// Payload of `Pull`: how many body bytes are wanted.
pub fn u64_payload(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

pub fn parse_u64(payload: &[u8]) -> io::Result<u64> {
    let mut d = Decoder::new(payload, "u64");
    let v = d.u64()?;
    d.finish()?;
    Ok(v)
}

/// Payload of `Accepted`.
pub fn pid_payload(pid: u32) -> [u8; 4] {
    pid.to_le_bytes()
}

pub fn parse_pid(payload: &[u8]) -> io::Result<u32> {
    let mut d = Decoder::new(payload, "accepted");
    let v = d.u32()?;
    d.finish()?;
    Ok(v)
}

/// Payload of `File`: offset and length in the attached file.
pub fn file_payload(offset: u64, len: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&offset.to_le_bytes());
    p[8..].copy_from_slice(&len.to_le_bytes());
    p
}

/// `(offset, len)` of a `File` payload.
pub fn parse_file(payload: &[u8]) -> io::Result<(u64, u64)> {
    let mut d = Decoder::new(payload, "file");
    let offset = d.u64()?;
    let len = d.u64()?;
    d.finish()?;
    Ok((offset, len))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Payload of `Restart` and `BodyError`: the text, cut to fit one frame.
pub fn text_payload(s: &str) -> &[u8] {
    truncate_utf8(s, MAX_PAYLOAD).as_bytes()
}

/// The text of a `Restart` or `BodyError` payload.
pub fn parse_text(payload: &[u8]) -> io::Result<&str> {
    Decoder::new(payload, "message").rest_str()
}

fn level_byte(level: Level) -> u8 {
    match level {
        Level::Error => 0,
        Level::Warning => 1,
        Level::Info => 2,
        Level::Debug => 3,
    }
}

/// Appends a `Log` payload (the line cut to fit one frame).
pub fn encode_log(level: Level, line: &str, out: &mut Vec<u8>) {
    out.push(level_byte(level));
    out.extend_from_slice(truncate_utf8(line, MAX_PAYLOAD - 1).as_bytes());
}

pub fn parse_log(payload: &[u8]) -> io::Result<(Level, &str)> {
    let mut d = Decoder::new(payload, "log");
    let level = match d.u8()? {
        0 => Level::Error,
        1 => Level::Warning,
        2 => Level::Info,
        3 => Level::Debug,
        b => return Err(invalid(format!("bad log level {}", b))),
    };
    Ok((level, d.rest_str()?))
}

/// Appends a `Reject` payload (the message cut to fit one frame).
pub fn encode_reject(status: u16, message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(truncate_utf8(message, MAX_PAYLOAD - 2).as_bytes());
}

/// `(status, message)` of a `Reject` payload.
pub fn parse_reject(payload: &[u8]) -> io::Result<(u16, &str)> {
    let mut d = Decoder::new(payload, "reject");
    let status = d.u16()?;
    Ok((status, d.rest_str()?))
}

/// How a response ended (payload of `End`).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    Complete = 0,
    /// The application failed before sending headers; Apache answers 500.
    FailedBeforeHeaders = 1,
}

pub fn end_payload(status: EndStatus) -> [u8; 1] {
    [status as u8]
}

pub fn parse_end(payload: &[u8]) -> io::Result<EndStatus> {
    let mut d = Decoder::new(payload, "end");
    let s = match d.u8()? {
        0 => EndStatus::Complete,
        1 => EndStatus::FailedBeforeHeaders,
        b => return Err(invalid(format!("bad end status {}", b))),
    };
    d.finish()?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Frames on a socket

fn frame_header(kind: Kind, len: usize) -> [u8; HEADER_LEN] {
    let l = len_u32(len);
    [kind as u8, l[0], l[1], l[2], l[3]]
}

/// Writes frames to a socket. Small frames collect in a buffer (up to 64 KiB) that goes out on
/// [`flush`](Self::flush) or when full; a payload of 16 KiB or more goes out at once, together
/// with whatever is buffered, in one `sendmsg` straight from the caller's memory.
///
/// Nothing is flushed on drop: call `flush` before waiting for an answer (after `Pull`) and at
/// the end. After a failed send the stream may hold half a frame, so every later call fails.
pub struct FrameWriter<S: AsFd> {
    sock: S,
    buf: Vec<u8>,
    broken: bool,
}

impl<S: AsFd> FrameWriter<S> {
    pub fn new(sock: S) -> Self {
        FrameWriter {
            sock,
            buf: Vec::with_capacity(INITIAL_BUFFER),
            broken: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// The socket back; frames still buffered are discarded.
    pub fn into_inner(self) -> S {
        self.sock
    }

    /// Bytes buffered and not sent yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn check(&self) -> io::Result<()> {
        if self.broken {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier send on this daemon connection failed",
            ))
        } else {
            Ok(())
        }
    }

    /// Sends the buffer followed by `parts`, all of it, attaching `pass` to the first byte.
    fn send_all(&mut self, parts: &[&[u8]], pass: Option<BorrowedFd<'_>>) -> io::Result<()> {
        self.check()?;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(1 + parts.len());
        if !self.buf.is_empty() {
            slices.push(IoSlice::new(&self.buf));
        }
        slices.extend(
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| IoSlice::new(p)),
        );
        let mut pass = pass;
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            match send_vectored(self.sock.as_fd(), rest, pass) {
                Ok(0) => {
                    self.broken = true;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    pass = None;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        drop(slices);
        self.buf.clear();
        Ok(())
    }

    /// Sends one frame (buffered if small). A payload over [`MAX_PAYLOAD`] is an InvalidInput
    /// error; use [`data`](Self::data) for body bytes of any size.
    pub fn frame(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        self.check()?;
        if payload.len() > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{:?} frame payload of {} bytes exceeds the {} byte limit",
                    kind,
                    payload.len(),
                    MAX_PAYLOAD
                ),
            ));
        }
        let header = frame_header(kind, payload.len());
        if payload.len() >= LARGE_PAYLOAD {
            return self.send_all(&[&header, payload], None);
        }
        if self.buf.len() + HEADER_LEN + payload.len() > WRITE_BUFFER {
            self.flush()?;
        }
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(payload);
        Ok(())
    }

    /// Buffers `frames` when all of them fit the write buffer, sending nothing (for a caller
    /// that must not block); false, with nothing buffered, when they do not or the connection
    /// has failed.
    pub fn buffer_frames(&mut self, frames: &[(Kind, &[u8])]) -> bool {
        let fits = frames.iter().all(|(_, p)| p.len() < LARGE_PAYLOAD)
            && self.buf.len()
                + frames
                    .iter()
                    .map(|(_, p)| HEADER_LEN + p.len())
                    .sum::<usize>()
                <= WRITE_BUFFER;
        if self.broken || !fits {
            return false;
        }
        for (kind, payload) in frames {
            self.buf
                .extend_from_slice(&frame_header(*kind, payload.len()));
            self.buf.extend_from_slice(payload);
        }
        true
    }

    /// Sends one frame whose payload is `parts` one after the other, at once (after anything
    /// buffered), without copying them.
    pub fn frame_parts(&mut self, kind: Kind, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MAX_PAYLOAD {
            self.check()?;
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{kind:?} frame payload of {len} bytes exceeds the {MAX_PAYLOAD} byte limit"
                ),
            ));
        }
        let header = frame_header(kind, len);
        let mut all: Vec<&[u8]> = Vec::with_capacity(1 + parts.len());
        all.push(&header);
        all.extend_from_slice(parts);
        self.send_all(&all, None)
    }

    /// Sends body bytes as `Data` frames (split at [`MAX_PAYLOAD`]). With `flush`, the last one is
    /// `DataFlush` (an empty one if `bytes` is empty) and the socket is flushed.
    pub fn data(&mut self, bytes: &[u8], flush: bool) -> io::Result<()> {
        if bytes.is_empty() {
            if flush {
                self.frame(Kind::DataFlush, &[])?;
                return self.flush();
            }
            return self.check();
        }
        let mut chunks = bytes.chunks(MAX_PAYLOAD).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let kind = if flush && last {
                Kind::DataFlush
            } else {
                Kind::Data
            };
            self.frame(kind, chunk)?;
        }
        if flush {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends a `File` frame with `fd` attached (after whatever is buffered, in the same send).
    /// The receiver gets its own descriptor; the caller may close `fd` once this returns.
    pub fn send_file_frame(&mut self, offset: u64, len: u64, fd: BorrowedFd<'_>) -> io::Result<()> {
        let payload = file_payload(offset, len);
        let header = frame_header(Kind::File, payload.len());
        self.send_all(&[&header, &payload], Some(fd))
    }

    /// Sends everything buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send_all(&[], None)
    }
}

/// One frame, or one piece of a body frame; the payload borrows the reader's buffer until the
/// next `next_frame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    pub payload: &'a [u8],
    /// Payload bytes of this frame still to come, as the next pieces (same kind). Only body
    /// frames ([`Kind::arrives_in_pieces`]) larger than the reader's buffer come in pieces.
    pub rest: usize,
}

/// Reads frames from a socket, always with `recvmsg` so that descriptors sent with `File` frames
/// are collected (close-on-exec) in a queue rather than lost: take the one of a `File` frame with
/// [`take_fd`](Self::take_fd). Socket timeouts (SO_RCVTIMEO) come back as the `WouldBlock` error
/// the kernel gives, and the reader stays usable: calling again continues the same frame.
///
/// Body frames larger than the buffer are handed out in pieces as they arrive (see
/// [`Frame::rest`]), so a large response moves through a fixed buffer and reaches the client
/// while the rest is still on its way.
pub struct FrameReader<S: AsFd> {
    sock: S,
    buf: Vec<u8>,
    /// The largest the buffer stays between frames, and the largest piece of a body frame.
    capacity: usize,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Size of the frame (or piece) last returned, consumed at the next call.
    returned: usize,
    /// The body frame being handed out in pieces, and how much of its payload is still to come.
    piece_of: Option<(Kind, usize)>,
    fds: VecDeque<OwnedFd>,
}

/// A buffer grown past what a request's frames need (an Apache child's reader grows to
/// response-buffer-size for a large response) gives its pages back rather than leaving them in
/// the thread's malloc arena: each Apache thread that once proxied a large response would keep
/// 64 KiB for good, which idle Apache children in C mod_wsgi do not.
impl<S: AsFd> Drop for FrameReader<S> {
    fn drop(&mut self) {
        self.give_back_grown_buffer();
    }
}

impl<S: AsFd> FrameReader<S> {
    pub fn new(sock: S) -> Self {
        Self::with_buffer_size(sock, READ_BUFFER)
    }

    /// A reader that buffers at most `size` bytes of a body frame (at least one frame header's
    /// worth plus one byte).
    pub fn with_buffer_size(sock: S, size: usize) -> Self {
        let capacity = size.max(HEADER_LEN + 1);
        FrameReader {
            sock,
            buf: vec![0; capacity.min(INITIAL_BUFFER)],
            capacity,
            start: 0,
            end: 0,
            returned: 0,
            piece_of: None,
            fds: VecDeque::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// Returns the pages of a buffer that has grown past GROWN_BUFFER; true if it had. Its
    /// bytes are gone: only for a reader that reads no more.
    fn give_back_grown_buffer(&mut self) -> bool {
        if self.buf.len() <= GROWN_BUFFER {
            return false;
        }
        crate::buf::return_whole_pages(&mut self.buf);
        true
    }

    /// Takes the descriptor of the `File` frame just read (descriptors queue in arrival order).
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop_front()
    }

    /// Descriptors received and not taken yet.
    pub fn queued_fds(&self) -> usize {
        self.fds.len()
    }

    /// Makes at least `need` bytes available from `start`; `Ok(false)` at EOF before that.
    fn fill_to(&mut self, need: usize) -> io::Result<bool> {
        while self.end - self.start < need {
            if self.start + need > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if need > self.buf.len() {
                    // Doubling (up to the capacity) keeps a run of growing frames from
                    // reallocating for each.
                    let grown = (2 * self.buf.len()).min(self.capacity);
                    self.buf.resize(need.max(grown), 0);
                }
            }
            let n = match recv_with_fds(self.sock.as_fd(), &mut self.buf[self.end..], &mut self.fds)
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(false);
            }
            self.end += n;
            if self.fds.len() > MAX_QUEUED_FDS {
                return Err(invalid(
                    "the peer sent file descriptors without File frames",
                ));
            }
        }
        Ok(true)
    }

    /// Forgets consumed bytes once everything buffered is consumed, so the next read has the
    /// whole buffer; a buffer grown for a large frame shrinks back.
    fn reset_if_drained(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > self.capacity {
                self.buf.truncate(self.capacity);
                self.buf.shrink_to_fit();
            }
        }
    }

    /// How many of the frames that follow the one last returned are response data (`Data`,
    /// `DataFlush`) of at most `small` bytes each and already buffered whole, counting up to
    /// `limit`: reading them will not wait for the peer.
    pub fn small_data_frames_ahead(&self, small: usize, limit: usize) -> usize {
        if self.piece_of.is_some() {
            return 0;
        }
        let (mut at, mut count) = (self.start + self.returned, 0);
        while count < limit && self.end - at >= HEADER_LEN {
            let h = &self.buf[at..at + HEADER_LEN];
            let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
            let data = matches!(Kind::from_u8(h[0]), Some(Kind::Data | Kind::DataFlush));
            if !data || len > small || self.end - at < HEADER_LEN + len {
                break;
            }
            at += HEADER_LEN + len;
            count += 1;
        }
        count
    }

    /// The next frame or piece of a body frame, or `Ok(None)` when the peer closed the
    /// connection cleanly between frames. EOF inside a frame is an `UnexpectedEof` error; an
    /// unknown kind, a payload over [`MAX_PAYLOAD`] or a `File` frame without a descriptor is
    /// `InvalidData`.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame<'_>>> {
        self.start += std::mem::take(&mut self.returned);
        self.reset_if_drained();
        if self.piece_of.is_none() {
            if !self.fill_to(HEADER_LEN)? {
                if self.start == self.end {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "daemon connection closed inside a frame header",
                ));
            }
            let h = &self.buf[self.start..self.start + HEADER_LEN];
            let kind = Kind::from_u8(h[0])
                .ok_or_else(|| invalid(format!("unknown frame kind 0x{:02x}", h[0])))?;
            let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
            if len > MAX_PAYLOAD {
                return Err(invalid(format!(
                    "{:?} frame of {} bytes exceeds the {} byte limit",
                    kind, len, MAX_PAYLOAD
                )));
            }
            if kind.arrives_in_pieces() && HEADER_LEN + len > self.capacity {
                self.start += HEADER_LEN;
                self.reset_if_drained();
                self.piece_of = Some((kind, len));
            } else {
                return self.whole_frame(kind, len).map(Some);
            }
        }
        let Some((kind, rest)) = self.piece_of else {
            unreachable!("set just above")
        };
        if self.start == self.end && self.buf.len() < self.capacity {
            // Pieces as large as allowed: fewer reads, fewer writes to the client.
            self.buf.resize(self.capacity, 0);
        }
        if self.start == self.end && !self.fill_to(1)? {
            return Err(closed_inside(kind));
        }
        let n = (self.end - self.start).min(rest);
        let rest = rest - n;
        self.piece_of = (rest > 0).then_some((kind, rest));
        self.returned = n;
        let payload = &self.buf[self.start..self.start + n];
        Ok(Some(Frame {
            kind,
            payload,
            rest,
        }))
    }

    /// Continues the frame being handed out in pieces (after [`next_frame`](Self::next_frame)
    /// returned one with more to come), writing its next bytes into `dest`: those already
    /// buffered, or else what one read from the connection brings, straight into `dest`, which
    /// saves copying a large body through the buffer. Returns the bytes written (0 only when
    /// `dest` is full) and how much of the frame is still to come.
    pub fn piece_into(&mut self, dest: &mut UninitBuf<'_>) -> io::Result<(usize, usize)> {
        self.start += std::mem::take(&mut self.returned);
        self.reset_if_drained();
        let Some((kind, rest)) = self.piece_of else {
            return Err(invalid("no frame is arriving in pieces"));
        };
        let want = rest.min(dest.remaining());
        if want == 0 {
            return Ok((0, rest));
        }
        let n = if self.start < self.end {
            let n = dest.extend_from_slice(&self.buf[self.start..self.end.min(self.start + want)]);
            self.start += n;
            self.reset_if_drained();
            n
        } else {
            loop {
                match recv_into(self.sock.as_fd(), dest, want, &mut self.fds) {
                    Ok(0) => return Err(closed_inside(kind)),
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        };
        if self.fds.len() > MAX_QUEUED_FDS {
            return Err(invalid(
                "the peer sent file descriptors without File frames",
            ));
        }
        let rest = rest - n;
        self.piece_of = (rest > 0).then_some((kind, rest));
        Ok((n, rest))
    }

    /// Reads the rest of a frame whose header is buffered at `start`.
    fn whole_frame(&mut self, kind: Kind, len: usize) -> io::Result<Frame<'_>> {
        if !self.fill_to(HEADER_LEN + len)? {
            return Err(closed_inside(kind));
        }
        // The descriptor travels with the first byte of the send that carries the frame, so it
        // has arrived by now.
        if kind == Kind::File && self.fds.is_empty() {
            return Err(invalid("File frame without a file descriptor"));
        }
        self.returned = HEADER_LEN + len;
        let payload = &self.buf[self.start + HEADER_LEN..self.start + HEADER_LEN + len];
        Ok(Frame {
            kind,
            payload,
            rest: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::test_util::TempDir;
    use crate::daemon::unix::set_timeouts;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn pair() -> (FrameWriter<UnixStream>, FrameReader<UnixStream>) {
        let (a, b) = UnixStream::pair().unwrap();
        (FrameWriter::new(a), FrameReader::new(b))
    }

    #[test]
    fn a_reader_grown_for_large_frames_gives_its_pages_back() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut w, mut r) = (
            FrameWriter::new(a),
            FrameReader::with_buffer_size(b, READ_BUFFER),
        );
        w.frame(Kind::Headers, &[1; 100]).unwrap();
        w.flush().unwrap();
        whole(&mut r).unwrap();
        assert!(!r.give_back_grown_buffer(), "an 8 KiB buffer is kept");
        w.data(&[0x55; 60_000], true).unwrap();
        whole(&mut r).unwrap();
        assert!(r.buf.len() > GROWN_BUFFER);
        assert!(r.buf[8192..60_000].iter().all(|&b| b == 0x55));
        assert!(r.give_back_grown_buffer());
        // Whole pages inside the buffer read as zeros now: the kernel has them back.
        assert!(r.buf[8192..56_000].iter().all(|&b| b == 0));
    }

    /// The next frame with its pieces put back together.
    fn whole<S: AsFd>(r: &mut FrameReader<S>) -> Option<(Kind, Vec<u8>)> {
        let f = r.next_frame().unwrap()?;
        let (kind, mut payload, mut rest) = (f.kind, f.payload.to_vec(), f.rest);
        while rest > 0 {
            let piece = r.next_frame().unwrap().unwrap();
            assert_eq!(piece.kind, kind);
            assert!(!piece.payload.is_empty());
            assert_eq!(piece.payload.len() + piece.rest, rest);
            payload.extend_from_slice(piece.payload);
            rest = piece.rest;
        }
        Some((kind, payload))
    }

    fn sample_request() -> RequestHead {
        RequestHead {
            token: std::array::from_fn(|i| i as u8 * 7),
            script: b"/srv/app/\xff\xfeapp.wsgi".to_vec(),
            application_group: "example.com|/app".into(),
            callable_object: "application".into(),
            script_reloading: true,
            vars: CgiVars::from_iter(vec![
                (b"REQUEST_METHOD".to_vec(), b"GET".to_vec()),
                (b"PATH_INFO".to_vec(), b"/caf\xe9/\x00\xff".to_vec()),
                (b"\xc3\x28bad-key".to_vec(), Vec::new()),
                (Vec::new(), b"empty key".to_vec()),
            ]),
        }
    }

    fn sample_response() -> ResponseHead {
        ResponseHead {
            status: 200,
            status_line: "200 OK".into(),
            headers: vec![
                ("Content-Type".into(), "text/plain; charset=utf-8".into()),
                ("X-Ünïcode".into(), "välue".into()),
                ("Empty".into(), String::new()),
            ],
            content_length: Some(12),
        }
    }

    fn enc_req(h: &RequestHead) -> Vec<u8> {
        let mut v = Vec::new();
        encode_request_head(h, &mut v);
        v
    }

    fn enc_resp(h: &ResponseHead) -> Vec<u8> {
        let mut v = Vec::new();
        encode_response_head(h, &mut v);
        v
    }

    #[test]
    fn small_data_frames_ahead_counts_only_whole_small_data_frames_already_here() {
        let (mut w, mut r) = pair();
        w.frame(Kind::Headers, b"h").unwrap();
        w.frame(Kind::Data, b"a").unwrap();
        w.frame(Kind::DataFlush, b"bb").unwrap();
        w.frame(Kind::Data, &[b'c'; 100]).unwrap();
        w.frame(Kind::End, b"").unwrap();
        w.flush().unwrap();
        assert_eq!(r.small_data_frames_ahead(64, 5), 0, "nothing read yet");
        assert_eq!(r.next_frame().unwrap().unwrap().kind, Kind::Headers);
        // The two small ones; the 100-byte one is over the size asked about.
        assert_eq!(r.small_data_frames_ahead(64, 5), 2);
        assert_eq!(r.small_data_frames_ahead(64, 1), 1);
        assert_eq!(r.small_data_frames_ahead(128, 5), 3);
        for _ in 0..3 {
            r.next_frame().unwrap().unwrap();
        }
        assert_eq!(r.small_data_frames_ahead(128, 5), 0, "an End frame is next");
    }

    #[test]
    fn kind_bytes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert_eq!(Kind::from_u8(k as u8), Some(k));
            assert!(seen.insert(k as u8));
        }
        let unknown = (0..=255u8).filter(|b| Kind::from_u8(*b).is_none()).count();
        assert_eq!(unknown, 256 - Kind::ALL.len());
    }

    #[test]
    fn request_head_round_trips() {
        let h = sample_request();
        assert_eq!(decode_request_head(&enc_req(&h)).unwrap(), h);
        let empty = RequestHead {
            token: [0; 32],
            script: Vec::new(),
            application_group: String::new(),
            callable_object: String::new(),
            script_reloading: false,
            vars: CgiVars::default(),
        };
        assert_eq!(decode_request_head(&enc_req(&empty)).unwrap(), empty);
        assert!(
            !format!("{:?}", h).contains("[0, 7"),
            "token must not be logged"
        );
    }

    #[test]
    fn response_head_round_trips() {
        let h = sample_response();
        assert_eq!(decode_response_head(&enc_resp(&h)).unwrap(), h);
        let bare = ResponseHead {
            status: 599,
            status_line: "599 Whatever".into(),
            headers: Vec::new(),
            content_length: None,
        };
        assert_eq!(decode_response_head(&enc_resp(&bare)).unwrap(), bare);
    }

    #[test]
    fn version_mismatch_names_both_versions() {
        let mut p = enc_req(&sample_request());
        p[0] = 7;
        let err = decode_request_head(&p).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let msg = err.to_string();
        assert!(
            msg.contains("version 7") && msg.contains("version 1"),
            "{}",
            msg
        );
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let req = enc_req(&sample_request());
        for n in 0..req.len() {
            assert!(decode_request_head(&req[..n]).is_err(), "prefix {}", n);
        }
        let mut long = req.clone();
        long.push(0);
        assert!(decode_request_head(&long).is_err());
        let resp = enc_resp(&sample_response());
        for n in 0..resp.len() {
            assert!(decode_response_head(&resp[..n]).is_err(), "prefix {}", n);
        }
        let mut long = resp.clone();
        long.push(0);
        assert!(decode_response_head(&long).is_err());
    }

    #[test]
    fn lying_counts_and_lengths_are_errors() {
        // A header count of u32::MAX with nothing behind it.
        let mut p = Vec::new();
        p.extend_from_slice(&200u16.to_le_bytes());
        put_bytes(&mut p, b"200 OK");
        p.push(0);
        p.extend_from_slice(&0u64.to_le_bytes());
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_response_head(&p).is_err());
        // A script length far beyond the payload.
        let mut p = vec![PROTOCOL_VERSION];
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_request_head(&p).is_err());
        // Non-UTF-8 application group.
        let good = enc_req(&sample_request());
        let req = sample_request();
        let group_at = 1 + 32 + 4 + req.script.len() + 4;
        let mut h = good.clone();
        h[group_at] = 0xff;
        assert!(decode_request_head(&h).is_err());
        // A reloading flag other than 0 or 1.
        let flag_at = group_at + req.application_group.len() + 4 + req.callable_object.len();
        assert_eq!(good[flag_at], 1);
        let mut h = good.clone();
        h[flag_at] = 2;
        assert!(decode_request_head(&h).is_err());
    }

    /// xorshift64*, enough for a deterministic fuzz loop.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn fuzzed_payloads_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let req = enc_req(&sample_request());
        let resp = enc_resp(&sample_response());
        for _ in 0..5000 {
            for base in [&req, &resp] {
                let mut p = base[..rng.below(base.len() + 1)].to_vec();
                for _ in 0..rng.below(4) {
                    if !p.is_empty() {
                        let i = rng.below(p.len());
                        p[i] = rng.next() as u8;
                    }
                }
                let _ = decode_request_head(&p);
                let _ = decode_response_head(&p);
                let _ = parse_log(&p);
                let _ = parse_reject(&p);
                let _ = parse_end(&p);
                let _ = parse_file(&p);
                let _ = parse_u64(&p);
                let _ = parse_pid(&p);
                let _ = parse_text(&p);
            }
        }
    }

    #[test]
    fn small_payload_helpers() {
        assert_eq!(parse_u64(&u64_payload(u64::MAX - 3)).unwrap(), u64::MAX - 3);
        assert!(parse_u64(&[1, 2, 3]).is_err());
        assert!(parse_u64(&[0; 9]).is_err());
        assert_eq!(parse_pid(&pid_payload(4242)).unwrap(), 4242);
        assert!(parse_pid(&[0; 3]).is_err());
        assert_eq!(parse_file(&file_payload(5, 1 << 40)).unwrap(), (5, 1 << 40));
        assert!(parse_file(&[0; 15]).is_err());
        for level in [Level::Error, Level::Warning, Level::Info, Level::Debug] {
            let mut p = Vec::new();
            encode_log(level, "héllo", &mut p);
            assert_eq!(parse_log(&p).unwrap(), (level, "héllo"));
        }
        assert!(parse_log(&[4, b'x']).is_err());
        assert!(parse_log(&[]).is_err());
        assert!(parse_log(&[0, 0xff]).is_err());
        let mut p = Vec::new();
        encode_reject(504, "Queue timeout expired", &mut p);
        assert_eq!(parse_reject(&p).unwrap(), (504, "Queue timeout expired"));
        assert!(parse_reject(&[1]).is_err());
        for s in [EndStatus::Complete, EndStatus::FailedBeforeHeaders] {
            assert_eq!(parse_end(&end_payload(s)).unwrap(), s);
        }
        assert!(parse_end(&[2]).is_err());
        assert!(parse_end(&[0, 0]).is_err());
        assert_eq!(
            parse_text(text_payload("restarting")).unwrap(),
            "restarting"
        );
        // Cutting to fit keeps whole characters.
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("aé", 3), "aé");
    }

    #[test]
    fn every_kind_round_trips_through_a_socket() {
        let (mut w, mut r) = pair();
        let dir = TempDir::new("kinds");
        let file = std::fs::File::create(dir.0.join("f")).unwrap();
        // Alternate small, empty and large payloads.
        let sent: Vec<(Kind, Vec<u8>)> = Kind::ALL
            .into_iter()
            .enumerate()
            .map(|(i, k)| match (k, i % 3) {
                (Kind::File, _) => (k, file_payload(3, 4).to_vec()),
                (_, 0) => (k, vec![i as u8; i + 1]),
                (_, 1) => (k, Vec::new()),
                _ => (k, vec![i as u8; 100_000]),
            })
            .collect();
        let to_send = sent.clone();
        // The large payloads exceed the socket buffer: write from another thread.
        let t = std::thread::spawn(move || {
            for (k, p) in &to_send {
                if *k == Kind::File {
                    w.send_file_frame(3, 4, file.as_fd()).unwrap();
                } else {
                    w.frame(*k, p).unwrap();
                }
            }
            w.flush().unwrap();
            assert_eq!(w.buffered(), 0);
        });
        for (k, p) in sent {
            assert_eq!(whole(&mut r).unwrap(), (k, p));
            if k == Kind::File {
                assert!(r.take_fd().is_some());
            }
        }
        t.join().unwrap();
        assert!(r.next_frame().unwrap().is_none());
        assert_eq!(r.queued_fds(), 0);
    }

    #[test]
    fn heads_travel_in_frames() {
        let (mut w, mut r) = pair();
        w.frame(Kind::Request, &enc_req(&sample_request())).unwrap();
        w.frame(Kind::Headers, &enc_resp(&sample_response()))
            .unwrap();
        w.flush().unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.kind, Kind::Request);
        assert_eq!(decode_request_head(f.payload).unwrap(), sample_request());
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.kind, Kind::Headers);
        assert_eq!(decode_response_head(f.payload).unwrap(), sample_response());
    }

    #[test]
    fn small_frames_wait_for_flush() {
        let (mut w, mut r) = pair();
        set_timeouts(r.get_ref().as_fd(), Some(Duration::from_millis(20)), None).unwrap();
        w.frame(Kind::Pull, &u64_payload(8192)).unwrap();
        assert_eq!(w.buffered(), HEADER_LEN + 8);
        let err = r.next_frame().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        w.flush().unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, parse_u64(f.payload).unwrap()), (Kind::Pull, 8192));
    }

    #[test]
    fn timeout_inside_a_frame_resumes() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut raw = &a;
        let mut r = FrameReader::new(b);
        set_timeouts(r.get_ref().as_fd(), Some(Duration::from_millis(20)), None).unwrap();
        raw.write_all(&[b'D', 4, 0, 0, 0, b'a', b'b']).unwrap();
        assert_eq!(
            r.next_frame().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        raw.write_all(b"cd").unwrap();
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.payload), (Kind::Data, &b"abcd"[..]));
    }

    #[test]
    fn large_data_crosses_threads_and_splits_at_the_limit() {
        let (mut w, mut r) = pair();
        let five: Vec<u8> = (0..5 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
        let huge = vec![7u8; MAX_PAYLOAD + 1000];
        let (five2, huge2) = (five.clone(), huge.clone());
        let t = std::thread::spawn(move || {
            w.data(b"head", false).unwrap();
            w.data(&five2, false).unwrap();
            w.data(&huge2, true).unwrap();
            w.data(b"", true).unwrap();
            w.frame(Kind::End, &end_payload(EndStatus::Complete))
                .unwrap();
            w.flush().unwrap();
        });
        let mut got = Vec::new();
        loop {
            let (kind, payload) = whole(&mut r).unwrap();
            got.push((kind, payload.len()));
            match got.len() {
                2 => assert_eq!(payload, five),
                3 | 4 => assert!(payload.iter().all(|b| *b == 7)),
                _ => {}
            }
            if kind == Kind::End {
                break;
            }
        }
        t.join().unwrap();
        assert_eq!(
            got,
            [
                (Kind::Data, 4),
                (Kind::Data, 5 << 20),
                (Kind::Data, MAX_PAYLOAD),
                (Kind::DataFlush, 1000),
                (Kind::DataFlush, 0),
                (Kind::End, 1),
            ]
        );
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn the_rest_of_a_body_frame_can_be_read_straight_into_a_buffer() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let data2 = data.clone();
        let t = std::thread::spawn(move || {
            w.frame(Kind::Body, &data2).unwrap();
            w.frame(Kind::BodyEnd, &[]).unwrap();
            w.flush().unwrap();
        });
        let first = r.next_frame().unwrap().unwrap();
        assert_eq!(first.kind, Kind::Body);
        let mut got = first.payload.to_vec();
        let mut rest = first.rest;
        assert!(rest > 0);
        while rest > 0 {
            let mut storage = vec![std::mem::MaybeUninit::<u8>::uninit(); 10_000];
            let mut dest = UninitBuf::new(&mut storage);
            let (n, left) = r.piece_into(&mut dest).unwrap();
            assert!(n > 0 && n == dest.filled() && left == rest - n);
            got.extend_from_slice(dest.written());
            rest = left;
        }
        assert_eq!(got, data);
        // Read straight into the destination, not through the reader's own buffer.
        assert!(
            r.buf.len() <= INITIAL_BUFFER,
            "buffer grew to {}",
            r.buf.len()
        );
        assert_eq!(r.next_frame().unwrap().unwrap().kind, Kind::BodyEnd);
        // With no frame arriving in pieces, there is nothing to continue.
        let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); 8];
        assert!(r.piece_into(&mut UninitBuf::new(&mut storage)).is_err());
        t.join().unwrap();
    }

    #[test]
    fn body_frames_larger_than_the_buffer_come_in_pieces_other_frames_whole() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut w = FrameWriter::new(a);
        let size = 16 << 10;
        let mut r = FrameReader::with_buffer_size(b, size);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let request = vec![b'q'; 50_000];
        let (data2, request2) = (data.clone(), request.clone());
        let t = std::thread::spawn(move || {
            w.frame(Kind::DataFlush, &data2).unwrap();
            w.frame(Kind::Request, &request2).unwrap();
            w.frame(Kind::Body, &data2[..size]).unwrap();
            w.frame(Kind::Data, b"small").unwrap();
            w.flush().unwrap();
        });
        // The data frame: pieces no larger than the buffer, counting down what is to come.
        let mut got = Vec::new();
        let mut pieces = 0;
        loop {
            let f = r.next_frame().unwrap().unwrap();
            assert_eq!(f.kind, Kind::DataFlush);
            assert!(!f.payload.is_empty() && f.payload.len() <= size);
            got.extend_from_slice(f.payload);
            assert_eq!(got.len() + f.rest, data.len());
            pieces += 1;
            if f.rest == 0 {
                break;
            }
        }
        assert_eq!(got, data);
        assert!(pieces >= data.len() / size, "{pieces} pieces");
        // Not a body frame: one frame however large.
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(
            (f.kind, f.payload, f.rest),
            (Kind::Request, &request[..], 0)
        );
        // Header and payload together one frame-header's worth larger than the buffer.
        assert_eq!(whole(&mut r).unwrap(), (Kind::Body, data[..size].to_vec()));
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.payload, f.rest), (Kind::Data, &b"small"[..], 0));
        t.join().unwrap();
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn eof_inside_a_frame_in_pieces_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut r = FrameReader::with_buffer_size(b, 16);
        let mut raw = &a;
        raw.write_all(&[b'D', 100, 0, 0, 0]).unwrap();
        raw.write_all(&[1u8; 30]).unwrap();
        drop(a);
        let mut n = 0;
        let err = loop {
            match r.next_frame() {
                Ok(Some(f)) => n += f.payload.len(),
                Ok(None) => panic!("a clean end inside a frame"),
                Err(e) => break e,
            }
        };
        assert_eq!(n, 30);
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn file_frames_pass_descriptors_between_data() {
        let dir = TempDir::new("fd");
        let path = dir.0.join("body");
        std::fs::write(&path, b"0123456789abcdef").unwrap();
        let other = dir.0.join("other");
        std::fs::write(&other, b"second file").unwrap();
        let (mut w, mut r) = pair();
        {
            let f1 = std::fs::File::open(&path).unwrap();
            let f2 = std::fs::File::open(&other).unwrap();
            w.data(b"before", false).unwrap();
            w.send_file_frame(4, 6, f1.as_fd()).unwrap();
            w.data(&vec![1u8; 40_000], false).unwrap();
            w.send_file_frame(0, 6, f2.as_fd()).unwrap();
            w.data(b"after", true).unwrap();
        } // our copies are closed; the receiver's stay valid
        drop(w);
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.payload), (Kind::Data, &b"before"[..]));
        let mut seen = Vec::new();
        for _ in 0..2 {
            let f = r.next_frame().unwrap().unwrap();
            assert_eq!(f.kind, Kind::File);
            let (off, len) = parse_file(f.payload).unwrap();
            let fd = r.take_fd().unwrap();
            let flags = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                std::os::fd::AsRawFd::as_raw_fd(&fd)
            ))
            .unwrap();
            let flags = flags
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
                .unwrap();
            assert_ne!(
                flags & libc::O_CLOEXEC as u32,
                0,
                "received fd is close-on-exec"
            );
            let file = std::fs::File::from(fd);
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, off).unwrap();
            seen.push(buf);
            if seen.len() == 1 {
                let f = r.next_frame().unwrap().unwrap();
                assert_eq!((f.kind, f.payload.len()), (Kind::Data, 40_000));
            }
        }
        assert_eq!(seen, [b"456789".to_vec(), b"second".to_vec()]);
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!((f.kind, f.payload), (Kind::DataFlush, &b"after"[..]));
        assert!(r.next_frame().unwrap().is_none());
        assert_eq!(r.queued_fds(), 0);
    }

    fn read_raw(bytes: &[u8]) -> io::Result<Vec<(Kind, Vec<u8>)>> {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(bytes).unwrap();
        drop(a);
        let mut r = FrameReader::new(b);
        let mut out = Vec::new();
        while let Some(f) = r.next_frame()? {
            out.push((f.kind, f.payload.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn clean_eof_differs_from_eof_inside_a_frame() {
        assert_eq!(read_raw(b"").unwrap(), []);
        assert_eq!(
            read_raw(b"C\0\0\0\0D\x02\0\0\0hi").unwrap(),
            [(Kind::Continue, vec![]), (Kind::Data, b"hi".to_vec())]
        );
        for cut in [b"C\0\0".as_slice(), b"D\x02\0\0\0h", b"C\0\0\0\0D"] {
            let err = read_raw(cut).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{:?}", cut);
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        let err = read_raw(b"?\0\0\0\0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("0x3f"));
        let mut over = vec![b'D'];
        over.extend_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert_eq!(
            read_raw(&over).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut huge = vec![b'D'];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            read_raw(&huge).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // A File frame whose descriptor never came.
        let mut file = vec![b'S', 16, 0, 0, 0];
        file.extend_from_slice(&file_payload(0, 1));
        assert_eq!(
            read_raw(&file).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn random_truncations_of_a_stream_never_panic() {
        let mut stream = Vec::new();
        let mut add = |k: Kind, p: &[u8]| {
            stream.extend_from_slice(&frame_header(k, p.len()));
            stream.extend_from_slice(p);
        };
        add(Kind::Accepted, &pid_payload(1));
        add(Kind::Headers, &enc_resp(&sample_response()));
        add(Kind::Data, b"hello");
        add(Kind::End, &end_payload(EndStatus::Complete));
        let mut rng = Rng(42);
        for _ in 0..300 {
            let mut s = stream[..rng.below(stream.len() + 1)].to_vec();
            if rng.below(2) == 0 && !s.is_empty() {
                let i = rng.below(s.len());
                s[i] = rng.next() as u8;
            }
            if let Ok(frames) = read_raw(&s) {
                for (k, p) in frames {
                    if k == Kind::Headers {
                        let _ = decode_response_head(&p);
                    }
                }
            }
        }
    }

    #[test]
    fn writer_refuses_oversized_frames_and_fails_on_closed_peer() {
        let (mut w, r) = pair();
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert_eq!(
            w.frame(Kind::Headers, &big).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        drop(r);
        w.frame(Kind::Continue, &[]).unwrap();
        let err = w.flush().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        // Poisoned from now on.
        assert!(w.frame(Kind::Continue, &[]).is_err());
        assert!(w.data(b"", false).is_err());
    }
}
