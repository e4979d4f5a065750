//! Typed configuration: what the directives set, per server and per directory, and how Apache's
//! nested contexts merge. No Apache types here; `src/apache/directives.rs` feeds it.

pub mod accounts;
pub mod daemon;
pub mod directives;
pub mod groups;
pub mod handler_script;
pub mod hook_script;
pub mod import_script;
pub mod python;
pub mod python_home;
pub mod script_alias;
pub mod trusted_proxies;
pub mod words;

pub use hook_script::HookScript;
pub use import_script::ImportScript;
pub use python::{HashSeed, PythonOptions};
pub use script_alias::{AliasOptions, AliasPattern, RegexHandle, ScriptAlias};
pub use trusted_proxies::IpSubnet;

use std::sync::Arc;

/// A setting merged from Apache's nested contexts: the inner (`add`) value if set, else the outer.
fn pick<T: Clone>(add: &Option<T>, base: &Option<T>) -> Option<T> {
    add.clone().or_else(|| base.clone())
}

/// Per-server settings (main server and each virtual host).
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// In the order they appear; a virtual host's own aliases are tried before the main server's.
    pub aliases: Vec<ScriptAlias>,
    /// `WSGIPythonHome` and `WSGIPythonPath` are global: only the main server's are used.
    pub python_home: Option<String>,
    pub python_path: Vec<String>,
    /// The other global Python settings (`WSGIPythonOptimize`, `WSGIRestrictStdin`, …).
    pub python: PythonOptions,
    /// Scripts this server's directives import at process start, in order. Not inherited by
    /// virtual hosts: the process start-up reads every server's own list once.
    pub import_scripts: Vec<ImportScript>,
    /// The daemon process groups defined in this server (`WSGIDaemonProcess`), in order. Not
    /// inherited: the groups of every server are gathered once the configuration is read, and
    /// a group defined in a virtual host serves only that host's requests.
    pub daemon_groups: Vec<daemon::DaemonProcess>,
    /// `WSGISocketPrefix` (main server only): where the groups' sockets are made.
    pub socket_prefix: Option<String>,
    /// `WSGISocketRotation` (main server only): On puts Apache's generation in the socket
    /// names, so each restart makes new sockets; None/Off keeps one path across restarts.
    pub socket_rotation: Option<bool>,
    /// `WSGIServerMetrics` (main server only): whether `mod_wsgi.server_metrics()` reports the
    /// scoreboard in Apache's own children (daemon groups have `server-metrics=`); unset means
    /// On, as in C mod_wsgi 4.9.4, so only `Off` turns it off.
    pub server_metrics: Option<bool>,
    /// `WSGIAcceptMutex` (main server only): accepted for existing configurations, with a
    /// notice; mod_wsgi-rs's daemon processes take connections without an accept lock.
    pub accept_mutex: Option<String>,
}

impl ServerConfig {
    pub fn merge(base: &ServerConfig, add: &ServerConfig) -> ServerConfig {
        let mut aliases = add.aliases.clone();
        aliases.extend(base.aliases.iter().cloned());
        ServerConfig {
            aliases,
            python_home: pick(&add.python_home, &base.python_home),
            python_path: if add.python_path.is_empty() {
                base.python_path.clone()
            } else {
                add.python_path.clone()
            },
            python: PythonOptions::merge(&base.python, &add.python),
            import_scripts: add.import_scripts.clone(),
            daemon_groups: add.daemon_groups.clone(),
            socket_prefix: pick(&add.socket_prefix, &base.socket_prefix),
            socket_rotation: pick(&add.socket_rotation, &base.socket_rotation),
            server_metrics: pick(&add.server_metrics, &base.server_metrics),
            accept_mutex: pick(&add.accept_mutex, &base.accept_mutex),
        }
    }
}

