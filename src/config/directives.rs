//! The directive table: every directive C mod_wsgi 4.9 accepts is known here, so a config written
//! for it either works or fails `apache2 -t` with a message naming the directive.

use super::daemon::DaemonProcess;
use super::groups::{check_application_group, check_callable_object, check_process_group, GLOBAL};
use super::handler_script::HandlerScript;
use super::import_script::ImportScript;
use super::python::{
    check_per_interpreter_gil, check_warning_option, parse_hash_seed, parse_optimize,
    EAGER_INITIALIZATION_REFUSED,
};
use super::python_home::check_python_home;
use super::script_alias::ScriptAlias;
use super::trusted_proxies::{header_environ_name, IpSubnet};
use super::words::{parse_on_off, split_words};
use super::{DirConfig, HookScript, MapHeadToGet, ServerConfig};
use std::ffi::CStr;
use std::sync::Arc;

/// Where a directive may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Main server only, outside any `<VirtualHost>` (`WSGIPythonHome`, …).
    Global,
    /// Main server or virtual host, not in `<Directory>`/`<Location>`.
    Server,
    /// Server, virtual host, directory and `.htaccess` (with `AllowOverride FileInfo`).
    Directory,
    /// Server, virtual host and `<Directory>`/`<Location>`/`<Files>`, but not `.htaccess`: for
    /// what a site's administrator decides and the authors of `.htaccess` files must not.
    Section,
    /// `<Directory>`/`<Location>`/`<Files>` and `.htaccess` (with `AllowOverride AuthConfig`),
    /// not server or virtual host: where httpd's own authentication directives go.
    AuthConfig,
}

/// What a directive does with its raw arguments.
#[derive(Clone, Copy)]
pub enum Action {
    Server(fn(&mut ServerConfig, &str, &str) -> Result<(), String>),
    Dir(fn(&mut DirConfig, &str, &str) -> Result<(), String>),
    /// Recognised, but its feature has not landed: refused with this explanation.
    NotYetSupported(&'static str),
}

impl Directive {
    pub fn name_str(&self) -> &'static str {
        self.name.to_str().expect("directive names are ASCII")
    }
}

pub struct Directive {
    /// NUL-terminated because httpd's command table points at it directly.
    pub name: &'static CStr,
    pub scope: Scope,
    pub action: Action,
    pub help: &'static CStr,
}

const NEVER: &str = "mod_wsgi-rs does not implement it";

