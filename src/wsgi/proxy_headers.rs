//! `WSGITrustedProxyHeaders`: a front-end proxy's forwarding headers turned into the environ
//! the application would have seen without the proxy (`REMOTE_ADDR`, `HTTP_HOST`, `HTTPS`,
//! `SCRIPT_NAME`, …), as C mod_wsgi does it.
//!
//! Headers come in four kinds: the client's address, the scheme, the host and the mount point.
//! For each kind the configuration names, at most one header survives in the environ: the one
//! that was trusted and used. The others of that kind are removed, so an application cannot be
//! fooled by a header the proxy did not set. With `WSGITrustedProxies`, the headers are used
//! only when the connection comes from one of those addresses; from anyone else, every header
//! of the named kinds is removed. `X-Forwarded-Server` and `X-Forwarded-Port` belong to no
//! kind: they are used when trusted and otherwise left alone, as in C.

use super::environ::CgiVars;
use crate::config::trusted_proxies::{trusted, IpSubnet};

const CLIENT: &[&str] = &["HTTP_X_FORWARDED_FOR", "HTTP_X_CLIENT_IP", "HTTP_X_REAL_IP"];
const SCHEME: &[&str] = &[
    "HTTP_X_FORWARDED_HTTPS",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_SCHEME",
    "HTTP_X_FORWARDED_SSL",
    "HTTP_X_HTTPS",
    "HTTP_X_SCHEME",
];
const HOST: &[&str] = &["HTTP_X_FORWARDED_HOST", "HTTP_X_HOST"];
const MOUNT_POINT: &[&str] = &["HTTP_X_SCRIPT_NAME", "HTTP_X_FORWARDED_SCRIPT_NAME"];

const KINDS: [&[&str]; 4] = [CLIENT, SCHEME, HOST, MOUNT_POINT];

/// Applies the trusted headers `headers` (environ names) to `vars`; `proxies` limits which
/// connecting addresses are believed (None: every one).
pub fn apply(vars: &mut CgiVars, headers: &[String], proxies: Option<&[IpSubnet]>) {
    let from_proxy =
        proxies.is_none_or(|p| trusted(p, vars.get("REMOTE_ADDR").unwrap_or_default()));
    // Per kind: whether the configuration names one of its headers, and which one was used.
    let mut named = [false; KINDS.len()];
    let mut used: [Option<&str>; KINDS.len()] = [None; KINDS.len()];
    for name in headers {
        let kind = KINDS.iter().position(|k| k.contains(&name.as_str()));
        if let Some(k) = kind {
            named[k] = true;
        }
        if !from_proxy {
            continue;
        }
        let Some(value) = vars.get(name).map(<[u8]>::to_vec) else {
            continue;
        };
        if use_header(vars, name, &value, proxies) {
            if let Some(k) = kind {
                used[k] = Some(name);
            }
        }
    }
    for (k, kind) in KINDS.iter().enumerate() {
        if named[k] {
            for header in kind.iter().filter(|h| used[k] != Some(**h)) {
                vars.remove(header);
            }
        }
    }
}

/// Rewrites the environ from one trusted header that is present; false for a header mod_wsgi
/// does not know (which is then left as it is).
fn use_header(vars: &mut CgiVars, name: &str, value: &[u8], proxies: Option<&[IpSubnet]>) -> bool {
    match name {
        "HTTP_X_FORWARDED_FOR" => forwarded_for(vars, value, proxies),
        "HTTP_X_CLIENT_IP" | "HTTP_X_REAL_IP" => vars.set("REMOTE_ADDR", value),
        // May carry a port, as Host does.
        "HTTP_X_FORWARDED_HOST" | "HTTP_X_HOST" => vars.set("HTTP_HOST", value),
        "HTTP_X_FORWARDED_SERVER" => vars.set("SERVER_NAME", value),
        "HTTP_X_FORWARDED_PORT" => vars.set("SERVER_PORT", value),
        "HTTP_X_SCRIPT_NAME" | "HTTP_X_FORWARDED_SCRIPT_NAME" => {
            vars.set("mod_wsgi.mount_point", value);
            vars.set("SCRIPT_NAME", value);
        }
        "HTTP_X_FORWARDED_PROTO" | "HTTP_X_FORWARDED_SCHEME" | "HTTP_X_SCHEME" => {
            set_https(vars, value, b"https", b"http")
        }
        "HTTP_X_FORWARDED_HTTPS" | "HTTP_X_FORWARDED_SSL" | "HTTP_X_HTTPS" => {
            for (on, off) in [(&b"on"[..], &b"off"[..]), (b"true", b"false"), (b"1", b"0")] {
                set_https(vars, value, on, off);
            }
        }
        _ => return false,
    }
    true
}

