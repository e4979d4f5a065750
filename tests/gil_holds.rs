//! How often a request's thread lets go of the GIL. Each time it does so mid-request another
//! thread may take it, and getting it back is then a wait (a futex sleep and a context switch);
//! under load that shows as requests per second. A small response whose iterable is a list is
//! made with one hold: its end is kept and sent once the application is done with Python.
//!
//! Counted with gdb (scripts/test.sh installs it): a breakpoint on `PyEval_SaveThread` in the
//! process that serves, one worker thread, requests that thread has served before (a thread's
//! first request also creates its thread state).

mod common;

use common::{Apache, Options};

const APP: &str = "import os\n\
class Closing:\n\
\x20   def __iter__(self):\n\
\x20       yield b'hello'\n\
\x20   def close(self):\n\
\x20       pass\n\
def application(environ, start_response):\n\
\x20   path = environ['PATH_INFO']\n\
\x20   sized = [('Content-Length', '5')] if path == '/sized' else []\n\
\x20   start_response('200 OK', [('Content-Type', 'text/plain')] + sized)\n\
\x20   if path == '/pid':\n\
\x20       return [str(os.getpid()).encode()]\n\
\x20   if path == '/stop':\n\
\x20       os.getpgid(0)\n\
\x20       return [b'stopped']\n\
\x20   if path in ('/streamed', '/sized'):\n\
\x20       return Closing()\n\
\x20   return [b'hello']\n";

const REQUESTS: usize = 20;

/// How many times process `pid` let go of the GIL while `REQUESTS` GETs of `path` were served.
/// gdb counts the breakpoint's hits until the app's `/stop` calls `os.getpgid` (which nothing
/// else in the process calls): it stops there, says the count, and lets the process go on.
fn gil_releases(apache: &Apache, pid: i32, path: &str) -> usize {
    // Requests wait while gdb holds the process stopped; once it has stopped every thread,
    // everything served is counted.
    let gdb = common::gdb_attached(
        pid,
        &[
            "break PyEval_SaveThread",
            "ignore 1 1000000",
            "break getpgid",
            "continue",
            "info breakpoints",
        ],
    );
    for _ in 0..REQUESTS {
        let r = apache.get(path);
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    }
    assert_eq!(apache.get("/app/stop").text(), "stopped");
    let out = gdb.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    // "breakpoint already hit 20 times" under breakpoint 1 (no such line: never hit).
    let first = said.split("\n2 ").next().unwrap();
    first
        .lines()
        .find_map(|line| line.trim().strip_prefix("breakpoint already hit "))
        .map_or(0, |rest| rest.split(' ').next().unwrap().parse().unwrap())
}

fn served_pid(apache: &Apache, path: &str) -> i32 {
    // Twice: the worker thread's first request also creates its thread state.
    apache.get(path);
    apache.get(path).text().parse().expect("the app's pid")
}

/// The counts in the process that serves `apache`'s `/app`:
/// - a small list response: one release per request;
/// - a streamed response, sent while the application runs: the GIL is let go to send it (so
///   the first check could not pass by counting nothing);
/// - a response with a `close()` (Flask's, Django's) whose one item completes its
///   Content-Length: the item goes out with the end of the response, before `close()` runs,
///   so twice (it was three times, the end apart).
fn assert_gil_holds(apache: &Apache, mode: &str) {
    let pid = served_pid(apache, "/app/pid");
    let released = gil_releases(apache, pid, "/app");
    assert!(
        (REQUESTS..REQUESTS + REQUESTS / 2).contains(&released),
        "{mode}: {released} releases of the GIL for {REQUESTS} requests, expected one each"
    );
    let streamed = gil_releases(apache, pid, "/app/streamed");
    assert!(
        streamed >= 2 * REQUESTS,
        "{mode}: {streamed} releases for {REQUESTS} streamed responses"
    );
    let released = gil_releases(apache, pid, "/app/sized");
    assert!(
        (2 * REQUESTS..2 * REQUESTS + REQUESTS / 2).contains(&released),
        "{mode}: {released} releases of the GIL for {REQUESTS} responses with close(), \
         expected two each"
    );
}

#[test]
fn a_small_list_response_holds_the_gil_once_in_embedded_mode() {
    let apache = Apache::start_with(
        "gil_holds_embedded",
        &[("app.wsgi", APP)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
        Options {
            threads: 1,
            ..Options::default()
        },
    );
    assert_gil_holds(&apache, "embedded mode");
}

#[test]
fn a_small_list_response_holds_the_gil_once_in_daemon_mode() {
    let apache = Apache::start(
        "gil_holds_daemon",
        &[("app.wsgi", APP)],
        "WSGIDaemonProcess dg threads=1 deadlock-timeout=0\n\
         WSGIScriptAlias /app {dir}/app.wsgi process-group=dg",
    );
    assert_gil_holds(&apache, "daemon mode");
}
