//! The string part of the WSGI environ: Apache's CGI variables plus mod_wsgi's fix-ups and
//! `mod_wsgi.*` keys. Values stay bytes here; the adapter turns each into a Latin-1 `str`
//! ("bytes as str", PEP 3333). The `wsgi.*` objects are added by the adapter.

use crate::config::{MapHeadToGet, RequestSettings};

/// CGI variables in the order Apache produced them; keys are unique.
///
/// All names and values live in one buffer: a request's fifty-odd variables cost two
/// allocations instead of a hundred, which (with as many frees) had been a visible share of the
/// CPU of a small request, in embedded mode and on both ends of daemon mode.
#[derive(Clone, Default)]
pub struct CgiVars {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

/// Where a variable's name and value are in [`CgiVars::bytes`].
#[derive(Clone, Copy)]
struct Entry {
    key: (u32, u32),
    value: (u32, u32),
}

impl CgiVars {
    /// Room for `entries` variables of `bytes` bytes in all.
    pub fn with_capacity(entries: usize, bytes: usize) -> CgiVars {
        CgiVars {
            bytes: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(entries),
        }
    }

    fn slice(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.bytes[start as usize..end as usize]
    }

    fn store(&mut self, data: &[u8]) -> (u32, u32) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(data);
        (start, self.bytes.len() as u32)
    }

    /// Appends a variable whose name the caller knows is not there yet.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        let entry = Entry {
            key: self.store(key),
            value: self.store(value),
        };
        self.entries.push(entry);
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| self.slice(e.key) == key.as_bytes())
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.position(key)
            .map(|i| self.slice(self.entries[i].value))
    }

    /// Sets `key` to `value`, in place if it is there, else at the end.
    pub fn set(&mut self, key: &str, value: impl AsRef<[u8]>) {
        match self.position(key) {
            // The old value's bytes stay behind, unused, until the variables are dropped.
            Some(i) => self.entries[i].value = self.store(value.as_ref()),
            None => self.push(key.as_bytes(), value.as_ref()),
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(i) = self.position(key) {
            self.entries.remove(i);
        }
    }

    /// The variables, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + Clone + '_ {
        self.iter_from(0)
    }

    /// The variables from the `start`th on, in order.
    pub fn iter_from(
        &self,
        start: usize,
    ) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> + Clone + '_ {
        self.entries[start.min(self.entries.len())..]
            .iter()
            .map(|e| (self.slice(e.key), self.slice(e.value)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(K, V)> for CgiVars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> CgiVars {
        let mut vars = CgiVars::default();
        for (k, v) in pairs {
            vars.push(k.as_ref(), v.as_ref());
        }
        vars
    }
}

impl PartialEq for CgiVars {
    fn eq(&self, other: &CgiVars) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for CgiVars {}

impl std::fmt::Debug for CgiVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            }))
            .finish()
    }
}

/// Facts about the request and connection that the environ reports beyond Apache's variables.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub authorization: Option<Vec<u8>>,
    pub is_https: bool,
    pub handler: String,
    pub request_start_us: i64,
    pub request_id: Option<String>,
    pub connection_id: Option<String>,
    pub listener_host: String,
    pub listener_port: u16,
    /// A HEAD request (which httpd treats as GET without a body).
    pub is_head: bool,
    /// An output filter that works on the response content (deflate, includes, …) will run.
    pub has_content_filters: bool,
}

/// Collapses runs of `/` in a path that starts with `/`; other values are left alone.
pub fn collapse_slashes(path: &[u8]) -> Vec<u8> {
    if path.first() != Some(&b'/') {
        return path.to_vec();
    }
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    out
}

/// The prefix of the variables the module adds to the CGI variables (`mod_wsgi.*`).
pub const MODULE_VAR_PREFIX: &[u8] = b"mod_wsgi.";

