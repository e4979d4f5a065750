//! Scripts imported when a process starts, before it serves a request: `WSGIImportScript`, and a
//! `WSGIScriptAlias` that names both its process group and its application group (so it is known
//! where the script will run), as C mod_wsgi 4.9.4 does.

use super::groups::{check_application_group, check_process_group, parse_group, GroupSpec};
use super::script_alias::{AliasPattern, ScriptAlias};
use super::words::words_and_options;

/// One script to import at process start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportScript {
    pub script: String,
    /// The process group whose processes import it: '' for Apache's own children
    /// (`%{GLOBAL}`), else a `WSGIDaemonProcess` name.
    pub process_group: String,
    /// The interpreter it is imported into: '' is the main one (`%{GLOBAL}`).
    pub application_group: String,
    /// Where the configuration says so (`line N of FILE`), for errors found later.
    pub defined_at: Option<String>,
}

impl ImportScript {
    /// Parses `WSGIImportScript path process-group=… application-group=…`.
    pub fn parse(directive: &str, args: &str) -> Result<ImportScript, String> {
        let (words, options) = words_and_options(directive, args, 1)?;
        let Some(script) = words.first() else {
            return Err(format!(
                "{directive} takes the path of a script and process-group=… application-group=…"
            ));
        };
        if script.is_empty() {
            return Err(format!(
                "{directive}: the path of the script must not be empty"
            ));
        }
        if script.starts_with("process-group=") || script.starts_with("application-group=") {
            return Err(format!("{directive}: the path of the script comes first"));
        }
        let (mut process_group, mut application_group) = (None, None);
        for (key, value) in &options {
            let value = value.as_str();
            match key.as_str() {
                "process-group" => {
                    process_group = Some(import_process_group(directive, value)?);
                }
                "application-group" => {
                    application_group = Some(import_group(directive, value)?);
                }
                _ => return Err(format!("{directive}: invalid option '{key}'")),
            }
        }
        let Some(process_group) = process_group else {
            return Err(format!(
                "{directive} needs process-group=… (%{{GLOBAL}} for Apache's own child \
                 processes)"
            ));
        };
        let Some(application_group) = application_group else {
            return Err(format!(
                "{directive} needs application-group=… (%{{GLOBAL}} for the main interpreter)"
            ));
        };
        Ok(ImportScript {
            script: script.clone(),
            process_group,
            application_group,
            defined_at: None,
        })
    }

    /// The script a `WSGIScriptAlias` preloads: one whose options name both groups without any
    /// substitution but `%{GLOBAL}`, and, for `WSGIScriptAliasMatch`, whose target does not
    /// depend on the URL (no `$n`).
    pub fn from_alias(alias: &ScriptAlias) -> Option<ImportScript> {
        let process_group = alias.options.process_group.as_deref()?;
        let application_group = alias.options.application_group.as_deref()?;
        let literal = |value: &str| match parse_group(value) {
            GroupSpec::Global => Some(String::new()),
            GroupSpec::Literal(name) if !name.contains("%{") => Some(name.to_string()),
            _ => None,
        };
        let process_group = literal(process_group)?;
        if matches!(alias.pattern, AliasPattern::Regex(_)) && alias.target.contains('$') {
            return None;
        }
        Some(ImportScript {
            script: alias.target.clone(),
            process_group,
            application_group: literal(application_group)?,
            defined_at: alias.defined_at.clone(),
        })
    }
}

/// The process group an import's `process-group=` value names: '' (`%{GLOBAL}`) or the name of
/// a daemon process group (whether it is defined is checked once the whole configuration is
/// read).
fn import_process_group(directive: &str, value: &str) -> Result<String, String> {
    let what = format!("{directive} process-group");
    if value.is_empty() {
        return Err(format!(
            "{what} must not be empty (%{{GLOBAL}} is Apache's own child processes)"
        ));
    }
    check_process_group(&what, value)?;
    match parse_group(value) {
        GroupSpec::Global => Ok(String::new()),
        GroupSpec::Literal(name) => Ok(name.to_string()),
        _ => Err(format!(
            "{what} '{value}': a script is imported when the process starts, before any \
             request, so the group must be %{{GLOBAL}} or the name of a WSGIDaemonProcess"
        )),
    }
}

