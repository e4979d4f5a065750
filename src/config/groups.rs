//! Process and application groups: which values a directive may name, and how an application
//! group value becomes the name of the interpreter a request runs in, as C mod_wsgi 4.9.4 builds
//! it. Pure logic: the Apache layer gathers the request's facts and calls
//! [`resolve_application_group`].
//!
//! An application group is a Python (sub-)interpreter of the process. Its name is '' for the main
//! interpreter (`%{GLOBAL}`), else any text; the value may be a literal name or one of:
//!
//! | value | name |
//! |---|---|
//! | `%{GLOBAL}` | `''` (the main interpreter) |
//! | `%{RESOURCE}` (the default) | `server[:port]\|script-name` |
//! | `%{SERVER}` | `server[:port]` |
//! | `%{HOST}` | `host[:port]` (the request's host name, else the server's) |
//! | `%{ENV:NAME}` | the variable's value from the request notes, then the request environment (`SetEnv`), then the process environment |
//!
//! `server` is the (virtual) server's `ServerName`, `port` the request's port, left out when it is
//! 80 or 443, and `script-name` the part of the URL that names the script, lower-cased with runs of
//! `/` collapsed.

/// The application group that names the main interpreter.
pub const GLOBAL: &str = "%{GLOBAL}";

/// What an application group value asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSpec<'a> {
    Global,
    Resource,
    Server,
    Host,
    Env(&'a str),
    Literal(&'a str),
}

/// Reads a value as C mod_wsgi does at request time: an unknown `%{…}` is a literal name.
pub fn parse_group(value: &str) -> GroupSpec<'_> {
    match value {
        "%{GLOBAL}" => GroupSpec::Global,
        "%{RESOURCE}" => GroupSpec::Resource,
        "%{SERVER}" => GroupSpec::Server,
        "%{HOST}" => GroupSpec::Host,
        _ => match value
            .strip_prefix("%{ENV:")
            .and_then(|v| v.strip_suffix('}'))
        {
            Some(name) if !name.is_empty() => GroupSpec::Env(name),
            _ => GroupSpec::Literal(value),
        },
    }
}

/// Checks a configured application group. Every literal name is accepted (`''` is the main
/// interpreter); a `%{…}` substitution must be one of those above, so a misspelt one is refused
/// here rather than silently becoming a literal interpreter name as in C mod_wsgi.
pub fn check_application_group(what: &str, value: &str) -> Result<(), String> {
    if !value.starts_with("%{") {
        return Ok(());
    }
    match parse_group(value) {
        GroupSpec::Literal(_) => Err(format!(
            "{what} '{value}': unknown substitution; use a name, %{{GLOBAL}}, %{{RESOURCE}}, \
             %{{SERVER}}, %{{HOST}} or %{{ENV:variable}}"
        )),
        _ => Ok(()),
    }
}

/// The callable object a request's script is asked for, from `WSGICallableObject`'s value: a
/// name as it is, or `%{ENV:variable}` looked up with `env` (the request's notes and
/// environment, then the process's), `application` when the variable is not set, as in C.
pub fn resolve_callable_object(configured: &str, env: &dyn Fn(&str) -> Option<Vec<u8>>) -> String {
    match parse_group(configured) {
        GroupSpec::Env(name) => env(name)
            .map(|value| latin1(&value))
            .unwrap_or_else(|| DEFAULT_CALLABLE.to_string()),
        _ if configured.starts_with('%') => DEFAULT_CALLABLE.to_string(),
        _ => configured.to_string(),
    }
}

/// The callable a script is asked for when nothing names another.
pub const DEFAULT_CALLABLE: &str = "application";

/// Checks a configured callable object: a name, or `%{ENV:variable}`; another `%…` is refused
/// here (C takes it to mean `application`).
pub fn check_callable_object(what: &str, value: &str) -> Result<(), String> {
    if !value.starts_with('%') || matches!(parse_group(value), GroupSpec::Env(_)) {
        return Ok(());
    }
    Err(format!(
        "{what} '{value}': unknown substitution; use a name or %{{ENV:variable}}"
    ))
}

