//! `WSGIDaemonProcess name [option=value ...]`: a group of daemon processes and the settings its
//! processes run with. Every option is checked here, when the configuration is read, so that a bad
//! value fails `apachectl -t` with a message naming the directive, the option and the value.
//!
//! The options, defaults and ranges are those of C mod_wsgi 4.9.4, with these differences:
//! numbers are read strictly (C reads them with `atoi`, so `threads=abc` was 0); `chroot=` and the
//! New Relic options are refused, since mod_wsgi-rs does not support them; a name may not contain
//! `%` or `=`; and white space right after an option's `=` means an empty value.

use std::time::Duration;

use super::accounts::{lookup_group, lookup_user, Account, GroupId};
use super::words::{conf_word, next_option};

pub const DIRECTIVE: &str = "WSGIDaemonProcess";

/// The text of `display-name=` that is replaced by `(wsgi:NAME)`.
pub const GROUP_SUBSTITUTION: &str = "%{GROUP}";

/// Every option the directive knows, in C mod_wsgi's order, including the ones refused.
pub const OPTIONS: &[&str] = &[
    "user",
    "group",
    "supplementary-groups",
    "processes",
    "threads",
    "umask",
    "chroot",
    "home",
    "lang",
    "locale",
    "python-home",
    "python-path",
    "python-eggs",
    "stack-size",
    "maximum-requests",
    "startup-timeout",
    "shutdown-timeout",
    "deadlock-timeout",
    "inactivity-timeout",
    "request-timeout",
    "graceful-timeout",
    "eviction-timeout",
    "restart-interval",
    "connect-timeout",
    "socket-timeout",
    "queue-timeout",
    "listen-backlog",
    "display-name",
    "send-buffer-size",
    "receive-buffer-size",
    "header-buffer-size",
    "response-buffer-size",
    "response-socket-timeout",
    "socket-user",
    "script-user",
    "script-group",
    "cpu-time-limit",
    "cpu-priority",
    "memory-limit",
    "virtual-memory-limit",
    "server-metrics",
    "newrelic-config-file",
    "newrelic-environment",
];

/// Options recognised but not supported by mod_wsgi-rs.
const UNSUPPORTED: &[&str] = &["chroot", "newrelic-config-file", "newrelic-environment"];

/// Largest value of a count, size or timeout that C mod_wsgi keeps in an `int`.
const INT_MAX: u64 = i32::MAX as u64;

/// The highest `threads=` (C mod_wsgi refuses 65534 and more).
pub const MAX_THREADS: u32 = 65533;

/// The header buffer a daemon uses when `header-buffer-size=0` (the default).
pub const DEFAULT_HEADER_BUFFER_SIZE: u32 = 32768;
/// The smallest `header-buffer-size=` other than 0.
pub const MIN_HEADER_BUFFER_SIZE: u32 = 8192;
/// The response buffer a daemon uses when `response-buffer-size=0`; also the smallest allowed.
pub const DEFAULT_RESPONSE_BUFFER_SIZE: u32 = 65536;
/// The smallest `send-buffer-size=`/`receive-buffer-size=` other than 0.
pub const MIN_SOCKET_BUFFER_SIZE: u32 = 512;

/// One `WSGIDaemonProcess` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonProcess {
    pub name: String,
    pub options: DaemonOptions,
    /// Where the configuration defines it (`line N of FILE`), for errors found later.
    pub defined_at: Option<String>,
}

