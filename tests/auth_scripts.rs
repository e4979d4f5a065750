//! The authentication and access hooks, end to end in real Apache, as C mod_wsgi 4.9.4 does them
//! (every expectation here was checked against Debian's C module):
//! `WSGIAuthUserScript` as the `wsgi` provider of mod_auth_basic (`check_password`) and
//! mod_auth_digest (`get_realm_hash`), `WSGIAuthGroupScript` behind `Require wsgi-group`
//! (`groups_for_user`), `WSGIAccessScript` as an access checker (`allow_access`),
//! `WSGIGroupAuthoritative`; the cut-down environ the hooks get, the interpreter they run in,
//! reloading of a changed script, scripts that are missing or broken, `.htaccess`, and what
//! `apache2 -t` accepts and refuses.
//!
//! Every server runs its applications with `WSGIApplicationGroup %{GLOBAL}` unless a test is
//! about interpreters: C 4.9.4 (Python 3.11) hangs destroying a sub-interpreter at shutdown
//! until Apache kills the child, which costs a test 10 s against C.

mod common;

use common::apps::{environ_value, parse_environ};
use common::{config_test, Apache, MODULES};
use std::time::{Duration, SystemTime};

/// The modules the hooks need that the base config does not load: Basic and Digest, AuthType
/// and AuthName (authn_core), `Require valid-user` (authz_user), SetEnv (env).
fn auth_modules() -> String {
    [
        ("auth_basic_module", "mod_auth_basic.so"),
        ("auth_digest_module", "mod_auth_digest.so"),
        ("authn_core_module", "mod_authn_core.so"),
        ("authz_user_module", "mod_authz_user.so"),
        ("env_module", "mod_env.so"),
    ]
    .iter()
    .map(|(name, file)| format!("LoadModule {name} {MODULES}/{file}\n"))
    .collect()
}

/// A `<Location>` behind Basic auth with the `wsgi` provider, plus `body`.
fn basic_location(path: &str, body: &str) -> String {
    format!(
        "<Location {path}>\nAuthType Basic\nAuthName \"Test Realm\"\nAuthBasicProvider wsgi\n{body}\n</Location>\n"
    )
}

/// Starts Apache with the auth modules, `WSGIApplicationGroup %{GLOBAL}`, `app.wsgi` (the
/// environ-echoing application) mounted at each of `mounts`, and `config`.
fn server(name: &str, files: &[(&str, &str)], mounts: &[&str], config: &str) -> Apache {
    let mut all = vec![("app.wsgi", common::apps::ENVIRON)];
    all.extend_from_slice(files);
    let aliases: String = mounts
        .iter()
        .map(|m| format!("WSGIScriptAlias {m} {{dir}}/app.wsgi\n"))
        .collect();
    Apache::start(
        name,
        &all,
        &format!(
            "{}WSGIApplicationGroup %{{GLOBAL}}\n{aliases}{config}",
            auth_modules()
        ),
    )
}

/// One script with all four hooks. Each call is noted in the error log through wsgi.errors;
/// with an `X-Record` header, each hook writes its environ to `{dir}/<hook>.env` as key=value
/// lines (other types than str as `<type>`), plus the interpreter it ran in as seen by the
/// mod_wsgi module.
const HOOKS: &str = r#"
import hashlib, mod_wsgi, os

def note(environ, text):
    environ["wsgi.errors"].write(text + "\n")

def record(environ, hook):
    if not environ.get("HTTP_X_RECORD"):
        return
    lines = []
    for key in sorted(environ):
        value = environ[key]
        if not isinstance(value, str):
            value = "<%s>" % type(value).__name__
        lines.append("%s=%s" % (key, value))
    lines.append("module.application_group=%s" % mod_wsgi.application_group)
    lines.append("module.process_group=%s" % mod_wsgi.process_group)
    with open(os.path.join("{dir}", hook + ".env"), "w") as f:
        f.write("\n".join(lines) + "\n")

def check_password(environ, user, password):
    note(environ, "check_password(%s, %s) in [%s]" % (user, password, mod_wsgi.application_group))
    record(environ, "check_password")
    if user == "nobody":
        return None
    if user == "alias":
        return "renamed"
    if user == "empty":
        return ""
    if user == "boom":
        raise RuntimeError("check_password blew up")
    if user == "number":
        return 42
    if user == "one":
        return 1
    if user == "bytes":
        return b"renamed"
    if user == "jos\u00e9":
        return "ren\u00e9e" if password == "p\u00e4ss" else False
    return password == "secret"

def get_realm_hash(environ, user, realm):
    note(environ, "get_realm_hash(%s, %s)" % (user, realm))
    record(environ, "get_realm_hash")
    if user == "nobody":
        return None
    if user == "boom":
        raise RuntimeError("get_realm_hash blew up")
    if user == "number":
        return 42
    digest = hashlib.md5(("%s:%s:secret" % (user, realm)).encode()).hexdigest()
    if user == "bytes":
        return digest.encode()
    return digest

def groups_for_user(environ, user):
    note(environ, "groups_for_user(%s) in [%s]" % (user, mod_wsgi.application_group))
    record(environ, "groups_for_user")
    if user == "gboom":
        raise RuntimeError("groups_for_user blew up")
    return {
        "good": ["admins", "staff"],
        "renamed": ["admins"],
        "staffer": ["staff"],
        "loner": [],
        "gbytes": [b"admins"],
        "gtuple": ("other", "admins"),
        "gstr": "admins",
        "gnone": None,
        "gnumber": 42,
        "gmixed": ["admins", 3],
    }.get(user, ["nobody-special"])

def allow_access(environ, host):
    query = environ["QUERY_STRING"]
    note(environ, "allow_access(%s, %s) in [%s]" % (host, query, mod_wsgi.application_group))
    record(environ, "allow_access")
    if query == "yes":
        return True
    if query == "no":
        return False
    if query == "boom":
        raise RuntimeError("allow_access blew up")
    if query == "number":
        return 1
    return None
"#;

/// A tiny base64 encoder for Basic credentials.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_encodes_like_rfc_4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(
        base64(b"Aladdin:open sesame"),
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// GET `path` with Basic credentials.
fn get_as(apache: &Apache, path: &str, user: &str, password: &str) -> common::Response {
    apache.request(
        "GET",
        path,
        &[("Authorization", &basic(user, password))],
        b"",
    )
}

/// GET `path` with curl's Digest auth; returns (status, body).
fn digest_get(apache: &Apache, path: &str, user: &str, password: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "--digest", "-u"])
        .arg(format!("{user}:{password}"))
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{}{path}", apache.port))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The environ a hook recorded (see HOOKS).
fn hook_environ(apache: &Apache, hook: &str) -> Vec<(String, String)> {
    let path = apache.path(&format!("{hook}.env"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), apache.error_log()));
    parse_environ(&text)
}

