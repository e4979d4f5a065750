//! Directives are accepted or refused by `apache2 -t`, with the directive named.

mod common;

use common::config_test;

fn refused(name: &str, conf: &str, expect: &[&str]) {
    let (ok, out) = config_test(name, conf);
    assert!(!ok, "apache2 -t accepted:\n{conf}");
    for e in expect {
        assert!(out.contains(e), "{e:?} not in:\n{out}");
    }
}

#[test]
fn ifmodule_matches_by_file_and_by_identifier() {
    let (ok, out) = config_test(
        "ifmodule",
        "<IfModule !mod_wsgi.c>\nError mod_wsgi.c not matched\n</IfModule>\n\
         <IfModule !wsgi_module>\nError wsgi_module not matched\n</IfModule>",
    );
    assert!(ok, "{out}");
}

#[test]
fn apache_lists_the_module() {
    let (ok, out) = common::apache_command("dump", "", "-M");
    assert!(ok, "{out}");
    assert!(
        out.lines().any(|l| l.trim() == "wsgi_module (shared)"),
        "{out}"
    );
}

#[test]
fn supported_directives_pass() {
    // The prefix of the Python the module is built for (the harness's copy for a pyenv Python).
    let home = std::env::var("MOD_WSGI_PYTHON_HOME").unwrap_or_else(|_| "/usr".into());
    let (ok, out) = config_test(
        "supported",
        &(format!("WSGIPythonPath /tmp\nWSGIPythonHome {home}\n")
            + "WSGIApplicationGroup %{GLOBAL}\n\
         WSGIProcessGroup %{GLOBAL}\n\
         WSGIScriptAlias /a /tmp/a.wsgi process-group=%{GLOBAL} application-group=%{GLOBAL} callable-object=app pass-authorization=Off\n\
         WSGIScriptAliasMatch ^/b/(.*) /tmp/$1.wsgi\n\
         <Directory /tmp>\nWSGICallableObject app\nWSGIPassAuthorization On\nWSGIScriptReloading Off\n\
         WSGIChunkedRequest On\nWSGIMapHEADToGET Off\nWSGIEnableSendfile On\n</Directory>"),
    );
    assert!(ok, "{out}");
}

#[test]
fn python_directives_pass() {
    let (ok, out) = config_test(
        "python-supported",
        "WSGIPythonOptimize 2\nWSGIDontWriteBytecode On\n\
         WSGIPythonWarnings ignore::DeprecationWarning\nWSGIPythonWarnings error:::mymod:10\n\
         WSGIPythonHashSeed random\nWSGIPythonHashSeed 4294967295\nWSGIPythonEggs /tmp/eggs\n\
         WSGIRestrictStdin On\nWSGIRestrictStdout Off\nWSGIRestrictSignal off\n\
         WSGILazyInitialization On\nWSGIVerboseDebugging On\nWSGIDestroyInterpreter Off\nWSGIRestrictEmbedded On",
    );
    assert!(ok, "{out}");
}

#[test]
fn unsupported_directives_are_refused_by_name() {
    refused(
        "newrelic",
        "WSGINewRelicEnvironment production",
        &["WSGINewRelicEnvironment is not supported yet"],
    );
    refused(
        "procgroup",
        "WSGIProcessGroup %{GLOBL}",
        &["WSGIProcessGroup '%{GLOBL}': unknown substitution"],
    );
    refused("misspelt", "WSGIScriptAlia /a /b.wsgi", &["WSGIScriptAlia"]);
}

