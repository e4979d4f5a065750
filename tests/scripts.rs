//! Script loading end to end: `WSGIImportScript` (and `WSGIScriptAlias` naming both groups)
//! importing scripts when a child starts, before any request, and a script's own
//! `reload_required(resource)` deciding when it is reloaded.

mod common;

use common::Apache;
use std::time::{Duration, Instant};

/// Records each import of itself (pid, script, interpreter) in imports.log, and reports the pid
/// and interpreter serving a request.
const RECORDS_IMPORTS: &str = r#"
import os, mod_wsgi
with open("{dir}/imports.log", "a") as log:
    log.write("%d %s [%s]\n" % (os.getpid(), os.path.basename(__file__), mod_wsgi.application_group))
print("imported %s" % os.path.basename(__file__))
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%d [%s]" % (os.getpid(), environ["mod_wsgi.application_group"])).encode()]
"#;

fn imports(apache: &Apache) -> Vec<String> {
    std::fs::read_to_string(apache.path("imports.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits (bounded) until imports.log holds `n` lines.
fn wait_for_imports(apache: &Apache, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = imports(apache);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn scripts_are_imported_into_their_groups_when_the_child_starts() {
    let apache = Apache::start(
        "importscript",
        &[
            ("site.wsgi", RECORDS_IMPORTS),
            ("main.wsgi", RECORDS_IMPORTS),
            ("aliased.wsgi", RECORDS_IMPORTS),
            ("lazy.wsgi", RECORDS_IMPORTS),
        ],
        "WSGIImportScript {dir}/site.wsgi process-group=%{GLOBAL} application-group=site\n\
         WSGIImportScript {dir}/main.wsgi process-group=%{GLOBAL} application-group=%{GLOBAL}\n\
         WSGIScriptAlias /site {dir}/site.wsgi\n\
         <Location /site>\nWSGIApplicationGroup site\n</Location>\n\
         WSGIScriptAlias /main {dir}/main.wsgi application-group=%{GLOBAL}\n\
         WSGIScriptAlias /aliased {dir}/aliased.wsgi process-group=%{GLOBAL} application-group=pre\n\
         WSGIScriptAlias /lazy {dir}/lazy.wsgi application-group=pre\n\
         WSGIScriptAlias /scripts/ {dir}/ process-group=%{GLOBAL} application-group=pre",
    );
    // No request yet: the child imported the scripts as it started, each into its group.
    let lines = wait_for_imports(&apache, 3);
    assert_eq!(lines.len(), 3, "{lines:?}\n{}", apache.error_log());
    let pid = lines[0].split(' ').next().unwrap().to_string();
    let expected: Vec<String> = ["site.wsgi [site]", "main.wsgi []", "aliased.wsgi [pre]"]
        .iter()
        .map(|what| format!("{pid} {what}"))
        .collect();
    assert_eq!(lines, expected);
    let log = apache.wait_for_log("imported aliased.wsgi");
    assert!(
        log.contains("Imported WSGI script") && log.contains("into interpreter 'site'"),
        "{log}"
    );
    // The requests use the imported modules: nothing is imported again.
    assert_eq!(apache.get("/site").text(), format!("{pid} [site]"));
    assert_eq!(apache.get("/main").text(), format!("{pid} []"));
    assert_eq!(apache.get("/aliased").text(), format!("{pid} [pre]"));
    assert_eq!(imports(&apache), expected);
    // An alias without both groups named is loaded by its first request.
    assert_eq!(apache.get("/lazy").text(), format!("{pid} [pre]"));
    let lines = imports(&apache);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[3], format!("{pid} lazy.wsgi [pre]"));
    // A directory of scripts is not something to import.
    assert!(!apache.error_log().contains("Failed to import"));
}

#[test]
fn a_failed_import_is_logged_and_retried_by_the_first_request() {
    let broken = r#"
import os
if not os.path.exists("{dir}/ready"):
    raise RuntimeError("not ready yet")
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"ready"]
"#;
    let apache = Apache::start(
        "importfails",
        &[("broken.wsgi", broken), ("hello.wsgi", RECORDS_IMPORTS)],
        "WSGIImportScript {dir}/broken.wsgi process-group=%{GLOBAL} application-group=%{GLOBAL}\n\
         WSGIImportScript {dir}/missing.wsgi process-group=%{GLOBAL} application-group=%{GLOBAL}\n\
         WSGIImportScript {dir}/hello.wsgi process-group=%{GLOBAL} application-group=%{GLOBAL}\n\
         WSGIScriptAlias /broken {dir}/broken.wsgi\n\
         WSGIScriptAlias /hello {dir}/hello.wsgi application-group=%{GLOBAL}",
    );
    let log = apache.wait_for_log("imported hello.wsgi");
    let broken_path = apache.path("broken.wsgi").display().to_string();
    let missing_path = apache.path("missing.wsgi").display().to_string();
    assert!(
        log.contains(&format!("Failed to import WSGI script '{broken_path}'")),
        "{log}"
    );
    assert!(log.contains("RuntimeError: not ready yet"), "{log}");
    assert!(
        log.contains(&format!("Failed to import WSGI script '{missing_path}'")),
        "{log}"
    );
    assert!(log.contains("FileNotFoundError"), "{log}");
    // The scripts after a failed one were imported, and the child serves.
    assert_eq!(wait_for_imports(&apache, 1).len(), 1);
    assert_eq!(apache.get("/hello").status, 200);
    // Not cached as failed: the first request tries again, and succeeds once it can.
    assert_eq!(apache.get("/broken").status, 500);
    std::fs::write(apache.path("ready"), "").unwrap();
    let r = apache.get("/broken");
    assert_eq!((r.status, r.text()), (200, "ready".to_string()));
}

/// Reports a value fixed when the module was (re)loaded; `reload_required` answers from files.
const RELOAD_HOOK: &str = r#"
import os
GENERATION = os.urandom(8).hex()
def reload_required(resource):
    with open("{dir}/asked", "a") as f:
        f.write(resource + "\n")
    if os.path.exists("{dir}/raise"):
        raise ValueError("cannot decide")
    return os.path.exists("{dir}/reload")
def application(environ, start_response):
    start_response("200 OK", [])
    return [GENERATION.encode()]
"#;

#[test]
fn reload_required_decides_when_an_unchanged_script_reloads() {
    let apache = Apache::start(
        "reloadrequired",
        &[("app.wsgi", RELOAD_HOOK), ("fixed/app.wsgi", RELOAD_HOOK)],
        "WSGIScriptAlias /app {dir}/app.wsgi\n\
         WSGIScriptAlias /fixed {dir}/fixed/app.wsgi\n\
         <Location /fixed>\nWSGIScriptReloading Off\n</Location>",
    );
    let get = |path: &str| {
        let r = apache.get(path);
        assert_eq!(r.status, 200, "{path}: {}", apache.error_log());
        r.text()
    };
    let first = get("/app");
    assert_eq!(get("/app"), first, "reload_required() said no");
    let asked = std::fs::read_to_string(apache.path("asked")).unwrap();
    let script = apache.path("app.wsgi").display().to_string();
    assert_eq!(
        asked.lines().collect::<Vec<_>>(),
        [script.as_str()],
        "asked once (the first request loaded the script), with the script's path"
    );

    std::fs::write(apache.path("reload"), "").unwrap();
    let second = get("/app");
    assert_ne!(second, first, "reload_required() said yes");
    let third = get("/app");
    assert_ne!(third, second, "asked again on each request");

    // WSGIScriptReloading Off: never asked, never reloaded.
    std::fs::remove_file(apache.path("asked")).unwrap();
    let fixed = get("/fixed");
    assert_eq!(get("/fixed"), fixed);
    assert!(!apache.path("asked").exists());

    // An exception there is logged, and the script stays as it is.
    std::fs::write(apache.path("raise"), "").unwrap();
    assert_eq!(get("/app"), third);
    let log = apache.wait_for_log("ValueError: cannot decide");
    assert!(
        log.contains(&format!(
            "Exception occurred in reload_required() of WSGI script '{script}'"
        )),
        "{log}"
    );
    assert!(log.contains("ValueError: cannot decide"), "{log}");
    // C's info lines for each load, which operators look for when a script reloads.
    for what in [
        format!("Loading Python script file '{script}'."),
        format!("Reloading WSGI script '{script}'."),
    ] {
        let line = log
            .lines()
            .find(|l| l.ends_with(&what))
            .unwrap_or_else(|| panic!("{what} not in:\n{log}"));
        assert!(
            line.contains(":info]") && line.contains("process='', application='"),
            "{line}"
        );
    }
}

#[test]
fn concurrent_first_requests_import_a_script_once() {
    // The import takes a while (the GIL is free meanwhile), so the other requests find the module
    // registered but not yet complete, and must wait for it rather than import it again.
    let slow_import = r#"
import os, time
with open("{dir}/imports.log", "a") as log:
    log.write("%d import\n" % os.getpid())
time.sleep(0.5)
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
"#;
    let apache = Apache::start(
        "importonce",
        &[("slow.wsgi", slow_import)],
        "WSGIScriptAlias /slow {dir}/slow.wsgi",
    );
    let port = apache.port;
    let handles: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || common::http_request(port, "GET", "/slow", &[], b"")))
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!((r.status, r.text()), (200, "ok".to_string()));
    }
    assert_eq!(imports(&apache).len(), 1, "{:?}", imports(&apache));
}