/// Rewrites `name` with `content` and a modification time in the future.
fn rewrite(apache: &Apache, name: &str, content: &str) {
    let path = apache.path(name);
    let content = content.replace("{dir}", &apache.dir.display().to_string());
    std::fs::write(&path, content).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// WSGIAuthUserScript with Basic: check_password(environ, user, password)

fn basic_server(name: &str) -> Apache {
    server(
        name,
        &[("auth.wsgi", HOOKS)],
        &["/basic"],
        &basic_location(
            "/basic",
            "WSGIAuthUserScript {dir}/auth.wsgi\nRequire valid-user",
        ),
    )
}

#[test]
fn without_credentials_basic_auth_challenges_and_the_script_is_not_called() {
    let apache = basic_server("basic-challenge");
    let r = apache.get("/basic/x");
    let log = apache.error_log();
    assert_eq!(r.status, 401, "{}\n{log}", r.text());
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"Test Realm\""),
        "{:?}",
        r.headers
    );
    assert!(!log.contains("check_password("), "{log}");
}

#[test]
fn check_password_true_lets_the_user_in_and_the_application_sees_remote_user() {
    let apache = basic_server("basic-true");
    let r = get_as(&apache, "/basic/x", "good", "secret");
    let log = apache.wait_for_log("check_password(good, secret)");
    assert_eq!(r.status, 200, "{}\n{log}", r.text());
    let env = parse_environ(&r.text());
    assert_eq!(environ_value(&env, "REMOTE_USER"), Some("good"), "{env:?}");
    assert_eq!(environ_value(&env, "AUTH_TYPE"), Some("Basic"), "{env:?}");
    assert_eq!(
        environ_value(&env, "HTTP_AUTHORIZATION"),
        None,
        "the credentials stay hidden from the application (WSGIPassAuthorization Off)"
    );
    assert!(
        log.contains("check_password(good, secret) in []"),
        "called once with the decoded credentials: {log}"
    );
}

#[test]
fn check_password_false_is_401_as_a_password_mismatch() {
    let apache = basic_server("basic-false");
    let r = get_as(&apache, "/basic/x", "good", "wrong");
    let log = apache.wait_for_log("AH01617");
    assert_eq!(r.status, 401, "{}\n{log}", r.text());
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"Test Realm\"")
    );
    // AUTH_DENIED, which mod_auth_basic reports as a mismatch.
    assert!(
        log.contains(
            "AH01617: user good: authentication failure for \"/basic/x\": Password Mismatch"
        ),
        "{log}"
    );
}

#[test]
fn check_password_none_is_401_as_an_unknown_user() {
    let apache = basic_server("basic-none");
    let r = get_as(&apache, "/basic/x", "nobody", "secret");
    let log = apache.wait_for_log("AH01618");
    assert_eq!(r.status, 401, "{}\n{log}", r.text());
    // AUTH_USER_NOT_FOUND.
    assert!(
        log.contains("AH01618: user nobody not found: /basic/x"),
        "{log}"
    );
}

#[test]
fn check_password_returning_a_string_lets_the_user_in_under_that_name() {
    let apache = basic_server("basic-rename");
    let r = get_as(&apache, "/basic/x", "alias", "anything");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let env = parse_environ(&r.text());
    assert_eq!(
        environ_value(&env, "REMOTE_USER"),
        Some("renamed"),
        "{env:?}"
    );

    // An empty string is a name too: C grants access with an empty REMOTE_USER (looks like a
    // bug, `Require valid-user` passes with no user name, but it is what C does).
    let r = get_as(&apache, "/basic/x", "empty", "anything");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let env = parse_environ(&r.text());
    assert_eq!(environ_value(&env, "REMOTE_USER"), Some(""), "{env:?}");
}

#[test]
fn an_exception_in_check_password_is_500_with_a_traceback_naming_the_script() {
    let apache = basic_server("basic-exception");
    let r = get_as(&apache, "/basic/x", "boom", "secret");
    let log = apache.wait_for_log("RuntimeError: check_password blew up");
    assert_eq!(r.status, 500, "{}\n{log}", r.text());
    let script = apache.path("auth.wsgi").display().to_string();
    for needle in [
        format!("Exception occurred processing WSGI script '{script}'."),
        "Traceback (most recent call last):".to_string(),
        format!("File \"{script}\", line "),
        ", in check_password".to_string(),
        "RuntimeError: check_password blew up".to_string(),
    ] {
        assert!(log.contains(&needle), "{needle:?} not in:\n{log}");
    }
}

#[test]
fn check_password_returning_another_type_is_500_with_a_type_error() {
    let apache = basic_server("basic-type");
    // Only the objects True and False count: 1 is refused like 42, and bytes are not a name.
    for user in ["number", "one", "bytes"] {
        let r = get_as(&apache, "/basic/x", user, "secret");
        assert_eq!(
            r.status,
            500,
            "{user}: {}\n{}",
            r.text(),
            apache.error_log()
        );
    }
    let log = apache.error_log();
    let script = apache.path("auth.wsgi").display().to_string();
    // C's text, without the comma after "False".
    let message =
        "TypeError: Basic auth provider must return True, False None or user name as string";
    assert_eq!(log.matches(message).count(), 3, "{log}");
    assert!(
        log.contains(&format!(
            "Exception occurred processing WSGI script '{script}'."
        )),
        "{log}"
    );
}

#[test]
fn credentials_reach_check_password_decoded_as_utf8_and_a_new_name_goes_back_as_utf8_bytes() {
    let apache = basic_server("basic-utf8");
    let credentials = format!("Basic {}", base64("jos\u{e9}:p\u{e4}ss".as_bytes()));
    let r = apache.request("GET", "/basic/x", &[("Authorization", &credentials)], b"");
    // 200 only if the script saw user "josé" and password "päss" as str.
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    // The returned "renée" becomes the user as UTF-8 bytes; the application's REMOTE_USER is
    // those bytes as latin-1 code points ("renÃ©e"), which the ENVIRON app writes back out as
    // latin-1, i.e. the UTF-8 bytes again.
    let needle = b"\nREMOTE_USER=ren\xc3\xa9e\n";
    assert!(
        r.body.windows(needle.len()).any(|w| w == needle),
        "{}",
        r.text()
    );
    // Not pinned: credentials that are not UTF-8 (a latin-1 "p\xe4ss") crash the C child
    // (Py_BuildValue("(Oss)") fails and C then calls Py_DECREF(NULL)); the client sees the
    // connection close with no response.
}

// ---------------------------------------------------------------------------------------------
// WSGIAuthUserScript with Digest: get_realm_hash(environ, user, realm)