/// `HTTPS=1` for a value meaning on, no `HTTPS` for one meaning off, nothing for any other.
fn set_https(vars: &mut CgiVars, value: &[u8], on: &[u8], off: &[u8]) {
    if value.eq_ignore_ascii_case(on) {
        vars.set("HTTPS", "1");
    } else if value.eq_ignore_ascii_case(off) {
        vars.remove("HTTPS");
    }
}

/// `X-Forwarded-For: client, proxy1, proxy2`. Without a list of trusted proxies the first entry
/// is the client. With one, the list is walked back from the end over trusted proxies: the
/// entry before the earliest of them is the client, and the header is cut down to start there;
/// when the last entry is not a trusted proxy, it is the client and all that is kept.
fn forwarded_for(vars: &mut CgiVars, value: &[u8], proxies: Option<&[IpSubnet]>) {
    let Some(proxies) = proxies else {
        let value = trim(value);
        if !value.is_empty() {
            let first = value.split(|&b| b == b',').next().unwrap_or_default();
            vars.set("REMOTE_ADDR", trim(first));
        }
        return;
    };
    let mut items: Vec<&[u8]> = value.split(|&b| b == b',').map(trim).collect();
    // Nothing after a last comma is not an entry (C stops there); empty ones before are.
    if items.last().is_some_and(|i| i.is_empty()) {
        items.pop();
    }
    let Some(last) = items.len().checked_sub(1) else {
        return;
    };
    let earliest_proxy = (0..items.len())
        .rev()
        .take_while(|&i| trusted(proxies, items[i]))
        .last();
    let client = match earliest_proxy {
        Some(i) => i.saturating_sub(1),
        None => last,
    };
    vars.set("REMOTE_ADDR", items[client]);
    vars.set("HTTP_X_FORWARDED_FOR", items[client..].join(&b", "[..]));
}

