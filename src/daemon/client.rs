//! The Apache-child side of a proxied request: connect to the group's socket (waiting while a
//! process restarts), send the request, then carry out each frame the daemon sends against the
//! child's own `RequestIo` (Apache), until the response is complete. Written against `RequestIo`
//! so it runs in unit tests without Apache.

use super::now_us;
use super::unix::{self, RetryPolicy};
use super::wire::{self, DeclaredBody, FrameReader, FrameWriter, Kind, RequestHead};
use crate::wsgi::io::log_failure;
use crate::wsgi::{Level, Pulled, RequestIo};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Where and how to reach a daemon process group.
pub struct Target<'a> {
    pub group: &'a str,
    pub socket: &'a Path,
    pub processes: u32,
    /// How long to keep trying to connect (connect-timeout).
    pub connect_timeout: Duration,
    /// The longest wait for any read or write on the connection (socket-timeout, else Apache's
    /// `Timeout`).
    pub io_timeout: Duration,
    /// The longest header line accepted from the daemon (header-buffer-size).
    pub header_buffer_size: usize,
    /// The most response body bytes held at once (response-buffer-size): larger blocks from
    /// the daemon go to the client in pieces of this size.
    pub response_buffer_size: usize,
    /// How long one write of the response to the client may block (response-socket-timeout);
    /// None leaves the server's own timeout.
    pub response_timeout: Option<Duration>,
}

/// How the exchange ended, for the handler's return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// A response went to the client (perhaps truncated, which was logged).
    Done,
    /// Nothing was sent: Apache answers with this status (its error page applies).
    Status(u16),
}

/// What one connection attempt came to.
enum Attempt {
    Finished(Exchange),
    /// The daemon did not take the request (it was restarting): safe to send it again.
    Again,
}

/// The variables [`forward`] adds to the request's.
pub const EXCHANGE_VARS: &[&str] = &[
    "mod_wsgi.queue_start",
    "mod_wsgi.daemon_connects",
    "mod_wsgi.daemon_restarts",
];

/// Forwards one request to the daemon group and proxies the response back through `io`.
pub fn forward(target: &Target<'_>, head: &mut RequestHead, io: &mut dyn RequestIo) -> Exchange {
    let request_id = head
        .vars
        .get("mod_wsgi.request_id")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    let mut connects = 0u32;
    let mut restarts = 0u32;
    let queue_start = now_us();
    head.vars
        .set("mod_wsgi.queue_start", queue_start.to_string());
    // Each process of the group may restart once for a changed script before taking it.
    let max_restarts = 2 * target.processes.max(1) + 1;
    let mut since = None;
    loop {
        let conn = match connect(target, &mut connects, io) {
            Ok(conn) => conn,
            Err(status) => return Exchange::Status(status),
        };
        head.vars
            .set("mod_wsgi.daemon_connects", connects.to_string());
        head.vars
            .set("mod_wsgi.daemon_restarts", restarts.to_string());
        match exchange(target, conn, head, io, &request_id) {
            Attempt::Finished(result) => return result,
            Attempt::Again => {
                restarts += 1;
                // Past one hand-back per process, an old process is still handing back what it
                // accepted before it stopped (under load, several): try again after a pause,
                // for as long as connect-timeout allows.
                let handed_back_since = *since.get_or_insert_with(Instant::now);
                if restarts >= max_restarts {
                    if handed_back_since.elapsed() < target.connect_timeout {
                        let pause = 10 * u64::from((restarts - max_restarts + 1).min(10));
                        std::thread::sleep(Duration::from_millis(pause));
                        continue;
                    }
                    log_failure(
                        io,
                        Level::Error,
                        format_args!(
                            "mod_wsgi: Daemon process group '{}' kept restarting instead of \
                             taking request {request_id} ({restarts} attempts).",
                            target.group
                        ),
                    );
                    return Exchange::Status(503);
                }
            }
        }
    }
}

/// Connects, retrying while the socket is being replaced or its backlog is full; on failure
/// logs why (path, our uid, the error) and gives the status to answer.
fn connect(
    target: &Target<'_>,
    connects: &mut u32,
    io: &mut dyn RequestIo,
) -> Result<OwnedFd, u16> {
    let policy = RetryPolicy {
        timeout: target.connect_timeout,
    };
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        *connects += 1;
        let err = match unix::connect(target.socket) {
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        if unix::is_retryable(&err) {
            if let Some(delay) = policy.delay(attempt, started.elapsed()) {
                attempt += 1;
                std::thread::sleep(delay);
                continue;
            }
        }
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let waited = if unix::is_retryable(&err) {
            format!(
                " after {attempt} attempts over {:.1} seconds (connect-timeout)",
                started.elapsed().as_secs_f64()
            )
        } else {
            String::new()
        };
        log_failure(
            io,
            Level::Error,
            format_args!(
                "mod_wsgi: Unable to connect to WSGI daemon process '{}' on '{}' as user with \
                 uid={uid}{waited}: {err}",
                target.group,
                target.socket.display()
            ),
        );
        return Err(503);
    }
}