/// Checks a configured process group: `%{GLOBAL}` (Apache's own children), the name of a
/// `WSGIDaemonProcess` (defined anywhere in the configuration, checked once it is all read) or
/// a substitution that resolves to one of those per request.
pub fn check_process_group(what: &str, value: &str) -> Result<(), String> {
    check_application_group(what, value)
}

/// The process group a request runs in: '' for Apache's own children (the default), else the
/// name of a daemon process group, resolved from the configured value as an application group's
/// is (C mod_wsgi resolves both the same way).
pub fn resolve_process_group(
    configured: Option<&str>,
    request: &GroupRequest<'_>,
    env: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> String {
    match configured {
        None => String::new(),
        Some(value) => resolve_application_group(Some(value), request, env),
    }
}

/// What the name of a request's application group is built from.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupRequest<'a> {
    /// `ServerName` of the (virtual) server that serves the request.
    pub server_hostname: &'a [u8],
    /// The request's port, as httpd reports it (`ap_get_server_port`).
    pub port: u16,
    /// The host name the client asked for, if any.
    pub hostname: Option<&'a [u8]>,
    /// The decoded URL path and the part of it that is `PATH_INFO`.
    pub uri: &'a [u8],
    pub path_info: &'a [u8],
}

/// The name of the application group a request runs in, from the configured value (None: the
/// default, `%{RESOURCE}`). `env` looks a variable up for `%{ENV:…}`. Names are Latin-1 text (one
/// character per byte of the URL or variable), as the environ reports them.
pub fn resolve_application_group(
    configured: Option<&str>,
    request: &GroupRequest<'_>,
    env: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> String {
    let spec = configured.map_or(GroupSpec::Resource, parse_group);
    match spec {
        GroupSpec::Global => String::new(),
        GroupSpec::Literal(name) => name.to_string(),
        GroupSpec::Resource => format!(
            "{}|{}",
            with_port(request.server_hostname, request.port),
            latin1(&group_script_name(request.uri, request.path_info))
        ),
        GroupSpec::Server => with_port(request.server_hostname, request.port),
        GroupSpec::Host => {
            let host = request
                .hostname
                .filter(|h| !h.is_empty())
                .unwrap_or(request.server_hostname);
            with_port(host, request.port)
        }
        GroupSpec::Env(name) => match env(name) {
            // A value that is itself a substitution (but not another %{ENV:…}) is resolved.
            Some(value) => {
                let value = latin1(&value);
                if value.starts_with('%') && !value.starts_with("%{ENV:") {
                    resolve_application_group(Some(&value), request, env)
                } else {
                    value
                }
            }
            None => configured.unwrap_or_default().to_string(),
        },
    }
}

/// `host` or `host:port`, the port left out when it is HTTP's or HTTPS's default.
fn with_port(host: &[u8], port: u16) -> String {
    let host = latin1(host);
    if port == 80 || port == 443 {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// The part of `uri` before `path_info`, found by comparing from the end as httpd does (runs of
/// `/` in the URI match one `/` of the path info), then with leading and repeated `/` collapsed
/// and ASCII letters lower-cased.
pub fn group_script_name(uri: &[u8], path_info: &[u8]) -> Vec<u8> {
    let script = if path_info.is_empty() {
        uri
    } else {
        &uri[..path_info_start(uri, path_info)]
    };
    let mut out: Vec<u8> = Vec::with_capacity(script.len());
    for &b in script {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b.to_ascii_lowercase());
    }
    out
}

/// Where `path_info` starts in `uri`, found as C mod_wsgi does: compare from the ends (a `/` of
/// the path info matching a run of `/` in the URI) until they differ or one runs out, then move
/// forward to the next `/` (or the end).
fn path_info_start(uri: &[u8], path_info: &[u8]) -> usize {
    let (mut u, mut p) = (uri.len() as isize, path_info.len() as isize);
    loop {
        // Both indices step back before they are compared; whichever runs out first stops.
        let u_left = u != 0;
        u -= 1;
        if !u_left {
            break;
        }
        let p_left = p != 0;
        p -= 1;
        if !p_left || uri[u as usize] != path_info[p as usize] {
            break;
        }
        if path_info[p as usize] == b'/' {
            while u > 0 && uri[u as usize - 1] == b'/' {
                u -= 1;
            }
        }
    }
    let mut u = u.max(0) as usize;
    while u < uri.len() && uri[u] != b'/' {
        u += 1;
    }
    u
}

/// Bytes as Latin-1 text: one character per byte.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// A Latin-1 name back as bytes (characters above U+00FF, which a name built by
/// [`resolve_application_group`] never has, become `?`).
pub fn latin1_bytes(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callable_object_may_come_from_an_environment_variable() {
        let env = |name: &str| (name == "APP").then(|| b"other".to_vec());
        assert_eq!(resolve_callable_object("app", &env), "app");
        assert_eq!(resolve_callable_object("%{ENV:APP}", &env), "other");
        assert_eq!(resolve_callable_object("%{ENV:UNSET}", &env), "application");
        assert!(check_callable_object("WSGICallableObject", "%{ENV:APP}").is_ok());
        assert!(check_callable_object("WSGICallableObject", "app").is_ok());
        let e = check_callable_object("WSGICallableObject", "%{GLOBAL}").unwrap_err();
        assert!(e.contains("WSGICallableObject"), "{e}");
    }

    fn request<'a>(uri: &'a str, path_info: &'a str, port: u16) -> GroupRequest<'a> {
        GroupRequest {
            server_hostname: b"127.0.0.1",
            port,
            hostname: Some(b"www.example.com"),
            uri: uri.as_bytes(),
            path_info: path_info.as_bytes(),
        }
    }

    fn no_env(_: &str) -> Option<Vec<u8>> {
        None
    }

    fn resolve(configured: Option<&str>, r: &GroupRequest<'_>) -> String {
        resolve_application_group(configured, r, &no_env)
    }

    #[test]
    fn every_value_but_a_misspelt_substitution_is_accepted() {
        for value in [
            "%{GLOBAL}",
            "%{RESOURCE}",
            "%{SERVER}",
            "%{HOST}",
            "%{ENV:GROUP}",
            "site",
            "",
            "%literal",
        ] {
            assert!(
                check_application_group("WSGIApplicationGroup", value).is_ok(),
                "{value}"
            );
        }
        for value in ["%{RESOURSE}", "%{ENV:}", "%{ENV:X", "%{"] {
            let e = check_application_group("WSGIApplicationGroup", value).unwrap_err();
            assert!(
                e.starts_with(&format!("WSGIApplicationGroup '{value}': unknown")),
                "{e}"
            );
        }
    }

    #[test]
    fn process_groups_are_names_or_known_substitutions() {
        assert!(check_process_group("WSGIProcessGroup", "%{GLOBAL}").is_ok());
        assert!(check_process_group("WSGIProcessGroup", "site").is_ok());
        assert!(check_process_group("WSGIProcessGroup", "%{ENV:GROUP}").is_ok());
        let e = check_process_group("WSGIProcessGroup", "%{GLOBL}").unwrap_err();
        assert!(e.contains("unknown substitution"), "{e}");
        let r = request("/app", "", 80);
        assert_eq!(resolve_process_group(None, &r, &no_env), "");
        assert_eq!(resolve_process_group(Some("%{GLOBAL}"), &r, &no_env), "");
        assert_eq!(resolve_process_group(Some("site"), &r, &no_env), "site");
        let env = |_: &str| Some(b"other".to_vec());
        assert_eq!(resolve_process_group(Some("%{ENV:G}"), &r, &env), "other");
    }

    #[test]
    fn the_default_is_resource_as_c_builds_it() {
        // What C mod_wsgi 4.9.4 reported for /app/x on port 18123.
        let r = request("/app/x", "/x", 18123);
        assert_eq!(resolve(None, &r), "127.0.0.1:18123|/app");
        assert_eq!(resolve(Some("%{RESOURCE}"), &r), "127.0.0.1:18123|/app");
        assert_eq!(
            resolve(None, &request("/app", "", 18123)),
            "127.0.0.1:18123|/app"
        );
    }

    #[test]
    fn the_default_ports_are_left_out() {
        assert_eq!(
            resolve(None, &request("/app/x", "/x", 80)),
            "127.0.0.1|/app"
        );
        assert_eq!(
            resolve(None, &request("/app/x", "/x", 443)),
            "127.0.0.1|/app"
        );
        assert_eq!(
            resolve(Some("%{SERVER}"), &request("/", "", 80)),
            "127.0.0.1"
        );
    }

    #[test]
    fn script_names_are_lower_cased_and_slash_collapsed() {
        assert_eq!(group_script_name(b"/App2/Y", b"/Y"), b"/app2");
        assert_eq!(group_script_name(b"//app//x", b"/x"), b"/app");
        assert_eq!(group_script_name(b"/a//b/c//d", b"/c/d"), b"/a/b");
        assert_eq!(group_script_name(b"/", b"/"), b"");
        assert_eq!(group_script_name(b"/x/y", b"/x/y"), b"");
        assert_eq!(group_script_name(b"", b""), b"");
        // Path info that is not the URL's tail ends the script name where they differ.
        assert_eq!(group_script_name(b"/foo/bar", b"/zbar"), b"/foo");
        // A mount at `/` serves every URL from one script: its script name is empty.
        assert_eq!(
            resolve(None, &request("/x/y", "/x/y", 8080)),
            "127.0.0.1:8080|"
        );
    }

    #[test]
    fn global_server_host_and_literal_names() {
        let r = request("/app/x", "/x", 8080);
        assert_eq!(resolve(Some("%{GLOBAL}"), &r), "");
        assert_eq!(resolve(Some(""), &r), "");
        assert_eq!(resolve(Some("%{SERVER}"), &r), "127.0.0.1:8080");
        assert_eq!(resolve(Some("%{HOST}"), &r), "www.example.com:8080");
        let no_host = GroupRequest {
            hostname: None,
            ..r
        };
        assert_eq!(resolve(Some("%{HOST}"), &no_host), "127.0.0.1:8080");
        assert_eq!(resolve(Some("site"), &r), "site");
        // Unknown substitutions from the environment are literal names, as in C.
        assert_eq!(resolve(Some("%{BOGUS}"), &r), "%{BOGUS}");
    }

    #[test]
    fn env_names_come_from_the_lookup_and_may_substitute_again() {
        let r = request("/app/x", "/x", 8080);
        let env = |name: &str| match name {
            "GROUP" => Some(b"from-env".to_vec()),
            "META" => Some(b"%{SERVER}".to_vec()),
            "LOOP" => Some(b"%{ENV:LOOP}".to_vec()),
            "BYTES" => Some(vec![b'g', 0xe9]),
            _ => None,
        };
        let resolve = |v: &str| resolve_application_group(Some(v), &r, &env);
        assert_eq!(resolve("%{ENV:GROUP}"), "from-env");
        assert_eq!(resolve("%{ENV:META}"), "127.0.0.1:8080");
        assert_eq!(resolve("%{ENV:LOOP}"), "%{ENV:LOOP}");
        assert_eq!(resolve("%{ENV:BYTES}"), "g\u{e9}");
        // An unset variable leaves the value as the (literal) name, as C does.
        assert_eq!(resolve("%{ENV:UNSET}"), "%{ENV:UNSET}");
    }

    #[test]
    fn latin1_round_trips_bytes() {
        let bytes = vec![b'/', 0xc3, 0xa9, 0xff];
        assert_eq!(latin1_bytes(&latin1(&bytes)), bytes);
    }
}
