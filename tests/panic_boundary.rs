//! A Rust panic inside the built module, as Apache loads it, is caught at the hook's boundary:
//! the request is a 500 with the panic in the log, and the same child serves the next request.
//! (The module's unit tests catch panics too, but in a test binary, not in the `.so` with its own
//! link options and section order.)

mod common;

use common::Apache;

const PID: &str = r#"
import os
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"#;

#[test]
fn a_panic_in_the_handler_is_a_500_and_the_child_serves_on() {
    // Its own test binary, so no other test's server sees the variable.
    // SAFETY: set before any thread of this binary starts a server; nothing else reads it here.
    unsafe { std::env::set_var("MOD_WSGI_RS_PANIC_URI", "/pid/panic") };
    let apache = Apache::start(
        "panic",
        &[("pid.wsgi", PID)],
        "WSGIScriptAlias /pid {dir}/pid.wsgi",
    );
    let before = apache.get("/pid/x");
    assert_eq!(before.status, 200, "{}", apache.error_log());
    let r = apache.get("/pid/panic");
    assert_eq!(r.status, 500, "{}", apache.error_log());
    let log = apache.wait_for_log("internal error in handler");
    assert!(
        log.contains("mod_wsgi-rs: internal error in handler: deliberate panic"),
        "{log}"
    );
    let after = apache.get("/pid/x");
    assert_eq!(after.status, 200, "{}", apache.error_log());
    assert_eq!(after.text(), before.text(), "the child was replaced");
}
