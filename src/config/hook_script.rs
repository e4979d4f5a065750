//! `WSGIAccessScript`, `WSGIAuthUserScript` and `WSGIAuthGroupScript`: a script whose functions
//! Apache calls to decide access and authentication, and the interpreter it runs in.

use super::groups::check_application_group;
use super::words::words_and_options;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the configuration has named a hook script: Apache's children then start Python
/// even under `WSGIRestrictEmbedded On`, since these scripts always run there (C mod_wsgi does
/// the same). A script named only in a `.htaccess` file is seen too late for that.
static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// Whether the configuration read so far names an access or authentication script.
pub fn configured() -> bool {
    CONFIGURED.load(Ordering::Relaxed)
}

/// A script named by one of the hook directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookScript {
    pub path: String,
    /// `application-group=`; None is the main interpreter (`%{GLOBAL}`), as in C mod_wsgi.
    pub application_group: Option<String>,
}

impl HookScript {
    /// `path [application-group=NAME]`, the arguments of `directive`.
    pub fn parse(directive: &str, args: &str) -> Result<HookScript, String> {
        let (words, options) = words_and_options(directive, args, 1)?;
        let path = words
            .into_iter()
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("{directive} needs the path of a script"))?;
        let mut application_group = None;
        for (key, value) in &options {
            match (key.as_str(), value.as_str()) {
                ("application-group", "") => {
                    return Err(format!("{directive}: application-group= needs a name"))
                }
                ("application-group", group) => {
                    check_application_group(directive, group)?;
                    application_group = Some(group.to_string());
                }
                (option, _) => {
                    return Err(format!(
                    "{directive}: unknown option '{option}' (the only one is application-group=)"
                ))
                }
            }
        }
        CONFIGURED.store(true, Ordering::Relaxed);
        Ok(HookScript {
            path,
            application_group,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_and_an_optional_application_group() {
        let s = HookScript::parse("WSGIAuthUserScript", "/srv/auth.wsgi").unwrap();
        assert_eq!(
            (s.path.as_str(), s.application_group),
            ("/srv/auth.wsgi", None)
        );
        let s = HookScript::parse(
            "WSGIAccessScript",
            "'/srv/my access.wsgi' application-group=%{GLOBAL}",
        )
        .unwrap();
        assert_eq!(s.path, "/srv/my access.wsgi");
        assert_eq!(s.application_group.as_deref(), Some("%{GLOBAL}"));
    }

    #[test]
    fn a_missing_path_or_a_bad_option_is_refused_by_name() {
        for (args, error) in [
            ("", "WSGIAuthGroupScript needs the path of a script"),
            (
                "/a.wsgi process-group=x",
                "WSGIAuthGroupScript: unknown option 'process-group'",
            ),
            (
                "/a.wsgi application-group=",
                "WSGIAuthGroupScript: application-group= needs a name",
            ),
            ("/a.wsgi application-group=%{GLOBL}", "WSGIAuthGroupScript"),
            (
                "/a.wsgi stray",
                "WSGIAuthGroupScript: invalid option 'stray'",
            ),
        ] {
            let e = HookScript::parse("WSGIAuthGroupScript", args).unwrap_err();
            assert!(e.starts_with(error), "{args:?}: {e}");
        }
    }
}