/// Where in the response the exchange is, to say what a failure means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The request is sent; no headers yet.
    Sent,
    /// Headers are out; a failure now can only truncate the response.
    Sending,
}

/// Whether the connection was reset: the daemon closed it with the request still unread (or
/// never accepted it), so the request did not run. A daemon that read the request and then
/// ended leaves a plain end of stream instead (Linux, AF_UNIX).
fn was_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

fn exchange(
    target: &Target<'_>,
    conn: OwnedFd,
    head: &RequestHead,
    io: &mut dyn RequestIo,
    request_id: &str,
) -> Attempt {
    let timeout = (!target.io_timeout.is_zero()).then_some(target.io_timeout);
    let _ = unix::set_timeouts(conn.as_fd(), timeout, timeout);
    let mut payload = Vec::with_capacity(4096);
    wire::encode_request_head(head, &mut payload);
    let conn = std::sync::Arc::new(conn);
    let mut reader = FrameReader::with_buffer_size(
        conn.clone(),
        wire::HEADER_LEN + target.response_buffer_size.max(1),
    );
    let mut writer = FrameWriter::new(conn);
    if writer
        .frame(Kind::Request, &payload)
        .and_then(|()| writer.flush())
        .is_err()
    {
        // Closed before reading anything: the process was stopping. Not taken; send again.
        return Attempt::Again;
    }
    let mut stage = Stage::Sent;
    let mut body = BodyForwarded::new(head);
    let group = target.group;
    let fail = |io: &mut dyn RequestIo, stage: Stage, what: &str| -> Attempt {
        match stage {
            Stage::Sent => {
                log_failure(
                    io,
                    Level::Error,
                    format_args!(
                        "mod_wsgi: Daemon process group '{group}' {what} before sending \
                         response headers for request {request_id}: the process serving it \
                         died (its supervisor logs its pid and how it ended)."
                    ),
                );
                Attempt::Finished(Exchange::Status(502))
            }
            Stage::Sending => {
                log_failure(
                    io,
                    Level::Error,
                    format_args!(
                        "mod_wsgi: Daemon process group '{group}' {what} in the middle of the \
                         response to request {request_id}; the response is truncated."
                    ),
                );
                io.abort_response();
                Attempt::Finished(Exchange::Done)
            }
        }
    };
    // Small blocks of response data that arrived together, held to go to the client as one
    // (one chunk, one write) rather than one each: an application yielding many small pieces
    // faster than the client takes them. Only blocks already here are held, so none waits.
    let mut held: Vec<u8> = Vec::new();
    let mut held_flush = false;
    loop {
        let ahead = reader.small_data_frames_ahead(HELD_DATA_MAX, 2);
        if !held.is_empty() && (ahead == 0 || held.len() >= HELD_TOTAL_MAX) {
            if let Err(e) = io.write_body(&held, std::mem::take(&mut held_flush)) {
                return client_failed(io, &e, target, request_id);
            }
            held.clear();
        }
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return fail(io, stage, "closed the connection"),
            Err(e) if stage == Stage::Sent && !body.pulled && was_reset(&e) => {
                return Attempt::Again
            }
            Err(e) if is_timeout(&e) => {
                let secs = target.io_timeout.as_secs();
                return match stage {
                    Stage::Sent => {
                        log_failure(
                            io,
                            Level::Error,
                            format_args!(
                                "mod_wsgi: Timeout waiting for daemon process group '{group}' \
                                 for response headers: socket-timeout of {secs} seconds \
                                 expired for request {request_id} (the application is slow, \
                                 all the group's threads are busy, or its processes cannot \
                                 start: look for their own lines above)."
                            ),
                        );
                        Attempt::Finished(Exchange::Status(504))
                    }
                    Stage::Sending => fail(
                        io,
                        stage,
                        &format!("sent nothing for socket-timeout ({secs} seconds)"),
                    ),
                };
            }
            Err(e) => return fail(io, stage, &format!("failed ({e})")),
        };
        match frame.kind {
            Kind::Restart if !body.pulled && stage != Stage::Sending => return Attempt::Again,
            Kind::Reject if stage != Stage::Sending => {
                let (status, message) =
                    wire::parse_reject(frame.payload).unwrap_or((500, "malformed reject frame"));
                io.log(Level::Error, message);
                return Attempt::Finished(Exchange::Status(status));
            }
            Kind::Headers if stage == Stage::Sent => {
                let head = match wire::decode_response_head(frame.payload) {
                    Ok(head) => head,
                    Err(e) => {
                        log_failure(io,
                            Level::Error,
                            format_args!("mod_wsgi: Malformed response headers from daemon process group '{group}': {e}"),
                        );
                        return Attempt::Finished(Exchange::Status(500));
                    }
                };
                if let Some(problem) = header_problem(&head, target.header_buffer_size) {
                    log_failure(
                        io,
                        Level::Error,
                        format_args!(
                            "mod_wsgi: Response headers from daemon process group '{group}' \
                             refused for request {request_id}: {problem}"
                        ),
                    );
                    return Attempt::Finished(Exchange::Status(500));
                }
                if let Err(e) = io.send_headers(&head) {
                    log_failure(io, Level::Error, format_args!("mod_wsgi: {e}"));
                    return Attempt::Finished(Exchange::Status(500));
                }
                if let Some(timeout) = target.response_timeout {
                    io.set_send_timeout(timeout);
                }
                stage = Stage::Sending;
            }
            Kind::Data | Kind::DataFlush if stage == Stage::Sending => {
                // A flush applies once the frame's last piece is written.
                let flush = frame.kind == Kind::DataFlush && frame.rest == 0;
                // This frame is the first of `ahead`: hold it while another is here behind it.
                if ahead >= 2 || (ahead == 1 && !held.is_empty()) {
                    held.extend_from_slice(frame.payload);
                    held_flush |= flush;
                    continue;
                }
                if let Err(e) = io.write_body(frame.payload, flush) {
                    // Closing the connection tells the application.
                    return client_failed(io, &e, target, request_id);
                }
            }
            Kind::File if stage == Stage::Sending => {
                let range = wire::parse_file(frame.payload);
                let Some(fd) = reader.take_fd() else {
                    return fail(io, stage, "sent a file without its descriptor");
                };
                let Ok((offset, len)) = range else {
                    return fail(io, stage, "sent a malformed file frame");
                };
                if let Err(e) = io.send_file(fd.as_raw_fd(), offset, len) {
                    return client_failed(io, &e, target, request_id);
                }
            }
            Kind::Pull => {
                // Not a failure yet: an application that has read all the body it wanted may
                // answer, and its process close the connection, before this answer (its
                // PullDone, say) is all sent. The response is then still here to read; a
                // process that died shows as the end of the stream, read next.
                let _ = body.answer_pull(frame.payload, &mut writer, io);
            }
            Kind::Continue => io.expect_continue(),
            Kind::Log => {
                if let Ok((level, line)) = wire::parse_log(frame.payload) {
                    io.log(level, line);
                }
            }
            Kind::End => {
                let failed = wire::parse_end(frame.payload).ok() != Some(wire::EndStatus::Complete);
                return match (failed, stage) {
                    (false, Stage::Sending) => {
                        let _ = io.end_response();
                        if body.may_be_read_late() {
                            body.answer_late_pulls(&mut reader, &mut writer, io);
                        }
                        Attempt::Finished(Exchange::Done)
                    }
                    (true, Stage::Sending) => {
                        io.abort_response();
                        Attempt::Finished(Exchange::Done)
                    }
                    _ => Attempt::Finished(Exchange::Status(500)),
                };
            }
            Kind::Abort => {
                io.abort_response();
                return Attempt::Finished(Exchange::Done);
            }
            other => return fail(io, stage, &format!("sent an unexpected {other:?} frame")),
        }
    }
}

