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
    // As httpd refuses it for C's one-argument directives: "" is no argument.
    for (name, directive) in [
        ("emptycallable", "WSGICallableObject \"\""),
        ("emptyhome", "WSGIPythonHome ''"),
        ("emptygroup", "WSGIApplicationGroup \"\""),
    ] {
        let word = directive.split(' ').next().unwrap();
        refused(name, directive, &[&format!("{word} takes one argument")]);
    }
    // A whole option quoted is a word, not an option (C: "Invalid option").
    refused(
        "quotedoption",
        "WSGIScriptAlias /a /tmp/a.wsgi \"process-group=a b\"",
        &["WSGIScriptAlias: invalid option 'process-group=a b'"],
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
        &[
            "WSGIImportScript (line ",
            "httpd.conf): no WSGIDaemonProcess named 'site' is defined",
        ],
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

/// Each directive where C mod_wsgi's command table lets it appear, and nowhere else.
#[test]
fn directive_contexts_follow_c_mod_wsgi() {
    let vhost = |line: &str| format!("<VirtualHost 127.0.0.1:80>\n{line}\n</VirtualHost>");
    let directory = |line: &str| format!("<Directory /tmp>\n{line}\n</Directory>");
    let location = |line: &str| format!("<Location /x>\n{line}\n</Location>");
    // Server, virtual host, <Directory> and <Location> (not .htaccess: see the next test).
    for line in [
        "WSGIApplicationGroup %{GLOBAL}",
        "WSGIApplicationGroup site",
    ] {
        for conf in [
            line.to_string(),
            vhost(line),
            directory(line),
            location(line),
        ] {
            let (ok, out) = config_test("context_app_group", &conf);
            assert!(ok, "{conf}: {out}");
        }
    }
    // Main server only.
    refused(
        "context_case",
        &vhost("WSGICaseSensitivity On"),
        &["WSGICaseSensitivity cannot occur within <VirtualHost> section"],
    );
    refused(
        "context_case",
        &directory("WSGICaseSensitivity On"),
        &["WSGICaseSensitivity not allowed in <Directory> context"],
    );
    // <Directory>/<Location> and .htaccess (AuthConfig), as httpd's own Require/AuthType.
    for name in [
        "WSGIAccessScript",
        "WSGIAuthUserScript",
        "WSGIAuthGroupScript",
    ] {
        let line = format!("{name} /tmp/auth.py");
        refused(
            "context_auth",
            &line,
            &[&format!("{name} not allowed here")],
        );
        refused(
            "context_auth",
            &vhost(&line),
            &[&format!("{name} not allowed in <VirtualHost> context")],
        );
        let (ok, out) = config_test("context_auth", &location(&line));
        assert!(ok, "{line} in <Location>: {out}");
    }
    refused(
        "context_auth",
        "WSGIGroupAuthoritative Off",
        &["WSGIGroupAuthoritative not allowed here"],
    );
    // C defines it only for Apache before 2.2.
    refused(
        "context_auth",
        &directory("WSGIUserAuthoritative Off"),
        &["Invalid command 'WSGIUserAuthoritative'"],
    );
}

/// `.htaccess` may hold what C mod_wsgi's table marks FileInfo or AuthConfig, and not the
/// directives it keeps to the server's own configuration files.
#[test]
fn htaccess_refuses_what_c_keeps_to_the_server_configuration() {
    let app = "def application(environ, start_response):\n    \
               start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
               return [b'application']\n\
               def other(environ, start_response):\n    \
               start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
               return [b'other']\n";
    let cases: [(&str, &str, &str, Option<&str>); 5] = [
        ("callable", "FileInfo", "WSGICallableObject other", None),
        (
            "appgroup",
            "FileInfo",
            "WSGIApplicationGroup %{GLOBAL}",
            Some("WSGIApplicationGroup not allowed here"),
        ),
        (
            "handler",
            "All",
            "WSGIHandlerScript h {dir}/h.py",
            Some("WSGIHandlerScript not allowed here"),
        ),
        (
            "dispatch",
            "All",
            "WSGIDispatchScript {dir}/d.py",
            Some("WSGIDispatchScript not allowed here"),
        ),
        (
            "apachereq",
            "All",
            "WSGIPassApacheRequest On",
            Some("WSGIPassApacheRequest not allowed here"),
        ),
    ];
    let mut files = Vec::new();
    let mut conf = String::new();
    for (name, overrides, line, _) in &cases {
        files.push((format!("{name}/app.wsgi"), app.to_string()));
        files.push((format!("{name}/.htaccess"), format!("{line}\n")));
        conf.push_str(&format!(
            "WSGIScriptAlias /{name} {{dir}}/{name}/app.wsgi\n\
             <Directory {{dir}}/{name}>\n  AllowOverride {overrides}\n</Directory>\n"
        ));
    }
    // An access script, AuthConfig: it runs (and here refuses everyone).
    files.push(("access/app.wsgi".into(), app.to_string()));
    files.push((
        "access/.htaccess".into(),
        "WSGIAccessScript {dir}/access/deny.py\n".into(),
    ));
    files.push((
        "access/deny.py".into(),
        "def allow_access(environ, host):\n    return False\n".into(),
    ));
    conf.push_str(
        "WSGIScriptAlias /access {dir}/access/app.wsgi\n\
         <Directory {dir}/access>\n  AllowOverride AuthConfig\n</Directory>\n",
    );
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    let apache = common::Apache::start("htaccess_contexts", &files, &conf);
    assert_eq!(apache.get("/access").status, 403, "{}", apache.error_log());
    for (name, _, line, refusal) in cases {
        let r = apache.get(&format!("/{name}"));
        match refusal {
            None => assert_eq!((r.status, r.text().as_str()), (200, "other"), "{line}"),
            Some(message) => {
                assert_eq!(r.status, 500, "{line}: {}", r.text());
                let log = apache.wait_for_log(message);
                assert!(log.contains(message), "{line}: {log}");
            }
        }
    }
}

#[test]
fn wsgi_accept_mutex_is_accepted_with_a_notice_and_checks_its_value() {
    let mut apache = common::Apache::start(
        "accept_mutex",
        &[],
        "WSGIAcceptMutex fcntl\nWSGIDaemonProcess site threads=1",
    );
    let log = apache.wait_for_log("WSGIAcceptMutex");
    let notices = log
        .lines()
        .filter(|l| {
            l.contains("[wsgi:notice]")
                && l.contains("WSGIAcceptMutex fcntl is accepted but not needed")
        })
        .count();
    assert_eq!(notices, 1, "one notice per start: {log}");
    apache.stop();
    refused(
        "accept_mutex_bad",
        "WSGIAcceptMutex spinlock",
        &["WSGIAcceptMutex 'spinlock' is not a lock mechanism; valid ones are: default, flock, fcntl, sysvsem, posixsem, pthread"],
    );
    let (ok, out) = config_test("accept_mutex_default", "WSGIAcceptMutex Default");
    assert!(ok, "{out}");
}
