//! Daemon mode: process groups (`WSGIDaemonProcess`) that run applications in processes of
//! their own, supervised, reached by Apache's children over a UNIX socket.
//!
//! - `plan`: what a group needs, resolved by Apache's parent before it forks;
//! - `supervisor`: the per-group process that starts and replaces the group's processes;
//! - `worker`: one process of a group (Python, threads, stopping);
//! - `timers`: inactivity-, request-, startup- and deadlock-timeout and restart-interval in a
//!   process; `gil_probe`: what tells deadlock-timeout that the GIL is still free;
//! - `serve`: one connection in a daemon process;
//! - `daemon_io`/`client`: the two ends of a proxied request (the daemon's `RequestIo` and the
//!   Apache child that carries it out);
//! - `script_owner`, `error_override`, `internal_redirect`: the Apache child's
//!   `script-user=`/`script-group=` check, `WSGIErrorOverride`, and the CGI-style internal
//!   redirect (status 200 with a local `Location`);
//! - `wire`: the frames between them; `unix`: socket plumbing; `process`: process-level calls;
//!   `scoreboard`: the requests each process serves, for its supervisor's log when it dies.

pub mod client;
pub mod daemon_io;
pub mod error_override;
pub mod gil_probe;
pub mod internal_redirect;
pub mod plan;
pub mod process;
pub mod scoreboard;
pub mod script_owner;
pub mod serve;
pub mod supervisor;
pub mod timers;
pub mod unix;
pub mod wire;
pub mod worker;

/// The time now in microseconds since the epoch (Apache's `apr_time_t`), as the environ's
/// `mod_wsgi.*_start` keys give it.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "mwrs-{}-{}-{}",
                tag,
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