/// The settings of a daemon process group. Timeouts are whole seconds in the configuration;
/// `Duration::ZERO` means the timeout is off (or, where noted, takes another setting's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    /// At least 1.
    pub processes: u32,
    /// Whether `processes=` was given at all, even as 1: then `wsgi.multiprocess` is True.
    pub multiprocess: bool,
    /// Request threads per process, 0 to [`MAX_THREADS`]. 0: the process only runs its import
    /// scripts.
    pub threads: u32,
    /// The process name shown by `ps`, with `%{GROUP}` already expanded to `(wsgi:NAME)`.
    pub display_name: Option<String>,
    /// The working directory, absolute; also put first on `sys.path`.
    pub home: Option<String>,
    /// None: Apache's `User` (decided once the whole configuration is read).
    pub user: Option<Account>,
    /// None: Apache's `Group` (not the user's primary group).
    pub group: Option<GroupId>,
    /// When not empty, these (after the primary group) replace the user's groups.
    pub supplementary_groups: Vec<GroupId>,
    /// None: the umask is left as it is.
    pub umask: Option<u32>,
    pub lang: Option<String>,
    pub locale: Option<String>,
    pub python_home: Option<String>,
    pub python_path: Vec<String>,
    pub python_eggs: Option<String>,
    /// The stack size of the request threads; None: the system's default.
    pub stack_size: Option<usize>,
    /// Requests after which a process restarts; 0 is never.
    pub maximum_requests: u64,
    pub startup_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub deadlock_timeout: Duration,
    pub inactivity_timeout: Duration,
    pub request_timeout: Duration,
    pub graceful_timeout: Duration,
    pub eviction_timeout: Duration,
    pub restart_interval: Duration,
    pub connect_timeout: Duration,
    /// ZERO: Apache's `Timeout`.
    pub socket_timeout: Duration,
    pub queue_timeout: Duration,
    /// ZERO: the socket timeout.
    pub response_socket_timeout: Duration,
    pub listen_backlog: u32,
    /// 0: the system's default.
    pub send_buffer_size: u32,
    /// 0: the system's default.
    pub receive_buffer_size: u32,
    /// The size in effect (0 in the configuration is stored as [`DEFAULT_HEADER_BUFFER_SIZE`]).
    pub header_buffer_size: u32,
    /// The size in effect (0 in the configuration is stored as
    /// [`DEFAULT_RESPONSE_BUFFER_SIZE`]).
    pub response_buffer_size: u32,
    /// The owner of the listening socket; None: the daemon's user.
    pub socket_user: Option<Account>,
    /// Scripts must be owned by this user (at most one of `script_user` and `script_group`).
    pub script_user: Option<Account>,
    /// Scripts must be owned by this group.
    pub script_group: Option<GroupId>,
    /// ZERO: no limit.
    pub cpu_time_limit: Duration,
    pub cpu_priority: i32,
    /// Bytes; None (also for 0 in the configuration): no limit.
    pub memory_limit: Option<u64>,
    /// Bytes; None (also for 0 in the configuration): no limit.
    pub virtual_memory_limit: Option<u64>,
    pub server_metrics: bool,
    /// Names of the options given explicitly, once each, in the order first given (e.g.
    /// `["processes", "threads"]`), so the caller can refuse ones whose feature has not landed.
    pub given: Vec<&'static str>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            processes: 1,
            multiprocess: false,
            threads: 15,
            display_name: None,
            home: None,
            user: None,
            group: None,
            supplementary_groups: Vec::new(),
            umask: None,
            lang: None,
            locale: None,
            python_home: None,
            python_path: Vec::new(),
            python_eggs: None,
            stack_size: None,
            maximum_requests: 0,
            startup_timeout: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(5),
            deadlock_timeout: Duration::from_secs(300),
            inactivity_timeout: Duration::ZERO,
            request_timeout: Duration::ZERO,
            graceful_timeout: Duration::from_secs(15),
            eviction_timeout: Duration::ZERO,
            restart_interval: Duration::ZERO,
            connect_timeout: Duration::from_secs(15),
            socket_timeout: Duration::ZERO,
            queue_timeout: Duration::ZERO,
            response_socket_timeout: Duration::ZERO,
            listen_backlog: 100,
            send_buffer_size: 0,
            receive_buffer_size: 0,
            header_buffer_size: DEFAULT_HEADER_BUFFER_SIZE,
            response_buffer_size: DEFAULT_RESPONSE_BUFFER_SIZE,
            socket_user: None,
            script_user: None,
            script_group: None,
            cpu_time_limit: Duration::ZERO,
            cpu_priority: 0,
            memory_limit: None,
            virtual_memory_limit: None,
            server_metrics: false,
            given: Vec::new(),
        }
    }
}