/// Per-directory settings; in server context they are the defaults Apache merges below.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirConfig {
    pub application_group: Option<String>,
    pub process_group: Option<String>,
    pub callable_object: Option<String>,
    pub pass_authorization: Option<bool>,
    pub script_reloading: Option<bool>,
    pub chunked_request: Option<bool>,
    pub map_head_to_get: Option<MapHeadToGet>,
    pub enable_sendfile: Option<bool>,
    /// `WSGIErrorOverride`: in daemon mode, an error status from the application is answered
    /// by Apache's own error page (or `ErrorDocument`) instead of the application's body.
    pub error_override: Option<bool>,
    /// `WSGIRestrictProcess`: the process groups requests here may run in ('' is Apache's own
    /// children, `%{GLOBAL}`); None: any. A set given in an inner context replaces the outer one.
    pub restrict_process: Option<Vec<String>>,
    /// `WSGITrustedProxyHeaders`, as environ names (`HTTP_X_FORWARDED_FOR`). The directive
    /// repeated in one context adds to the list; an inner context's list replaces the outer.
    pub trusted_proxy_headers: Option<Arc<Vec<String>>>,
    /// `WSGITrustedProxies`: None trusts the headers from any client.
    pub trusted_proxies: Option<Arc<Vec<IpSubnet>>>,
    /// `WSGIIgnoreActivity`: requests here do not count as activity for a daemon process's
    /// inactivity-timeout.
    pub ignore_activity: Option<bool>,
    /// `WSGIAccessScript`: its `allow_access(environ, host)` decides who may access.
    pub access_script: Option<HookScript>,
    /// `WSGIAuthUserScript`: the `wsgi` authentication provider's `check_password` (Basic) and
    /// `get_realm_hash` (Digest).
    pub auth_user_script: Option<HookScript>,
    /// `WSGIAuthGroupScript`: `groups_for_user` for `Require wsgi-group`.
    pub auth_group_script: Option<HookScript>,
    /// `WSGIGroupAuthoritative`: accepted; it has no effect with Apache 2.4's providers.
    pub group_authoritative: Option<bool>,
    /// `WSGIHandlerScript`: scripts serving the requests Apache hands to the handlers they name.
    pub handler_scripts: Vec<handler_script::HandlerScript>,
    /// `WSGIDispatchScript`: its functions may choose the process group, application group and
    /// callable of each request.
    pub dispatch_script: Option<HookScript>,
}

/// `WSGIMapHEADToGET`: whether a HEAD request is shown to the application as GET, so that
/// output filters that need the whole body see the same response as for GET. `Auto` does it only
/// when such a filter is present; without the directive, as in C in practice, `Off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapHeadToGet {
    On,
    Off,
    Auto,
}

impl DirConfig {
    /// `WSGIScriptReloading`, On unless configured Off (as in C mod_wsgi): for scripts and for
    /// the access and authentication hook scripts alike.
    pub fn script_reloading(&self) -> bool {
        self.script_reloading.unwrap_or(true)
    }

    pub fn merge(base: &DirConfig, add: &DirConfig) -> DirConfig {
        DirConfig {
            application_group: pick(&add.application_group, &base.application_group),
            process_group: pick(&add.process_group, &base.process_group),
            callable_object: pick(&add.callable_object, &base.callable_object),
            pass_authorization: pick(&add.pass_authorization, &base.pass_authorization),
            script_reloading: pick(&add.script_reloading, &base.script_reloading),
            chunked_request: pick(&add.chunked_request, &base.chunked_request),
            map_head_to_get: pick(&add.map_head_to_get, &base.map_head_to_get),
            enable_sendfile: pick(&add.enable_sendfile, &base.enable_sendfile),
            error_override: pick(&add.error_override, &base.error_override),
            restrict_process: pick(&add.restrict_process, &base.restrict_process),
            trusted_proxy_headers: pick(&add.trusted_proxy_headers, &base.trusted_proxy_headers),
            trusted_proxies: pick(&add.trusted_proxies, &base.trusted_proxies),
            ignore_activity: pick(&add.ignore_activity, &base.ignore_activity),
            access_script: pick(&add.access_script, &base.access_script),
            auth_user_script: pick(&add.auth_user_script, &base.auth_user_script),
            auth_group_script: pick(&add.auth_group_script, &base.auth_group_script),
            group_authoritative: pick(&add.group_authoritative, &base.group_authoritative),
            handler_scripts: handler_script::merge(&base.handler_scripts, &add.handler_scripts),
            dispatch_script: pick(&add.dispatch_script, &base.dispatch_script),
        }
    }

    /// The `WSGIHandlerScript` for Apache handler `name`, if one is configured here.
    pub fn handler_script(&self, name: &[u8]) -> Option<&handler_script::HandlerScript> {
        self.handler_scripts
            .iter()
            .find(|h| h.name.as_bytes() == name)
    }
}

