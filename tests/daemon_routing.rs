//! The Apache child's side of routing a request to a daemon process group: which groups a
//! location may use (`WSGIRestrictProcess`), who must own the scripts a group runs
//! (`script-user=`/`script-group=`), and Apache's error pages in place of an application's
//! (`WSGIErrorOverride`).

mod common;

use common::{config_test, is_root, Apache};
use std::path::Path;

/// Answers `/<status>` with that status, a body, and headers Apache's error response keeps
/// (`WWW-Authenticate`) or drops (the others).
const STATUS_APP: &str = r#"
import mod_wsgi
LINES = {"200": "200 OK", "401": "401 Unauthorized", "404": "404 Not Found",
         "500": "500 Internal Server Error"}
def application(environ, start_response):
    code = environ["PATH_INFO"].rsplit("/", 1)[-1] or "200"
    body = ("app body %s from '%s'\n" % (code, mod_wsgi.process_group)).encode()
    start_response(LINES[code], [("Content-Type", "text/plain"),
                                 ("Content-Length", str(len(body))),
                                 ("X-App", "yes"), ("Set-Cookie", "a=1"),
                                 ("WWW-Authenticate", "Basic realm=app")])
    return [body]
"#;

/// Names the process group it runs in ('' for Apache's own child).
const GROUP_APP: &str = r#"
import mod_wsgi
def application(environ, start_response):
    body = ("group=%s" % mod_wsgi.process_group).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

#[test]
fn error_override_serves_apache_error_pages_for_daemon_responses_only() {
    let apache = Apache::start(
        "routing_error_override",
        &[
            ("app.wsgi", STATUS_APP),
            ("ht/app.wsgi", STATUS_APP),
            ("ht/.htaccess", "WSGIErrorOverride On\n"),
        ],
        "LoadModule env_module /usr/lib/apache2/modules/mod_env.so\n\
         WSGIDaemonProcess site threads=2\n\
         WSGIScriptAlias /on {dir}/app.wsgi process-group=site\n\
         WSGIScriptAlias /off {dir}/app.wsgi process-group=site\n\
         WSGIScriptAlias /embedded {dir}/app.wsgi\n\
         WSGIScriptAlias /htaccess {dir}/ht/app.wsgi process-group=site\n\
         <Location /on>\n  WSGIErrorOverride On\n</Location>\n\
         <Location /embedded>\n  WSGIErrorOverride On\n</Location>\n\
         <Directory {dir}/ht>\n  AllowOverride FileInfo\n</Directory>\n\
         ErrorDocument 404 \"apache's own not found\"\n\
         ErrorDocument 401 \"apache's own unauthorized\"",
    );
    let log = || apache.error_log();

    // On: Apache's ErrorDocument, with the status; the application's headers are gone except
    // WWW-Authenticate (which Apache keeps in an error response), as with C mod_wsgi.
    let r = apache.get("/on/404");
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "apache's own not found"),
        "{}",
        log()
    );
    assert_eq!(r.header("X-App"), None);
    assert_eq!(r.header("Set-Cookie"), None);
    assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=app"));
    let r = apache.get("/on/401");
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "apache's own unauthorized")
    );
    assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=app"));
    // No ErrorDocument for 500: Apache's built-in page.
    let r = apache.get("/on/500");
    assert_eq!(r.status, 500);
    assert!(
        r.text()
            .contains("<title>500 Internal Server Error</title>"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("app body"), "{}", r.text());
    // HEAD gets the error status and Apache's headers.
    let r = apache.request("HEAD", "/on/404", &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("X-App"), None);
    // Success statuses pass through untouched.
    let r = apache.get("/on/200");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "app body 200 from 'site'\n")
    );
    assert_eq!(r.header("X-App"), Some("yes"));
    // The connection stays usable after a drained body: the next request on the group works.
    let r = apache.get("/on/404");
    assert_eq!(r.status, 404);

    // Off (the default): the application's own page.
    let r = apache.get("/off/404");
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "app body 404 from 'site'\n")
    );
    assert_eq!(r.header("X-App"), Some("yes"));

    // Embedded mode: not applied, as in C mod_wsgi 4.9.4.
    let r = apache.get("/embedded/404");
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "app body 404 from ''\n")
    );

    // From .htaccess (AllowOverride FileInfo), as C allows.
    let r = apache.get("/htaccess/404");
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "apache's own not found"),
        "{}",
        log()
    );
}

