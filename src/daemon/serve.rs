//! One connection in a daemon process: check where it comes from, read the request, load the
//! script (or ask for this process to be replaced when the script changed) and run the
//! application with the connection as its `RequestIo`.

use super::daemon_io::{lock, Conn, DaemonIo, RequestLog, SharedWriter};
use super::now_us;
use super::plan::{GroupPlan, StartupImport, Tag};
use super::scoreboard::Scoreboard;
use super::timers::Slot;
use super::unix;
use super::wire::{self, FrameReader, FrameWriter, Kind, RequestHead};
use crate::python::{self, AttachError};
use crate::script::{load_application, preload, script_changed, LoadError, Preloaded};
use crate::wsgi::process_log::CurrentRequest;
use crate::wsgi::{run_app, Level, Outcome};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

/// The most of a request body frame the daemon's reader buffers (see `connection`).
const REQUEST_READ_BUFFER: usize = 16 << 10;

/// What serving a connection asks of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Done,
    /// The connection carried no request this process may serve (refused, or closed first): it
    /// does not count towards maximum-requests, so a stranger cannot make the group recycle.
    NoRequest,
    /// The script changed since this process loaded it: the process must be replaced (the
    /// request was handed back to Apache, which sends it again).
    RestartRequired,
}

/// Logs why a connection was refused, at most once a second per process (with how many were
/// refused since): whoever may connect must not be able to flood the error log.
#[cold]
#[inline(never)]
fn log_refusal(plan: &GroupPlan, line: std::fmt::Arguments<'_>) {
    let line = line.to_string();
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_SECOND: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = (now_us() / 1_000_000) as u64;
    if LAST_SECOND.swap(now, Ordering::AcqRel) == now {
        SUPPRESSED.fetch_add(1, Ordering::AcqRel);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::AcqRel);
    if suppressed > 0 {
        plan.log(
            Level::Error,
            &format!("{line} ({suppressed} more refused since the last such line)"),
        );
    } else {
        plan.log(Level::Error, &line);
    }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Clears a thread's scoreboard slot when its request ends, however it ends.
struct Serving(Option<(Arc<Scoreboard>, usize)>);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some((board, slot)) = &self.0 {
            board.clear(*slot);
        }
    }
}

/// Serves one connection; `board` is where this thread records the request it serves, and
/// `timers` is told when the request is accepted and about to run and when its script has
/// loaded (for the process's timers).
pub fn connection(
    plan: &GroupPlan,
    conn: OwnedFd,
    board: Option<(Arc<Scoreboard>, usize)>,
    timers: &Slot<'_>,
) -> Served {
    let daemon_start = now_us();
    let tag = plan.tag();
    match unix::peer_credentials(conn.as_fd()) {
        Ok(peer) if plan.allowed_peers.contains(&peer.uid) => {}
        Ok(peer) => {
            log_refusal(
                plan,
                format_args!(
                    "{tag}: Request origin could not be validated: connection to daemon process \
                     group '{}' from pid {} with uid {} refused (only Apache's children may \
                     connect).",
                    plan.name, peer.pid, peer.uid
                ),
            );
            return Served::NoRequest;
        }
        Err(e) => {
            plan.log(Level::Error, &format!("{tag}: SO_PEERCRED failed: {e}"));
            return Served::NoRequest;
        }
    }
    let timeout = (!plan.io_timeout.is_zero()).then_some(plan.io_timeout);
    let _ = unix::set_timeouts(conn.as_fd(), timeout, timeout);
    let conn = Arc::new(conn);
    // Small: a large Body frame then arrives in pieces, most of it read by wsgi.input straight
    // into the bytes it returns (DaemonIo::read_body_into) rather than through this buffer.
    let mut reader = FrameReader::with_buffer_size(conn.clone(), REQUEST_READ_BUFFER);
    let writer: SharedWriter = Arc::new(Mutex::new(FrameWriter::new(conn)));
    let head = match reader.next_frame() {
        Ok(Some(frame)) if frame.kind == Kind::Request => wire::decode_request_head(frame.payload),
        Ok(None) => return Served::NoRequest,
        Ok(Some(frame)) => Err(std::io::Error::other(format!(
            "expected a request, got a {:?} frame",
            frame.kind
        ))),
        Err(e) => Err(e),
    };
    let mut head = match head {
        Ok(head) if same_secret(&head.token, &plan.token) => head,
        Ok(_) => {
            log_refusal(
                plan,
                format_args!(
                    "{tag}: Request origin could not be validated: a request to daemon process \
                     group '{}' carried the wrong secret.",
                    plan.name
                ),
            );
            return Served::NoRequest;
        }
        Err(e) => {
            log_refusal(
                plan,
                format_args!(
                    "{tag}: Request origin could not be validated: unreadable request to daemon \
                     process group '{}' ({e}).",
                    plan.name
                ),
            );
            return Served::NoRequest;
        }
    };
    // No acknowledgement is sent: the Apache child tells a request that was taken from one that
    // was not by how the connection ends (see client.rs).
    if let (Some((b, slot)), Some(id)) = (&board, head.vars.get("mod_wsgi.request_id")) {
        b.set(*slot, id);
    }
    let _serving = Serving(board.clone());
    if let Some(status) = queue_expired(plan, &head, daemon_start) {
        return queue_timed_out(plan, status, &writer);
    }
    head.vars
        .set("mod_wsgi.daemon_start", daemon_start.to_string());
    timers.started(
        &String::from_utf8_lossy(head.vars.get("mod_wsgi.request_id").unwrap_or_default()),
        head.vars.get("mod_wsgi.ignore_activity") == Some(b"1"),
    );
    run_request(head, reader, writer, board, timers)
}

