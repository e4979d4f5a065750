//! Everything a daemon process group needs to run, resolved by Apache's parent before it forks
//! the group's supervisor: after the fork nothing is read from Apache's configuration again.

use crate::config::daemon::DaemonOptions;
use crate::python::PythonSettings;
use crate::wsgi::{Level, ServerInfo};
use std::os::fd::RawFd;
use std::path::PathBuf;

/// The secret every request carries to the daemon, so only Apache's own children can make
/// requests (the socket's permissions keep other users out; this keeps out other programs
/// running as Apache's user).
pub type Token = [u8; 32];

/// A script one of the group's interpreters imports when each of its processes starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupImport {
    pub script: String,
    pub application_group: String,
}

#[derive(Clone)]
pub struct GroupPlan {
    pub name: String,
    pub options: DaemonOptions,
    pub identity: super::process::Identity,
    /// The working directory: `home=`, else the user's home directory when the group runs as
    /// another user than Apache's, else unchanged (as C mod_wsgi).
    pub working_directory: Option<String>,
    /// Whether `working_directory` was configured (`home=`): then not being able to enter it is
    /// an error; a user's home directory that does not exist (`nobody`'s) is only a warning.
    pub working_directory_required: bool,
    /// The listening socket, created by Apache's parent and inherited.
    pub listener: RawFd,
    pub socket_path: PathBuf,
    /// The group's secret, which requests must carry. Apache's parent does not derive it: the
    /// forked supervisor gets it from `forget_inherited`.
    pub token: Token,
    /// The longest wait for a read or write on a connection (socket-timeout, else Apache's
    /// `Timeout`).
    pub io_timeout: std::time::Duration,
    /// Connections are accepted only from these users (Apache's and root).
    pub allowed_peers: Vec<u32>,
    pub python: PythonSettings,
    pub imports: Vec<StartupImport>,
    /// What `mod_wsgi`/`apache` modules report; the process fields are the group's.
    pub server_info: ServerInfo,
    /// Apache's parent, whose death ends the group.
    pub apache_pid: i32,
    /// Writes one line to Apache's error log (the main server's, or the defining virtual host's).
    pub log: fn(Level, &str),
    /// In the forked supervisor, before anything else: closes what it inherited from Apache's
    /// parent and must not keep (Apache's listening sockets, other groups' sockets, all but
    /// `keep`), wipes the secret other groups' tokens derive from, and returns the token of the
    /// group named, which runs as `uid`:`gid`.
    pub forget_inherited: fn(keep: RawFd, group: &str, uid: u32, gid: u32) -> Token,
    /// Rewrites the process's command line for `display-name`.
    pub set_title: fn(&str),
}

impl GroupPlan {
    pub fn log(&self, level: Level, msg: &str) {
        (self.log)(level, msg)
    }

    /// The prefix of the group's log lines, naming the process as C mod_wsgi's do.
    pub fn tag(&self) -> Tag {
        Tag
    }
}

/// "mod_wsgi (pid=N)" for the process that writes it out: made only when a line is logged,
/// since each request takes one for its error messages (a `getpid` and a `String` otherwise).
#[derive(Clone, Copy, Debug)]
pub struct Tag;

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mod_wsgi (pid={})", std::process::id())
    }
}

/// The path of group number `number`'s socket (numbered from 1 in configuration order) for
/// Apache's parent `apache_pid`. With `WSGISocketRotation On`, `generation` is Apache's
/// configuration generation, so each restart makes new paths and children of an older
/// generation cannot reach the new daemons (C mod_wsgi's default); without it the path is the
/// same in every generation, and an old child's request reaches the new daemons.
pub fn socket_path(
    prefix: &str,
    apache_pid: u32,
    generation: Option<i32>,
    number: usize,
) -> PathBuf {
    PathBuf::from(match generation {
        Some(generation) => format!("{prefix}.{apache_pid}.{generation}.{number}.sock"),
        None => format!("{prefix}.{apache_pid}.{number}.sock"),
    })
}

/// The token requests to daemon process group `group` carry, whose processes run as
/// `uid`:`gid`: HMAC-SHA-256 under the master secret (see apache/secret.rs), so that knowing one
/// group's token tells nothing of another's, nor of the same group's once it runs as another
/// user.
pub fn derive_token(master: &[u8], group: &str, uid: u32, gid: u32) -> Token {
    let identity = format!("\0{uid}:{gid}");
    crate::sha256::hmac_sha256(
        master,
        &[
            b"mod_wsgi-rs group token\0",
            group.as_bytes(),
            identity.as_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_and_identity_has_its_own_token() {
        let master = [7u8; 32];
        let token = derive_token(&master, "site", 33, 33);
        assert_eq!(token, derive_token(&master, "site", 33, 33));
        for other in [
            derive_token(&master, "site2", 33, 33),
            derive_token(&master, "sit", 33, 33),
            derive_token(&master, "site", 1001, 33),
            derive_token(&master, "site", 33, 1001),
            derive_token(&[8u8; 32], "site", 33, 33),
        ] {
            assert_ne!(token, other);
        }
        // HMAC-SHA-256(master, "mod_wsgi-rs group token\0site\033:33"), by Python's hmac.
        let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "cb62873e5c9b3c908d16189446af6c1ca2d87cc7f65d79913fa31fc105ac9efc"
        );
    }

    #[test]
    fn the_log_tag_names_the_process_that_writes_it() {
        assert_eq!(
            format!("{}: x", Tag),
            format!("mod_wsgi (pid={}): x", std::process::id())
        );
    }

    #[test]
    fn socket_paths_carry_the_generation_only_when_rotating() {
        let stable = socket_path("/run/wsgi", 42, None, 1);
        assert_eq!(stable, PathBuf::from("/run/wsgi.42.1.sock"));
        assert_eq!(
            socket_path("/run/wsgi", 42, Some(0), 1),
            PathBuf::from("/run/wsgi.42.0.1.sock")
        );
        assert_ne!(
            socket_path("/run/wsgi", 42, Some(1), 2),
            socket_path("/run/wsgi", 42, Some(2), 2)
        );
    }
}