pub const DIRECTIVES: &[Directive] = &[
    Directive {
        name: c"WSGIScriptAlias",
        scope: Scope::Server,
        action: Action::Server(add_script_alias),
        help: c"URL path, path to a WSGI script or directory, and optional key=value options",
    },
    Directive {
        name: c"WSGIScriptAliasMatch",
        scope: Scope::Server,
        action: Action::Server(add_script_alias_match),
        help: c"regular expression, path to a WSGI script, and optional key=value options",
    },
    Directive {
        name: c"WSGIPythonHome",
        scope: Scope::Global,
        action: Action::Server(set_python_home),
        help: c"Python prefix or virtual environment to use",
    },
    Directive {
        name: c"WSGIPythonPath",
        scope: Scope::Global,
        action: Action::Server(set_python_path),
        help: c"':'-separated directories added (as site directories) to the front of sys.path",
    },
    Directive {
        name: c"WSGICallableObject",
        scope: Scope::Directory,
        action: Action::Dir(set_callable_object),
        help: c"name of the WSGI application object in the script (default: application)",
    },
    Directive {
        name: c"WSGIApplicationGroup",
        scope: Scope::Section,
        action: Action::Dir(set_application_group),
        help: c"application group (Python interpreter) the script runs in",
    },
    Directive {
        name: c"WSGIProcessGroup",
        scope: Scope::Section,
        action: Action::Dir(set_process_group),
        help: c"process group the script runs in",
    },
    Directive {
        name: c"WSGIPassAuthorization",
        scope: Scope::Directory,
        action: Action::Dir(set_pass_authorization),
        help: c"On|Off: pass the Authorization header to the application as HTTP_AUTHORIZATION",
    },
    Directive {
        name: c"WSGIEnableSendfile",
        scope: Scope::Directory,
        action: Action::Dir(set_enable_sendfile),
        help: c"On|Off: send wsgi.file_wrapper files with sendfile (default Off)",
    },
    Directive {
        name: c"WSGIImportScript",
        scope: Scope::Server,
        action: Action::Server(add_import_script),
        help: c"path to a script to import at process start, process-group=… application-group=…",
    },
    Directive {
        name: c"WSGIScriptReloading",
        scope: Scope::Directory,
        action: Action::Dir(set_script_reloading),
        help: c"On|Off: reload a script whose modification time changed",
    },
    Directive {
        name: c"WSGIChunkedRequest",
        scope: Scope::Directory,
        action: Action::Dir(set_chunked_request),
        help: c"On|Off: accept request bodies sent with chunked transfer encoding",
    },
    Directive {
        name: c"WSGIMapHEADToGET",
        scope: Scope::Directory,
        action: Action::Dir(set_map_head_to_get),
        help: c"On|Off|Auto: show HEAD requests to the application as GET",
    },
    global(
        c"WSGIPythonOptimize",
        set_python_optimize,
        c"optimisation level of Python's compiler (0, 1 or 2, as python -O/-OO)",
    ),
    global(
        c"WSGIDontWriteBytecode",
        set_dont_write_bytecode,
        c"On|Off: do not write .pyc files when importing modules",
    ),
    global(
        c"WSGIPythonWarnings",
        add_python_warnings,
        c"a warnings filter, as python -W action:message:category:module:lineno (repeatable)",
    ),
    global(
        c"WSGIPythonHashSeed",
        set_python_hash_seed,
        c"random, or an integer 0..4294967295: the seed of str/bytes hashes (PYTHONHASHSEED)",
    ),
    global(
        c"WSGIPythonEggs",
        set_python_eggs,
        c"directory for the Python eggs cache (PYTHON_EGG_CACHE)",
    ),
    global(
        c"WSGIRestrictStdin",
        set_restrict_stdin,
        c"On|Off: make any use of sys.stdin raise OSError (default Off)",
    ),
    global(
        c"WSGIRestrictStdout",
        set_restrict_stdout,
        c"On|Off: make any use of sys.stdout raise OSError (default Off)",
    ),
    global(
        c"WSGIRestrictSignal",
        set_restrict_signal,
        c"On|Off: ignore signal.signal() calls from applications, with a warning (default On)",
    ),
    global(
        c"WSGIRestrictEmbedded",
        set_restrict_embedded,
        c"On|Off: refuse to run applications in Apache's own child processes (default Off)",
    ),
    global(
        c"WSGILazyInitialization",
        set_lazy_initialization,
        c"On: start Python in each child process (the only mode of mod_wsgi-rs)",
    ),
    global(
        c"WSGIVerboseDebugging",
        set_verbose_debugging,
        c"On|Off: accepted for compatibility; use LogLevel wsgi:debug instead",
    ),
    global(
        c"WSGIDestroyInterpreter",
        set_destroy_interpreter,
        c"On|Off: finalise Python when a child process exits (default On)",
    ),
    global(
        c"WSGIPerInterpreterGIL",
        set_per_interpreter_gil,
        c"On|Off: give each application group's sub-interpreter a GIL of its own (Python 3.12+)",
    ),
    Directive {
        name: c"WSGIRestrictProcess",
        scope: Scope::Section,
        action: Action::Dir(set_restrict_process),
        help: c"the daemon process groups (or %{GLOBAL}) requests here may be sent to",
    },
    Directive {
        name: c"WSGIErrorOverride",
        scope: Scope::Directory,
        action: Action::Dir(set_error_override),
        help: c"On|Off: in daemon mode, answer an application's 4xx/5xx with Apache's error page",
    },
    Directive {
        name: c"WSGIDaemonProcess",
        scope: Scope::Server,
        action: Action::Server(add_daemon_process),
        help: c"name of a daemon process group and its options (processes=, threads=, user=, …)",
    },
    global(
        c"WSGISocketPrefix",
        set_socket_prefix,
        c"path prefix of the daemon process groups' sockets (relative to ServerRoot)",
    ),
    global(
        c"WSGISocketRotation",
        set_socket_rotation,
        c"On|Off: a new socket path for each Apache generation (default Off in mod_wsgi-rs)",
    ),
    global(
        c"WSGIAcceptMutex",
        set_accept_mutex,
        c"default|flock|fcntl|sysvsem|posixsem|pthread: accepted; daemon processes need no accept mutex",
    ),
    global(
        c"WSGIServerMetrics",
        set_server_metrics,
        c"On|Off: let mod_wsgi.server_metrics() in Apache's children report the scoreboard",
    ),
    global(
        c"WSGICaseSensitivity",
        set_case_sensitivity,
        c"On|Off: whether script paths differing only in case are different scripts (default On)",
    ),
    Directive {
        name: c"WSGIIgnoreActivity",
        scope: Scope::Directory,
        action: Action::Dir(set_ignore_activity),
        help: c"On|Off: requests here do not count as activity for a daemon's inactivity-timeout",
    },
    Directive {
        name: c"WSGITrustedProxyHeaders",
        scope: Scope::Directory,
        action: Action::Dir(add_trusted_proxy_headers),
        help: c"request headers set by a front-end proxy to trust (X-Forwarded-For, …)",
    },
    Directive {
        name: c"WSGITrustedProxies",
        scope: Scope::Directory,
        action: Action::Dir(add_trusted_proxies),
        help: c"addresses or subnets of the front-end proxies whose headers are trusted",
    },
    not_yet(c"WSGIPassApacheRequest", Scope::Section, NEVER),
    Directive {
        name: c"WSGIHandlerScript",
        scope: Scope::Section,
        action: Action::Dir(set_handler_script),
        help: c"name path [process-group=…] [application-group=…] [pass-authorization=On|Off]: the script whose handle_request serves requests for Apache handler 'name'",
    },
    Directive {
        name: c"WSGIDispatchScript",
        scope: Scope::Section,
        action: Action::Dir(set_dispatch_script),
        help: c"path [application-group=…]: a script whose process_group(), application_group() and callable_object() may route each request",
    },
    Directive {
        name: c"WSGIAccessScript",
        scope: Scope::AuthConfig,
        action: Action::Dir(set_access_script),
        help: c"script whose allow_access(environ, host) decides access; application-group=",
    },
    Directive {
        name: c"WSGIAuthUserScript",
        scope: Scope::AuthConfig,
        action: Action::Dir(set_auth_user_script),
        help: c"script of the 'wsgi' auth provider (check_password, get_realm_hash); application-group=",
    },
    Directive {
        name: c"WSGIAuthGroupScript",
        scope: Scope::AuthConfig,
        action: Action::Dir(set_auth_group_script),
        help: c"script whose groups_for_user(environ, user) serves Require wsgi-group; application-group=",
    },
    // No WSGIUserAuthoritative: C defines it only for Apache before 2.2 (2.4 has authn
    // providers), so with Apache 2.4 it is an unknown directive there as here.
    Directive {
        name: c"WSGIGroupAuthoritative",
        scope: Scope::AuthConfig,
        action: Action::Dir(set_group_authoritative),
        help: c"On|Off: accepted; Apache 2.4's Require lines decide what a failed group check means",
    },
    not_yet(c"WSGINewRelicConfigFile", Scope::Global, NEVER),
    not_yet(c"WSGINewRelicEnvironment", Scope::Global, NEVER),
];