/// Answers a request that waited too long (see [`queue_expired`]) with `status`. The Apache
/// child logs the answer's text against the request, once, as C does.
#[cold]
#[inline(never)]
fn queue_timed_out(plan: &GroupPlan, status: u16, writer: &SharedWriter) -> Served {
    let msg = format!(
        "{}: Queue timeout expired for WSGI daemon process '{}': the request waited longer \
         than queue-timeout ({} seconds).",
        plan.tag(),
        plan.name,
        plan.options.queue_timeout.as_secs()
    );
    let mut w = lock(writer);
    let _ = w
        .frame(Kind::Reject, &reject(status, &msg))
        .and_then(|()| w.flush());
    Served::Done
}

/// Refuses a request that waited for a process longer than queue-timeout (counted from when the
/// Apache child read it, as C mod_wsgi does).
fn queue_expired(plan: &GroupPlan, head: &RequestHead, daemon_start: i64) -> Option<u16> {
    let limit = plan.options.queue_timeout;
    if limit.is_zero() {
        return None;
    }
    let started: i64 = std::str::from_utf8(head.vars.get("mod_wsgi.request_start")?)
        .ok()?
        .parse()
        .ok()?;
    (daemon_start - started > limit.as_micros() as i64).then_some(504)
}

fn run_request(
    head: RequestHead,
    reader: FrameReader<Conn>,
    writer: SharedWriter,
    board: Option<(Arc<Scoreboard>, usize)>,
    timers: &Slot<'_>,
) -> Served {
    let script = String::from_utf8_lossy(&head.script).into_owned();
    // What the script's reload_required() is asked about: the file the request maps to, which
    // is not the script when a WSGIHandlerScript serves it.
    let resource = match head.vars.get("mod_wsgi.handler_script") {
        Some(h) if !h.is_empty() => {
            String::from_utf8_lossy(head.vars.get("SCRIPT_FILENAME").unwrap_or_default())
        }
        _ => std::borrow::Cow::Borrowed(script.as_str()),
    };
    let mtime = crate::script::file_modification_time(&script);
    let client = format!(
        "{}:{}",
        String::from_utf8_lossy(head.vars.get("REMOTE_ADDR").unwrap_or_default()),
        String::from_utf8_lossy(head.vars.get("REMOTE_PORT").unwrap_or_default())
    );
    let request_log = RequestLog::new(writer.clone(), &client);
    let log_to = request_log.clone();
    let log = move |level: Level, line: &str| log_to.line(level, line);
    let tag = Tag;
    let mut served_by: Option<Box<dyn crate::wsgi::RequestIo>> = None;
    let ran = python::attached_to(&head.application_group, |py| {
        let _active = crate::wsgi::process_metrics::ActiveRequest::begin();
        let log_for_python = log.clone();
        let current =
            CurrentRequest::enter(Box::new(move |level, line| log_for_python(level, line)));
        let report = |py: pyo3::Python<'_>, err: &pyo3::PyErr| {
            log(Level::Error, &format!("{tag}: Exception occurred in reload_required() of WSGI script '{script}'; the script is not reloaded."));
            for line in crate::wsgi::adapter::exception_report(py, err) {
                log(Level::Error, &line);
            }
        };
        if head.script_reloading && script_changed(py, &script, &resource, mtime, &report) {
            current.finish(py);
            return Err(Served::RestartRequired);
        }
        let loaded = load_application(
            py,
            &script,
            Some(&resource),
            mtime,
            head.script_reloading,
            &head.callable_object,
            &report,
        );
        // The module loaded (even without the callable): the application has started.
        if matches!(loaded, Ok(_) | Err(LoadError::NoCallable)) {
            timers.script_loaded();
        }
        let outcome = match loaded {
            Ok(app) => {
                let io = DaemonIo::new(reader, writer.clone(), request_log.clone())
                    .with_scoreboard(board)
                    .with_declared_body(head.declared_body());
                let (outcome, io) = run_app(py, &app, &head.vars, &script, Box::new(io));
                served_by = Some(io);
                outcome
            }
            Err(LoadError::NoCallable) => {
                let msg = format!(
                    "{tag}: Target WSGI script '{script}' does not contain WSGI application '{}'.",
                    head.callable_object
                );
                current.finish(py);
                return Ok(Some((404, msg)));
            }
            Err(failed) => {
                for line in failed.report(py, &script) {
                    log(Level::Error, &line);
                }
                Outcome::ServerError
            }
        };
        current.finish(py);
        Ok((outcome == Outcome::ServerError).then(|| (500, String::new())))
    });
    if let Some(mut io) = served_by {
        // The end of a small response, kept while the application ran; an Apache child that
        // has gone by now is no one's error.
        let _ = io.send_deferred();
    }
    let mut w = lock(&writer);
    let sent = match ran {
        Ok(Err(restart)) => {
            let _ = w
                .frame(Kind::Restart, b"script changed")
                .and_then(|()| w.flush());
            return restart;
        }
        Ok(Ok(None)) => return Served::Done,
        Ok(Ok(Some((500, msg)))) if msg.is_empty() => w.frame(
            Kind::End,
            &wire::end_payload(wire::EndStatus::FailedBeforeHeaders),
        ),
        Ok(Ok(Some((status, msg)))) => w.frame(Kind::Reject, &reject(status, &msg)),
        Err(AttachError::NotRunning) => w.frame(
            Kind::Reject,
            &reject(
                500,
                "mod_wsgi-rs: Python is not running in this daemon process",
            ),
        ),
        Err(AttachError::NoInterpreter(why)) => w.frame(
            Kind::Reject,
            &reject(
                500,
                &format!(
                    "{tag}: Cannot create interpreter '{}': {why}",
                    head.application_group
                ),
            ),
        ),
    };
    let _ = sent.and_then(|()| w.flush());
    Served::Done
}