/// Applies mod_wsgi's fix-ups to Apache's CGI variables and adds its `mod_wsgi.*` keys.
pub fn complete_cgi_vars(vars: &mut CgiVars, settings: &RequestSettings, facts: &RequestFacts) {
    let as_get = match settings.map_head_to_get {
        MapHeadToGet::On => true,
        MapHeadToGet::Off => false,
        MapHeadToGet::Auto => facts.has_content_filters,
    };
    if facts.is_head && as_get {
        vars.set("REQUEST_METHOD", "GET");
    }
    // The server's PATH is not the application's business (C mod_wsgi leaves it out too).
    vars.remove("PATH");
    // Apache leaves credentials out of the CGI variables; WSGIPassAuthorization lets them in.
    if settings.pass_authorization {
        if let Some(auth) = &facts.authorization {
            vars.set("HTTP_AUTHORIZATION", auth);
        }
    }
    let script_name = collapse_slashes(vars.get("SCRIPT_NAME").unwrap_or_default());
    let path_info = collapse_slashes(vars.get("PATH_INFO").unwrap_or_default());
    vars.set("SCRIPT_NAME", script_name.clone());
    vars.set("PATH_INFO", path_info.clone());
    if let Some(headers) = &settings.trusted_proxy_headers {
        super::proxy_headers::apply(
            vars,
            headers,
            settings.trusted_proxies.as_deref().map(|p| &p[..]),
        );
    }
    // After the proxy's headers: a TLS connection to Apache itself is HTTPS whatever they say.
    if facts.is_https {
        vars.set("HTTPS", "1");
    }
    // The module's own variables last, together: the Apache layer exports them as one run.
    // Apache's variables have none of them unless a configuration set one (`SetEnv`): then
    // each replaces it, else (one look instead of one per variable) each is appended.
    let fresh = !vars.iter().any(|(k, _)| k.starts_with(MODULE_VAR_PREFIX));
    let mut vars = ModuleVars { vars, fresh };
    vars.set("mod_wsgi.script_name", script_name);
    vars.set("mod_wsgi.path_info", path_info);
    vars.set("mod_wsgi.process_group", settings.process_group.as_str());
    // A Latin-1 name (one character per byte of the URL it may come from), as in C.
    vars.set(
        "mod_wsgi.application_group",
        crate::config::groups::latin1_bytes(&settings.application_group),
    );
    vars.set(
        "mod_wsgi.callable_object",
        settings.callable_object.as_str(),
    );
    vars.set("mod_wsgi.request_handler", facts.handler.as_str());
    vars.set(
        "mod_wsgi.handler_script",
        settings.handler_script.as_deref().unwrap_or_default(),
    );
    vars.set(
        "mod_wsgi.script_reloading",
        if settings.script_reloading { "1" } else { "0" },
    );
    vars.set("mod_wsgi.listener_host", facts.listener_host.as_str());
    vars.set("mod_wsgi.listener_port", facts.listener_port.to_string());
    vars.set(
        "mod_wsgi.enable_sendfile",
        if settings.enable_sendfile { "1" } else { "0" },
    );
    vars.set(
        "mod_wsgi.ignore_activity",
        if settings.ignore_activity { "1" } else { "0" },
    );
    vars.set("mod_wsgi.request_start", facts.request_start_us.to_string());
    if let Some(id) = &facts.request_id {
        vars.set("mod_wsgi.request_id", id.as_str());
    }
    if let Some(id) = &facts.connection_id {
        vars.set("mod_wsgi.connection_id", id.as_str());
    }
}

/// Where [`complete_cgi_vars`] sets the module's own variables.
struct ModuleVars<'a> {
    vars: &'a mut CgiVars,
    /// None of them is there yet.
    fresh: bool,
}

impl ModuleVars<'_> {
    fn set(&mut self, key: &str, value: impl AsRef<[u8]>) {
        if self.fresh {
            self.vars.push(key.as_bytes(), value.as_ref());
        } else {
            self.vars.set(key, value);
        }
    }
}