fn digest_server(name: &str) -> Apache {
    server(
        name,
        &[("auth.wsgi", HOOKS)],
        &["/digest"],
        "<Location /digest>\nAuthType Digest\nAuthName \"Test Realm\"\nAuthDigestProvider wsgi\n\
         WSGIAuthUserScript {dir}/auth.wsgi\nRequire valid-user\n</Location>\n",
    )
}

#[test]
fn digest_auth_asks_get_realm_hash_for_the_hash_of_user_realm_password() {
    let apache = digest_server("digest");
    let r = apache.get("/digest/x");
    assert_eq!(r.status, 401);
    assert!(
        r.header("WWW-Authenticate")
            .is_some_and(|h| h.starts_with("Digest realm=\"Test Realm\"")),
        "{:?}",
        r.headers
    );

    let (status, body) = digest_get(&apache, "/digest/x", "good", "secret");
    let log = apache.wait_for_log("get_realm_hash(good, Test Realm)");
    assert_eq!(status, 200, "{body}\n{log}");
    let env = parse_environ(&body);
    assert_eq!(environ_value(&env, "REMOTE_USER"), Some("good"), "{body}");
    assert_eq!(environ_value(&env, "AUTH_TYPE"), Some("Digest"), "{body}");
    assert!(
        log.contains("get_realm_hash(good, Test Realm)"),
        "the realm is the AuthName: {log}"
    );

    // Unlike check_password's user name, bytes are accepted as the hash.
    let (status, body) = digest_get(&apache, "/digest/x", "bytes", "secret");
    assert_eq!(status, 200, "{body}\n{}", apache.error_log());

    let (status, _) = digest_get(&apache, "/digest/x", "good", "wrong");
    let log = apache.wait_for_log("AH01794");
    assert_eq!(status, 401, "{log}");
    assert!(
        log.contains("AH01794: user good: password mismatch: /digest/x"),
        "{log}"
    );

    let (status, _) = digest_get(&apache, "/digest/x", "nobody", "secret");
    let log = apache.wait_for_log("AH01790");
    assert_eq!(status, 401, "None is an unknown user: {log}");
    assert!(
        log.contains("AH01790: user `nobody' in realm `Test Realm' not found: /digest/x"),
        "{log}"
    );
}

#[test]
fn get_realm_hash_failures_are_500() {
    let apache = digest_server("digest-errors");
    let (status, body) = digest_get(&apache, "/digest/x", "boom", "secret");
    let log = apache.wait_for_log("RuntimeError: get_realm_hash blew up");
    assert_eq!(status, 500, "{body}\n{log}");
    assert!(log.contains(", in get_realm_hash"), "{log}");

    let (status, body) = digest_get(&apache, "/digest/x", "number", "secret");
    let log = apache.wait_for_log("TypeError: Digest auth provider");
    assert_eq!(status, 500, "{body}\n{log}");
    assert!(
        log.contains("TypeError: Digest auth provider must return None or string object"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// WSGIAuthGroupScript: Require wsgi-group, groups_for_user(environ, user)

fn group_server(name: &str) -> Apache {
    let scripts = "WSGIAuthUserScript {dir}/auth.wsgi\nWSGIAuthGroupScript {dir}/auth.wsgi\n";
    server(
        name,
        &[("auth.wsgi", HOOKS)],
        &["/group", "/either", "/notauthoritative"],
        &(basic_location("/group", &format!("{scripts}Require wsgi-group admins"))
            + &basic_location(
                "/either",
                &format!("{scripts}Require wsgi-group admins staff"),
            )
            + &basic_location(
                "/notauthoritative",
                &format!("{scripts}WSGIGroupAuthoritative Off\nRequire wsgi-group admins"),
            )),
    )
}

#[test]
fn require_wsgi_group_admits_a_member_of_any_listed_group() {
    let apache = group_server("group-member");
    for (path, user) in [
        ("/group/x", "good"),
        ("/group/x", "gbytes"),   // bytes group names
        ("/group/x", "gtuple"),   // any iterable
        ("/either/x", "staffer"), // the second group listed
    ] {
        let r = get_as(&apache, path, user, "secret");
        assert_eq!(
            r.status,
            200,
            "{user} on {path}: {}\n{}",
            r.text(),
            apache.error_log()
        );
        let env = parse_environ(&r.text());
        assert_eq!(environ_value(&env, "REMOTE_USER"), Some(user));
    }
    let log = apache.error_log();
    assert!(
        log.contains("groups_for_user(good) in []"),
        "the group script runs in the main interpreter: {log}"
    );
}

#[test]
fn require_wsgi_group_challenges_a_request_without_credentials() {
    let apache = group_server("group-challenge");
    let r = apache.get("/group/x");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"Test Realm\"")
    );
    assert!(!apache.error_log().contains("groups_for_user("));
}

#[test]
fn a_user_outside_the_groups_is_refused_with_401() {
    let apache = group_server("group-outside");
    // Authorization failures are 401 (authz_core re-challenges an authenticated user), not 403.
    let r = get_as(&apache, "/group/x", "staffer", "secret");
    let log = apache.wait_for_log("AH01631");
    assert_eq!(r.status, 401, "{}\n{log}", r.text());
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"Test Realm\"")
    );
    assert!(
        log.contains(
            "Authorization of user 'staffer' to access '/group/x' failed. \
             User is not a member of designated groups."
        ),
        "{log}"
    );
    assert!(
        log.contains("AH01631: user staffer: authorization failure for \"/group/x\""),
        "{log}"
    );

    let r = get_as(&apache, "/group/x", "loner", "secret");
    let log = apache.wait_for_log("User is not a member of any groups.");
    assert_eq!(r.status, 401, "an empty list: {log}");
    assert!(
        log.contains(
            "Authorization of user 'loner' to access '/group/x' failed. \
             User is not a member of any groups."
        ),
        "{log}"
    );

    // A str is iterated too: "admins" is the groups "a", "d", "m", …
    let r = get_as(&apache, "/group/x", "gstr", "secret");
    assert_eq!(r.status, 401, "{}", apache.error_log());
}

#[test]
fn a_failing_groups_for_user_is_401_not_500() {
    // C turns every failure of the group script into "not authorized": the client is asked
    // for credentials again, as if the password were wrong (surprising, but C's behaviour).
    let apache = group_server("group-failures");
    for user in ["gboom", "gnone", "gnumber", "gmixed"] {
        let r = get_as(&apache, "/group/x", user, "secret");
        assert_eq!(
            r.status,
            401,
            "{user}: {}\n{}",
            r.text(),
            apache.error_log()
        );
    }
    let log = apache.error_log();
    let script = apache.path("auth.wsgi").display().to_string();
    assert!(
        log.contains("RuntimeError: groups_for_user blew up"),
        "{log}"
    );
    assert!(log.contains(", in groups_for_user"), "{log}");
    // None, 42, and a list holding 3 (even after a matching group).
    let message = format!(
        "Groups for user returned from '{script}' must be an iterable sequence of byte strings."
    );
    assert_eq!(log.matches(&message).count(), 3, "{log}");
    assert!(
        log.contains("TypeError: 'NoneType' object is not iterable"),
        "{log}"
    );
    assert!(
        log.contains("TypeError: 'int' object is not iterable"),
        "{log}"
    );
}