/// The largest block of response data held to go out with the next ones, and the most held at
/// once (see `exchange`).
const HELD_DATA_MAX: usize = 8 << 10;
const HELD_TOTAL_MAX: usize = 64 << 10;

/// The response could not be written to the client (gone, or too slow to take it): logged, and
/// the exchange ends; closing the daemon connection tells the application.
fn client_failed(
    io: &mut dyn RequestIo,
    error: &str,
    target: &Target<'_>,
    request_id: &str,
) -> Attempt {
    let limit = match target.response_timeout {
        Some(t) => format!(" (response-socket-timeout {} seconds)", t.as_secs_f64()),
        None => String::new(),
    };
    // A client that left is no failure worth an error line (C logs nothing); one too slow
    // to take the response (a timeout) is.
    let level = if io.client_gone() {
        Level::Debug
    } else {
        Level::Error
    };
    io.log(
        level,
        &format!(
            "mod_wsgi: Failed to proxy response of daemon process group '{}' to client for \
             request {request_id}{limit}: {error}",
            target.group
        ),
    );
    Attempt::Finished(Exchange::Done)
}

/// The request body as the exchange forwards it to the daemon, a `Pull` at a time.
struct BodyForwarded {
    /// A `Pull` has been answered: the request may have run.
    pulled: bool,
    /// Bytes sent so far.
    sent: u64,
    /// Its end (or a failure to read it) has been sent.
    ended: bool,
    declared: DeclaredBody,
    /// The client waits for `100 Continue` before it sends the body.
    expects_continue: bool,
    /// HTTP/1.x, where the rest of a body can still be read once the response has ended.
    /// mod_http2 stops taking in a stream's body when its response is complete.
    http1: bool,
}

