//! `WSGIHandlerScript name path [options]`: requests Apache hands to handler `name` (by
//! `AddHandler` or `SetHandler`) are served by the script's `handle_request`, in embedded mode or
//! in the daemon process group its options name. Each behaviour here was checked against C
//! mod_wsgi 4.9.4 first (`MOD_WSGI_SO=/usr/lib/apache2/modules/mod_wsgi.so`).

mod common;

use common::{config_test, Apache};

/// Reports what a handler script sees, and each `reload_required(resource)` question in asked.log.
const HANDLER: &str = r#"
import os
GENERATION = os.urandom(4).hex()
def reload_required(resource):
    with open("{dir}/asked.log", "a") as f:
        f.write(resource + "\n")
    return False
def handle_request(environ, start_response):
    keys = ("SCRIPT_FILENAME", "mod_wsgi.handler_script", "mod_wsgi.callable_object",
            "mod_wsgi.request_handler", "mod_wsgi.process_group",
            "mod_wsgi.application_group", "HTTP_AUTHORIZATION")
    lines = ["%s=%s" % (k, environ.get(k)) for k in keys]
    lines.append("exists=%s" % os.path.exists(environ["SCRIPT_FILENAME"]))
    lines.append("generation=%s" % GENERATION)
    lines.append("pid=%d" % os.getpid())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(lines).encode()]
"#;

/// The `key=value` lines of a handler's answer.
fn fields(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_handler_named_by_addhandler_serves_its_files_through_handle_request() {
    let apache = Apache::start(
        "handler_embedded",
        &[
            ("handler.wsgi", HANDLER),
            ("pages/one.res", "one"),
            ("pages/plain.txt", "plain text"),
        ],
        "DocumentRoot {dir}\n\
         WSGIApplicationGroup %{GLOBAL}\n\
         WSGIHandlerScript wsgi-resource {dir}/handler.wsgi\n\
         <Directory {dir}/pages>\n    AddHandler wsgi-resource .res\n</Directory>",
    );
    let dir = apache.dir.display().to_string();
    let r = apache.get("/pages/one.res");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    let f = fields(&r.text());
    // No `Options ExecCGI` is needed, and the file stays SCRIPT_FILENAME.
    assert_eq!(f["SCRIPT_FILENAME"], format!("{dir}/pages/one.res"));
    assert_eq!(f["mod_wsgi.handler_script"], format!("{dir}/handler.wsgi"));
    assert_eq!(f["mod_wsgi.callable_object"], "handle_request");
    assert_eq!(f["mod_wsgi.request_handler"], "wsgi-resource");
    assert_eq!(f["mod_wsgi.process_group"], "");
    assert_eq!(f["exists"], "True");

    // A file that does not exist is the handler's to answer, as in C.
    let r = apache.get("/pages/missing.res");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    assert_eq!(fields(&r.text())["exists"], "False");

    // Files of other handlers are not the script's.
    let r = apache.get("/pages/plain.txt");
    assert_eq!((r.status, r.text()), (200, "plain text".to_string()));

    // The script's reload_required() is asked about the requested file, not about itself.
    let asked = std::fs::read_to_string(apache.path("asked.log")).unwrap_or_default();
    assert_eq!(
        asked.lines().collect::<Vec<_>>(),
        [format!("{dir}/pages/missing.res")],
        "asked once: the first request loaded the script"
    );

    // A changed handler script is loaded again (WSGIScriptReloading is On by default).
    let generation = f["generation"].clone();
    let later = HANDLER
        .replace("{dir}", &dir)
        .replace("GENERATION = os.urandom(4).hex()", "GENERATION = 'edited'");
    std::fs::write(apache.path("handler.wsgi"), later).unwrap();
    let past = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(apache.path("handler.wsgi"))
        .unwrap()
        .set_modified(past)
        .unwrap();
    let r = apache.get("/pages/one.res");
    let now = fields(&r.text())["generation"].clone();
    assert_ne!(now, generation);
    assert_eq!(now, "edited");
}

#[test]
fn a_handler_script_runs_in_the_daemon_group_and_interpreter_its_options_name() {
    let apache = Apache::start(
        "handler_daemon",
        &[("handler.wsgi", HANDLER)],
        "DocumentRoot {dir}\n\
         WSGIDaemonProcess site processes=1 threads=2\n\
         WSGIHandlerScript wsgi-site {dir}/handler.wsgi process-group=site \
         application-group=%{GLOBAL} pass-authorization=On\n\
         WSGIHandlerScript wsgi-plain {dir}/handler.wsgi\n\
         <Location /virtual>\n    SetHandler wsgi-site\n</Location>\n\
         <Location /embedded>\n    SetHandler wsgi-plain\n</Location>",
    );
    let dir = apache.dir.display().to_string();
    let r = apache.request("GET", "/virtual/x", &[("Authorization", "Basic dTpw")], b"");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    let daemon = fields(&r.text());
    assert_eq!(daemon["mod_wsgi.process_group"], "site");
    assert_eq!(daemon["mod_wsgi.application_group"], "");
    assert_eq!(
        daemon["mod_wsgi.handler_script"],
        format!("{dir}/handler.wsgi")
    );
    assert_eq!(daemon["mod_wsgi.callable_object"], "handle_request");
    assert_eq!(daemon["HTTP_AUTHORIZATION"], "Basic dTpw");
    assert_eq!(daemon["exists"], "False");

    // The other handler runs the same script in Apache's child, in the default interpreter
    // (%{RESOURCE}: the file part of the URL, /x being PATH_INFO), without the Authorization
    // header.
    let r = apache.request(
        "GET",
        "/embedded/x",
        &[("Authorization", "Basic dTpw")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", apache.error_log());
    let embedded = fields(&r.text());
    assert_eq!(embedded["mod_wsgi.process_group"], "");
    assert_eq!(
        embedded["mod_wsgi.application_group"],
        format!("127.0.0.1:{}|/embedded", apache.port)
    );
    assert_eq!(embedded["HTTP_AUTHORIZATION"], "None");
    assert_ne!(embedded["pid"], daemon["pid"]);
}

#[test]
fn a_handler_script_without_handle_request_is_a_logged_404() {
    let mut apache = Apache::start(
        "handler_missing_callable",
        &[(
            "handler.wsgi",
            "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'x']\n",
        )],
        "DocumentRoot {dir}\n\
         WSGIHandlerScript wsgi-resource {dir}/handler.wsgi\n\
         <Location /r>\n    SetHandler wsgi-resource\n</Location>",
    );
    assert_eq!(apache.get("/r").status, 404);
    let log = apache.stop();
    assert!(
        log.contains("does not contain WSGI application 'handle_request'"),
        "{log}"
    );
}

#[test]
fn a_handler_script_line_without_a_path_or_with_a_foreign_option_fails_the_config_test() {
    for line in [
        "WSGIHandlerScript wsgi-resource",
        "WSGIHandlerScript wsgi-resource /srv/h.wsgi callable-object=app",
        "WSGIHandlerScript wsgi-resource /srv/h.wsgi process-group=",
    ] {
        let (ok, out) = config_test("handler_config", line);
        assert!(!ok, "{line}: accepted\n{out}");
        assert!(out.contains("WSGIHandlerScript"), "{line}: {out}");
    }
}