#[test]
fn groups_for_user_is_asked_about_the_name_check_password_returned() {
    let apache = group_server("group-renamed");
    let r = get_as(&apache, "/group/x", "alias", "anything");
    let log = apache.wait_for_log("groups_for_user(renamed)");
    assert_eq!(r.status, 200, "{}\n{log}", r.text());
    assert!(log.contains("groups_for_user(renamed) in []"), "{log}");
}

#[test]
fn group_authoritative_off_changes_nothing() {
    // In C built for Apache 2.4 `Require wsgi-group` is an authz provider; the
    // group_authoritative flag is only read by the pre-2.4 auth_checker hook, which is not
    // compiled in. The directive is accepted and has no effect: a non-member is still refused
    // (letting another Require decide is <RequireAny>'s job in 2.4).
    let apache = group_server("group-notauthoritative");
    let r = get_as(&apache, "/notauthoritative/x", "staffer", "secret");
    assert_eq!(r.status, 401, "{}", apache.error_log());
    let r = get_as(&apache, "/notauthoritative/x", "good", "secret");
    assert_eq!(r.status, 200, "{}", apache.error_log());
}

#[test]
fn require_wsgi_group_without_a_group_script_refuses_with_401() {
    let apache = server(
        "group-noscript",
        &[("auth.wsgi", HOOKS)],
        &["/group"],
        &basic_location(
            "/group",
            "WSGIAuthUserScript {dir}/auth.wsgi\nRequire wsgi-group admins",
        ),
    );
    let r = get_as(&apache, "/group/x", "good", "secret");
    let log = apache.wait_for_log("group authorization script");
    assert_eq!(r.status, 401, "{}\n{log}", r.text());
    assert!(
        log.contains("Location of WSGI group authorization script not provided."),
        "{log}"
    );
}