#[test]
fn restrict_process_allows_only_the_listed_groups() {
    let apache = Apache::start(
        "routing_restrict",
        &[("group.wsgi", GROUP_APP)],
        "LoadModule env_module /usr/lib/apache2/modules/mod_env.so\n\
         WSGIDaemonProcess site threads=2\n\
         WSGIDaemonProcess other threads=2\n\
         WSGIRestrictProcess other\n\
         WSGIScriptAlias /plain {dir}/group.wsgi process-group=site\n\
         WSGIScriptAlias /r {dir}/group.wsgi\n\
         WSGIScriptAlias /g {dir}/group.wsgi\n\
         <Location /r>\n  WSGIProcessGroup %{ENV:GRP}\n  WSGIRestrictProcess site\n</Location>\n\
         <Location /g>\n  WSGIProcessGroup %{ENV:GRP}\n  WSGIRestrictProcess site %{GLOBAL}\n</Location>\n\
         <Location /r/site>\n  SetEnv GRP site\n</Location>\n\
         <Location /r/other>\n  SetEnv GRP other\n</Location>\n\
         <Location /r/global>\n  SetEnv GRP %{GLOBAL}\n</Location>\n\
         <Location /g/global>\n  SetEnv GRP %{GLOBAL}\n</Location>\n\
         <Location /g/site>\n  SetEnv GRP site\n</Location>",
    );
    let script = apache.path("group.wsgi").display().to_string();
    let refused = |group: &str| {
        format!(
            "Daemon process called '{group}' cannot be accessed by this WSGI application as \
             not a member of allowed groups: {script}"
        )
    };

    let r = apache.get("/r/site");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "group=site"),
        "{}",
        apache.error_log()
    );
    let r = apache.get("/r/other");
    assert_eq!(r.status, 500);
    let log = apache.wait_for_log(&refused("other"));
    assert!(log.contains(&refused("other")), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("[wsgi:error]") && l.contains(&refused("other"))),
        "{log}"
    );
    // Embedded mode is a group too: refused unless %{GLOBAL} is listed.
    let r = apache.get("/r/global");
    assert_eq!(r.status, 500);
    let log = apache.wait_for_log(&refused(""));
    assert!(log.contains(&refused("")), "{log}");
    let r = apache.get("/g/global");
    assert_eq!((r.status, r.text().as_str()), (200, "group="));
    let r = apache.get("/g/site");
    assert_eq!((r.status, r.text().as_str()), (200, "group=site"));
    // The server-level set (only 'other') applies where no directory sets one.
    let r = apache.get("/plain");
    assert_eq!(r.status, 500);
    let log = apache.wait_for_log(&refused("site"));
    assert!(log.contains(&refused("site")), "{log}");
}

#[test]
fn restrict_process_and_process_group_are_refused_in_htaccess() {
    for directive in ["WSGIRestrictProcess site", "WSGIProcessGroup site"] {
        let apache = Apache::start(
            "routing_htaccess",
            &[
                ("ht/group.wsgi", GROUP_APP),
                ("ht/.htaccess", &format!("{directive}\n")),
            ],
            "WSGIDaemonProcess site threads=1\n\
             WSGIScriptAlias /ht {dir}/ht/group.wsgi\n\
             <Directory {dir}/ht>\n  AllowOverride All\n</Directory>",
        );
        let r = apache.get("/ht");
        assert_eq!(r.status, 500, "{directive}: {}", r.text());
        let name = directive.split(' ').next().unwrap();
        let log = apache.wait_for_log(&format!("{name} not allowed here"));
        assert!(log.contains(&format!("{name} not allowed here")), "{log}");
    }
}

#[test]
fn bad_values_fail_the_config_test_naming_the_directive() {
    for (extra, expected) in [
        ("WSGIRestrictProcess", "WSGIRestrictProcess needs the names"),
        (
            "WSGIRestrictProcess site %{ENV:GROUP}",
            "WSGIRestrictProcess '%{ENV:GROUP}'",
        ),
        (
            "WSGIErrorOverride maybe",
            "WSGIErrorOverride must be On or Off",
        ),
        (
            "WSGIDaemonProcess site script-user=nobody script-group=nogroup",
            "only one of script-user and script-group may be given",
        ),
    ] {
        let (ok, out) = config_test("routing_config", extra);
        assert!(!ok, "{extra}: accepted\n{out}");
        assert!(out.contains(expected), "{extra}: {out}");
    }
    for good in [
        "WSGIRestrictProcess site %{GLOBAL}",
        "<Location /x>\nWSGIRestrictProcess a b\nWSGIErrorOverride On\n</Location>",
        "WSGIDaemonProcess site script-user=nobody",
        "WSGIDaemonProcess site script-group=#65534",
    ] {
        let (ok, out) = config_test("routing_config", good);
        assert!(ok, "{good}: {out}");
    }
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;

#[test]
fn script_user_requires_the_owner_and_no_group_or_world_write() {
    if !is_root() {
        eprintln!("skipped: changing file owners needs root");
        return;
    }
    let apache = Apache::start(
        "routing_script_user",
        &[
            ("good/app.wsgi", GROUP_APP),
            ("rootowned/app.wsgi", GROUP_APP),
            ("groupwritable/app.wsgi", GROUP_APP),
            ("opendir/app.wsgi", GROUP_APP),
        ],
        "WSGIDaemonProcess owned threads=2 script-user=nobody\n\
         WSGIScriptAliasMatch ^/([a-z]+) {dir}/$1/app.wsgi process-group=owned",
    );
    for (dir, file_mode, dir_mode, owned) in [
        ("good", 0o644, 0o755, true),
        ("rootowned", 0o644, 0o755, false),
        ("groupwritable", 0o664, 0o755, true),
        ("opendir", 0o644, 0o777, true),
    ] {
        let d = apache.path(dir);
        let f = d.join("app.wsgi");
        if owned {
            chown(&d, NOBODY, NOGROUP);
            chown(&f, NOBODY, NOGROUP);
        } else {
            chown(&d, NOBODY, NOGROUP);
            chown(&f, 0, 0);
        }
        common::set_mode(&f, file_mode);
        common::set_mode(&d, dir_mode);
    }
    let r = apache.get("/good");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "group=owned"),
        "{}",
        apache.error_log()
    );
    for (path, message) in [
        (
            "rootowned",
            "Owner of WSGI script file does not match required user for daemon process, \
             user=root",
        ),
        ("groupwritable", "WSGI script file is writable to group"),
        (
            "opendir",
            "Parent directory of WSGI script file is writable to world",
        ),
    ] {
        let r = apache.get(&format!("/{path}"));
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        let line = format!(
            "{message}: {}",
            apache.path(path).join("app.wsgi").display()
        );
        let log = apache.wait_for_log(&line);
        assert!(log.contains(&line), "{path}: {log}");
    }
}