/// A main-server-only directive that sets part of the global Python configuration.
const fn global(
    name: &'static CStr,
    apply: fn(&mut ServerConfig, &str, &str) -> Result<(), String>,
    help: &'static CStr,
) -> Directive {
    Directive {
        name,
        scope: Scope::Global,
        action: Action::Server(apply),
        help,
    }
}

const fn not_yet(name: &'static CStr, scope: Scope, why: &'static str) -> Directive {
    Directive {
        name,
        scope,
        action: Action::NotYetSupported(why),
        help: c"not supported yet",
    }
}

/// The message for a recognised directive whose feature is missing.
pub fn not_supported_message(name: &str, why: &str) -> String {
    format!("{name} is not supported yet by mod_wsgi-rs: {why}")
}

/// The single argument of a one-argument directive: as for httpd's own one-argument directives
/// (and so for C mod_wsgi's), an empty one (`""`) is no argument.
fn one_word(name: &str, args: &str) -> Result<String, String> {
    let mut words = split_words(args);
    if words.len() != 1 || words[0].is_empty() {
        return Err(format!("{name} takes one argument"));
    }
    Ok(words.remove(0))
}

fn add_script_alias(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    add_alias(c, ScriptAlias::parse(name, args, false)?);
    Ok(())
}

fn add_script_alias_match(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    add_alias(c, ScriptAlias::parse(name, args, true)?);
    Ok(())
}

/// An alias that names both its groups also imports its script at process start.
fn add_alias(c: &mut ServerConfig, alias: ScriptAlias) {
    c.import_scripts.extend(ImportScript::from_alias(&alias));
    c.aliases.push(alias);
}

fn add_import_script(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.import_scripts.push(ImportScript::parse(name, args)?);
    Ok(())
}

fn set_python_home(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    let home = one_word(name, args)?;
    check_python_home(name, &home, crate::PYTHON_VERSION)?;
    c.python_home = Some(home);
    Ok(())
}

fn set_python_path(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    let value = one_word(name, args)?;
    c.python_path = value
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    Ok(())
}