#[test]
fn bad_arguments_are_refused_with_the_directive_named() {
    refused(
        "badmap",
        "WSGIMapHEADToGET sometimes",
        &["WSGIMapHEADToGET must be On, Off or Auto"],
    );
    refused(
        "badoption",
        "WSGIScriptAlias /a /tmp/a.wsgi threads=4",
        &["WSGIScriptAlias: invalid option 'threads'"],
    );
    refused(
        "importnogroup",
        "WSGIImportScript /tmp/a.wsgi process-group=%{GLOBAL}",
        &["WSGIImportScript needs application-group="],
    );
    refused(
        "importsubst",
        "WSGIImportScript /tmp/a.wsgi process-group=%{GLOBAL} application-group=%{SERVER}",
        &[
            "WSGIImportScript application-group '%{SERVER}'",
            "before any request",
        ],
    );
    refused(
        "importdaemon",
        "WSGIImportScript /tmp/a.wsgi process-group=site application-group=%{GLOBAL}",
        &["WSGIImportScript: no WSGIDaemonProcess named 'site' is defined"],
    );
    refused(
        "badgroup",
        "WSGIScriptAlias /a /tmp/a.wsgi application-group=%{RESOURSE}",
        &["application-group '%{RESOURSE}': unknown substitution"],
    );
    refused(
        "noarg",
        "WSGIScriptAlias /a",
        &["WSGIScriptAlias takes a URL path"],
    );
    refused(
        "badflag",
        "WSGIPassAuthorization maybe",
        &["WSGIPassAuthorization must be On or Off"],
    );
    refused(
        "badregex",
        "WSGIScriptAliasMatch ^(/x /tmp/x.wsgi",
        &["WSGIScriptAliasMatch: regular expression"],
    );
    refused(
        "vhosthome",
        "<VirtualHost 127.0.0.1:1>\nWSGIPythonHome /usr\n</VirtualHost>",
        &["WSGIPythonHome"],
    );
    refused(
        "lazyoff",
        "WSGILazyInitialization Off",
        &[
            "WSGILazyInitialization Off is not supported",
            "parent process",
        ],
    );
    for flag in [
        "WSGIDontWriteBytecode",
        "WSGIRestrictStdin",
        "WSGIRestrictStdout",
        "WSGIRestrictSignal",
        "WSGILazyInitialization",
        "WSGIVerboseDebugging",
        "WSGIDestroyInterpreter",
    ] {
        refused(
            "badpyflag",
            &format!("{flag} sometimes"),
            &[&format!("{flag} must be On or Off, not 'sometimes'")],
        );
    }
    refused(
        "badoptimize",
        "WSGIPythonOptimize high",
        &["WSGIPythonOptimize must be a whole number"],
    );
    refused(
        "negoptimize",
        "WSGIPythonOptimize -1",
        &["WSGIPythonOptimize must be a whole number"],
    );
    for seed in ["4294967296", "-1", "often"] {
        refused(
            "badseed",
            &format!("WSGIPythonHashSeed {seed}"),
            &["WSGIPythonHashSeed must be \"random\" or an integer in range [0; 4294967295]"],
        );
    }
    refused(
        "badwarnings",
        "WSGIPythonWarnings shout::UserWarning",
        &["WSGIPythonWarnings 'shout::UserWarning': invalid action 'shout'"],
    );
    refused(
        "twowarnings",
        "WSGIPythonWarnings error ignore",
        &["WSGIPythonWarnings takes one argument"],
    );
    refused(
        "noeggs",
        "WSGIPythonEggs",
        &["WSGIPythonEggs takes one argument"],
    );
    refused(
        "vhostrestrict",
        "<VirtualHost 127.0.0.1:1>\nWSGIRestrictSignal Off\n</VirtualHost>",
        &["WSGIRestrictSignal"],
    );
    refused(
        "aliasindir",
        "<Directory /tmp>\nWSGIScriptAlias /a /tmp/a.wsgi\n</Directory>",
        &["WSGIScriptAlias"],
    );
}

#[test]
fn a_python_home_of_another_version_is_refused_naming_both() {
    let built_for = common::python_version();
    let other = if built_for == "3.13" { "3.12" } else { "3.13" };
    let venv = common::temp_dir("otherversion-venv");
    std::fs::write(
        venv.join("pyvenv.cfg"),
        format!("home = /opt/python/bin\nversion = {other}.0\n"),
    )
    .unwrap();
    refused(
        "otherversion",
        &format!("WSGIPythonHome {}", venv.display()),
        &[
            &format!(
                "WSGIPythonHome '{}' is a Python {other} virtual environment",
                venv.display()
            ),
            &format!("built for Python {built_for}"),
        ],
    );
}