#[test]
fn the_wsgi_provider_without_a_user_script_is_500() {
    let apache = server(
        "basic-noscript",
        &[],
        &["/basic"],
        &basic_location("/basic", "Require valid-user"),
    );
    let r = get_as(&apache, "/basic/x", "good", "secret");
    let log = apache.wait_for_log("user authentication script");
    assert_eq!(r.status, 500, "{}\n{log}", r.text());
    assert!(
        log.contains("Location of WSGI user authentication script not provided."),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// WSGIAccessScript: allow_access(environ, host)

fn access_server(name: &str) -> Apache {
    server(
        name,
        &[("access.wsgi", HOOKS)],
        &["/access", "/denied"],
        "<Location /access>\nWSGIAccessScript {dir}/access.wsgi\n</Location>\n\
         <Location /denied>\nWSGIAccessScript {dir}/access.wsgi\nRequire all denied\n</Location>\n",
    )
}

#[test]
fn allow_access_true_or_none_lets_the_request_through() {
    let apache = access_server("access-allow");
    for query in ["yes", "none"] {
        let r = apache.get(&format!("/access/x?{query}"));
        assert_eq!(
            r.status,
            200,
            "{query}: {}\n{}",
            r.text(),
            apache.error_log()
        );
    }
    let log = apache.error_log();
    // With HostnameLookups Off the host is the client's address.
    assert!(log.contains("allow_access(127.0.0.1, yes) in []"), "{log}");
}

#[test]
fn allow_access_false_is_403() {
    let apache = access_server("access-deny");
    let r = apache.get("/access/x?no");
    let log = apache.wait_for_log("Client denied");
    assert_eq!(r.status, 403, "{}\n{log}", r.text());
    // r->filename, which for a WSGIScriptAlias is the application script.
    let app = apache.path("app.wsgi").display().to_string();
    assert!(
        log.contains(&format!("Client denied by server configuration: '{app}'.")),
        "{log}"
    );
}

#[test]
fn allow_access_true_does_not_override_require() {
    // The script is one more gate before authorization, not a grant: Require still applies.
    let apache = access_server("access-require");
    let r = apache.get("/denied/x?yes");
    assert_eq!(r.status, 403, "{}\n{}", r.text(), apache.error_log());
    assert!(apache.error_log().contains("allow_access(127.0.0.1, yes)"));
}

#[test]
fn an_exception_or_a_non_boolean_from_allow_access_is_403() {
    // Anything but True or None denies; a failing script is 403, not 500.
    let apache = access_server("access-errors");
    for query in ["boom", "number"] {
        let r = apache.get(&format!("/access/x?{query}"));
        assert_eq!(
            r.status,
            403,
            "{query}: {}\n{}",
            r.text(),
            apache.error_log()
        );
    }
    let log = apache.error_log();
    let script = apache.path("access.wsgi").display().to_string();
    assert!(log.contains("RuntimeError: allow_access blew up"), "{log}");
    assert!(log.contains(", in allow_access"), "{log}");
    // C's text, "must a boolean" included.
    assert!(
        log.contains(&format!(
            "Indicator of host accessibility returned from '{script}' must a boolean or None."
        )),
        "{log}"
    );
    assert_eq!(
        log.matches("Client denied by server configuration").count(),
        2,
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// All three together: order, environ, interpreter

fn all_hooks_server(name: &str, extra: &str) -> Apache {
    server(
        name,
        &[("auth.wsgi", HOOKS)],
        &["/all"],
        &(basic_location(
            "/all",
            "WSGIAccessScript {dir}/auth.wsgi\nWSGIAuthUserScript {dir}/auth.wsgi\n\
             WSGIAuthGroupScript {dir}/auth.wsgi\nRequire wsgi-group admins\n\
             SetEnv SECRET_SETTING from-setenv",
        ) + extra),
    )
}

#[test]
fn hooks_run_access_then_user_then_group() {
    let apache = all_hooks_server("order", "");
    let r = get_as(&apache, "/all/x", "good", "secret");
    let log = apache.error_log();
    assert_eq!(r.status, 200, "{}\n{log}", r.text());
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {log}"))
    };
    let (access, user, group) = (
        at("allow_access("),
        at("check_password("),
        at("groups_for_user("),
    );
    assert!(access < user && user < group, "{log}");
}

#[test]
fn a_host_refused_by_allow_access_is_not_asked_for_credentials() {
    let apache = all_hooks_server("order-denied", "");
    let r = get_as(&apache, "/all/x?no", "good", "secret");
    let log = apache.error_log();
    assert_eq!(r.status, 403, "{}\n{log}", r.text());
    assert_eq!(r.header("WWW-Authenticate"), None);
    assert!(!log.contains("check_password("), "{log}");
}

#[test]
fn the_hook_environ_describes_the_request() {
    let apache = all_hooks_server("environ", "");
    let r = apache.request(
        "POST",
        "/all/sub/path?x=1&y=2",
        &[
            ("Authorization", &basic("good", "secret")),
            ("X-Record", "1"),
            ("X-Custom", "hello"),
            ("Content-Type", "text/plain"),
        ],
        b"abc",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let port = apache.port.to_string();
    for hook in ["allow_access", "check_password", "groups_for_user"] {
        let env = hook_environ(&apache, hook);
        for (key, value) in [
            ("REQUEST_METHOD", "POST"),
            ("REQUEST_URI", "/all/sub/path?x=1&y=2"),
            ("QUERY_STRING", "x=1&y=2"),
            ("SCRIPT_NAME", "/all"),
            ("PATH_INFO", "/sub/path"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("SERVER_PORT", port.as_str()),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("HTTP_X_CUSTOM", "hello"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "3"),
            // Hooks always run in Apache's own processes, and by default in the main
            // interpreter.
            ("mod_wsgi.process_group", ""),
            ("mod_wsgi.application_group", ""),
            ("module.application_group", ""),
            ("module.process_group", ""),
        ] {
            assert_eq!(
                environ_value(&env, key),
                Some(value),
                "{hook}: {key} in {env:?}"
            );
        }
        assert!(
            environ_value(&env, "wsgi.errors").is_some(),
            "{hook}: {env:?}"
        );
        for key in ["mod_ssl.is_https", "mod_ssl.var_lookup"] {
            assert_eq!(
                environ_value(&env, key),
                Some("<builtin_function_or_method>"),
                "{hook}: {key} in {env:?}"
            );
        }
    }
}

#[test]
fn the_hook_environ_leaves_out_credentials_setenv_and_headers_with_underscores() {
    let apache = all_hooks_server("environ-hidden", "");
    let r = apache.request(
        "GET",
        "/all/x",
        &[
            ("Authorization", &basic("good", "secret")),
            ("Proxy-Authorization", "Basic c2VjcmV0"),
            ("X-Record", "1"),
            ("X_Under", "spoofed"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let app = parse_environ(&r.text());
    assert_eq!(
        environ_value(&app, "SECRET_SETTING"),
        Some("from-setenv"),
        "the application does see SetEnv: {app:?}"
    );
    for hook in ["allow_access", "check_password", "groups_for_user"] {
        let env = hook_environ(&apache, hook);
        for key in [
            "HTTP_AUTHORIZATION",
            "HTTP_PROXY_AUTHORIZATION",
            "SECRET_SETTING",
            "HTTP_X_UNDER",
            "REMOTE_USER",
            "AUTH_TYPE",
        ] {
            assert_eq!(environ_value(&env, key), None, "{hook}: {key} in {env:?}");
        }
        assert_eq!(environ_value(&env, "HTTP_X_RECORD"), Some("1"), "{env:?}");
    }
}

#[test]
fn wsgi_errors_in_a_hook_logs_an_error_for_the_request() {
    let apache = all_hooks_server("errors-log", "");
    let r = get_as(&apache, "/all/x", "good", "secret");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let log = apache.wait_for_log("groups_for_user(good)");
    for needle in [
        "allow_access(127.0.0.1, ) in []",
        "check_password(good, secret) in []",
        "groups_for_user(good) in []",
    ] {
        let line = log
            .lines()
            .find(|l| l.ends_with(needle))
            .unwrap_or_else(|| panic!("{needle} not in:\n{log}"));
        // [wsgi:error] [pid …] [client 127.0.0.1:…] text
        assert!(
            line.contains(":error]") && line.contains("[client 127.0.0.1:"),
            "{line}"
        );
    }
}

#[test]
fn hooks_run_in_the_apache_child_even_for_a_daemon_mode_application() {
    let apache = all_hooks_server(
        "daemon",
        "WSGIDaemonProcess authd threads=2\n<Location /all>\nWSGIProcessGroup authd\n</Location>\n",
    );
    let r = apache.request(
        "GET",
        "/all/x",
        &[
            ("Authorization", &basic("good", "secret")),
            ("X-Record", "1"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let app = parse_environ(&r.text());
    assert_eq!(
        environ_value(&app, "mod_wsgi.process_group"),
        Some("authd"),
        "{app:?}"
    );
    for hook in ["allow_access", "check_password", "groups_for_user"] {
        let env = hook_environ(&apache, hook);
        assert_eq!(
            environ_value(&env, "mod_wsgi.process_group"),
            Some(""),
            "{env:?}"
        );
        assert_eq!(
            environ_value(&env, "module.process_group"),
            Some(""),
            "{hook} ran outside the daemon: {env:?}"
        );
    }
}

#[test]
fn hooks_run_even_where_embedded_mode_is_restricted() {
    // The usual daemon-mode setup refuses embedded mode; the hooks still need Python in
    // Apache's children, which C starts for them too.
    let apache = all_hooks_server(
        "restricted",
        "WSGIRestrictEmbedded On\nWSGIDaemonProcess authd threads=2\n\
         <Location /all>\nWSGIProcessGroup authd\n</Location>\n",
    );
    let r = get_as(&apache, "/all/x", "good", "secret");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let r = get_as(&apache, "/all/x", "good", "wrong");
    assert_eq!(r.status, 401, "{}", apache.error_log());
}

#[test]
fn a_restart_without_hook_scripts_stops_starting_python_for_them() {
    let apache = all_hooks_server(
        "restricted-restart",
        "WSGIRestrictEmbedded On\nWSGIDaemonProcess authd threads=2\n\
         <Location /all>\nWSGIProcessGroup authd\n</Location>\n",
    );
    let log = apache.wait_for_log("Initializing Python.");
    assert!(!log.contains("Python not started"), "{log}");
    // The next generation's configuration names no hook script. (httpd loads the module
    // afresh on a restart, so what the last configuration named is forgotten with it.)
    let conf = std::fs::read_to_string(apache.path("httpd.conf")).unwrap();
    let without: String = conf
        .lines()
        .filter(|l| !l.starts_with("WSGIAccessScript") && !l.starts_with("WSGIAuth"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(conf.len(), without.len());
    std::fs::write(apache.path("httpd.conf"), without).unwrap();
    let parent: i32 = std::fs::read_to_string(apache.path("httpd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: signalling (graceful restart) the Apache parent this test started.
    unsafe { libc::kill(parent, libc::SIGUSR1) };
    let log = apache.wait_for_log("Python not started: WSGIRestrictEmbedded On.");
    assert!(
        log.contains("Python not started: WSGIRestrictEmbedded On."),
        "the new children still start Python: {log}"
    );
}

#[test]
fn the_application_group_option_picks_the_interpreter_of_each_hook() {
    // Sub-interpreters: this test takes ~10 s against C (see the header).
    let apache = Apache::start(
        "hook-groups",
        &[("app.wsgi", common::apps::ENVIRON), ("auth.wsgi", HOOKS)],
        &(auth_modules()
            + "WSGIScriptAlias /all {dir}/app.wsgi\n"
            + &basic_location(
                "/all",
                "WSGIApplicationGroup appgroup\n\
                 WSGIAccessScript {dir}/auth.wsgi\n\
                 WSGIAuthUserScript {dir}/auth.wsgi application-group=authgroup\n\
                 WSGIAuthGroupScript {dir}/auth.wsgi application-group=%{SERVER}\n\
                 Require wsgi-group admins",
            )),
    );
    let r = apache.request(
        "GET",
        "/all/x",
        &[
            ("Authorization", &basic("good", "secret")),
            ("X-Record", "1"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let app = parse_environ(&r.text());
    assert_eq!(
        environ_value(&app, "mod_wsgi.application_group"),
        Some("appgroup")
    );
    let server_group = format!("127.0.0.1:{}", apache.port);
    for (hook, group) in [
        // Without the option: %{GLOBAL}, whatever WSGIApplicationGroup says.
        ("allow_access", ""),
        ("check_password", "authgroup"),
        ("groups_for_user", server_group.as_str()),
    ] {
        let env = hook_environ(&apache, hook);
        assert_eq!(
            environ_value(&env, "mod_wsgi.application_group"),
            Some(group),
            "{hook}: {env:?}"
        );
        assert_eq!(
            environ_value(&env, "module.application_group"),
            Some(group),
            "{hook} ran in that interpreter: {env:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reloading, missing and broken scripts

/// One hook script per directive; "VERSION" is what each accepts.
const VERSIONED: &str = r#"
VERSION = "v1"
def allow_access(environ, host):
    return environ["QUERY_STRING"] == VERSION
def check_password(environ, user, password):
    return password == VERSION
def groups_for_user(environ, user):
    return [VERSION]
"#;

fn reload_server(name: &str) -> Apache {
    server(
        name,
        &[
            ("access.wsgi", VERSIONED),
            ("user.wsgi", VERSIONED),
            ("group.wsgi", VERSIONED),
            ("fixed.wsgi", VERSIONED),
            (
                "any.wsgi",
                "def check_password(environ, user, password):\n    return True\n",
            ),
        ],
        &["/access", "/user", "/group", "/fixed"],
        &("<Location /access>\nWSGIAccessScript {dir}/access.wsgi\n</Location>\n".to_string()
            + &basic_location(
                "/user",
                "WSGIAuthUserScript {dir}/user.wsgi\nRequire valid-user",
            )
            + &basic_location(
                "/group",
                "WSGIAuthUserScript {dir}/any.wsgi\nWSGIAuthGroupScript {dir}/group.wsgi\n\
                 Require wsgi-group v2",
            )
            + &basic_location(
                "/fixed",
                "WSGIScriptReloading Off\nWSGIAuthUserScript {dir}/fixed.wsgi\nRequire valid-user",
            )),
    )
}

#[test]
fn a_changed_script_is_loaded_again_on_the_next_request() {
    let apache = reload_server("reload");
    assert_eq!(apache.get("/access/x?v1").status, 200);
    assert_eq!(get_as(&apache, "/user/x", "u", "v1").status, 200);
    assert_eq!(get_as(&apache, "/group/x", "u", "x").status, 401);
    for name in ["access.wsgi", "user.wsgi", "group.wsgi"] {
        rewrite(&apache, name, &VERSIONED.replace("\"v1\"", "\"v2\""));
    }
    // C logs "mod_wsgi (pid=…, process='', application=''): Reloading WSGI script '<path>'."
    assert_eq!(
        apache.get("/access/x?v2").status,
        200,
        "access script: {}",
        apache.error_log()
    );
    assert_eq!(apache.get("/access/x?v1").status, 403);
    assert_eq!(
        get_as(&apache, "/user/x", "u", "v2").status,
        200,
        "user script"
    );
    assert_eq!(get_as(&apache, "/user/x", "u", "v1").status, 401);
    assert_eq!(
        get_as(&apache, "/group/x", "u", "x").status,
        200,
        "group script: {}",
        apache.error_log()
    );
}

#[test]
fn with_script_reloading_off_a_changed_script_is_kept() {
    let apache = reload_server("reload-off");
    assert_eq!(get_as(&apache, "/fixed/x", "u", "v1").status, 200);
    rewrite(
        &apache,
        "fixed.wsgi",
        &VERSIONED.replace("\"v1\"", "\"v2\""),
    );
    assert_eq!(get_as(&apache, "/fixed/x", "u", "v1").status, 200);
    assert_eq!(get_as(&apache, "/fixed/x", "u", "v2").status, 401);
}

#[test]
fn a_missing_script_file_is_found_out_at_request_time() {
    // apache2 -t does not look at the path (Apache::start checks the config first).
    let apache = server(
        "missing",
        &[("auth.wsgi", HOOKS)],
        &["/access", "/user", "/group"],
        &("<Location /access>\nWSGIAccessScript {dir}/no-access.wsgi\n</Location>\n".to_string()
            + &basic_location(
                "/user",
                "WSGIAuthUserScript {dir}/no-user.wsgi\nRequire valid-user",
            )
            + &basic_location(
                "/group",
                "WSGIAuthUserScript {dir}/auth.wsgi\nWSGIAuthGroupScript {dir}/no-group.wsgi\n\
                 Require wsgi-group admins",
            )),
    );
    // As for a script that raises: access 403, user 500, group 401.
    let r = apache.get("/access/x?yes");
    assert_eq!(r.status, 403, "{}", apache.error_log());
    let r = get_as(&apache, "/user/x", "good", "secret");
    assert_eq!(r.status, 500, "{}", apache.error_log());
    let r = get_as(&apache, "/group/x", "good", "secret");
    assert_eq!(r.status, 401, "{}", apache.error_log());
    // C: "(2)No such file or directory: [client …] mod_wsgi (pid=…, process='',
    // application=''): Could not read/compile source file '<path>'.", then "Exception occurred
    // processing WSGI script '<path>'." and "FileNotFoundError: [Errno 2] No such file or
    // directory: '<path>'".
    let log = apache.error_log();
    for name in ["no-access.wsgi", "no-user.wsgi", "no-group.wsgi"] {
        let path = apache.path(name).display().to_string();
        assert!(log.contains(&path), "{path} not in:\n{log}");
    }
}

#[test]
fn a_script_without_the_hook_function_fails_like_a_raising_one() {
    let apache = server(
        "nofunction",
        &[("auth.wsgi", HOOKS), ("empty.wsgi", "NOTHING = 1\n")],
        &["/access", "/user", "/digest", "/group"],
        &("<Location /access>\nWSGIAccessScript {dir}/empty.wsgi\n</Location>\n".to_string()
            + &basic_location(
                "/user",
                "WSGIAuthUserScript {dir}/empty.wsgi\nRequire valid-user",
            )
            + "<Location /digest>\nAuthType Digest\nAuthName \"Test Realm\"\n\
               AuthDigestProvider wsgi\nWSGIAuthUserScript {dir}/empty.wsgi\n\
               Require valid-user\n</Location>\n"
            + &basic_location(
                "/group",
                "WSGIAuthUserScript {dir}/auth.wsgi\nWSGIAuthGroupScript {dir}/empty.wsgi\n\
                 Require wsgi-group admins",
            )),
    );
    let script = apache.path("empty.wsgi").display().to_string();
    let r = apache.get("/access/x?yes");
    assert_eq!(r.status, 403, "{}", apache.error_log());
    let r = get_as(&apache, "/user/x", "good", "secret");
    assert_eq!(r.status, 500, "{}", apache.error_log());
    let (status, _) = digest_get(&apache, "/digest/x", "good", "secret");
    assert_eq!(status, 500, "{}", apache.error_log());
    let r = get_as(&apache, "/group/x", "good", "secret");
    assert_eq!(r.status, 401, "{}", apache.error_log());
    let log = apache.error_log();
    for message in [
        format!("Target WSGI host access script '{script}' does not provide host validator."),
        format!(
            "Target WSGI user authentication script '{script}' does not provide 'Basic' auth \
             provider."
        ),
        format!(
            "Target WSGI user authentication script '{script}' does not provide 'Digest' auth \
             provider."
        ),
        format!(
            "Target WSGI group authentication script '{script}' does not provide group provider."
        ),
    ] {
        assert!(log.contains(&message), "{message:?} not in:\n{log}");
    }
}

#[test]
fn a_script_that_does_not_compile_is_500_with_the_syntax_error() {
    let apache = server(
        "syntax",
        &[("broken.wsgi", "def check_password(:\n")],
        &["/user"],
        &basic_location(
            "/user",
            "WSGIAuthUserScript {dir}/broken.wsgi\nRequire valid-user",
        ),
    );
    let r = get_as(&apache, "/user/x", "good", "secret");
    let log = apache.wait_for_log("SyntaxError");
    assert_eq!(r.status, 500, "{}\n{log}", r.text());
    let script = apache.path("broken.wsgi").display().to_string();
    assert!(log.contains("SyntaxError: invalid syntax"), "{log}");
    assert!(
        log.contains(&format!(
            "Exception occurred processing WSGI script '{script}'."
        )),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// .htaccess

#[test]
fn in_htaccess_the_scripts_protect_wsgi_and_static_content_alike() {
    let htaccess = "AuthType Basic\nAuthName \"Site\"\nAuthBasicProvider wsgi\n\
                    WSGIAuthUserScript {dir}/auth.wsgi\nRequire valid-user\n";
    let apache = Apache::start(
        "htaccess",
        &[
            ("app/app.wsgi", common::apps::ENVIRON),
            ("app/.htaccess", htaccess),
            ("static/hello.txt", "hello\n"),
            ("static/.htaccess", htaccess),
            ("auth.wsgi", HOOKS),
        ],
        &(auth_modules()
            + "WSGIApplicationGroup %{GLOBAL}\n\
               WSGIScriptAlias /app {dir}/app/app.wsgi\nAlias /static {dir}/static\n\
               <Directory {dir}/app>\nAllowOverride AuthConfig\n</Directory>\n\
               <Directory {dir}/static>\nAllowOverride AuthConfig\n</Directory>\n"),
    );
    let r = apache.get("/app/x");
    assert_eq!(r.status, 401, "{}", apache.error_log());
    assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"Site\""));
    let r = get_as(&apache, "/app/x", "good", "secret");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    assert_eq!(
        environ_value(&parse_environ(&r.text()), "REMOTE_USER"),
        Some("good")
    );
    assert_eq!(get_as(&apache, "/app/x", "good", "wrong").status, 401);
    let r = get_as(&apache, "/static/hello.txt", "good", "secret");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello\n"),
        "{}",
        apache.error_log()
    );
    assert_eq!(
        get_as(&apache, "/static/hello.txt", "good", "wrong").status,
        401
    );
}

#[test]
fn in_htaccess_without_allowoverride_authconfig_the_directive_is_500() {
    let apache = Apache::start(
        "htaccess-fileinfo",
        &[
            ("app/app.wsgi", common::apps::ENVIRON),
            ("app/.htaccess", "WSGIAuthUserScript {dir}/auth.wsgi\n"),
            ("auth.wsgi", HOOKS),
        ],
        &(auth_modules()
            + "WSGIApplicationGroup %{GLOBAL}\nWSGIScriptAlias /app {dir}/app/app.wsgi\n\
               <Directory {dir}/app>\nAllowOverride FileInfo\n</Directory>\n"),
    );
    let r = apache.get("/app/x");
    let log = apache.wait_for_log("not allowed here");
    assert_eq!(r.status, 500, "{}\n{log}", r.text());
    // Apache's own text, from the directive's override class (OR_AUTHCFG).
    assert!(log.contains("WSGIAuthUserScript not allowed here"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// apache2 -t

/// Asserts `apache2 -t` refuses `conf` and that its output contains one of `any`
/// (case-insensitively).
fn refused(name: &str, conf: &str, any: &[&str]) {
    let (ok, out) = config_test(name, conf);
    assert!(!ok, "apache2 -t accepted:\n{conf}\n{out}");
    let lower = out.to_lowercase();
    assert!(
        any.iter().any(|e| lower.contains(&e.to_lowercase())),
        "none of {any:?} in:\n{out}"
    );
}

#[test]
fn the_directives_pass_apache2_t_in_directory_and_location() {
    // The script need not exist (nothing checks it before a request), a quoted path may hold
    // spaces, application-group= takes names and %{…} (C accepts any %{…} here, and maps
    // only %{GLOBAL}, %{SERVER} and %{HOST}), and On/Off are case-insensitive.
    let (ok, out) = config_test(
        "accepted",
        "<Location /a>\n\
         WSGIAuthUserScript /nonexistent/user.wsgi\n\
         WSGIAuthGroupScript \"/tmp/with space/group.wsgi\" application-group=%{GLOBAL}\n\
         WSGIAccessScript /tmp/access.wsgi application-group=%{SERVER}\n\
         WSGIGroupAuthoritative off\n\
         </Location>\n\
         <Directory /tmp>\n\
         WSGIAuthUserScript /tmp/user.wsgi application-group=site\n\
         WSGIAuthGroupScript /tmp/group.wsgi application-group=%{HOST}\n\
         WSGIAccessScript /tmp/access.wsgi\n\
         WSGIGroupAuthoritative ON\n\
         </Directory>",
    );
    assert!(ok, "{out}");
}

#[test]
fn the_directives_are_refused_outside_a_directory_or_location() {
    // Apache's own text for a directive whose override class (OR_AUTHCFG) does not include
    // the server config.
    for directive in [
        "WSGIAuthUserScript /tmp/user.wsgi",
        "WSGIAuthGroupScript /tmp/group.wsgi",
        "WSGIAccessScript /tmp/access.wsgi",
        "WSGIGroupAuthoritative On",
    ] {
        let name = directive.split(' ').next().unwrap();
        refused(
            "server-level",
            directive,
            &[&format!("{name} not allowed here")],
        );
    }
}

#[test]
fn a_missing_script_path_is_refused() {
    // C: "Location of auth user script not supplied." / "Location of auth group script not
    // supplied." / "Location of access script not supplied."
    for (directive, words) in [
        ("WSGIAuthUserScript", "auth user script"),
        ("WSGIAuthGroupScript", "auth group script"),
        ("WSGIAccessScript", "access script"),
    ] {
        refused(
            "nopath",
            &format!("<Location /a>\n{directive}\n</Location>"),
            &[directive, words],
        );
    }
}

#[test]
fn an_unknown_option_is_refused() {
    // C: "Invalid option to WSGI auth user script definition." (auth group script, access
    // script), also for an option without "=".
    for (directive, option) in [
        ("WSGIAuthUserScript", "process-group=foo"),
        ("WSGIAuthGroupScript", "bogus=1"),
        ("WSGIAccessScript", "application-group"),
    ] {
        let (ok, out) = config_test(
            "badoption",
            &format!("<Location /a>\n{directive} /tmp/x.wsgi {option}\n</Location>"),
        );
        assert!(!ok, "{directive} {option} accepted:\n{out}");
        let lower = out.to_lowercase();
        assert!(lower.contains("option"), "{out}");
        assert!(
            out.contains(directive) || lower.contains("script definition"),
            "{out}"
        );
    }
}

#[test]
fn an_empty_application_group_is_refused() {
    // C: "Invalid name for WSGI application group."
    refused(
        "emptygroup",
        "<Location /a>\nWSGIAuthUserScript /tmp/x.wsgi application-group=\n</Location>",
        &["application group", "application-group"],
    );
}

#[test]
fn group_authoritative_takes_only_on_or_off() {
    // C: "WSGIGroupAuthoritative must be one of: Off | On"
    refused(
        "groupauthoritative",
        "<Location /a>\nWSGIGroupAuthoritative maybe\n</Location>",
        &["WSGIGroupAuthoritative"],
    );
}

#[test]
fn there_is_no_wsgi_user_authoritative_with_apache_2_4() {
    // C defines WSGIUserAuthoritative only when built without authn providers (Apache < 2.2).
    refused(
        "userauthoritative",
        "<Location /a>\nWSGIUserAuthoritative On\n</Location>",
        &["Invalid command 'WSGIUserAuthoritative'"],
    );
}

// ---------------------------------------------------------------------------------------------
// mod_ssl's callables in the hooks' environ

/// Each hook notes what `mod_ssl.is_https()` and `mod_ssl.var_lookup()` answer, and what one
/// kept from the previous request answers now.
const TLS_HOOKS: &str = r#"
kept = []

def report(environ, hook):
    is_https = environ["mod_ssl.is_https"]
    lookup = environ["mod_ssl.var_lookup"]
    note = environ["wsgi.errors"].write
    note("%s: is_https=%r https=%r protocol=%r\n"
         % (hook, is_https(), lookup("HTTPS"), lookup(b"SSL_PROTOCOL")))
    for bad in (1, "caf\u20ac"):
        try:
            lookup(bad)
        except TypeError as e:
            note("%s: refused %s: %s\n" % (hook, type(bad).__name__, e))
    if kept:
        try:
            kept.pop()()
        except RuntimeError as e:
            note("%s: kept: %s\n" % (hook, e))
    kept.append(is_https)

def check_password(environ, user, password):
    report(environ, "check_password")
    return password == "secret"

def groups_for_user(environ, user):
    report(environ, "groups_for_user")
    return ["admins"]

def allow_access(environ, host):
    report(environ, "allow_access")
    return None
"#;

fn tls_hooks_location() -> String {
    basic_location(
        "/all",
        "WSGIAccessScript {dir}/auth.wsgi\nWSGIAuthUserScript {dir}/auth.wsgi\n\
         WSGIAuthGroupScript {dir}/auth.wsgi\nRequire wsgi-group admins",
    )
}

#[test]
fn hooks_ask_mod_ssl_about_the_connection() {
    let apache = server(
        "hooks-tls",
        &[("auth.wsgi", TLS_HOOKS)],
        &["/all"],
        &(common::tls_config("hooks-tls") + &tls_hooks_location()),
    );
    for _ in 0..2 {
        let out = std::process::Command::new("curl")
            .args(["-sSk", "--max-time", "10", "-u", "good:secret"])
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://127.0.0.1:{}/all/x", apache.port))
            .output()
            .expect("curl runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{out:?}\n{}",
            apache.error_log()
        );
    }
    let log = apache.wait_for_log("groups_for_user: kept:");
    for hook in ["allow_access", "check_password", "groups_for_user"] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("{hook}: is_https=")))
            .unwrap_or_else(|| panic!("{hook} not in:\n{log}"));
        assert!(
            line.ends_with(&format!("{hook}: is_https=1 https='on' protocol='TLSv1.3'")),
            "{line}"
        );
        for needle in [
            format!("{hook}: refused int: byte string value expected, value of type int found"),
            format!(
                "{hook}: refused str: byte string value expected, value containing non \
                 'latin-1' characters found"
            ),
            // The callable kept from the request before (another hook's, in the first).
            format!("{hook}: kept: request object has expired"),
        ] {
            assert!(log.contains(&needle), "{needle} not in:\n{log}");
        }
    }
}

#[test]
fn without_mod_ssl_the_hooks_hear_plain_http() {
    let apache = server(
        "hooks-plain",
        &[("auth.wsgi", TLS_HOOKS)],
        &["/all"],
        &tls_hooks_location(),
    );
    let r = get_as(&apache, "/all/x", "good", "secret");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    let log = apache.wait_for_log("groups_for_user: is_https=");
    for hook in ["allow_access", "check_password", "groups_for_user"] {
        assert!(
            log.contains(&format!("{hook}: is_https=0 https=None protocol=None")),
            "{hook} not in:\n{log}"
        );
    }
}