#[test]
fn script_group_requires_the_group_and_no_world_write() {
    if !is_root() {
        eprintln!("skipped: changing file owners needs root");
        return;
    }
    let apache = Apache::start(
        "routing_script_group",
        &[
            ("good/app.wsgi", GROUP_APP),
            ("worldwritable/app.wsgi", GROUP_APP),
            ("otherdir/app.wsgi", GROUP_APP),
        ],
        "WSGIDaemonProcess grouped threads=2 script-group=nogroup\n\
         WSGIScriptAliasMatch ^/([a-z]+) {dir}/$1/app.wsgi process-group=grouped",
    );
    // (dir, file mode, dir mode, dir's group); the files are root's, in group nogroup.
    for (dir, file_mode, dir_mode, dir_gid) in [
        ("good", 0o664, 0o775, NOGROUP),
        ("worldwritable", 0o666, 0o775, NOGROUP),
        ("otherdir", 0o644, 0o755, 0),
    ] {
        let d = apache.path(dir);
        let f = d.join("app.wsgi");
        chown(&d, 0, dir_gid);
        chown(&f, 0, NOGROUP);
        common::set_mode(&f, file_mode);
        common::set_mode(&d, dir_mode);
    }
    // Writable by the group's members is what script-group= is for.
    let r = apache.get("/good");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "group=grouped"),
        "{}",
        apache.error_log()
    );
    for (path, message) in [
        ("worldwritable", "WSGI script file is writable to world"),
        (
            "otherdir",
            "Group of parent directory of WSGI script file does not match required group for \
             daemon process, group=root",
        ),
    ] {
        let r = apache.get(&format!("/{path}"));
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        let line = format!(
            "{message}: {}",
            apache.path(path).join("app.wsgi").display()
        );
        let log = apache.wait_for_log(&line);
        assert!(log.contains(&line), "{path}: {log}");
    }
}

#[test]
fn option_values_may_be_quoted_as_mod_wsgi_express_writes_them() {
    // C reads the value after `=` as one configuration word, quotes and all; mod_wsgi-express
    // writes `process-group='localhost:8000'`. A quoted value may hold a space.
    let app = r#"
import mod_wsgi
def application(environ, start_response):
    start_response("200 OK", [])
    return [("%s|%s|%s" % (mod_wsgi.process_group, mod_wsgi.application_group,
                           environ["mod_wsgi.callable_object"])).encode()]
named = application
"#;
    let apache = Apache::start(
        "quoted_options",
        &[("app.wsgi", app)],
        "WSGIDaemonProcess 'localhost:8000' threads=2\n\
         WSGIImportScript '{dir}/app.wsgi' process-group='localhost:8000' \
         application-group=%{GLOBAL}\n\
         WSGIScriptAlias /one '{dir}/app.wsgi' process-group=\"localhost:8000\" \
         application-group=\"%{GLOBAL}\" callable-object=\"named\" pass-authorization=\"On\"\n\
         WSGIScriptAlias /two {dir}/app.wsgi process-group='localhost:8000' \
         application-group='my group'",
    );
    let r = apache.get("/one");
    assert_eq!(
        (r.status, r.text()),
        (200, "localhost:8000||named".to_string()),
        "{}",
        apache.error_log()
    );
    let r = apache.get("/two");
    assert_eq!(
        (r.status, r.text()),
        (200, "localhost:8000|my group|application".to_string()),
        "{}",
        apache.error_log()
    );
}