#[test]
fn scripts_compile_as_python_compiles_source_files() {
    // The count of the `ast` module's types in the interpreter: the builtin compile() builds all
    // of them (about 300 KiB per interpreter), compiling a script needs none.
    let counts_ast_types = r#"
import gc
def application(environ, start_response):
    n = sum(1 for t in gc.get_objects() if isinstance(t, type) and t.__module__ == "ast")
    start_response("200 OK", [])
    return [str(n).encode()]
"#;
    let apache = Apache::start(
        "compile",
        &[("ast.wsgi", counts_ast_types)],
        "WSGIScriptAlias /ast {dir}/ast.wsgi\n\
         WSGIScriptAlias /latin1 {dir}/latin1.wsgi\n\
         WSGIScriptAlias /bom {dir}/bom.wsgi\n\
         WSGIScriptAlias /nul {dir}/nul.wsgi",
    );
    // A coding declaration and a UTF-8 byte-order mark are honoured, as for any source file.
    let latin1: &[u8] = b"# -*- coding: latin-1 -*-\n\
        def application(environ, start_response):\n    \
            start_response('200 OK', [])\n    return ['caf\xe9'.encode('utf-8')]\n";
    std::fs::write(apache.path("latin1.wsgi"), latin1).unwrap();
    let bom: &[u8] = b"\xef\xbb\xbfdef application(environ, start_response):\n    \
        start_response('200 OK', [])\n    return ['\xc3\xa9t\xc3\xa9'.encode('utf-8')]\n";
    std::fs::write(apache.path("bom.wsgi"), bom).unwrap();
    std::fs::write(apache.path("nul.wsgi"), b"x = 1\0\n").unwrap();

    let r = apache.get("/ast");
    assert_eq!((r.status, r.text()), (200, "0".to_string()));
    let r = apache.get("/latin1");
    assert_eq!((r.status, r.text()), (200, "café".to_string()));
    let r = apache.get("/bom");
    assert_eq!((r.status, r.text()), (200, "été".to_string()));
    // A NUL byte is a clear error, not a script silently cut short at it.
    assert_eq!(apache.get("/nul").status, 500);
    let log = apache.wait_for_log("null bytes");
    assert!(
        log.contains("source code string cannot contain null bytes") && log.contains("nul.wsgi"),
        "{log}"
    );
}

