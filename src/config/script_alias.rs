//! `WSGIScriptAlias` / `WSGIScriptAliasMatch`: parsing the directive and matching a URI against
//! a prefix alias.

use super::groups::{check_application_group, check_process_group};
use super::words::{parse_on_off, words_and_options};

/// How a URI is matched: a literal URL-path prefix, or (for `WSGIScriptAliasMatch`) a regular
/// expression that the Apache layer compiles with httpd's own regex engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasPattern {
    Prefix(String),
    Regex(String),
}

/// One parsed `WSGIScriptAlias` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptAlias {
    pub pattern: AliasPattern,
    /// The script (or, for a directory target, the directory) the URL maps to. For a regex alias
    /// it may contain `$1`-style references to the match.
    pub target: String,
    pub options: AliasOptions,
    /// The compiled form of a `Regex` pattern, owned by the Apache layer (httpd's config pool).
    pub regex: Option<RegexHandle>,
    /// Where the configuration says so (`line N of FILE`), for errors found later.
    pub defined_at: Option<String>,
}

/// An opaque reference to a regular expression compiled by the Apache layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegexHandle(pub usize);

/// The `key=value` options that may follow the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasOptions {
    pub process_group: Option<String>,
    pub application_group: Option<String>,
    pub callable_object: Option<String>,
    pub pass_authorization: Option<bool>,
}

impl ScriptAlias {
    /// Parses the raw arguments of `directive` (`WSGIScriptAlias` or `WSGIScriptAliasMatch`).
    pub fn parse(directive: &str, args: &str, is_regex: bool) -> Result<ScriptAlias, String> {
        let (words, options) = words_and_options(directive, args, 2)?;
        if words.len() < 2 {
            return Err(format!(
                "{directive} takes a URL path, a file path and optional key=value options"
            ));
        }
        let pattern = if is_regex {
            AliasPattern::Regex(words[0].clone())
        } else {
            AliasPattern::Prefix(words[0].clone())
        };
        let options = parse_options(directive, &options, ALIAS_OPTIONS)?;
        Ok(ScriptAlias {
            pattern,
            target: words[1].clone(),
            options,
            regex: None,
            defined_at: None,
        })
    }
}

/// The options `WSGIScriptAlias` takes.
const ALIAS_OPTIONS: &[&str] = &[
    "process-group",
    "application-group",
    "callable-object",
    "pass-authorization",
];

/// Parses `key=value` options of `directive`, each of which must be one of `allowed`.
pub fn parse_options(
    directive: &str,
    given: &[(String, String)],
    allowed: &[&str],
) -> Result<AliasOptions, String> {
    let mut options = AliasOptions::default();
    for (key, value) in given {
        let (key, value) = (key.as_str(), value.as_str());
        if !allowed.contains(&key) {
            return Err(format!("{directive}: invalid option '{key}'"));
        }
        match key {
            "process-group" => {
                if value.is_empty() {
                    return Err(format!(
                        "{directive}: process-group must not be empty (%{{GLOBAL}} is Apache's \
                         own children)"
                    ));
                }
                check_process_group(&format!("{directive} process-group"), value)?;
                options.process_group = Some(value.to_string());
            }
            "application-group" => {
                if value.is_empty() {
                    return Err(format!(
                        "{directive}: application-group must not be empty (%{{GLOBAL}} is the \
                         main interpreter)"
                    ));
                }
                check_application_group(&format!("{directive} application-group"), value)?;
                options.application_group = Some(value.to_string());
            }
            "callable-object" => {
                if value.is_empty() {
                    return Err(format!("{directive}: callable-object must not be empty"));
                }
                options.callable_object = Some(value.to_string());
            }
            "pass-authorization" => {
                options.pass_authorization = Some(parse_on_off(
                    &format!("{directive} pass-authorization"),
                    value,
                )?);
            }
            _ => return Err(format!("{directive}: invalid option '{key}'")),
        }
    }
    Ok(options)
}

/// Matches `uri` against a prefix alias the way httpd's mod_alias does: any run of `/` in the
/// alias matches any run of at least one `/` in the URI, other characters compare literally, and
/// the match must end at a path-segment boundary. Returns how many bytes of `uri` matched.
pub fn prefix_match_len(uri: &[u8], alias: &[u8]) -> Option<usize> {
    let (u, a) = (uri, alias);
    let (mut i, mut j) = (0, 0);
    while j < a.len() {
        if a[j] == b'/' {
            if u.get(i) != Some(&b'/') {
                return None;
            }
            while a.get(j) == Some(&b'/') {
                j += 1;
            }
            while u.get(i) == Some(&b'/') {
                i += 1;
            }
        } else {
            if u.get(i) != Some(&a[j]) {
                return None;
            }
            i += 1;
            j += 1;
        }
    }
    let alias_ends_in_slash = a.last() == Some(&b'/');
    if !alias_ends_in_slash && i < u.len() && u[i] != b'/' {
        return None;
    }
    if i == 0 {
        None
    } else {
        Some(i)
    }
}

