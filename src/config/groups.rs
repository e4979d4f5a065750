//! Which process and application groups a directive may name. Until daemon mode and
//! sub-interpreter application groups land, only the embedded process group and the main
//! interpreter exist; anything else is refused at config time rather than silently run elsewhere.

/// The application group that names the main interpreter.
pub const GLOBAL: &str = "%{GLOBAL}";

pub fn check_application_group(what: &str, value: &str) -> Result<(), String> {
    if value == GLOBAL {
        Ok(())
    } else {
        Err(format!(
            "{what} '{value}' is not supported yet by mod_wsgi-rs: only {GLOBAL} (the main \
             Python interpreter) is available until sub-interpreter application groups land"
        ))
    }
}

pub fn check_process_group(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value == GLOBAL {
        Ok(())
    } else {
        Err(format!(
            "{what} '{value}' is not supported yet by mod_wsgi-rs: daemon mode \
             (WSGIDaemonProcess) has not landed, so only embedded mode ({GLOBAL}) is available"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_is_accepted() {
        assert!(check_application_group("WSGIApplicationGroup", "%{GLOBAL}").is_ok());
        assert!(check_process_group("WSGIProcessGroup", "%{GLOBAL}").is_ok());
    }

    #[test]
    fn others_are_refused_with_the_directive_named() {
        let e = check_application_group("WSGIApplicationGroup", "%{RESOURCE}").unwrap_err();
        assert!(e.starts_with("WSGIApplicationGroup '%{RESOURCE}'"), "{e}");
        let e = check_process_group("WSGIProcessGroup", "site").unwrap_err();
        assert!(e.contains("WSGIDaemonProcess"), "{e}");
    }
}