#[test]
fn the_script_module_knows_its_file_as_an_imported_module_does() {
    // As C (PyImport_ExecCodeModuleEx): `__spec__` and `__loader__` for the script's file, so
    // that pkgutil.get_data() finds files beside it and inspect.getsource() works.
    let app = r#"
import inspect, pkgutil
def application(environ, start_response):
    data = pkgutil.get_data(__name__, "data.txt")
    source = inspect.getsource(application).splitlines()[0]
    facts = [data.decode(), __spec__.origin == __file__, __spec__.name == __name__,
             __loader__.get_filename(__name__) == __file__, __cached__, source]
    start_response("200 OK", [])
    return [repr(facts).encode()]
"#;
    let apache = Apache::start(
        "script_spec",
        &[("app.wsgi", app), ("data.txt", "beside the script")],
        "WSGIScriptAlias /app {dir}/app.wsgi",
    );
    let r = apache.get("/app");
    assert_eq!(
        (r.status, r.text()),
        (
            200,
            "['beside the script', True, True, True, None, 'def application(environ, \
             start_response):']"
                .to_string()
        ),
        "{}",
        apache.error_log()
    );
}

#[test]
fn wsgi_case_sensitivity_off_names_modules_after_the_lower_cased_path() {
    // Which path the script's module name (`_mod_wsgi_` + MD5) was made from.
    let names_its_module = r#"
import hashlib
def application(environ, start_response):
    path = environ["SCRIPT_FILENAME"]
    md5 = lambda p: "_mod_wsgi_" + hashlib.md5(p.encode()).hexdigest()
    which = {md5(path): "as written", md5(path.lower()): "lower-cased"}.get(__name__, __name__)
    start_response("200 OK", [])
    return [which.encode()]
"#;
    for (setting, want) in [
        ("", "as written"),
        ("WSGICaseSensitivity On\n", "as written"),
        ("WSGICaseSensitivity Off\n", "lower-cased"),
    ] {
        let mut apache = Apache::start(
            "case_sensitivity",
            &[("Name.wsgi", names_its_module)],
            &format!("{setting}WSGIScriptAlias /name {{dir}}/Name.wsgi\n"),
        );
        let r = apache.get("/name");
        assert_eq!((r.status, r.text()), (200, want.to_string()), "{setting:?}");
        apache.stop();
    }
}

