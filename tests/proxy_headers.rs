//! `WSGITrustedProxyHeaders` and `WSGITrustedProxies` end to end: a front-end proxy's
//! forwarding headers become the environ the application sees, in embedded and daemon mode, and
//! the headers of a client that is not a trusted proxy are removed, never believed.

mod common;

use common::apps::{environ_value, parse_environ, ENVIRON};
use common::{config_test, Apache};

const FORWARDED: &[(&str, &str)] = &[
    ("X-Forwarded-For", "203.0.113.9, 10.1.2.3"),
    ("X-Real-IP", "198.51.100.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "public.example:8443"),
    ("X-Forwarded-Port", "8443"),
    ("X-Script-Name", "/mounted"),
];

fn environ(apache: &Apache, path: &str) -> Vec<(String, String)> {
    let r = apache.request("GET", path, FORWARDED, b"");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    parse_environ(&r.text())
}

#[test]
fn trusted_headers_become_the_environ_in_embedded_and_daemon_mode() {
    let apache = Apache::start(
        "proxy_headers_trusted",
        &[("env.wsgi", ENVIRON)],
        "WSGIDaemonProcess site threads=2\n\
         WSGITrustedProxyHeaders X-Forwarded-For X-Forwarded-Proto\n\
         WSGITrustedProxyHeaders X-Forwarded-Host X-Forwarded-Port X-Script-Name\n\
         WSGIScriptAlias /embedded {dir}/env.wsgi\n\
         WSGIScriptAlias /daemon {dir}/env.wsgi process-group=site\n",
    );
    for path in ["/embedded/x", "/daemon/x"] {
        let env = environ(&apache, path);
        let v = |k| environ_value(&env, k);
        // Without a list of proxies, the first forwarded address is the client.
        assert_eq!(v("REMOTE_ADDR"), Some("203.0.113.9"), "{path}");
        assert_eq!(v("HTTP_X_FORWARDED_FOR"), Some("203.0.113.9, 10.1.2.3"));
        // X-Real-IP is a client address header too, and not the one trusted.
        assert_eq!(v("HTTP_X_REAL_IP"), None, "{path}");
        assert_eq!(v("wsgi.url_scheme"), Some("https"), "{path}");
        // HTTPS is turned into wsgi.url_scheme and not passed on, as C mod_wsgi does.
        assert_eq!(v("HTTPS"), None);
        assert_eq!(v("HTTP_HOST"), Some("public.example:8443"));
        assert_eq!(v("SERVER_PORT"), Some("8443"));
        assert_eq!(v("SCRIPT_NAME"), Some("/mounted"));
        assert_eq!(v("mod_wsgi.mount_point"), Some("/mounted"));
        assert_eq!(v("mod_wsgi.script_name"), Some(&path[..path.len() - 2]));
        assert_eq!(v("PATH_INFO"), Some("/x"));
    }
}

#[test]
fn only_a_trusted_proxy_is_believed_and_its_list_is_walked_back() {
    let apache = Apache::start(
        "proxy_headers_proxies",
        &[("env.wsgi", ENVIRON)],
        "WSGITrustedProxyHeaders X-Forwarded-For X-Forwarded-Proto X-Forwarded-Host\n\
         WSGITrustedProxies 192.0.2.1 10.0.0.0/8\n\
         WSGIScriptAlias /untrusted {dir}/env.wsgi\n\
         WSGIScriptAlias /trusted {dir}/env.wsgi\n\
         <Location /trusted>\n\
         WSGITrustedProxies 127.0.0.1 10.0.0.0/8\n\
         </Location>\n",
    );
    // The test connects from 127.0.0.1, which the server-wide list does not trust.
    let env = environ(&apache, "/untrusted");
    let v = |k| environ_value(&env, k);
    assert_eq!(v("REMOTE_ADDR"), Some("127.0.0.1"));
    assert_eq!(v("wsgi.url_scheme"), Some("http"));
    assert_eq!(
        v("HTTP_HOST").map(|h| h.starts_with("127.0.0.1")),
        Some(true)
    );
    for gone in [
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_REAL_IP",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_HOST",
        "HTTPS",
    ] {
        assert_eq!(v(gone), None, "{gone}");
    }
    // Headers of no trusted kind stay as sent.
    assert_eq!(v("HTTP_X_SCRIPT_NAME"), Some("/mounted"));
    assert_eq!(v("HTTP_X_FORWARDED_PORT"), Some("8443"));

    // Here 127.0.0.1 is trusted, and so is 10.1.2.3 before it: the client is the entry before.
    let env = environ(&apache, "/trusted");
    let v = |k| environ_value(&env, k);
    assert_eq!(v("REMOTE_ADDR"), Some("203.0.113.9"));
    assert_eq!(v("HTTP_X_FORWARDED_FOR"), Some("203.0.113.9, 10.1.2.3"));
    assert_eq!(v("wsgi.url_scheme"), Some("https"));
    assert_eq!(v("HTTP_HOST"), Some("public.example:8443"));
}

#[test]
fn a_proxy_that_is_not_an_address_fails_the_configuration_test() {
    for (list, word) in [
        ("proxy.example.com", "proxy.example.com"),
        ("10.0.0.1 10.0.0.300", "10.0.0.300"),
        ("10.0.0.0/40", "10.0.0.0/40"),
    ] {
        let (ok, out) = config_test(
            "proxy_headers_bad_proxy",
            &format!("WSGITrustedProxies {list}\n"),
        );
        assert!(!ok, "{list} was accepted");
        assert!(
            out.contains(&format!(
                "WSGITrustedProxies: cannot use '{word}' as a trusted proxy address or subnet"
            )),
            "{out}"
        );
    }
    let (ok, out) = config_test(
        "proxy_headers_good",
        "WSGITrustedProxyHeaders X-Forwarded-For\nWSGITrustedProxies 10.1 ::1 192.168.0.0/255.255.0.0\n",
    );
    assert!(ok, "{out}");
}