impl DaemonProcess {
    /// Parses the raw argument string of the directive.
    pub fn parse(args: &str) -> Result<DaemonProcess, String> {
        let (name, mut rest) = conf_word(args);
        check_name(&name)?;
        let mut parsed = DaemonOptions::default();
        while let Some((key, value, after)) = next_option(DIRECTIVE, rest)? {
            parsed.apply(&name, key, &value)?;
            rest = after;
        }
        if parsed.script_user.is_some() && parsed.script_group.is_some() {
            return Err(format!(
                "{DIRECTIVE}: only one of script-user and script-group may be given"
            ));
        }
        Ok(DaemonProcess {
            name,
            options: parsed,
            defined_at: None,
        })
    }
}

fn needs_name() -> String {
    format!("{DIRECTIVE} needs the name of the daemon process group")
}

/// Checks the name of a daemon process group.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(needs_name());
    }
    if name.contains('%') {
        return Err(format!(
            "{DIRECTIVE}: invalid name '{name}': the name of a daemon process group may not \
             contain '%' (%{{GLOBAL}} is Apache's own child processes)"
        ));
    }
    if name.contains('=') {
        return Err(format!(
            "{DIRECTIVE}: '{name}' is not a name: {DIRECTIVE} needs the name of the daemon \
             process group first, then the options"
        ));
    }
    Ok(())
}

fn invalid(key: &str, value: &str, expected: &str) -> String {
    format!("{DIRECTIVE}: invalid {key}={value}: {expected}")
}

/// A whole number of at most `max`, digits only.
fn whole(key: &str, value: &str, min: u64, max: u64) -> Result<u64, String> {
    let expected = || {
        if max == u64::MAX {
            format!("expected a whole number of at least {min}")
        } else {
            format!("expected a whole number from {min} to {max}")
        }
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(key, value, &expected()));
    }
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(key, value, &expected())),
    }
}

/// A buffer size: 0 (the default) or at least `min`.
fn buffer_size(key: &str, value: &str, min: u32, zero_means: &str) -> Result<u32, String> {
    let expected =
        format!("expected 0 ({zero_means}) or a number of bytes from {min} to {INT_MAX}");
    let n = whole(key, value, 0, INT_MAX).map_err(|_| invalid(key, value, &expected))?;
    if n != 0 && n < u64::from(min) {
        return Err(invalid(key, value, &expected));
    }
    Ok(n as u32)
}

