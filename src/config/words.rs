//! Reading a directive's raw argument string the way httpd and C mod_wsgi do: words as httpd's
//! `ap_getword_conf` reads them, and `key=value` options as C mod_wsgi's option parser reads
//! them (the key runs to the `=`, the value is one such word, so it may be quoted).

/// White space as httpd's `apr_isspace` sees it (ASCII only: a no-break space is part of a word).
fn is_conf_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Reads one word of `line` and returns it with the rest of the line. White space first is
/// skipped; a word that starts with `"` or `'` runs to the matching quote (the rest of the line
/// then starts right after it); a backslash escapes a backslash, and inside quotes the quote.
pub fn conf_word(line: &str) -> (String, &str) {
    let line = line.trim_start_matches(is_conf_space);
    let quote = line.chars().next().filter(|&c| c == '"' || c == '\'');
    let body = if quote.is_some() { &line[1..] } else { line };
    let mut word = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = match quote {
            Some(q) => c == q,
            None => is_conf_space(c),
        };
        if ends {
            let after = if quote.is_some() { i + 1 } else { i };
            return (word, &body[after..]);
        }
        match chars.peek() {
            Some(&(_, next)) if c == '\\' && (next == '\\' || Some(next) == quote) => {
                word.push(next);
                chars.next();
            }
            _ => word.push(c),
        }
    }
    (word, "")
}

/// Every word of `line` (see [`conf_word`]).
pub fn split_words(line: &str) -> Vec<String> {
    leading_words(line, usize::MAX).0
}

/// The first `max` words of `line` (fewer if it ends first), and the rest of the line.
fn leading_words(line: &str, max: usize) -> (Vec<String>, &str) {
    let mut words = Vec::new();
    let mut rest = line;
    while words.len() < max && !rest.trim_start_matches(is_conf_space).is_empty() {
        let (word, after) = conf_word(rest);
        words.push(word);
        rest = after;
    }
    (words, rest)
}

/// Reads the next `key=value` option of `directive` from `line`: the key runs to the `=`, and
/// the value is one word that may be quoted (`process-group='example.com:8000'`). Unlike C
/// mod_wsgi, white space right after the `=` ends an empty value rather than being skipped, so
/// `lang= threads=2` does not set `lang` to `threads=2`. Returns the key, the value and the rest
/// of the line; None at its end.
pub fn next_option<'a>(
    directive: &str,
    line: &'a str,
) -> Result<Option<(&'a str, String, &'a str)>, String> {
    let line = line.trim_start_matches(is_conf_space);
    if line.is_empty() {
        return Ok(None);
    }
    let key_end = line
        .find(|c: char| c == '=' || is_conf_space(c))
        .unwrap_or(line.len());
    let quoted = line.starts_with(['"', '\'']);
    if quoted || !line[key_end..].starts_with('=') || key_end == 0 {
        let (word, _) = conf_word(line);
        return Err(format!(
            "{directive}: invalid option '{word}' (expected key=value)"
        ));
    }
    let key = &line[..key_end];
    let after_eq = &line[key_end + 1..];
    if after_eq.is_empty() || after_eq.starts_with(is_conf_space) {
        return Ok(Some((key, String::new(), after_eq)));
    }
    let (value, rest) = conf_word(after_eq);
    Ok(Some((key, value, rest)))
}

/// `key=value` options, in the order given.
pub type Options = Vec<(String, String)>;

/// The arguments of a directive that takes `positional` words (fewer if the line ends first)
/// and then `key=value` options.
pub fn words_and_options(
    directive: &str,
    line: &str,
    positional: usize,
) -> Result<(Vec<String>, Options), String> {
    let (words, mut rest) = leading_words(line, positional);
    let mut options = Vec::new();
    while let Some((key, value, after)) = next_option(directive, rest)? {
        options.push((key.to_string(), value));
        rest = after;
    }
    Ok((words, options))
}

/// Parses an `On`/`Off` flag value (case-insensitive) for the directive or option `what`.
pub fn parse_on_off(what: &str, value: &str) -> Result<bool, String> {
    if value.eq_ignore_ascii_case("on") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("off") {
        Ok(false)
    } else {
        Err(format!("{what} must be On or Off, not '{value}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_white_space() {
        assert_eq!(split_words("  /a   /b\tc "), vec!["/a", "/b", "c"]);
    }

    #[test]
    fn honours_quotes_and_escaped_quotes() {
        assert_eq!(
            split_words(r#"/a "/srv/my app/x.wsgi" 'it\'s' "x""#),
            vec!["/a", "/srv/my app/x.wsgi", "it's", "x"]
        );
    }

    #[test]
    fn backslashes_and_white_space_as_httpd_reads_them() {
        assert_eq!(
            split_words(r#""x\\y" x\\y 'a\b' "q\"" "a"b"#),
            vec![r"x\y", r"x\y", r"a\b", "q\"", "a", "b"]
        );
        // Only ASCII white space separates words.
        assert_eq!(
            split_words("/srv/my\u{a0}app.wsgi\u{3000}x\x0by"),
            vec!["/srv/my\u{a0}app.wsgi\u{3000}x", "y"]
        );
        assert_eq!(split_words(r#"a "" b"#), vec!["a", "", "b"]);
    }

    #[test]
    fn option_values_may_be_quoted() {
        let (words, options) = words_and_options(
            "D",
            r#"/ '/srv/my app.wsgi' process-group='localhost:8000' application-group="%{GLOBAL}" callable-object=app x="a b""#,
            2,
        )
        .unwrap();
        assert_eq!(words, vec!["/", "/srv/my app.wsgi"]);
        let pairs: Vec<(&str, &str)> = options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("process-group", "localhost:8000"),
                ("application-group", "%{GLOBAL}"),
                ("callable-object", "app"),
                ("x", "a b")
            ]
        );
        // A whole option quoted is not an option (C: "Invalid option").
        assert!(words_and_options("D", r#"/ x.wsgi "process-group=a b""#, 2)
            .unwrap_err()
            .contains("invalid option"));
        assert!(words_and_options("D", "/ x.wsgi =x", 2).is_err());
    }

    #[test]
    fn empty_line_has_no_words() {
        assert!(split_words("   ").is_empty());
    }

    #[test]
    fn on_off_is_case_insensitive_and_strict() {
        assert_eq!(parse_on_off("X", "ON"), Ok(true));
        assert_eq!(parse_on_off("X", "off"), Ok(false));
        assert!(parse_on_off("X", "yes")
            .unwrap_err()
            .contains("X must be On or Off"));
    }
}