/// What one request runs with: directory settings, overridden by the matched alias's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSettings {
    pub callable_object: String,
    pub pass_authorization: bool,
    pub script_reloading: bool,
    pub chunked_request: bool,
    pub map_head_to_get: MapHeadToGet,
    /// `WSGIEnableSendfile`: whether `wsgi.file_wrapper` files go out with sendfile.
    pub enable_sendfile: bool,
    /// `WSGIErrorOverride` (daemon mode only, as in C mod_wsgi).
    pub error_override: bool,
    /// `WSGIRestrictProcess`: the process groups allowed here; None: any.
    pub restrict_process: Option<Vec<String>>,
    /// `WSGITrustedProxyHeaders` (environ names); None: no forwarding header is trusted.
    pub trusted_proxy_headers: Option<Arc<Vec<String>>>,
    /// `WSGITrustedProxies`; None: any client may be the proxy.
    pub trusted_proxies: Option<Arc<Vec<IpSubnet>>>,
    /// `WSGIIgnoreActivity`.
    pub ignore_activity: bool,
    /// The configured process group: the alias's `process-group=`, else `WSGIProcessGroup`;
    /// None is the default, Apache's own child (embedded mode).
    pub configured_process_group: Option<String>,
    /// The daemon process group the request runs in, '' for embedded mode (as in C mod_wsgi's
    /// environ), resolved from the configured value by the server layer.
    pub process_group: String,
    /// The configured application group: the alias's `application-group=`, else
    /// `WSGIApplicationGroup`; None is the default, `%{RESOURCE}`.
    pub configured_application_group: Option<String>,
    /// The name of the interpreter the request runs in ('' is the main one), resolved from the
    /// configured value for the request by the server layer (`groups::resolve_application_group`).
    pub application_group: String,
    /// `WSGIHandlerScript`: the script that serves the request instead of the file it maps to
    /// (which stays `SCRIPT_FILENAME`); None for the request's own script.
    pub handler_script: Option<String>,
}

impl RequestSettings {
    pub fn resolve(dir: &DirConfig, alias: Option<&AliasOptions>) -> RequestSettings {
        let from_alias = |f: fn(&AliasOptions) -> &Option<String>| alias.and_then(|a| f(a).clone());
        let callable_object = from_alias(|a| &a.callable_object)
            .or_else(|| dir.callable_object.clone())
            .unwrap_or_else(|| "application".to_string());
        let pass_authorization = alias
            .and_then(|a| a.pass_authorization)
            .or(dir.pass_authorization)
            .unwrap_or(false);
        let configured_process_group =
            from_alias(|a| &a.process_group).or_else(|| dir.process_group.clone());
        let configured_application_group =
            from_alias(|a| &a.application_group).or_else(|| dir.application_group.clone());
        RequestSettings {
            callable_object,
            pass_authorization,
            script_reloading: dir.script_reloading(),
            chunked_request: dir.chunked_request.unwrap_or(false),
            // C 4.9.4 documents Auto as the default, but its server configuration starts zeroed,
            // and zero is Off: without the directive, HEAD stays HEAD there.
            map_head_to_get: dir.map_head_to_get.unwrap_or(MapHeadToGet::Off),
            enable_sendfile: dir.enable_sendfile.unwrap_or(false),
            error_override: dir.error_override.unwrap_or(false),
            restrict_process: dir.restrict_process.clone(),
            trusted_proxy_headers: dir.trusted_proxy_headers.clone(),
            trusted_proxies: dir.trusted_proxies.clone(),
            ignore_activity: dir.ignore_activity.unwrap_or(false),
            configured_process_group,
            process_group: String::new(),
            configured_application_group,
            application_group: String::new(),
            handler_script: None,
        }
    }

    /// The settings of a request that Apache's handler `script.name` gives to a
    /// `WSGIHandlerScript`: its options as a script alias's, its `handle_request` callable.
    pub fn for_handler_script(dir: &DirConfig, script: &handler_script::HandlerScript) -> Self {
        RequestSettings {
            handler_script: Some(script.path.clone()),
            ..RequestSettings::resolve(dir, Some(&script.options))
        }
    }