/// Without C's white space (`isspace`) at either end.
fn trim(mut s: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    while let Some((first, rest)) = s.split_first() {
        if !space(first) {
            break;
        }
        s = rest;
    }
    while let Some((last, rest)) = s.split_last() {
        if !space(last) {
            break;
        }
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> CgiVars {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter()
            .map(|h| crate::config::trusted_proxies::header_environ_name(h))
            .collect()
    }

    fn subnets(list: &[&str]) -> Vec<IpSubnet> {
        list.iter().map(|s| IpSubnet::parse(s).unwrap()).collect()
    }

    fn get<'a>(v: &'a CgiVars, key: &str) -> Option<&'a str> {
        v.get(key).map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn without_a_proxy_list_the_first_forwarded_address_is_the_client() {
        let mut v = vars(&[
            ("REMOTE_ADDR", "10.0.0.1"),
            ("HTTP_X_FORWARDED_FOR", " 1.2.3.4 , 5.6.7.8"),
            ("HTTP_X_REAL_IP", "9.9.9.9"),
        ]);
        apply(&mut v, &names(&["X-Forwarded-For"]), None);
        assert_eq!(get(&v, "REMOTE_ADDR"), Some("1.2.3.4"));
        assert_eq!(get(&v, "HTTP_X_FORWARDED_FOR"), Some(" 1.2.3.4 , 5.6.7.8"));
        // Another client-address header than the one trusted is not believed: it goes.
        assert_eq!(get(&v, "HTTP_X_REAL_IP"), None);
    }

    #[test]
    fn with_a_proxy_list_the_address_before_the_trusted_proxies_is_the_client() {
        let headers = names(&["X-Forwarded-For"]);
        let proxies = subnets(&["10.0.0.0/8"]);
        for (xff, client, kept) in [
            (
                "6.6.6.6, 1.2.3.4, 10.0.0.7, 10.0.0.8",
                "1.2.3.4",
                "1.2.3.4, 10.0.0.7, 10.0.0.8",
            ),
            // The last entry is not a proxy of ours: it is the client; the rest is forged.
            ("1.2.3.4, 5.6.7.8", "5.6.7.8", "5.6.7.8"),
            // Every entry a proxy: the first is taken.
            ("10.0.0.7, 10.0.0.8", "10.0.0.7", "10.0.0.7, 10.0.0.8"),
            // A name or a port is not an address: the walk stops there.
            (
                "host.example, 10.0.0.7",
                "host.example",
                "host.example, 10.0.0.7",
            ),
            ("1.2.3.4,", "1.2.3.4", "1.2.3.4"),
        ] {
            let mut v = vars(&[("REMOTE_ADDR", "10.0.0.1"), ("HTTP_X_FORWARDED_FOR", xff)]);
            apply(&mut v, &headers, Some(&proxies));
            assert_eq!(get(&v, "REMOTE_ADDR"), Some(client), "{xff}");
            assert_eq!(get(&v, "HTTP_X_FORWARDED_FOR"), Some(kept), "{xff}");
        }
    }

    #[test]
    fn a_client_that_is_not_a_trusted_proxy_loses_every_header_of_the_named_kinds() {
        let mut v = vars(&[
            ("REMOTE_ADDR", "192.0.2.1"),
            ("HTTP_HOST", "site.example"),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
            ("HTTP_X_CLIENT_IP", "1.2.3.5"),
            ("HTTP_X_FORWARDED_PROTO", "https"),
            ("HTTP_X_FORWARDED_HOST", "evil.example"),
            ("HTTP_X_FORWARDED_PORT", "8443"),
            ("HTTP_X_SCRIPT_NAME", "/x"),
        ]);
        let headers = names(&[
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "X-Forwarded-Port",
        ]);
        apply(&mut v, &headers, Some(&subnets(&["10.0.0.1"])));
        assert_eq!(get(&v, "REMOTE_ADDR"), Some("192.0.2.1"));
        assert_eq!(get(&v, "HTTP_HOST"), Some("site.example"));
        assert_eq!(get(&v, "HTTPS"), None);
        for gone in [
            "HTTP_X_FORWARDED_FOR",
            "HTTP_X_CLIENT_IP",
            "HTTP_X_FORWARDED_PROTO",
            "HTTP_X_FORWARDED_HOST",
        ] {
            assert_eq!(get(&v, gone), None, "{gone}");
        }
        // Not of a named kind: left as they are.
        assert_eq!(get(&v, "HTTP_X_FORWARDED_PORT"), Some("8443"));
        assert_eq!(get(&v, "SERVER_PORT"), None);
        assert_eq!(get(&v, "HTTP_X_SCRIPT_NAME"), Some("/x"));
    }

    #[test]
    fn scheme_host_port_server_and_mount_point_from_a_trusted_proxy() {
        let mut v = vars(&[
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTPS", "1"),
            ("SCRIPT_NAME", "/app"),
            ("SERVER_PORT", "80"),
            ("HTTP_X_FORWARDED_PROTO", "HTTP"),
            ("HTTP_X_FORWARDED_SSL", "on"),
            ("HTTP_X_FORWARDED_HOST", "public.example:8443"),
            ("HTTP_X_HOST", "other.example"),
            ("HTTP_X_FORWARDED_PORT", "8443"),
            ("HTTP_X_FORWARDED_SERVER", "public.example"),
            ("HTTP_X_SCRIPT_NAME", "/mount"),
        ]);
        let headers = names(&[
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "X-Forwarded-Port",
            "X-Forwarded-Server",
            "X-Script-Name",
        ]);
        apply(&mut v, &headers, Some(&subnets(&["127.0.0.1"])));
        assert_eq!(
            get(&v, "HTTPS"),
            None,
            "http from the proxy turns HTTPS off"
        );
        assert_eq!(get(&v, "HTTP_X_FORWARDED_PROTO"), Some("HTTP"));
        assert_eq!(
            get(&v, "HTTP_X_FORWARDED_SSL"),
            None,
            "not the trusted scheme header"
        );
        assert_eq!(get(&v, "HTTP_HOST"), Some("public.example:8443"));
        assert_eq!(get(&v, "HTTP_X_HOST"), None);
        assert_eq!(get(&v, "SERVER_PORT"), Some("8443"));
        assert_eq!(get(&v, "SERVER_NAME"), Some("public.example"));
        assert_eq!(get(&v, "SCRIPT_NAME"), Some("/mount"));
        assert_eq!(get(&v, "mod_wsgi.mount_point"), Some("/mount"));
    }

    #[test]
    fn boolean_scheme_headers_take_on_true_and_1() {
        for (value, https) in [
            ("On", Some("1")),
            ("TRUE", Some("1")),
            ("1", Some("1")),
            ("off", None),
            ("0", None),
            ("maybe", Some("kept")),
        ] {
            let mut v = vars(&[("HTTPS", "kept"), ("HTTP_X_FORWARDED_HTTPS", value)]);
            apply(&mut v, &names(&["X-Forwarded-HTTPS"]), None);
            assert_eq!(get(&v, "HTTPS"), https, "{value}");
        }
    }

    #[test]
    fn the_last_present_header_of_a_kind_wins_and_absent_ones_change_nothing() {
        let mut v = vars(&[
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_X_FORWARDED_FOR", "1.1.1.1"),
            ("HTTP_X_REAL_IP", "2.2.2.2"),
        ]);
        apply(
            &mut v,
            &names(&["X-Forwarded-For", "X-Real-IP", "X-Client-IP"]),
            None,
        );
        assert_eq!(get(&v, "REMOTE_ADDR"), Some("2.2.2.2"));
        assert_eq!(get(&v, "HTTP_X_REAL_IP"), Some("2.2.2.2"));
        assert_eq!(get(&v, "HTTP_X_FORWARDED_FOR"), None);
    }
}