fn reject(status: u16, msg: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(msg.len() + 2);
    wire::encode_reject(status, msg, &mut payload);
    payload
}

/// Imports one of the group's start-up scripts into its interpreter.
pub fn import_at_start(plan: &GroupPlan, import: &StartupImport) {
    let tag = plan.tag();
    let (script, group) = (&import.script, &import.application_group);
    let ran = python::attached_to(group, |py| {
        match preload(py, script) {
        Ok(Preloaded::Loaded) => plan.log(
            Level::Info,
            &format!("{tag}: Imported WSGI script '{script}' into interpreter '{group}' of daemon process '{}'.", plan.name),
        ),
        Ok(Preloaded::AlreadyCurrent | Preloaded::Directory) => {}
        Err(err) => {
            plan.log(
                Level::Error,
                &format!(
                    "{tag}: Failed to import WSGI script '{script}' into interpreter '{group}' \
                     at process start; its first request will try again."
                ),
            );
            for line in crate::wsgi::adapter::exception_report(py, &err) {
                plan.log(Level::Error, &line);
            }
        }
    }
    });
    if let Err(AttachError::NoInterpreter(why)) = ran {
        plan.log(
            Level::Error,
            &format!("{tag}: Cannot create interpreter '{group}' to import WSGI script '{script}': {why}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