fn set_python_optimize(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.optimize = Some(parse_optimize(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_dont_write_bytecode(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.dont_write_bytecode = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn add_python_warnings(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    let value = one_word(name, args)?;
    check_warning_option(name, &value)?;
    c.python.warnings.push(value);
    Ok(())
}

fn set_python_hash_seed(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.hash_seed = Some(parse_hash_seed(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_python_eggs(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.eggs = Some(one_word(name, args)?);
    Ok(())
}

fn set_restrict_stdin(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.restrict_stdin = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_restrict_stdout(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.restrict_stdout = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_restrict_signal(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.restrict_signal = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_restrict_embedded(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.restrict_embedded = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

/// On is what mod_wsgi-rs always does; Off (start Python in the root parent) is refused.
fn set_lazy_initialization(_: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    if parse_on_off(name, &one_word(name, args)?)? {
        Ok(())
    } else {
        Err(EAGER_INITIALIZATION_REFUSED.to_string())
    }
}

fn set_verbose_debugging(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.verbose_debugging = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_destroy_interpreter(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.destroy_interpreter = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_per_interpreter_gil(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    let on = parse_on_off(name, &one_word(name, args)?)?;
    check_per_interpreter_gil(name, on, crate::PYTHON_VERSION)?;
    c.python.per_interpreter_gil = Some(on);
    Ok(())
}

fn set_callable_object(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    let value = one_word(name, args)?;
    check_callable_object(name, &value)?;
    c.callable_object = Some(value);
    Ok(())
}

fn set_application_group(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    let value = one_word(name, args)?;
    check_application_group(name, &value)?;
    c.application_group = Some(value);
    Ok(())
}

fn add_daemon_process(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    let group = DaemonProcess::parse(args)?;
    if c.daemon_groups.iter().any(|g| g.name == group.name) {
        return Err(format!(
            "{name}: a daemon process group named '{}' is already defined",
            group.name
        ));
    }
    c.daemon_groups.push(group);
    Ok(())
}

fn set_socket_prefix(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    let prefix = one_word(name, args)?;
    if prefix.is_empty() {
        return Err(format!("{name} needs a path"));
    }
    c.socket_prefix = Some(prefix);
    Ok(())
}

fn set_socket_rotation(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.socket_rotation = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

/// The lock mechanisms APR offers on Linux, which C mod_wsgi accepts here.
const ACCEPT_MUTEX_MECHANISMS: [&str; 6] = [
    "default", "flock", "fcntl", "sysvsem", "posixsem", "pthread",
];

/// Accepted so that existing configurations start: it chooses how C mod_wsgi's daemon processes
/// take turns to accept, and ours need no such lock (each waits in epoll; see daemon/unix.rs).
/// A start-up notice says so.
fn set_accept_mutex(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    let value = one_word(name, args)?;
    if !ACCEPT_MUTEX_MECHANISMS
        .iter()
        .any(|m| m.eq_ignore_ascii_case(&value))
    {
        return Err(format!(
            "{name} '{value}' is not a lock mechanism; valid ones are: {}",
            ACCEPT_MUTEX_MECHANISMS.join(", ")
        ));
    }
    c.accept_mutex = Some(value);
    Ok(())
}

fn set_server_metrics(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.server_metrics = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_process_group(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    let value = one_word(name, args)?;
    check_process_group(name, &value)?;
    c.process_group = Some(value);
    Ok(())
}

/// `WSGIRestrictProcess name … | %{GLOBAL}`: `%{GLOBAL}` is stored as '', the name a request
/// running in Apache's own children resolves to.
fn set_restrict_process(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    let words = split_words(args);
    if words.is_empty() {
        return Err(format!(
            "{name} needs the names of the daemon process groups allowed (or %{{GLOBAL}} for \
             Apache's own child processes)"
        ));
    }
    let mut allowed = Vec::with_capacity(words.len());
    for word in words {
        if word == GLOBAL {
            allowed.push(String::new());
        } else if word.is_empty() || word.contains('%') {
            // A process group resolves to a group name or ''; nothing else can ever match.
            return Err(format!(
                "{name} '{word}': list daemon process group names or %{{GLOBAL}}; \
                 substitutions such as %{{ENV:…}} are not expanded here"
            ));
        } else {
            allowed.push(word);
        }
    }
    c.restrict_process = Some(allowed);
    Ok(())
}

fn set_error_override(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.error_override = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_pass_authorization(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.pass_authorization = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_enable_sendfile(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.enable_sendfile = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_script_reloading(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.script_reloading = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_chunked_request(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.chunked_request = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_case_sensitivity(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
    c.python.case_sensitive = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_ignore_activity(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.ignore_activity = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

/// Each use adds its headers to the context's list (C mod_wsgi does the same).
fn add_trusted_proxy_headers(c: &mut DirConfig, _name: &str, args: &str) -> Result<(), String> {
    let list = Arc::make_mut(c.trusted_proxy_headers.get_or_insert_with(Default::default));
    list.extend(split_words(args).iter().map(|h| header_environ_name(h)));
    Ok(())
}

/// Each use adds its subnets to the context's list.
fn add_trusted_proxies(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    let mut subnets = Vec::new();
    for word in split_words(args) {
        let subnet = IpSubnet::parse(&word).map_err(|why| {
            format!("{name}: cannot use '{word}' as a trusted proxy address or subnet: {why}")
        })?;
        subnets.push(subnet);
    }
    Arc::make_mut(c.trusted_proxies.get_or_insert_with(Default::default)).extend(subnets);
    Ok(())
}

fn set_dispatch_script(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.dispatch_script = Some(HookScript::parse(name, args)?);
    Ok(())
}

fn set_handler_script(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    let script = HandlerScript::parse(name, args)?;
    // As for a name given twice in one context in C: the later line wins.
    c.handler_scripts.retain(|h| h.name != script.name);
    c.handler_scripts.push(script);
    Ok(())
}

fn set_access_script(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.access_script = Some(HookScript::parse(name, args)?);
    Ok(())
}

fn set_auth_user_script(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.auth_user_script = Some(HookScript::parse(name, args)?);
    Ok(())
}

fn set_auth_group_script(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.auth_group_script = Some(HookScript::parse(name, args)?);
    Ok(())
}

fn set_group_authoritative(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    c.group_authoritative = Some(parse_on_off(name, &one_word(name, args)?)?);
    Ok(())
}

fn set_map_head_to_get(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
    let value = one_word(name, args)?;
    c.map_head_to_get = Some(match value.to_ascii_lowercase().as_str() {
        "on" => MapHeadToGet::On,
        "off" => MapHeadToGet::Off,
        "auto" => MapHeadToGet::Auto,
        _ => return Err(format!("{name} must be On, Off or Auto, not '{value}'")),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashSeed;

    fn find(name: &str) -> &'static Directive {
        DIRECTIVES.iter().find(|d| d.name_str() == name).unwrap()
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = DIRECTIVES.iter().map(|d| d.name_str()).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }

    /// The context of every directive, from C mod_wsgi 4.9.4's command table (`wsgi_commands`):
    /// RSRC_CONF whose handler checks GLOBAL_ONLY is Global, other RSRC_CONF is Server,
    /// ACCESS_CONF|RSRC_CONF is Section, OR_FILEINFO is Directory, OR_AUTHCFG is AuthConfig.
    #[test]
    fn every_scope_follows_c_mod_wsgi() {
        use Scope::*;
        let expected = [
            ("WSGIScriptAlias", Server),
            ("WSGIScriptAliasMatch", Server),
            ("WSGIDaemonProcess", Server),
            ("WSGIImportScript", Server),
            ("WSGISocketPrefix", Global),
            ("WSGISocketRotation", Global),
            ("WSGIAcceptMutex", Global),
            ("WSGILazyInitialization", Global),
            ("WSGIVerboseDebugging", Global),
            ("WSGIDontWriteBytecode", Global),
            ("WSGIPythonWarnings", Global),
            ("WSGIPythonOptimize", Global),
            ("WSGIPythonHome", Global),
            ("WSGIPythonPath", Global),
            ("WSGIPythonEggs", Global),
            ("WSGIPythonHashSeed", Global),
            ("WSGIDestroyInterpreter", Global),
            ("WSGIRestrictEmbedded", Global),
            ("WSGIRestrictStdin", Global),
            ("WSGIRestrictStdout", Global),
            ("WSGIRestrictSignal", Global),
            ("WSGICaseSensitivity", Global),
            ("WSGIServerMetrics", Global),
            ("WSGINewRelicConfigFile", Global),
            ("WSGINewRelicEnvironment", Global),
            ("WSGIRestrictProcess", Section),
            ("WSGIProcessGroup", Section),
            ("WSGIApplicationGroup", Section),
            ("WSGIDispatchScript", Section),
            ("WSGIPassApacheRequest", Section),
            ("WSGIHandlerScript", Section),
            ("WSGICallableObject", Directory),
            ("WSGIPassAuthorization", Directory),
            ("WSGIScriptReloading", Directory),
            ("WSGIErrorOverride", Directory),
            ("WSGIChunkedRequest", Directory),
            ("WSGIMapHEADToGET", Directory),
            ("WSGIIgnoreActivity", Directory),
            ("WSGITrustedProxyHeaders", Directory),
            ("WSGITrustedProxies", Directory),
            ("WSGIEnableSendfile", Directory),
            ("WSGIAccessScript", AuthConfig),
            ("WSGIAuthUserScript", AuthConfig),
            ("WSGIAuthGroupScript", AuthConfig),
            ("WSGIGroupAuthoritative", AuthConfig),
            // Ours only (Python 3.12+), with the other interpreter-wide settings.
            ("WSGIPerInterpreterGIL", Global),
        ];
        for (name, scope) in expected {
            assert_eq!(find(name).scope, scope, "{name}");
        }
        assert_eq!(DIRECTIVES.len(), expected.len());
    }

    #[test]
    fn python_path_splits_on_colons() {
        let mut c = ServerConfig::default();
        let Action::Server(f) = find("WSGIPythonPath").action else {
            panic!()
        };
        f(&mut c, "WSGIPythonPath", "/a:/b::/c").unwrap();
        assert_eq!(c.python_path, vec!["/a", "/b", "/c"]);
    }

    #[test]
    fn one_argument_directives_refuse_two() {
        let mut c = DirConfig::default();
        let Action::Dir(f) = find("WSGICallableObject").action else {
            panic!()
        };
        let e = f(&mut c, "WSGICallableObject", "a b").unwrap_err();
        assert_eq!(e, "WSGICallableObject takes one argument");
    }

    #[test]
    fn pass_authorization_parses_flag() {
        let mut c = DirConfig::default();
        let Action::Dir(f) = find("WSGIPassAuthorization").action else {
            panic!()
        };
        f(&mut c, "WSGIPassAuthorization", "On").unwrap();
        assert_eq!(c.pass_authorization, Some(true));
        assert!(f(&mut c, "WSGIPassAuthorization", "maybe").is_err());
    }

    #[test]
    fn map_head_to_get_takes_three_values() {
        let mut c = DirConfig::default();
        let Action::Dir(f) = find("WSGIMapHEADToGET").action else {
            panic!()
        };
        f(&mut c, "WSGIMapHEADToGET", "auto").unwrap();
        assert_eq!(c.map_head_to_get, Some(MapHeadToGet::Auto));
        f(&mut c, "WSGIMapHEADToGET", "Off").unwrap();
        assert_eq!(c.map_head_to_get, Some(MapHeadToGet::Off));
        let e = f(&mut c, "WSGIMapHEADToGET", "yes").unwrap_err();
        assert!(e.contains("On, Off or Auto"), "{e}");
    }

    fn apply_dir(c: &mut DirConfig, name: &str, args: &str) -> Result<(), String> {
        let Action::Dir(f) = find(name).action else {
            panic!("{name} is not a directory directive")
        };
        f(c, name, args)
    }

    #[test]
    fn restrict_process_lists_groups_and_global() {
        let d = find("WSGIRestrictProcess");
        assert_eq!(d.scope, Scope::Section);
        assert_eq!(find("WSGIProcessGroup").scope, Scope::Section);
        let mut c = DirConfig::default();
        apply_dir(&mut c, "WSGIRestrictProcess", "site %{GLOBAL} 'other'").unwrap();
        assert_eq!(
            c.restrict_process,
            Some(vec!["site".into(), "".into(), "other".into()])
        );
        apply_dir(&mut c, "WSGIRestrictProcess", "only").unwrap();
        assert_eq!(c.restrict_process, Some(vec!["only".into()]));
        let e = apply_dir(&mut c, "WSGIRestrictProcess", "").unwrap_err();
        assert!(e.starts_with("WSGIRestrictProcess needs the names"), "{e}");
        for bad in ["%{ENV:GROUP}", "site %{RESOURCE}", "\"\""] {
            let e = apply_dir(&mut c, "WSGIRestrictProcess", bad).unwrap_err();
            assert!(e.starts_with("WSGIRestrictProcess '"), "{bad}: {e}");
        }
        assert_eq!(c.restrict_process, Some(vec!["only".into()]));
    }

    #[test]
    fn error_override_is_a_directory_flag() {
        let d = find("WSGIErrorOverride");
        assert_eq!(d.scope, Scope::Directory);
        let mut c = DirConfig::default();
        apply_dir(&mut c, "WSGIErrorOverride", "on").unwrap();
        assert_eq!(c.error_override, Some(true));
        apply_dir(&mut c, "WSGIErrorOverride", "Off").unwrap();
        assert_eq!(c.error_override, Some(false));
        let e = apply_dir(&mut c, "WSGIErrorOverride", "yes").unwrap_err();
        assert_eq!(e, "WSGIErrorOverride must be On or Off, not 'yes'");
    }

    fn apply_server(c: &mut ServerConfig, name: &str, args: &str) -> Result<(), String> {
        let Action::Server(f) = find(name).action else {
            panic!("{name} is not a server directive")
        };
        f(c, name, args)
    }

    #[test]
    fn python_directives_are_global_and_supported() {
        for name in [
            "WSGIPythonOptimize",
            "WSGIDontWriteBytecode",
            "WSGIPythonWarnings",
            "WSGIPythonHashSeed",
            "WSGIPythonEggs",
            "WSGIRestrictStdin",
            "WSGIRestrictStdout",
            "WSGIRestrictSignal",
            "WSGIRestrictEmbedded",
            "WSGILazyInitialization",
            "WSGIVerboseDebugging",
            "WSGIDestroyInterpreter",
            "WSGIPerInterpreterGIL",
        ] {
            let d = find(name);
            assert_eq!(d.scope, Scope::Global, "{name}");
            assert!(matches!(d.action, Action::Server(_)), "{name}");
        }
    }

    #[test]
    fn python_optimize_takes_a_level_of_zero_or_more() {
        let mut c = ServerConfig::default();
        apply_server(&mut c, "WSGIPythonOptimize", "2").unwrap();
        assert_eq!(c.python.optimize, Some(2));
        apply_server(&mut c, "WSGIPythonOptimize", "0").unwrap();
        assert_eq!(c.python.optimize, Some(0));
        for bad in ["-1", "x", "1.5", "", "99999999999"] {
            let e = apply_server(&mut c, "WSGIPythonOptimize", bad).unwrap_err();
            assert!(e.starts_with("WSGIPythonOptimize"), "{bad}: {e}");
        }
    }

    #[test]
    fn python_flags_parse_on_off_and_name_the_directive() {
        type Field = fn(&ServerConfig) -> Option<bool>;
        let flags: [(&str, Field); 7] = [
            ("WSGIDontWriteBytecode", |c| c.python.dont_write_bytecode),
            ("WSGIRestrictStdin", |c| c.python.restrict_stdin),
            ("WSGIRestrictStdout", |c| c.python.restrict_stdout),
            ("WSGIRestrictSignal", |c| c.python.restrict_signal),
            ("WSGIRestrictEmbedded", |c| c.python.restrict_embedded),
            ("WSGIVerboseDebugging", |c| c.python.verbose_debugging),
            ("WSGIDestroyInterpreter", |c| c.python.destroy_interpreter),
        ];
        for (name, field) in flags {
            let mut c = ServerConfig::default();
            assert_eq!(field(&c), None, "{name}");
            apply_server(&mut c, name, "On").unwrap();
            assert_eq!(field(&c), Some(true), "{name}");
            apply_server(&mut c, name, "off").unwrap();
            assert_eq!(field(&c), Some(false), "{name}");
            let e = apply_server(&mut c, name, "maybe").unwrap_err();
            assert_eq!(e, format!("{name} must be On or Off, not 'maybe'"));
            let e = apply_server(&mut c, name, "On Off").unwrap_err();
            assert_eq!(e, format!("{name} takes one argument"));
        }
    }

    #[test]
    fn python_warnings_accumulate_in_order() {
        let mut c = ServerConfig::default();
        apply_server(&mut c, "WSGIPythonWarnings", "ignore::DeprecationWarning").unwrap();
        apply_server(&mut c, "WSGIPythonWarnings", "error").unwrap();
        apply_server(&mut c, "WSGIPythonWarnings", "d:msg:UserWarning:mod:12").unwrap();
        // An empty one is no argument, as httpd (and so C) has it.
        let e = apply_server(&mut c, "WSGIPythonWarnings", "\"\"").unwrap_err();
        assert_eq!(e, "WSGIPythonWarnings takes one argument");
        assert_eq!(
            c.python.warnings,
            [
                "ignore::DeprecationWarning",
                "error",
                "d:msg:UserWarning:mod:12",
            ]
        );
    }

    #[test]
    fn bad_python_warnings_are_refused() {
        let mut c = ServerConfig::default();
        for (bad, why) in [
            ("shout::UserWarning", "invalid action 'shout'"),
            ("error:a:b:c:d:e", "too many fields"),
            ("error::UserWarning:mod:-3", "invalid line number '-3'"),
            ("error::UserWarning:mod:x", "invalid line number 'x'"),
        ] {
            let e = apply_server(&mut c, "WSGIPythonWarnings", bad).unwrap_err();
            assert!(e.starts_with("WSGIPythonWarnings"), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(c.python.warnings.is_empty());
    }

    #[test]
    fn an_empty_argument_is_no_argument() {
        for name in [
            "WSGIPythonHome",
            "WSGIPythonPath",
            "WSGIPythonEggs",
            "WSGIPythonHashSeed",
            "WSGISocketPrefix",
        ] {
            let e = apply_server(&mut ServerConfig::default(), name, "\"\"").unwrap_err();
            assert_eq!(e, format!("{name} takes one argument"));
        }
        for name in [
            "WSGICallableObject",
            "WSGIApplicationGroup",
            "WSGIProcessGroup",
        ] {
            let e = apply_dir(&mut DirConfig::default(), name, "''").unwrap_err();
            assert_eq!(e, format!("{name} takes one argument"));
        }
    }

    #[test]
    fn python_hash_seed_is_random_or_a_32_bit_integer() {
        let mut c = ServerConfig::default();
        apply_server(&mut c, "WSGIPythonHashSeed", "random").unwrap();
        assert_eq!(c.python.hash_seed, Some(HashSeed::Random));
        apply_server(&mut c, "WSGIPythonHashSeed", "0").unwrap();
        assert_eq!(c.python.hash_seed, Some(HashSeed::Fixed(0)));
        apply_server(&mut c, "WSGIPythonHashSeed", "4294967295").unwrap();
        assert_eq!(c.python.hash_seed, Some(HashSeed::Fixed(u32::MAX)));
        for bad in ["4294967296", "-1", "+5", "Random", "12abc"] {
            let e = apply_server(&mut c, "WSGIPythonHashSeed", bad).unwrap_err();
            assert!(
                e.starts_with(
                    "WSGIPythonHashSeed must be \"random\" or an integer in range [0; 4294967295]"
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn python_eggs_takes_one_directory() {
        let mut c = ServerConfig::default();
        apply_server(&mut c, "WSGIPythonEggs", "\"/var/cache/my eggs\"").unwrap();
        assert_eq!(c.python.eggs.as_deref(), Some("/var/cache/my eggs"));
        assert!(apply_server(&mut c, "WSGIPythonEggs", "").is_err());
    }

    #[test]
    fn lazy_initialization_off_is_refused() {
        let mut c = ServerConfig::default();
        apply_server(&mut c, "WSGILazyInitialization", "On").unwrap();
        let e = apply_server(&mut c, "WSGILazyInitialization", "Off").unwrap_err();
        assert!(
            e.starts_with("WSGILazyInitialization Off is not supported"),
            "{e}"
        );
        assert!(e.contains("parent"), "{e}");
        let e = apply_server(&mut c, "WSGILazyInitialization", "later").unwrap_err();
        assert!(e.contains("must be On or Off"), "{e}");
    }

    #[test]
    fn daemon_groups_are_defined_once_and_unlanded_options_refused_by_name() {
        let mut c = ServerConfig::default();
        apply_server(&mut c, "WSGIDaemonProcess", "site processes=2 threads=4").unwrap();
        apply_server(
            &mut c,
            "WSGIDaemonProcess",
            "timed inactivity-timeout=1 restart-interval=2 request-timeout=3",
        )
        .unwrap();
        assert_eq!(c.daemon_groups.len(), 2);
        assert_eq!(c.daemon_groups[0].options.threads, 4);
        // The timers the daemon processes carry out are accepted.
        apply_server(
            &mut c,
            "WSGIDaemonProcess",
            "watched startup-timeout=1 deadlock-timeout=2 eviction-timeout=3",
        )
        .unwrap();
        assert_eq!(c.daemon_groups.len(), 3);
        let e = apply_server(&mut c, "WSGIDaemonProcess", "site").unwrap_err();
        assert!(e.contains("'site' is already defined"), "{e}");
        let e = apply_server(&mut c, "WSGIDaemonProcess", "other chroot=/srv").unwrap_err();
        assert!(e.contains("chroot"), "{e}");
        let d = find("WSGINewRelicConfigFile");
        let Action::NotYetSupported(why) = d.action else {
            panic!()
        };
        let msg = not_supported_message(d.name_str(), why);
        assert!(
            msg.starts_with("WSGINewRelicConfigFile is not supported"),
            "{msg}"
        );
    }

    #[test]
    fn server_metrics_is_a_global_flag_and_the_group_option_is_accepted() {
        assert_eq!(find("WSGIServerMetrics").scope, Scope::Global);
        let mut c = ServerConfig::default();
        apply_server(&mut c, "WSGIServerMetrics", "On").unwrap();
        assert_eq!(c.server_metrics, Some(true));
        let e = apply_server(&mut c, "WSGIServerMetrics", "1").unwrap_err();
        assert_eq!(e, "WSGIServerMetrics must be On or Off, not '1'");
        apply_server(&mut c, "WSGIDaemonProcess", "site server-metrics=On").unwrap();
        assert!(c.daemon_groups[0].options.server_metrics);
    }

    #[test]
    fn socket_rotation_is_a_global_flag() {
        assert_eq!(find("WSGISocketRotation").scope, Scope::Global);
        let mut c = ServerConfig::default();
        assert_eq!(c.socket_rotation, None);
        apply_server(&mut c, "WSGISocketRotation", "On").unwrap();
        assert_eq!(c.socket_rotation, Some(true));
        apply_server(&mut c, "WSGISocketRotation", "off").unwrap();
        assert_eq!(c.socket_rotation, Some(false));
        let e = apply_server(&mut c, "WSGISocketRotation", "yes").unwrap_err();
        assert_eq!(e, "WSGISocketRotation must be On or Off, not 'yes'");
    }
}