/// Answers with the name of the callable that served the request.
const CALLABLES: &str = r#"
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"application " + environ["mod_wsgi.callable_object"].encode()]
def other(environ, start_response):
    start_response("200 OK", [])
    return [b"other " + environ["mod_wsgi.callable_object"].encode()]
"#;

#[test]
fn wsgi_callable_object_may_name_an_environment_variable() {
    // As C mod_wsgi 4.9.4 documents it: the variable is looked up per request (SetEnv here),
    // and `application` is used when it is not set.
    let apache = Apache::start(
        "callable_env",
        &[("app.wsgi", CALLABLES)],
        "LoadModule env_module /usr/lib/apache2/modules/mod_env.so\n\
         WSGICallableObject %{ENV:WSGI_CALLABLE}\n\
         WSGIScriptAlias /set {dir}/app.wsgi\n\
         WSGIScriptAlias /unset {dir}/app.wsgi\n\
         <Location /set>\n    SetEnv WSGI_CALLABLE other\n</Location>",
    );
    let r = apache.get("/set");
    assert_eq!((r.status, r.text()), (200, "other other".to_string()));
    let r = apache.get("/unset");
    assert_eq!(
        (r.status, r.text()),
        (200, "application application".to_string())
    );
}

#[test]
fn a_misspelt_substitution_in_wsgi_callable_object_fails_the_config_test() {
    // C takes any other `%…` to mean `application`; here it is a configuration error.
    let (ok, out) = common::config_test("callable_typo", "WSGICallableObject %{ENV_APP}");
    assert!(!ok, "accepted:\n{out}");
    assert!(out.contains("WSGICallableObject"), "{out}");
}