/// The file name a matched request maps to: the target followed by the rest of the URI (all of
/// the URI when the alias is `/`), so that httpd's directory walk finds the script and leaves the
/// remainder as PATH_INFO.
pub fn mapped_filename(
    target: &[u8],
    alias_location: &[u8],
    uri: &[u8],
    matched: usize,
) -> Vec<u8> {
    let rest = if alias_location == b"/" {
        uri
    } else {
        &uri[matched..]
    };
    [target, rest].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_and_options() {
        let a = ScriptAlias::parse(
            "WSGIScriptAlias",
            "/app /srv/app.wsgi callable-object=app pass-authorization=On application-group=%{GLOBAL}",
            false,
        )
        .unwrap();
        assert_eq!(a.pattern, AliasPattern::Prefix("/app".into()));
        assert_eq!(a.target, "/srv/app.wsgi");
        assert_eq!(a.options.callable_object.as_deref(), Some("app"));
        assert_eq!(a.options.pass_authorization, Some(true));
        assert_eq!(a.options.application_group.as_deref(), Some("%{GLOBAL}"));
    }

    #[test]
    fn refuses_unknown_option_naming_it() {
        let e = ScriptAlias::parse("WSGIScriptAlias", "/a /b.wsgi threads=3", false).unwrap_err();
        assert!(
            e.contains("WSGIScriptAlias") && e.contains("'threads'"),
            "{e}"
        );
        let e = ScriptAlias::parse("WSGIScriptAlias", "/a /b.wsgi bogus", false).unwrap_err();
        assert!(e.contains("'bogus'"), "{e}");
    }

    #[test]
    fn application_groups_may_be_named_but_not_empty_or_misspelt() {
        for group in ["site", "%{RESOURCE}", "%{SERVER}", "%{HOST}", "%{ENV:G}"] {
            let a = ScriptAlias::parse(
                "WSGIScriptAlias",
                &format!("/a /b.wsgi application-group={group}"),
                false,
            )
            .unwrap();
            assert_eq!(a.options.application_group.as_deref(), Some(group));
        }
        for bad in ["application-group=", "application-group=%{RESOURSE}"] {
            let e = ScriptAlias::parse("WSGIScriptAlias", &format!("/a /b.wsgi {bad}"), false)
                .unwrap_err();
            assert!(e.contains("application-group"), "{e}");
        }
    }

    #[test]
    fn refuses_missing_target() {
        assert!(ScriptAlias::parse("WSGIScriptAlias", "/a", false).is_err());
    }

    #[test]
    fn prefix_matches_only_whole_segments() {
        assert_eq!(prefix_match_len(b"/hello/x/y", b"/hello"), Some(6));
        assert_eq!(prefix_match_len(b"/hello", b"/hello"), Some(6));
        assert_eq!(prefix_match_len(b"/helloworld", b"/hello"), None);
        assert_eq!(prefix_match_len(b"/other", b"/hello"), None);
    }

    #[test]
    fn prefix_runs_of_slashes_match_each_other() {
        assert_eq!(prefix_match_len(b"//hello//x", b"/hello"), Some(7));
        assert_eq!(prefix_match_len(b"/a//b/c", b"/a/b"), Some(5));
    }

    #[test]
    fn root_alias_matches_everything_below() {
        assert_eq!(prefix_match_len(b"/", b"/"), Some(1));
        assert_eq!(prefix_match_len(b"/x/y", b"/"), Some(1));
        assert_eq!(
            mapped_filename(b"/srv/app.wsgi", b"/", b"/x/y", 1),
            b"/srv/app.wsgi/x/y"
        );
    }

    #[test]
    fn mapped_filename_appends_the_rest() {
        assert_eq!(
            mapped_filename(b"/srv/h.wsgi", b"/hello", b"/hello/x/y", 6),
            b"/srv/h.wsgi/x/y"
        );
        assert_eq!(
            mapped_filename(b"/srv/h.wsgi", b"/hello", b"/hello", 6),
            b"/srv/h.wsgi"
        );
    }
}