/// `wsgi.url_scheme` from the `HTTPS` variable, as C mod_wsgi decides it.
pub fn url_scheme(vars: &CgiVars) -> &'static str {
    match vars.get("HTTPS") {
        Some(v) if v.eq_ignore_ascii_case(b"on") || v == b"1" => "https",
        _ => "http",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_keep_their_order_when_set_again_and_compare_by_content() {
        let mut v: CgiVars = [("A", "1"), ("B", "2"), ("C", "3")].into_iter().collect();
        v.set("B", "two");
        v.set("D", "4");
        v.remove("A");
        v.remove("missing");
        let pairs: Vec<(&[u8], &[u8])> = v.iter().collect();
        assert_eq!(
            pairs,
            [(&b"B"[..], &b"two"[..]), (b"C", b"3"), (b"D", b"4")]
        );
        assert_eq!(
            (v.get("B"), v.get("A"), v.len()),
            (Some(&b"two"[..]), None, 3)
        );
        // The replaced value's bytes are left behind but do not count.
        let fresh: CgiVars = [("B", "two"), ("C", "3"), ("D", "4")].into_iter().collect();
        assert_eq!(v, fresh);
        assert_ne!(v, CgiVars::default());
    }
    use crate::config::{DirConfig, RequestSettings};

    fn settings() -> RequestSettings {
        RequestSettings::resolve(&DirConfig::default(), None)
    }

    #[test]
    fn collapses_runs_of_slashes_only_in_paths() {
        assert_eq!(collapse_slashes(b"//a///b/"), b"/a/b/");
        assert_eq!(collapse_slashes(b"a//b"), b"a//b");
        assert_eq!(collapse_slashes(b""), b"");
    }

    #[test]
    fn missing_path_info_becomes_empty() {
        let mut v = CgiVars::from_iter(vec![(b"SCRIPT_NAME".to_vec(), b"/hello".to_vec())]);
        complete_cgi_vars(&mut v, &settings(), &RequestFacts::default());
        assert_eq!(v.get("PATH_INFO"), Some(&b""[..]));
        assert_eq!(v.get("SCRIPT_NAME"), Some(&b"/hello"[..]));
        assert_eq!(v.get("mod_wsgi.script_name"), Some(&b"/hello"[..]));
    }

    #[test]
    fn authorization_passes_only_when_enabled() {
        let facts = RequestFacts {
            authorization: Some(b"Basic xyz".to_vec()),
            ..Default::default()
        };
        let mut v = CgiVars::default();
        complete_cgi_vars(&mut v, &settings(), &facts);
        assert_eq!(v.get("HTTP_AUTHORIZATION"), None);
        let mut s = settings();
        s.pass_authorization = true;
        complete_cgi_vars(&mut v, &s, &facts);
        assert_eq!(v.get("HTTP_AUTHORIZATION"), Some(&b"Basic xyz"[..]));
    }

    #[test]
    fn head_becomes_get_as_configured() {
        let head = |mode, filters| {
            let mut v = CgiVars::from_iter(vec![(b"REQUEST_METHOD".to_vec(), b"HEAD".to_vec())]);
            let mut s = settings();
            s.map_head_to_get = mode;
            let facts = RequestFacts {
                is_head: true,
                has_content_filters: filters,
                ..Default::default()
            };
            complete_cgi_vars(&mut v, &s, &facts);
            String::from_utf8(v.get("REQUEST_METHOD").unwrap().to_vec()).unwrap()
        };
        assert_eq!(head(MapHeadToGet::On, false), "GET");
        assert_eq!(head(MapHeadToGet::Off, true), "HEAD");
        assert_eq!(head(MapHeadToGet::Auto, false), "HEAD");
        assert_eq!(head(MapHeadToGet::Auto, true), "GET");
    }

    #[test]
    fn https_sets_the_scheme() {
        let mut v = CgiVars::default();
        assert_eq!(url_scheme(&v), "http");
        complete_cgi_vars(
            &mut v,
            &settings(),
            &RequestFacts {
                is_https: true,
                ..Default::default()
            },
        );
        assert_eq!(url_scheme(&v), "https");
        v.set("HTTPS", "On");
        assert_eq!(url_scheme(&v), "https");
        v.set("HTTPS", "off");
        assert_eq!(url_scheme(&v), "http");
    }

    #[test]
    fn path_is_left_out() {
        let mut v = CgiVars::from_iter(vec![(b"PATH".to_vec(), b"/usr/bin".to_vec())]);
        complete_cgi_vars(&mut v, &settings(), &RequestFacts::default());
        assert_eq!(v.get("PATH"), None);
    }

    #[test]
    fn mod_wsgi_keys_are_present() {
        let mut v = CgiVars::default();
        let facts = RequestFacts {
            handler: "wsgi-script".into(),
            listener_port: 8080,
            request_id: Some("abc".into()),
            ..Default::default()
        };
        complete_cgi_vars(&mut v, &settings(), &facts);
        assert_eq!(v.get("mod_wsgi.callable_object"), Some(&b"application"[..]));
        assert_eq!(v.get("mod_wsgi.request_handler"), Some(&b"wsgi-script"[..]));
        assert_eq!(v.get("mod_wsgi.listener_port"), Some(&b"8080"[..]));
        assert_eq!(v.get("mod_wsgi.request_id"), Some(&b"abc"[..]));
        assert_eq!(v.get("mod_wsgi.script_reloading"), Some(&b"1"[..]));
        assert_eq!(v.get("mod_wsgi.application_group"), Some(&b""[..]));
        // Together at the end, where the Apache layer takes them from.
        let last: Vec<&[u8]> = v.iter().rev().take(3).map(|(k, _)| k).collect();
        assert!(last.iter().all(|k| k.starts_with(b"mod_wsgi.")), "{last:?}");
        let names: Vec<&[u8]> = v.iter().map(|(k, _)| k).collect();
        let first = names
            .iter()
            .position(|k| k.starts_with(b"mod_wsgi."))
            .unwrap();
        assert!(names[first..].iter().all(|k| k.starts_with(b"mod_wsgi.")));
    }

    #[test]
    fn a_module_variable_set_by_the_configuration_is_replaced_not_repeated() {
        // `SetEnv mod_wsgi.process_group x` puts one among Apache's variables.
        let mut v: CgiVars = [("mod_wsgi.process_group", "from-setenv"), ("A", "1")]
            .into_iter()
            .collect();
        complete_cgi_vars(&mut v, &settings(), &RequestFacts::default());
        let groups = v
            .iter()
            .filter(|(k, _)| *k == b"mod_wsgi.process_group")
            .count();
        assert_eq!(groups, 1);
        assert_eq!(v.get("mod_wsgi.process_group"), Some(&b""[..]));
    }
}
