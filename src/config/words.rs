//! Splitting a directive's raw argument string into words, the way httpd's own
//! `ap_getword_conf` does: runs of white space separate words, and a word may be quoted with `"`
//! or `'` (a backslash escapes the quote character inside it).

pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    break;
                } else {
                    word.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

/// Splits one `key=value` option of `directive`.
pub fn split_option<'a>(directive: &str, option: &'a str) -> Result<(&'a str, &'a str), String> {
    option
        .split_once('=')
        .ok_or_else(|| format!("{directive}: invalid option '{option}' (expected key=value)"))
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
