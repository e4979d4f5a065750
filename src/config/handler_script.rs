//! `WSGIHandlerScript name path [options]`: a script that serves the requests Apache hands to
//! the handler `name` (chosen with `SetHandler` or `AddHandler`), through the script's
//! `handle_request` callable rather than `application`.

use super::script_alias::{parse_options, AliasOptions};
use super::words::words_and_options;

/// The callable a handler script serves requests with; `WSGICallableObject` does not apply.
pub const HANDLER_CALLABLE: &str = "handle_request";

/// One `WSGIHandlerScript` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerScript {
    /// The Apache handler name that selects the script.
    pub name: String,
    pub path: String,
    /// `process-group=`, `application-group=` and `pass-authorization=`, as for
    /// `WSGIScriptAlias`; the callable is always [`HANDLER_CALLABLE`].
    pub options: AliasOptions,
}

impl HandlerScript {
    /// `name path [process-group=…] [application-group=…] [pass-authorization=On|Off]`.
    pub fn parse(directive: &str, args: &str) -> Result<HandlerScript, String> {
        let (words, given) = words_and_options(directive, args, 2)?;
        let name = words
            .first()
            .filter(|w| !w.is_empty())
            .ok_or_else(|| format!("{directive} needs a handler name and the path of a script"))?;
        let path = words
            .get(1)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| format!("{directive} {name}: the path of the script is missing"))?;
        let mut options = parse_options(
            directive,
            &given,
            &["process-group", "application-group", "pass-authorization"],
        )?;
        options.callable_object = Some(HANDLER_CALLABLE.to_string());
        Ok(HandlerScript {
            name: name.clone(),
            path: path.clone(),
            options,
        })
    }
}

/// The handler scripts of an inner context, then those of the outer one it does not name again.
pub fn merge(base: &[HandlerScript], add: &[HandlerScript]) -> Vec<HandlerScript> {
    let mut merged = add.to_vec();
    merged.extend(
        base.iter()
            .filter(|b| !add.iter().any(|a| a.name == b.name))
            .cloned(),
    );
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_a_path_and_the_options_of_a_script_alias() {
        let h = HandlerScript::parse(
            "WSGIHandlerScript",
            "wsgi-resource '/srv/my handler.wsgi' process-group=site \
             application-group=%{GLOBAL} pass-authorization=On",
        )
        .unwrap();
        assert_eq!(h.name, "wsgi-resource");
        assert_eq!(h.path, "/srv/my handler.wsgi");
        assert_eq!(h.options.process_group.as_deref(), Some("site"));
        assert_eq!(h.options.application_group.as_deref(), Some("%{GLOBAL}"));
        assert_eq!(h.options.pass_authorization, Some(true));
        assert_eq!(h.options.callable_object.as_deref(), Some("handle_request"));
    }

    #[test]
    fn a_missing_path_or_another_option_is_refused_by_name() {
        for args in [
            "",
            "wsgi-resource",
            "wsgi-resource /srv/h.wsgi callable-object=app",
            "wsgi-resource /srv/h.wsgi pass-authorization=maybe",
            "wsgi-resource /srv/h.wsgi process-group=",
        ] {
            let err = HandlerScript::parse("WSGIHandlerScript", args).unwrap_err();
            assert!(err.starts_with("WSGIHandlerScript"), "{args:?}: {err}");
        }
    }

    #[test]
    fn an_inner_context_replaces_a_handler_of_the_same_name_only() {
        let parse = |args| HandlerScript::parse("WSGIHandlerScript", args).unwrap();
        let outer = vec![parse("a /srv/a.wsgi"), parse("b /srv/b.wsgi")];
        let inner = vec![parse("b /srv/inner-b.wsgi")];
        let merged = merge(&outer, &inner);
        let paths: Vec<(&str, &str)> = merged
            .iter()
            .map(|h| (h.name.as_str(), h.path.as_str()))
            .collect();
        assert_eq!(paths, [("b", "/srv/inner-b.wsgi"), ("a", "/srv/a.wsgi")]);
    }
}