fn seconds(key: &str, value: &str) -> Result<Duration, String> {
    whole(key, value, 0, INT_MAX)
        .map(Duration::from_secs)
        .map_err(|_| {
            invalid(
                key,
                value,
                &format!("expected a whole number of seconds from 0 to {INT_MAX}"),
            )
        })
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

fn user(key: &str, value: &str) -> Result<Account, String> {
    lookup_user(value).map_err(|e| invalid(key, value, &e))
}

fn group(key: &str, value: &str) -> Result<GroupId, String> {
    lookup_group(value).map_err(|e| invalid(key, value, &e))
}

/// The most supplementary groups a process may have, besides its primary group.
fn max_supplementary_groups() -> usize {
    // SAFETY: sysconf only reads a constant of the C library.
    let n = unsafe { libc::sysconf(libc::_SC_NGROUPS_MAX) };
    if n > 1 {
        n as usize - 1
    } else {
        65535
    }
}

impl DaemonOptions {
    fn timeout_mut(&mut self, key: &str) -> Option<&mut Duration> {
        Some(match key {
            "startup-timeout" => &mut self.startup_timeout,
            "shutdown-timeout" => &mut self.shutdown_timeout,
            "deadlock-timeout" => &mut self.deadlock_timeout,
            "inactivity-timeout" => &mut self.inactivity_timeout,
            "request-timeout" => &mut self.request_timeout,
            "graceful-timeout" => &mut self.graceful_timeout,
            "eviction-timeout" => &mut self.eviction_timeout,
            "restart-interval" => &mut self.restart_interval,
            "connect-timeout" => &mut self.connect_timeout,
            "socket-timeout" => &mut self.socket_timeout,
            "queue-timeout" => &mut self.queue_timeout,
            "response-socket-timeout" => &mut self.response_socket_timeout,
            "cpu-time-limit" => &mut self.cpu_time_limit,
            _ => return None,
        })
    }

    /// Applies one `key=value` option of the directive for the group `name`.
    fn apply(&mut self, name: &str, key: &str, value: &str) -> Result<(), String> {
        let Some(&key) = OPTIONS.iter().find(|&&known| known == key) else {
            return Err(format!("{DIRECTIVE}: unknown option '{key}={value}'"));
        };
        if UNSUPPORTED.contains(&key) {
            return Err(format!(
                "{DIRECTIVE}: option {key}= is not supported by mod_wsgi-rs"
            ));
        }
        if let Some(slot) = self.timeout_mut(key) {
            *slot = seconds(key, value)?;
        } else {
            self.apply_other(name, key, value)?;
        }
        if !self.given.contains(&key) {
            self.given.push(key);
        }
        Ok(())
    }

    fn apply_other(&mut self, name: &str, key: &str, value: &str) -> Result<(), String> {
        match key {
            "user" => {
                let account = user(key, value)?;
                if account.uid == 0 {
                    return Err(format!(
                        "{DIRECTIVE}: {key}={value}: daemon processes may not run as root"
                    ));
                }
                self.user = Some(account);
            }
            "group" => self.group = Some(group(key, value)?),
            "supplementary-groups" => {
                let mut groups = Vec::new();
                if !value.is_empty() {
                    for item in value.split(',') {
                        if item.is_empty() {
                            return Err(invalid(
                                key,
                                value,
                                "expected group names or #gids separated by single commas",
                            ));
                        }
                        groups.push(lookup_group(item).map_err(|e| invalid(key, value, &e))?);
                    }
                }
                let max = max_supplementary_groups();
                if groups.len() > max {
                    return Err(invalid(
                        key,
                        value,
                        &format!("at most {max} supplementary groups are allowed"),
                    ));
                }
                self.supplementary_groups = groups;
            }
            "processes" => {
                self.processes = whole(key, value, 1, INT_MAX)? as u32;
                self.multiprocess = true;
            }
            "threads" => {
                self.threads = whole(key, value, 0, u64::from(MAX_THREADS))? as u32;
            }
            "umask" => {
                let expected = "expected an octal umask such as 022 (digits 0 to 7, at most 0777)";
                if value.is_empty() || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    return Err(invalid(key, value, expected));
                }
                match u32::from_str_radix(value, 8) {
                    Ok(mask) if mask <= 0o777 => self.umask = Some(mask),
                    _ => return Err(invalid(key, value, expected)),
                }
            }
            "home" => {
                if !value.starts_with('/') {
                    return Err(invalid(key, value, "expected an absolute path"));
                }
                self.home = Some(value.to_string());
            }
            "lang" => self.lang = non_empty(value),
            "locale" => self.locale = non_empty(value),
            "python-home" => self.python_home = non_empty(value),
            "python-path" => {
                self.python_path = value
                    .split(':')
                    .filter(|part| !part.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "python-eggs" => self.python_eggs = non_empty(value),
            "stack-size" => {
                let max = usize::MAX as u64;
                let n = whole(key, value, 1, max).map_err(|_| {
                    invalid(key, value, "expected a number of bytes greater than 0")
                })?;
                self.stack_size = Some(n as usize);
            }
            "maximum-requests" => self.maximum_requests = whole(key, value, 0, INT_MAX)?,
            "listen-backlog" => self.listen_backlog = whole(key, value, 0, INT_MAX)? as u32,
            "display-name" => {
                self.display_name = non_empty(value)
                    .map(|v| v.replace(GROUP_SUBSTITUTION, &format!("(wsgi:{name})")));
            }
            "send-buffer-size" | "receive-buffer-size" => {
                let n = buffer_size(key, value, MIN_SOCKET_BUFFER_SIZE, "the system's default")?;
                if key == "send-buffer-size" {
                    self.send_buffer_size = n;
                } else {
                    self.receive_buffer_size = n;
                }
            }
            "header-buffer-size" => {
                let n = buffer_size(key, value, MIN_HEADER_BUFFER_SIZE, "the default")?;
                self.header_buffer_size = if n == 0 {
                    DEFAULT_HEADER_BUFFER_SIZE
                } else {
                    n
                };
            }
            "response-buffer-size" => {
                let n = buffer_size(key, value, DEFAULT_RESPONSE_BUFFER_SIZE, "the default")?;
                self.response_buffer_size = if n == 0 {
                    DEFAULT_RESPONSE_BUFFER_SIZE
                } else {
                    n
                };
            }
            "socket-user" => self.socket_user = Some(user(key, value)?),
            "script-user" => self.script_user = Some(user(key, value)?),
            "script-group" => self.script_group = Some(group(key, value)?),
            "cpu-priority" => {
                let digits = value.strip_prefix('-').unwrap_or(value);
                let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                self.cpu_priority = value.parse::<i32>().ok().filter(|_| ok).ok_or_else(|| {
                    invalid(key, value, "expected a whole number such as -5 or 10")
                })?;
            }
            "memory-limit" | "virtual-memory-limit" => {
                let n = whole(key, value, 0, i64::MAX as u64).map_err(|_| {
                    invalid(
                        key,
                        value,
                        &format!(
                            "expected a number of bytes from 0 (no limit) to {}",
                            i64::MAX
                        ),
                    )
                })?;
                let limit = (n != 0).then_some(n);
                if key == "memory-limit" {
                    self.memory_limit = limit;
                } else {
                    self.virtual_memory_limit = limit;
                }
            }
            "server-metrics" => {
                self.server_metrics = if value.eq_ignore_ascii_case("on") {
                    true
                } else if value.eq_ignore_ascii_case("off") {
                    false
                } else {
                    return Err(invalid(key, value, "expected On or Off"));
                };
            }
            _ => unreachable!("option {key} is in OPTIONS but not handled"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> DaemonOptions {
        DaemonProcess::parse(args)
            .unwrap_or_else(|e| panic!("{args}: {e}"))
            .options
    }

    fn error(args: &str) -> String {
        match DaemonProcess::parse(args) {
            Ok(d) => panic!("{args} was accepted: {d:?}"),
            Err(e) => {
                assert!(e.starts_with(DIRECTIVE), "{e}");
                e
            }
        }
    }

    #[test]
    fn defaults_match_c_mod_wsgi() {
        let d = DaemonProcess::parse("site").unwrap();
        assert_eq!(d.name, "site");
        assert_eq!(d.options, DaemonOptions::default());
        let o = d.options;
        assert_eq!((o.processes, o.multiprocess, o.threads), (1, false, 15));
        assert_eq!(o.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(o.deadlock_timeout, Duration::from_secs(300));
        assert_eq!(o.graceful_timeout, Duration::from_secs(15));
        assert_eq!(o.connect_timeout, Duration::from_secs(15));
        assert_eq!(o.socket_timeout, Duration::ZERO);
        assert_eq!(o.listen_backlog, 100);
        assert_eq!(o.header_buffer_size, 32768);
        assert_eq!(o.response_buffer_size, 65536);
        assert_eq!((o.send_buffer_size, o.receive_buffer_size), (0, 0));
        assert_eq!((o.user.as_ref(), o.group.as_ref()), (None, None));
        assert_eq!(o.umask, None);
        assert!(!o.server_metrics);
        assert!(o.given.is_empty());
    }

    #[test]
    fn the_name_is_required_and_checked() {
        for args in ["", "   ", "''", "\"\""] {
            assert_eq!(error(args), needs_name());
        }
        let e = error("%{GLOBAL}");
        assert!(e.contains("'%{GLOBAL}'") && e.contains("'%'"), "{e}");
        assert!(error("a%b").contains("'a%b'"));
        let e = error("threads=5");
        assert!(e.contains("'threads=5' is not a name"), "{e}");
        assert_eq!(DaemonProcess::parse("\"my site\"").unwrap().name, "my site");
    }

    #[test]
    fn counts_and_sizes() {
        let o = parse(
            "site processes=3 threads=0 umask=0027 stack-size=524288 maximum-requests=1000 \
             listen-backlog=50 send-buffer-size=512 receive-buffer-size=4096 \
             header-buffer-size=8192 response-buffer-size=131072 cpu-priority=-5 \
             memory-limit=1000000 virtual-memory-limit=2000000",
        );
        assert_eq!((o.processes, o.multiprocess, o.threads), (3, true, 0));
        assert_eq!(o.umask, Some(0o027));
        assert_eq!(o.stack_size, Some(524288));
        assert_eq!(o.maximum_requests, 1000);
        assert_eq!(o.listen_backlog, 50);
        assert_eq!((o.send_buffer_size, o.receive_buffer_size), (512, 4096));
        assert_eq!(o.header_buffer_size, 8192);
        assert_eq!(o.response_buffer_size, 131072);
        assert_eq!(o.cpu_priority, -5);
        assert_eq!(o.memory_limit, Some(1000000));
        assert_eq!(o.virtual_memory_limit, Some(2000000));
        assert_eq!(parse("site threads=65533").threads, 65533);
        assert_eq!(parse("site cpu-priority=10").cpu_priority, 10);
        assert_eq!(parse("site memory-limit=0").memory_limit, None);
        assert_eq!(parse("site umask=0").umask, Some(0));
    }

    #[test]
    fn multiprocess_is_set_by_giving_processes_at_all() {
        let o = parse("site processes=1");
        assert_eq!((o.processes, o.multiprocess), (1, true));
        assert!(!parse("site threads=2").multiprocess);
    }

    #[test]
    fn buffer_sizes_of_zero_are_stored_as_the_effective_default() {
        let o = parse("site header-buffer-size=0 response-buffer-size=0 send-buffer-size=0");
        assert_eq!(o.header_buffer_size, DEFAULT_HEADER_BUFFER_SIZE);
        assert_eq!(o.response_buffer_size, DEFAULT_RESPONSE_BUFFER_SIZE);
        assert_eq!(o.send_buffer_size, 0);
        assert_eq!(
            parse("site response-buffer-size=65536").response_buffer_size,
            65536
        );
    }

    #[test]
    fn timeouts_are_whole_seconds() {
        let o = parse(
            "site startup-timeout=1 shutdown-timeout=2 deadlock-timeout=3 \
             inactivity-timeout=4 request-timeout=5 graceful-timeout=6 eviction-timeout=7 \
             restart-interval=8 connect-timeout=9 socket-timeout=10 queue-timeout=11 \
             response-socket-timeout=12 cpu-time-limit=13",
        );
        let secs = Duration::from_secs;
        assert_eq!(o.startup_timeout, secs(1));
        assert_eq!(o.shutdown_timeout, secs(2));
        assert_eq!(o.deadlock_timeout, secs(3));
        assert_eq!(o.inactivity_timeout, secs(4));
        assert_eq!(o.request_timeout, secs(5));
        assert_eq!(o.graceful_timeout, secs(6));
        assert_eq!(o.eviction_timeout, secs(7));
        assert_eq!(o.restart_interval, secs(8));
        assert_eq!(o.connect_timeout, secs(9));
        assert_eq!(o.socket_timeout, secs(10));
        assert_eq!(o.queue_timeout, secs(11));
        assert_eq!(o.response_socket_timeout, secs(12));
        assert_eq!(o.cpu_time_limit, secs(13));
        assert_eq!(
            parse("site shutdown-timeout=0").shutdown_timeout,
            Duration::ZERO
        );
        assert_eq!(o.given.len(), 13);
        assert_eq!(o.given[0], "startup-timeout");
    }

    #[test]
    fn text_options_and_quoting() {
        let o = parse(
            "site display-name=\"my app\" home=/srv/site lang=en_US.UTF-8 locale='C.UTF-8' \
             python-home=/opt/venv python-path=/a::/b: python-eggs=/tmp/eggs \
             server-metrics=ON",
        );
        assert_eq!(o.display_name.as_deref(), Some("my app"));
        assert_eq!(o.home.as_deref(), Some("/srv/site"));
        assert_eq!(o.lang.as_deref(), Some("en_US.UTF-8"));
        assert_eq!(o.locale.as_deref(), Some("C.UTF-8"));
        assert_eq!(o.python_home.as_deref(), Some("/opt/venv"));
        assert_eq!(o.python_path, vec!["/a", "/b"]);
        assert_eq!(o.python_eggs.as_deref(), Some("/tmp/eggs"));
        assert!(o.server_metrics);
        assert!(!parse("site server-metrics=off").server_metrics);
    }

    #[test]
    fn empty_values_that_mean_unset() {
        let o = parse(
            "site lang= locale= python-home= python-path= python-eggs= display-name= \
             supplementary-groups=",
        );
        assert_eq!(o.lang, None);
        assert_eq!(o.locale, None);
        assert_eq!(o.python_home, None);
        assert!(o.python_path.is_empty());
        assert_eq!(o.python_eggs, None);
        assert_eq!(o.display_name, None);
        assert!(o.supplementary_groups.is_empty());
        assert_eq!(o.given.len(), 7);
    }

    #[test]
    fn values_are_read_like_apache_words() {
        let o = parse(r#"site python-path="/srv/my app:/b" display-name='it\'s' lang="""#);
        assert_eq!(o.python_path, vec!["/srv/my app", "/b"]);
        assert_eq!(o.display_name.as_deref(), Some("it's"));
        assert_eq!(o.lang, None);
        let o = parse("  \"my site\"\tthreads=3   processes=2  ");
        assert_eq!((o.threads, o.processes), (3, 2));
        // White space after '=' is an empty value, not the start of the value.
        assert_eq!(parse("site lang= threads=2").threads, 2);
        assert!(error("site threads= 2").contains("invalid threads=: "));
    }

    #[test]
    fn display_name_expands_the_group() {
        let o = parse("site display-name=%{GROUP}");
        assert_eq!(o.display_name.as_deref(), Some("(wsgi:site)"));
        let o = parse("site display-name='httpd %{GROUP}'");
        assert_eq!(o.display_name.as_deref(), Some("httpd (wsgi:site)"));
    }

    #[test]
    fn accounts_are_resolved() {
        let o = parse(
            "site user=nobody group=nogroup supplementary-groups=nogroup,#0 \
             socket-user=root script-user=#0",
        );
        let nobody = o.user.unwrap();
        assert_eq!(nobody.name, "nobody");
        assert_ne!(nobody.uid, 0);
        assert_eq!(o.group.unwrap().name, "nogroup");
        let names: Vec<_> = o
            .supplementary_groups
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(names, ["nogroup", "root"]);
        assert_eq!(o.socket_user.unwrap().uid, 0);
        assert_eq!(o.script_user.unwrap().name, "root");
        let o = parse("site group=root script-group=#0");
        assert_eq!(o.group.unwrap().gid, 0);
        assert_eq!(o.script_group.unwrap().name, "root");
    }

    #[test]
    fn root_is_refused_as_the_daemon_user() {
        assert_eq!(
            error("site user=root"),
            "WSGIDaemonProcess: user=root: daemon processes may not run as root"
        );
        assert!(error("site user=#0").contains("user=#0: daemon processes may not run as root"));
    }

    #[test]
    fn unknown_accounts_are_refused() {
        for (args, wanted) in [
            (
                "site user=no-such-user-xyz",
                "invalid user=no-such-user-xyz",
            ),
            ("site user=#4000000", "invalid user=#4000000"),
            ("site user=", "invalid user="),
            (
                "site group=no-such-group-xyz",
                "invalid group=no-such-group-xyz",
            ),
            ("site group=#4000000", "invalid group=#4000000"),
            ("site socket-user=#4000000", "invalid socket-user=#4000000"),
            ("site script-user=nope-xyz", "invalid script-user=nope-xyz"),
            (
                "site script-group=nope-xyz",
                "invalid script-group=nope-xyz",
            ),
            (
                "site supplementary-groups=nogroup,nope-xyz",
                "invalid supplementary-groups=nogroup,nope-xyz",
            ),
            (
                "site supplementary-groups=nogroup,,root",
                "invalid supplementary-groups=nogroup,,root",
            ),
        ] {
            let e = error(args);
            assert!(e.contains(wanted), "{args}: {e}");
        }
        assert!(error("site user=#4000000").contains("no user with uid 4000000"));
    }

    #[test]
    fn script_user_and_script_group_exclude_each_other() {
        let e = error("site script-user=nobody script-group=nogroup");
        assert!(
            e.contains("only one of script-user and script-group may be given"),
            "{e}"
        );
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        for key in ["chroot", "newrelic-config-file", "newrelic-environment"] {
            let e = error(&format!("site {key}=/x"));
            assert!(e.contains(&format!("{key}=")), "{e}");
            assert!(e.contains("not supported by mod_wsgi-rs"), "{e}");
        }
    }

    #[test]
    fn malformed_options() {
        assert_eq!(
            error("site foo=1"),
            "WSGIDaemonProcess: unknown option 'foo=1'"
        );
        assert_eq!(
            error("site Threads=1"),
            "WSGIDaemonProcess: unknown option 'Threads=1'"
        );
        assert!(error("site =1").contains("invalid option '=1'"));
        let e = error("site threads");
        assert!(e.contains("'threads'") && e.contains("key=value"), "{e}");
    }

    #[test]
    fn bad_values_name_the_option_and_the_value() {
        assert_eq!(
            error("site threads=abc"),
            "WSGIDaemonProcess: invalid threads=abc: expected a whole number from 0 to 65533"
        );
        for args in [
            "site processes=0",
            "site processes=-1",
            "site processes=+2",
            "site processes=",
            "site processes=99999999999999999999999",
            "site threads=65534",
            "site threads=1.5",
            "site umask=8",
            "site umask=0x22",
            "site umask=1777",
            "site umask=",
            "site home=relative/dir",
            "site home=",
            "site stack-size=0",
            "site stack-size=big",
            "site maximum-requests=-1",
            "site listen-backlog=x",
            "site send-buffer-size=511",
            "site receive-buffer-size=1",
            "site header-buffer-size=8191",
            "site response-buffer-size=65535",
            "site cpu-priority=",
            "site cpu-priority=-",
            "site cpu-priority=+1",
            "site cpu-priority=99999999999",
            "site memory-limit=-1",
            "site virtual-memory-limit=1G",
            "site server-metrics=yes",
            "site server-metrics=",
            "site socket-timeout=",
            "site request-timeout=1.5",
            "site graceful-timeout=-1",
            "site connect-timeout=9999999999",
        ] {
            let e = error(args);
            let option = args.strip_prefix("site ").unwrap();
            assert!(
                e.starts_with(&format!("WSGIDaemonProcess: invalid {option}: ")),
                "{args}: {e}"
            );
        }
        assert!(error("site request-timeout=x").contains("seconds"));
        assert!(error("site server-metrics=yes").contains("On or Off"));
        assert!(error("site send-buffer-size=1").contains("expected 0 (the system's default) or"));
    }

    #[test]
    fn a_repeated_option_takes_the_later_value_and_is_listed_once() {
        let o = parse("site threads=2 processes=2 threads=4");
        assert_eq!(o.threads, 4);
        assert_eq!(o.given, vec!["threads", "processes"]);
        let o = parse("site python-path=/a python-path=/b");
        assert_eq!(o.python_path, vec!["/b"]);
    }
}
