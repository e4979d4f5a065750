//! Validation of what an application passes to `start_response`: nothing it returns may inject a
//! header or a status line onto the wire.

use std::borrow::Cow;

/// A parsed status: the code and the whole status line, e.g. `(404, "404 Not Found")`.
pub fn parse_status(status: &str) -> Result<(u16, String), String> {
    if let Some(c) = status.chars().find(|c| c.is_control()) {
        return Err(format!(
            "control character {:?} present in WSGI response status",
            c
        ));
    }
    let bytes = status.as_bytes();
    let code_ok = bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit);
    // PEP 3333's "999 Message here", as C checks it: a code alone ('200') is refused.
    let sep_ok = code_ok && bytes.get(3) == Some(&b' ');
    if !code_ok || !sep_ok {
        return Err(format!(
            "WSGI response status '{status}' is not of the form 'NNN reason'"
        ));
    }
    let code: u16 = status[..3].parse().expect("three digits");
    if code < 100 {
        return Err(format!("WSGI response status code {code} is out of range"));
    }
    Ok((code, status.to_string()))
}

/// Checks one response header (name, value).
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty WSGI response header name".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_control() || c == ' ' || c == ':' || !c.is_ascii())
    {
        return Err(format!(
            "invalid character {c:?} in WSGI response header name '{name}'"
        ));
    }
    // What httpd refuses in a header value (it would abort the response otherwise): control
    // characters other than tab.
    // (Bytes suffice: every byte of a multi-byte UTF-8 character is 0x80 or above.)
    if let Some(c) = value
        .bytes()
        .find(|&b| (b < b' ' && b != b'\t') || b == 0x7f)
        .map(char::from)
    {
        return Err(format!(
            "invalid character {c:?} in value of WSGI response header '{name}'"
        ));
    }
    Ok(())
}

/// A `Content-Length` header value: a non-negative decimal number.
pub fn parse_content_length(value: &str) -> Result<u64, String> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid Content-Length value '{value}' in WSGI response"
        ));
    }
    // Apache keeps lengths as a signed 64-bit offset: a larger one would go out negative.
    v.parse::<i64>()
        .map(|n| n as u64)
        .map_err(|_| format!("Content-Length value '{value}' is too large"))
}

/// The bytes a WSGI native string stands for (PEP 3333): each character is one Latin-1 byte.
/// `start_response` has refused characters above U+00FF; one would be sent as `?`.
pub fn latin1_bytes(s: &str) -> Cow<'_, [u8]> {
    if s.is_ascii() {
        return Cow::Borrowed(s.as_bytes());
    }
    Cow::Owned(
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_strings_go_out_as_latin1() {
        assert_eq!(&*latin1_bytes("plain"), b"plain");
        assert_eq!(
            &*latin1_bytes("caf\u{e9} \u{ff}\u{85}"),
            b"caf\xe9 \xff\x85"
        );
        assert_eq!(&*latin1_bytes("\u{20ac}"), b"?");
    }

    #[test]
    fn header_values_refuse_control_characters_but_tab() {
        assert!(check_header("X-A", "a\tb \u{e9}\u{85}").is_ok());
        for bad in ["a\rb", "a\nb", "a\0b", "a\u{b}b", "a\u{7f}b", "a\u{1b}b"] {
            assert!(check_header("X-A", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_length_fits_apaches_signed_offset() {
        assert_eq!(
            parse_content_length("9223372036854775807"),
            Ok(i64::MAX as u64)
        );
        assert!(parse_content_length("9223372036854775808").is_err());
        assert!(parse_content_length("18446744073709551615").is_err());
    }

    #[test]
    fn status_needs_three_digits_and_a_space() {
        assert_eq!(parse_status("200 OK").unwrap(), (200, "200 OK".to_string()));
        assert!(parse_status("404").is_err());
        assert_eq!(parse_status("404 ").unwrap().0, 404);
        assert!(parse_status("OK").is_err());
        assert!(parse_status("2000 OK").is_err());
        assert!(parse_status("099 Low").is_err());
    }

    #[test]
    fn status_refuses_control_characters() {
        assert!(parse_status("200 OK\r\nX-Injected: 1").is_err());
    }

    #[test]
    fn header_names_refuse_separators_and_controls() {
        assert!(check_header("X-Ok", "v").is_ok());
        assert!(check_header("X Bad", "v").is_err());
        assert!(check_header("X:Bad", "v").is_err());
        assert!(check_header("X\nBad", "v").is_err());
        assert!(check_header("", "v").is_err());
    }

    #[test]
    fn header_values_refuse_line_breaks() {
        assert!(check_header("X", "a\tb").is_ok());
        assert!(check_header("X", "a\r\nSet-Cookie: x").is_err());
        assert!(check_header("X", "a\nb").is_err());
    }

    #[test]
    fn content_length_is_a_plain_number() {
        assert_eq!(parse_content_length("13"), Ok(13));
        assert!(parse_content_length("-1").is_err());
        assert!(parse_content_length("1e3").is_err());
        assert!(parse_content_length("").is_err());
    }
}