impl BodyForwarded {
    fn new(head: &RequestHead) -> BodyForwarded {
        let expects_continue = head
            .vars
            .get("HTTP_EXPECT")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
        let http1 = head
            .vars
            .get("SERVER_PROTOCOL")
            .is_some_and(|p| p.starts_with(b"HTTP/1."));
        BodyForwarded {
            pulled: false,
            sent: 0,
            ended: false,
            declared: head.declared_body(),
            expects_continue,
            http1,
        }
    }

    /// Answers a `Pull` with body bytes as Apache reads them (`Body` frames, then `PullDone`),
    /// or its end or failure.
    fn answer_pull<S: AsFd>(
        &mut self,
        payload: &[u8],
        writer: &mut FrameWriter<S>,
        io: &mut dyn RequestIo,
    ) -> io::Result<()> {
        self.pulled = true;
        let want = wire::parse_u64(payload).unwrap_or(0).min(1 << 20) as usize;
        let max = pull_size(want, self.declared.length, self.sent);
        let mut send_piece = |pieces: &[&[u8]]| writer.frame_parts(Kind::Body, pieces);
        let sent = match io.pull_body(max, wire::PULL_CHUNK, &mut send_piece) {
            Ok(Pulled { bytes: 0, .. }) => {
                self.ended = true;
                writer.frame(Kind::BodyEnd, &[])
            }
            Ok(Pulled { bytes, taken }) => {
                self.sent += bytes as u64;
                taken.and_then(|()| writer.frame(Kind::PullDone, &[]))
            }
            Err(e) => {
                self.ended = true;
                writer.frame(Kind::BodyError, e.as_bytes())
            }
        };
        sent.and_then(|()| writer.flush())
    }

    /// Whether the application may still read some of the body once its response has ended:
    /// the iterable's `close()` runs after that, and may read `wsgi.input` (as it may in
    /// embedded mode, and in C's daemon mode). Not when it has all been sent as its head
    /// declares it (or there is none), which the daemon then knows without asking; nor when
    /// the client still waits for `100 Continue`, which it may never get now: the response is
    /// final; nor over HTTP/2, where the rest of the body stops coming once the response is
    /// complete.
    fn may_be_read_late(&self) -> bool {
        self.http1
            && !self.ended
            && !self.declared.complete_at(self.sent)
            && (self.pulled || !self.expects_continue)
    }

    /// With the response ended, goes on answering the application's reads of the body until
    /// the daemon is done with the request (it closes the connection), so that a `close()`
    /// reading `wsgi.input` gets the body rather than an error. Anything else ends it: a
    /// failure here is no one's but the clean-up's, which the daemon logs.
    fn answer_late_pulls<S: AsFd>(
        &mut self,
        reader: &mut FrameReader<S>,
        writer: &mut FrameWriter<S>,
        io: &mut dyn RequestIo,
    ) {
        while let Ok(Some(frame)) = reader.next_frame() {
            match frame.kind {
                Kind::Pull => {
                    if self.answer_pull(frame.payload, writer, io).is_err() {
                        return;
                    }
                }
                Kind::Log => {
                    if let Ok((level, line)) = wire::parse_log(frame.payload) {
                        io.log(level, line);
                    }
                }
                // The response is final: no interim one may follow it.
                Kind::Continue => {}
                _ => return,
            }
        }
    }
}