    /// Whether `WSGIRestrictProcess` lets the request run in its resolved process group
    /// (`process_group`, '' for Apache's own children).
    pub fn process_group_allowed(&self) -> bool {
        self.restrict_process
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&self.process_group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_merge_prefers_the_inner_value() {
        let base = DirConfig {
            callable_object: Some("a".into()),
            pass_authorization: Some(true),
            ..Default::default()
        };
        let add = DirConfig {
            callable_object: Some("b".into()),
            ..Default::default()
        };
        let m = DirConfig::merge(&base, &add);
        assert_eq!(m.callable_object.as_deref(), Some("b"));
        assert_eq!(m.pass_authorization, Some(true));
    }

    #[test]
    fn server_merge_tries_vhost_aliases_first() {
        let alias = |p: &str| ScriptAlias {
            pattern: AliasPattern::Prefix(p.into()),
            target: "/x.wsgi".into(),
            options: Default::default(),
            regex: None,
            defined_at: None,
        };
        let base = ServerConfig {
            aliases: vec![alias("/main")],
            ..Default::default()
        };
        let add = ServerConfig {
            aliases: vec![alias("/vhost")],
            ..Default::default()
        };
        let m = ServerConfig::merge(&base, &add);
        assert_eq!(m.aliases[0].pattern, AliasPattern::Prefix("/vhost".into()));
        assert_eq!(m.aliases[1].pattern, AliasPattern::Prefix("/main".into()));
    }

    #[test]
    fn alias_options_override_directory_settings() {
        let dir = DirConfig {
            callable_object: Some("dir_app".into()),
            pass_authorization: Some(true),
            ..Default::default()
        };
        let opts = AliasOptions {
            callable_object: Some("alias_app".into()),
            pass_authorization: Some(false),
            ..Default::default()
        };
        let s = RequestSettings::resolve(&dir, Some(&opts));
        assert_eq!(s.callable_object, "alias_app");
        assert!(!s.pass_authorization);
        let s = RequestSettings::resolve(&dir, None);
        assert_eq!(s.callable_object, "dir_app");
        assert!(s.pass_authorization);
    }

    #[test]
    fn the_alias_application_group_overrides_the_directive() {
        let dir = DirConfig {
            application_group: Some("%{SERVER}".into()),
            ..Default::default()
        };
        let opts = AliasOptions {
            application_group: Some("site".into()),
            ..Default::default()
        };
        let s = RequestSettings::resolve(&dir, Some(&opts));
        assert_eq!(s.configured_application_group.as_deref(), Some("site"));
        let s = RequestSettings::resolve(&dir, Some(&AliasOptions::default()));
        assert_eq!(s.configured_application_group.as_deref(), Some("%{SERVER}"));
    }

    #[test]
    fn defaults_match_c_mod_wsgi() {
        let s = RequestSettings::resolve(&DirConfig::default(), None);
        assert_eq!(s.callable_object, "application");
        assert!(!s.pass_authorization);
        assert!(s.script_reloading);
        assert!(!s.chunked_request);
        assert_eq!(s.map_head_to_get, MapHeadToGet::Off);
        // Unset: %{RESOURCE}, resolved per request.
        assert_eq!(s.configured_application_group, None);
        assert!(!s.error_override);
        assert!(s.process_group_allowed());
        assert_eq!(s.trusted_proxy_headers, None);
        assert_eq!(s.trusted_proxies, None);
        assert!(!s.ignore_activity);
    }

    #[test]
    fn restrict_process_allows_only_the_listed_groups() {
        let dir = DirConfig {
            restrict_process: Some(vec!["site".into(), "".into()]),
            ..Default::default()
        };
        let mut s = RequestSettings::resolve(&dir, None);
        for (group, allowed) in [
            ("site", true),
            ("", true),
            ("other", false),
            ("Site", false),
        ] {
            s.process_group = group.into();
            assert_eq!(s.process_group_allowed(), allowed, "{group:?}");
        }
        let dir = DirConfig {
            restrict_process: Some(vec!["site".into()]),
            ..Default::default()
        };
        let mut s = RequestSettings::resolve(&dir, None);
        s.process_group = String::new();
        assert!(
            !s.process_group_allowed(),
            "embedded needs %{{GLOBAL}} listed"
        );
    }

    #[test]
    fn an_inner_restrict_process_replaces_the_outer_one() {
        let base = DirConfig {
            restrict_process: Some(vec!["a".into(), "b".into()]),
            error_override: Some(true),
            ..Default::default()
        };
        let add = DirConfig {
            restrict_process: Some(vec!["c".into()]),
            error_override: Some(false),
            ..Default::default()
        };
        let m = DirConfig::merge(&base, &add);
        assert_eq!(m.restrict_process, Some(vec!["c".to_string()]));
        assert_eq!(m.error_override, Some(false));
        let m = DirConfig::merge(&base, &DirConfig::default());
        assert_eq!(m.restrict_process, base.restrict_process);
        assert_eq!(m.error_override, Some(true));
    }
}