/// The interpreter name an import's `application-group=` value names. Only a literal name or
/// `%{GLOBAL}`: the other substitutions are made from a request, and there is none yet.
fn import_group(directive: &str, value: &str) -> Result<String, String> {
    let what = format!("{directive} application-group");
    if value.is_empty() {
        return Err(format!(
            "{what} must not be empty (%{{GLOBAL}} is the main interpreter)"
        ));
    }
    check_application_group(&what, value)?;
    match parse_group(value) {
        GroupSpec::Global => Ok(String::new()),
        GroupSpec::Literal(name) => Ok(name.to_string()),
        _ => Err(format!(
            "{what} '{value}': a script is imported when the process starts, before any \
             request, so the group must be %{{GLOBAL}} or a literal name (the name the \
             requests' own group resolves to)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "WSGIImportScript";

    #[test]
    fn both_groups_are_required() {
        let ok = ImportScript::parse(
            D,
            "/srv/app.wsgi process-group=%{GLOBAL} application-group=site",
        )
        .unwrap();
        assert_eq!(
            ok,
            ImportScript {
                script: "/srv/app.wsgi".into(),
                process_group: String::new(),
                application_group: "site".into(),
                defined_at: None,
            }
        );
        let e = ImportScript::parse(D, "/srv/app.wsgi application-group=site").unwrap_err();
        assert!(
            e.starts_with("WSGIImportScript needs process-group="),
            "{e}"
        );
        let e = ImportScript::parse(D, "/srv/app.wsgi process-group=%{GLOBAL}").unwrap_err();
        assert!(
            e.starts_with("WSGIImportScript needs application-group="),
            "{e}"
        );
        let e = ImportScript::parse(D, "").unwrap_err();
        assert!(e.starts_with("WSGIImportScript takes the path"), "{e}");
    }

    #[test]
    fn global_application_group_is_the_main_interpreter() {
        let s = ImportScript::parse(
            D,
            "\"/srv/my app.wsgi\" application-group=%{GLOBAL} process-group=%{GLOBAL}",
        )
        .unwrap();
        assert_eq!(s.script, "/srv/my app.wsgi");
        assert_eq!(s.application_group, "");
    }

    #[test]
    fn request_substitutions_are_refused_and_daemon_groups_named() {
        for group in ["%{RESOURCE}", "%{SERVER}", "%{HOST}", "%{ENV:APP}"] {
            let args = format!("/a.wsgi process-group=%{{GLOBAL}} application-group={group}");
            let e = ImportScript::parse(D, &args).unwrap_err();
            assert!(e.contains("before any request"), "{group}: {e}");
        }
        let e = ImportScript::parse(D, "/a.wsgi process-group=%{GLOBAL} application-group=%{X}")
            .unwrap_err();
        assert!(e.contains("unknown substitution"), "{e}");
        let s = ImportScript::parse(D, "/a.wsgi process-group=pg application-group=x").unwrap();
        assert_eq!(s.process_group, "pg");
        let e = ImportScript::parse(D, "/a.wsgi process-group=%{HOST} application-group=x")
            .unwrap_err();
        assert!(e.contains("name of a WSGIDaemonProcess"), "{e}");
        let e = ImportScript::parse(D, "/a.wsgi process-group=%{GLOBAL} application-group=x y=1")
            .unwrap_err();
        assert_eq!(e, "WSGIImportScript: invalid option 'y'");
    }

    fn alias(args: &str, regex: bool) -> ScriptAlias {
        ScriptAlias::parse("WSGIScriptAlias", args, regex).unwrap()
    }

    #[test]
    fn an_alias_naming_both_groups_is_imported() {
        let a = alias(
            "/app /srv/app.wsgi process-group=%{GLOBAL} application-group=site",
            false,
        );
        assert_eq!(
            ImportScript::from_alias(&a),
            Some(ImportScript {
                script: "/srv/app.wsgi".into(),
                process_group: String::new(),
                application_group: "site".into(),
                defined_at: None,
            })
        );
        let a = alias(
            "/app /srv/app.wsgi process-group=%{GLOBAL} application-group=%{GLOBAL}",
            false,
        );
        assert_eq!(ImportScript::from_alias(&a).unwrap().application_group, "");
    }

    #[test]
    fn an_alias_without_both_groups_or_with_substitutions_is_not() {
        for args in [
            "/app /srv/app.wsgi",
            "/app /srv/app.wsgi application-group=site",
            "/app /srv/app.wsgi process-group=%{GLOBAL}",
            "/app /srv/app.wsgi process-group=%{GLOBAL} application-group=%{SERVER}",
            "/app /srv/app.wsgi process-group=%{GLOBAL} application-group=%{ENV:X}",
        ] {
            assert_eq!(
                ImportScript::from_alias(&alias(args, false)),
                None,
                "{args}"
            );
        }
        let a = alias(
            "^/(\\w+) /srv/$1.wsgi process-group=%{GLOBAL} application-group=x",
            true,
        );
        assert_eq!(ImportScript::from_alias(&a), None);
        let a = alias(
            "^/\\w+ /srv/one.wsgi process-group=%{GLOBAL} application-group=x",
            true,
        );
        assert_eq!(
            ImportScript::from_alias(&a).unwrap().script,
            "/srv/one.wsgi"
        );
    }
}