/// How much of the body to read for a Pull of `want` bytes: no more than what is left of a
/// declared body (but at least 8 KiB, in case an input filter makes the body longer than
/// declared), so a small upload does not cost a large buffer where one is used.
fn pull_size(want: usize, content_length: Option<u64>, sent: u64) -> usize {
    let left = content_length.map_or(want as u64, |len| len.saturating_sub(sent).max(8192));
    (want as u64).min(left).max(1) as usize
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Why a response head from a daemon may not go to the client, if it may not: a line longer
/// than header-buffer-size, or a status or header that `start_response` would have refused
/// (checked again here, with the same checks, since the daemon runs the application's code).
fn header_problem(head: &crate::wsgi::ResponseHead, limit: usize) -> Option<String> {
    use crate::wsgi::headers::{check_header, parse_status};
    if let Err(e) = parse_status(&head.status_line) {
        return Some(format!("the status line is malformed: {e}"));
    }
    for (name, value) in &head.headers {
        let line = name.len() + 2 + value.len();
        if line > limit {
            return Some(format!(
                "header '{name}' is {line} bytes, more than header-buffer-size ({limit} bytes)"
            ));
        }
        if let Err(e) = check_header(name, value) {
            return Some(format!(
                "header '{}' is malformed: {e}",
                name.escape_debug()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::daemon_io::{DaemonIo, RequestLog, SharedWriter};
    use crate::daemon::test_util::TempDir;
    use crate::wsgi::environ::CgiVars;
    use crate::wsgi::{PieceTaker, ResponseHead};
    use std::os::fd::AsFd;
    use std::sync::{Arc, Mutex};

    /// Apache's side of a request, recorded.
    #[derive(Default)]
    struct Recorder {
        body: Vec<u8>,
        body_at: usize,
        events: Vec<String>,
        sent: Vec<u8>,
        /// Calls of read_body (the blocking read).
        waits: usize,
        /// Sizes of the write_body calls.
        writes: Vec<usize>,
        /// write_body fails with this.
        write_error: Option<&'static str>,
    }

    impl Recorder {
        fn take(&mut self, buf: &mut [u8]) -> usize {
            let n = buf.len().min(5).min(self.body.len() - self.body_at);
            buf[..n].copy_from_slice(&self.body[self.body_at..self.body_at + n]);
            self.body_at += n;
            n
        }
    }

    impl RequestIo for Recorder {
        fn read_body_available(&mut self, buf: &mut [u8]) -> Result<usize, String> {
            Ok(self.take(buf))
        }
        fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, String> {
            self.waits += 1;
            // Like Apache: at most 5 bytes per read, whatever is asked.
            Ok(self.take(buf))
        }
        fn expect_continue(&mut self) {
            self.events.push("continue".into());
        }
        fn send_headers(&mut self, head: &ResponseHead) -> Result<(), String> {
            self.events.push(format!("headers {}", head.status_line));
            Ok(())
        }
        fn write_body(&mut self, data: &[u8], flush: bool) -> Result<(), String> {
            if let Some(e) = self.write_error {
                return Err(e.into());
            }
            self.writes.push(data.len());
            self.sent.extend_from_slice(data);
            if flush {
                self.events.push("flush".into());
            }
            Ok(())
        }
        fn send_file(&mut self, _fd: i32, _offset: u64, _len: u64) -> Result<(), String> {
            unreachable!()
        }
        fn end_response(&mut self) -> Result<(), String> {
            self.events.push("end".into());
            Ok(())
        }
        fn abort_response(&mut self) {
            self.events.push("abort".into());
        }
        fn log(&mut self, _level: Level, msg: &str) {
            self.events.push(format!("log {msg}"));
        }
        fn set_send_timeout(&mut self, timeout: Duration) {
            self.events.push(format!("send timeout {timeout:?}"));
        }
    }

    fn head() -> RequestHead {
        RequestHead {
            token: [7; 32],
            script: b"/x.wsgi".to_vec(),
            application_group: String::new(),
            callable_object: "application".into(),
            script_reloading: true,
            vars: CgiVars::default(),
        }
    }

    /// A daemon that answers each connection with `serve` (the first with a Restart frame when
    /// `restart_first`).
    fn daemon(
        dir: &TempDir,
        restart_first: bool,
        serve: impl Fn(usize, &RequestHead, DaemonIo) + Send + 'static,
    ) -> std::path::PathBuf {
        let path = dir.0.join("s.sock");
        let listener = unix::bind_listener(&path, 8, None, 0, 0).unwrap();
        std::thread::spawn(move || {
            for n in 0.. {
                let Ok(conn) = unix::accept(listener.as_fd()) else {
                    return;
                };
                let conn = Arc::new(conn);
                let writer: SharedWriter = Arc::new(Mutex::new(FrameWriter::new(conn.clone())));
                let mut reader = FrameReader::new(conn);
                let frame = reader.next_frame().unwrap().unwrap();
                let head = wire::decode_request_head(frame.payload).unwrap();
                {
                    let mut w = writer.lock().unwrap();
                    if restart_first && n == 0 {
                        w.frame(Kind::Restart, b"script changed").unwrap();
                    }
                    w.flush().unwrap();
                }
                if restart_first && n == 0 {
                    continue;
                }
                let log = RequestLog::new(writer.clone(), "127.0.0.1:1");
                serve(n, &head, DaemonIo::new(reader, writer, log));
            }
        });
        path
    }

    fn target(path: &Path) -> Target<'_> {
        Target {
            group: "g",
            socket: path,
            processes: 1,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            header_buffer_size: 100,
            response_buffer_size: 65536,
            response_timeout: None,
        }
    }

    fn response(status: &str, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status: status[..3].parse().unwrap(),
            status_line: status.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_length: None,
        }
    }

    #[test]
    fn body_is_pulled_as_the_application_reads_and_the_response_proxied() {
        let dir = TempDir::new("client-echo");
        let path = daemon(&dir, false, |_, _, mut io| {
            let mut got = Vec::new();
            let mut buf = [0u8; 3];
            loop {
                let n = io.read_body(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            io.expect_continue();
            io.log(Level::Error, "a line");
            io.send_headers(&response("200 OK", &[("X", "1")])).unwrap();
            io.write_body(&got, false).unwrap();
            io.write_body(b"!", true).unwrap();
            io.end_response().unwrap();
        });
        let mut io = Recorder {
            body: b"hello, daemon".to_vec(),
            ..Default::default()
        };
        let mut h = head();
        assert_eq!(forward(&target(&path), &mut h, &mut io), Exchange::Done);
        assert_eq!(io.sent, b"hello, daemon!");
        // One Pull took all that had arrived (three network reads' worth), one found the end.
        assert_eq!(io.waits, 2);
        assert_eq!(
            io.events,
            ["continue", "log a line", "headers 200 OK", "flush", "end"]
        );
        assert_eq!(h.vars.get("mod_wsgi.daemon_connects"), Some(&b"1"[..]));
    }

    #[test]
    fn a_pull_is_answered_in_body_frames_of_at_most_pull_chunk_then_pull_done() {
        let dir = TempDir::new("client-pull-chunks");
        let path = dir.0.join("s.sock");
        let listener = unix::bind_listener(&path, 8, None, 0, 0).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let daemon = std::thread::spawn(move || {
            let conn = Arc::new(unix::accept(listener.as_fd()).unwrap());
            let mut w = FrameWriter::new(conn.clone());
            let mut r = FrameReader::new(conn);
            assert_eq!(r.next_frame().unwrap().unwrap().kind, Kind::Request);
            w.frame(Kind::Pull, &(1u64 << 20).to_le_bytes()).unwrap();
            w.flush().unwrap();
            loop {
                let (kind, len, mut rest) = {
                    let f = r.next_frame().unwrap().unwrap();
                    (f.kind, f.payload.len() + f.rest, f.rest)
                };
                seen2.lock().unwrap().push((kind, len));
                // The frame's other pieces, if it came in pieces.
                while rest > 0 {
                    rest = r.next_frame().unwrap().unwrap().rest;
                }
                if kind != Kind::Body {
                    break;
                }
            }
            let mut head = Vec::new();
            wire::encode_response_head(&response("200 OK", &[]), &mut head);
            w.frame(Kind::Headers, &head).unwrap();
            w.frame(Kind::End, &wire::end_payload(wire::EndStatus::Complete))
                .unwrap();
            w.flush().unwrap();
        });
        let mut io = Recorder {
            body: vec![7u8; 200_000],
            ..Default::default()
        };
        assert_eq!(
            forward(&target(&path), &mut head(), &mut io),
            Exchange::Done
        );
        daemon.join().unwrap();
        let seen = seen.lock().unwrap();
        let (last, bodies) = seen.split_last().unwrap();
        assert_eq!(*last, (Kind::PullDone, 0), "{seen:?}");
        assert!(bodies.len() > 1, "{seen:?}");
        assert!(
            bodies
                .iter()
                .all(|(k, n)| *k == Kind::Body && (1..=wire::PULL_CHUNK).contains(n)),
            "{seen:?}"
        );
        assert_eq!(bodies.iter().map(|(_, n)| n).sum::<usize>(), 200_000);
    }

    /// A Recorder whose pull answer ends slowly (as Apache's does when it looks for more body).
    struct SlowPullEnd(Recorder);

    impl RequestIo for SlowPullEnd {
        fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, String> {
            self.0.read_body(buf)
        }
        fn pull_body(
            &mut self,
            max: usize,
            chunk: usize,
            take: &mut PieceTaker<'_>,
        ) -> Result<Pulled, String> {
            let pulled = self.0.pull_body(max, chunk, take);
            std::thread::sleep(Duration::from_millis(300));
            pulled
        }
        fn expect_continue(&mut self) {}
        fn send_headers(&mut self, head: &ResponseHead) -> Result<(), String> {
            self.0.send_headers(head)
        }
        fn set_send_timeout(&mut self, _timeout: Duration) {}
        fn write_body(&mut self, data: &[u8], flush: bool) -> Result<(), String> {
            self.0.write_body(data, flush)
        }
        fn send_file(&mut self, _fd: i32, _offset: u64, _len: u64) -> Result<(), String> {
            Err("no files".into())
        }
        fn end_response(&mut self) -> Result<(), String> {
            self.0.end_response()
        }
        fn abort_response(&mut self) {}
        fn log(&mut self, _level: Level, _line: &str) {}
    }

    #[test]
    fn a_daemon_that_answers_before_reading_the_end_of_a_pull_answer_is_not_an_error() {
        let dir = TempDir::new("client-early-answer");
        let path = daemon(&dir, false, |_, _, mut io| {
            // Exactly the declared body, as an application that trusts CONTENT_LENGTH reads it.
            let mut got = 0;
            let mut buf = vec![0u8; 65536];
            while got < 100_000 {
                got += io
                    .read_body(&mut buf[..(100_000 - got).min(65536)])
                    .unwrap();
            }
            io.send_headers(&response("200 OK", &[])).unwrap();
            io.write_body(got.to_string().as_bytes(), false).unwrap();
            io.end_response().unwrap();
            // Dropping io closes the connection with the PullDone still unread.
        });
        let mut io = SlowPullEnd(Recorder {
            body: vec![1u8; 100_000],
            ..Default::default()
        });
        assert_eq!(
            forward(&target(&path), &mut head(), &mut io),
            Exchange::Done
        );
        assert_eq!(io.0.sent, b"100000");
    }

    /// A daemon that answers with one 100 000-byte block, flushed.
    fn one_big_block(dir: &TempDir) -> std::path::PathBuf {
        daemon(dir, false, |_, _, mut io| {
            io.send_headers(&response("200 OK", &[])).unwrap();
            let block: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
            let _ = io.write_body(&block, true);
            let _ = io.end_response();
        })
    }

    #[test]
    fn large_blocks_reach_the_client_in_pieces_of_response_buffer_size() {
        let dir = TempDir::new("client-pieces");
        let path = one_big_block(&dir);
        let mut target = target(&path);
        target.response_buffer_size = 16384;
        target.response_timeout = Some(Duration::from_secs(3));
        let mut io = Recorder::default();
        assert_eq!(forward(&target, &mut head(), &mut io), Exchange::Done);
        let expected: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        assert_eq!(io.sent, expected);
        assert!(io.writes.len() >= 100_000 / 16384, "{:?}", io.writes);
        // The buffer holds one block of response-buffer-size with its frame header.
        let most = 16384 + wire::HEADER_LEN;
        assert!(io.writes.iter().all(|n| *n <= most), "{:?}", io.writes);
        // The response socket timeout is set once the headers are out; one flush, at the end.
        assert_eq!(
            io.events,
            ["headers 200 OK", "send timeout 3s", "flush", "end"]
        );
    }

    #[test]
    fn a_failed_write_to_the_client_is_logged_with_the_timeout() {
        let dir = TempDir::new("client-write-fails");
        let path = one_big_block(&dir);
        let mut target = target(&path);
        target.response_timeout = Some(Duration::from_secs(2));
        let mut io = Recorder {
            write_error: Some("The timeout specified has expired"),
            ..Default::default()
        };
        assert_eq!(forward(&target, &mut head(), &mut io), Exchange::Done);
        let log = io.events.last().unwrap();
        assert!(
            log.starts_with(
                "log mod_wsgi: Failed to proxy response of daemon process group 'g' to client"
            ) && log.ends_with(
                "(response-socket-timeout 2 seconds): The timeout specified has expired"
            ),
            "{log}"
        );
    }

    #[test]
    fn pull_buffers_are_no_larger_than_the_declared_body_left() {
        assert_eq!(pull_size(262_144, Some(1024), 0), 8192);
        assert_eq!(pull_size(262_144, Some(1 << 20), 0), 262_144);
        assert_eq!(pull_size(262_144, Some(300_000), 262_144), 37_856);
        // Past the declared length (an input filter made it longer): still room to read.
        assert_eq!(pull_size(262_144, Some(100), 5000), 8192);
        assert_eq!(pull_size(262_144, None, 0), 262_144);
        assert_eq!(pull_size(4096, Some(1 << 20), 0), 4096);
        assert_eq!(pull_size(0, None, 0), 1);
    }

    #[test]
    fn a_restarting_daemon_gets_the_request_again() {
        let dir = TempDir::new("client-restart");
        let path = daemon(&dir, true, |_, head, mut io| {
            let restarts = head.vars.get("mod_wsgi.daemon_restarts").unwrap().to_vec();
            io.send_headers(&response("200 OK", &[])).unwrap();
            io.write_body(&restarts, false).unwrap();
            io.end_response().unwrap();
        });
        let mut io = Recorder::default();
        assert_eq!(
            forward(&target(&path), &mut head(), &mut io),
            Exchange::Done
        );
        assert_eq!(io.sent, b"1", "sent again, saying so");
    }

    #[test]
    fn a_daemon_gone_after_taking_the_request_is_a_502() {
        let dir = TempDir::new("client-died");
        let path = daemon(&dir, false, |_, _, io| drop(io));
        let mut io = Recorder::default();
        assert_eq!(
            forward(&target(&path), &mut head(), &mut io),
            Exchange::Status(502)
        );
        assert!(
            io.events[0].contains(
                "Daemon process group 'g' closed the connection before sending response headers"
            ),
            "{:?}",
            io.events
        );
    }

    #[test]
    fn a_request_the_daemon_never_read_is_sent_again() {
        let dir = TempDir::new("client-unread");
        let path = dir.0.join("s.sock");
        let listener = unix::bind_listener(&path, 8, None, 0, 0).unwrap();
        std::thread::spawn(move || {
            // The first connection is closed unread (a process stopping), the second served.
            let first = unix::accept(listener.as_fd()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            let conn = Arc::new(unix::accept(listener.as_fd()).unwrap());
            let writer: SharedWriter = Arc::new(Mutex::new(FrameWriter::new(conn.clone())));
            let mut reader = FrameReader::new(conn);
            reader.next_frame().unwrap().unwrap();
            let log = RequestLog::new(writer.clone(), "127.0.0.1:1");
            let mut io = DaemonIo::new(reader, writer, log);
            io.send_headers(&response("200 OK", &[])).unwrap();
            io.end_response().unwrap();
        });
        let mut io = Recorder::default();
        let mut h = head();
        assert_eq!(forward(&target(&path), &mut h, &mut io), Exchange::Done);
        assert_eq!(h.vars.get("mod_wsgi.daemon_connects"), Some(&b"2"[..]));
    }

    #[test]
    fn oversized_and_malformed_headers_are_refused() {
        let dir = TempDir::new("client-headers");
        let path = daemon(&dir, false, |n, _, mut io| {
            let head = if n == 0 {
                response("200 OK", &[("X-Big", &"x".repeat(200))])
            } else {
                response("200 OK", &[("X-Bad", "a\r\nInjected: 1")])
            };
            let _ = io.send_headers(&head);
            let _ = io.end_response();
        });
        for expected in ["more than header-buffer-size (100 bytes)", "is malformed"] {
            let mut io = Recorder::default();
            assert_eq!(
                forward(&target(&path), &mut head(), &mut io),
                Exchange::Status(500)
            );
            assert!(io.events[0].contains(expected), "{:?}", io.events);
            assert!(io.sent.is_empty());
        }
    }

    #[test]
    fn no_socket_is_a_503_after_connect_timeout() {
        let dir = TempDir::new("client-nosocket");
        let path = dir.0.join("missing.sock");
        let mut t = target(&path);
        t.connect_timeout = Duration::from_millis(100);
        let mut io = Recorder::default();
        let start = Instant::now();
        assert_eq!(forward(&t, &mut head(), &mut io), Exchange::Status(503));
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(io.events[0].contains("missing.sock"), "{:?}", io.events);
        assert!(io.events[0].contains("connect-timeout"), "{:?}", io.events);
    }

    #[test]
    fn a_body_may_be_read_after_the_response_while_some_of_it_may_remain() {
        let forwarded = |vars: &[(&str, &str)], pulled: bool, sent: u64, ended: bool| {
            let mut h = head();
            h.vars.set("SERVER_PROTOCOL", "HTTP/1.1");
            for (k, v) in vars {
                h.vars.set(k, v);
            }
            let mut body = BodyForwarded::new(&h);
            (body.pulled, body.sent, body.ended) = (pulled, sent, ended);
            body.may_be_read_late()
        };
        let length = [("CONTENT_LENGTH", "100")];
        let chunked = [("HTTP_TRANSFER_ENCODING", "chunked")];
        let expecting = [("CONTENT_LENGTH", "100"), ("HTTP_EXPECT", "100-Continue")];
        // No body, or none left.
        assert!(!forwarded(&[], false, 0, false));
        assert!(!forwarded(&[("CONTENT_LENGTH", "0")], false, 0, false));
        assert!(!forwarded(&length, true, 100, false));
        assert!(!forwarded(&chunked, true, 5000, true));
        // Some left: unread, half read, chunked without its end.
        assert!(forwarded(&length, false, 0, false));
        assert!(forwarded(&length, true, 40, false));
        assert!(forwarded(&chunked, true, 5000, false));
        // A client waiting for 100 Continue sends nothing after a final response, unless the
        // body was already asked for (then Apache sent 100 Continue).
        assert!(!forwarded(&expecting, false, 0, false));
        assert!(forwarded(&expecting, true, 40, false));
        // mod_http2 takes in no more of a stream's body once its response is complete.
        assert!(!forwarded(
            &[("CONTENT_LENGTH", "100"), ("SERVER_PROTOCOL", "HTTP/2.0")],
            true,
            40,
            false
        ));
        assert!(forwarded(
            &[("CONTENT_LENGTH", "100"), ("SERVER_PROTOCOL", "HTTP/1.0")],
            true,
            40,
            false
        ));
    }
}
