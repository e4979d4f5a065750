//! The daemon groups' socket paths across Apache restarts: `WSGISocketRotation On` gives each
//! Apache generation new sockets, Off (the default) keeps the same path.

mod common;

use common::Apache;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PID_APP: &str = r#"
import os
def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

fn start(name: &str, rotation: &str) -> Apache {
    Apache::start(
        name,
        &[("pid.wsgi", PID_APP)],
        &format!(
            "{rotation}\n\
             WSGIDaemonProcess site threads=2\n\
             WSGIScriptAlias /pid {{dir}}/pid.wsgi process-group=site"
        ),
    )
}

/// The group sockets in `dir` (the default prefix is in Apache's runtime directory).
fn sockets_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sock"))
        .collect();
    found.sort();
    found
}

fn only_socket(apache: &Apache) -> String {
    let found = sockets_in(&apache.dir);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].file_name().unwrap().to_string_lossy().into_owned()
}

fn apache_pid(apache: &Apache) -> i32 {
    std::fs::read_to_string(apache.path("httpd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn served_by(apache: &Apache) -> String {
    let r = apache.get("/pid");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), apache.error_log());
    r.text()
}

/// Sends SIGUSR1 (`apache2 -k graceful`) and waits until the next generation has started the
/// group again.
fn graceful_restart(apache: &Apache) {
    let started = |log: &str| log.matches("Started daemon process group 'site'").count();
    let before = started(&apache.error_log());
    // SAFETY: signalling the Apache parent this test started.
    unsafe { libc::kill(apache_pid(apache), libc::SIGUSR1) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while started(&apache.error_log()) == before {
        assert!(
            Instant::now() < deadline,
            "no new generation:\n{}",
            apache.error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Requests until one is served by a process other than `old` (the old generation's daemon
/// may still take queued work briefly); every answer must be a 200.
fn served_by_new_daemon(apache: &Apache, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = served_by(apache);
        if now != old {
            return now;
        }
        assert!(Instant::now() < deadline, "the old daemon still serves");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The processes Apache's parent has forked (children, supervisors).
fn parent_children(apache: &Apache) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{}/task", apache_pid(apache)))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

#[test]
fn rotation_on_gives_each_generation_its_own_socket() {
    let apache = start("sockets_rotation_on", "WSGISocketRotation On");
    let first = served_by(&apache);
    let pid = apache_pid(&apache);
    let before = only_socket(&apache);
    // PREFIX.PID.GENERATION.N.sock, as C mod_wsgi names them; the first generation is 0.
    assert_eq!(before, format!("wsgi.{pid}.0.1.sock"));
    let old_generation = parent_children(&apache);
    graceful_restart(&apache);
    // A child of the old generation can still take a connection just after the signal, and
    // with rotation its socket is gone (a documented limit: it waits connect-timeout, then
    // 503). What this test is about is the new generation, so wait for the old one to leave.
    let deadline = Instant::now() + Duration::from_secs(30);
    while old_generation.iter().any(|&p| common::process_alive(p)) {
        assert!(Instant::now() < deadline, "the old generation stays");
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = only_socket(&apache);
    assert_eq!(after, format!("wsgi.{pid}.1.1.sock"));
    assert!(
        !apache.path(&before).exists(),
        "the old generation's socket is removed"
    );
    served_by_new_daemon(&apache, &first);
    let log = apache.error_log();
    assert!(log.contains(&format!("/{after}'")), "{log}");
}

#[test]
fn without_rotation_the_socket_path_survives_a_graceful_restart() {
    for (name, directive) in [
        ("sockets_rotation_default", ""),
        ("sockets_rotation_off", "WSGISocketRotation Off"),
    ] {
        let apache = start(name, directive);
        let first = served_by(&apache);
        let pid = apache_pid(&apache);
        let before = only_socket(&apache);
        assert_eq!(before, format!("wsgi.{pid}.1.sock"), "{name}");
        graceful_restart(&apache);
        assert_eq!(only_socket(&apache), before, "{name}");
        served_by_new_daemon(&apache, &first);
    }
}

#[test]
fn socket_rotation_is_checked_by_the_config_test() {
    for (extra, expected) in [
        (
            "WSGISocketRotation sometimes",
            "WSGISocketRotation must be On or Off, not 'sometimes'",
        ),
        ("WSGISocketRotation", "WSGISocketRotation"),
        (
            "<VirtualHost 127.0.0.1:80>\nWSGISocketRotation On\n</VirtualHost>",
            "WSGISocketRotation",
        ),
    ] {
        let (ok, out) = common::config_test("sockets_badconf", extra);
        assert!(!ok, "{extra}: accepted");
        assert!(out.contains(expected), "{extra}: {out}");
    }
    let (ok, out) = common::config_test("sockets_goodconf", "WSGISocketRotation On");
    assert!(ok, "{out}");
}

#[test]
fn a_group_whose_socket_cannot_be_made_answers_503_saying_why() {
    let long = "x".repeat(120);
    let apache = Apache::start(
        "daemon_no_socket",
        &[(
            "app.wsgi",
            "def application(e, sr):\n    sr('200 OK', [])\n    return [b'hi']\n",
        )],
        &format!(
            "WSGISocketPrefix {{dir}}/{long}\n\
             WSGIDaemonProcess site threads=1\n\
             WSGIScriptAlias /app {{dir}}/app.wsgi process-group=site"
        ),
    );
    assert_eq!(apache.get("/app").status, 503);
    let log = apache.error_log();
    assert!(
        log.contains(
            "Daemon process group 'site' is not running: at start-up, cannot create the socket"
        ),
        "{log}"
    );
}

/// Runs in group `a`: finds the secret its own requests carry in its memory (as a hostile
/// application could, with ctypes), and forges with it, to every group's socket, a request for
/// `forged.wsgi`, which writes `forged.<uid>` when it runs. Answers how many secrets it found.
const FORGER: &str = r#"
import ctypes, glob, json, os, re, socket, struct
HERE = os.path.dirname(__file__)
def field(b):
    return struct.pack("<I", len(b)) + b
def secrets_in_memory(script):
    mark = field(script)
    found = set()
    for line in open("/proc/self/maps").read().splitlines():
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)\s+\S+\s+\S+\s+\S+\s*(.*)", line)
        lo, hi, perm, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4)
        # Private memory of the process: its heap, its threads' stacks, anonymous mappings
        # (not the kernel's [vvar...], [vsyscall] and [vdso], some of which fault when read).
        if perm[0] != "r" or perm[3] != "p" or (name and not name.startswith("[")) \
                or name.startswith("[v"):
            continue
        if hi - lo > 512 << 20:
            continue
        try:
            data = ctypes.string_at(lo, hi - lo)
        except Exception:
            continue
        i = data.find(mark)
        while i != -1:
            if i >= 33 and data[i - 33] == 1:
                found.add(data[i - 32:i])
            i = data.find(mark, i + 1)
    return found
def forge(sock, secret, script):
    env = [(b"REQUEST_METHOD", b"GET"), (b"SCRIPT_NAME", b"/x"), (b"PATH_INFO", b""),
           (b"SERVER_NAME", b"x"), (b"SERVER_PORT", b"80"), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
           (b"REQUEST_URI", b"/x"), (b"QUERY_STRING", b""), (b"SCRIPT_FILENAME", script),
           (b"REMOTE_ADDR", b"1.2.3.4"), (b"REMOTE_PORT", b"1")]
    head = (b"\x01" + secret + field(script) + field(b"") + field(b"application") + b"\x00"
            + struct.pack("<I", len(env)) + b"".join(field(k) + field(v) for k, v in env))
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    try:
        c.connect(sock)
        c.sendall(b"H" + struct.pack("<I", len(head)) + head)
        while c.recv(65536):
            pass
    except OSError:
        pass
    finally:
        c.close()
def application(environ, start_response):
    secrets = secrets_in_memory(environ["SCRIPT_FILENAME"].encode())
    forged = os.path.join(HERE, "forged.wsgi").encode()
    for secret in secrets:
        for sock in glob.glob(os.path.join(HERE, "*.sock")):
            forge(sock, secret, forged)
    start_response("200 OK", [])
    return [json.dumps(len(secrets)).encode()]
"#;

const FORGED: &str = r#"
import os
open(os.path.join(os.path.dirname(__file__), "forged.%d" % os.getuid()), "w").close()
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"forged"]
"#;

#[test]
fn an_application_cannot_send_requests_to_another_group() {
    // Each group has its own secret, derived from one that its processes never hold: what an
    // application finds in its own memory lets it reach its own group only (which runs its
    // code already), not another group, which may run as another user.
    let other_user = if common::is_root() {
        " user=nobody group=nogroup"
    } else {
        ""
    };
    let apache = Apache::start(
        "daemon_forged_requests",
        &[("forger.wsgi", FORGER), ("forged.wsgi", FORGED)],
        &format!(
            "WSGISocketPrefix {{dir}}/wsgi\n\
             WSGIDaemonProcess a threads=2\n\
             WSGIDaemonProcess b threads=2{other_user}\n\
             WSGIScriptAlias /forger {{dir}}/forger.wsgi process-group=a\n\
             WSGIScriptAlias /forged {{dir}}/forged.wsgi process-group=b"
        ),
    );
    // Group b is up (and has imported nothing yet).
    assert_eq!(apache.get("/forged").text(), "forged");
    let b_uid = std::fs::read_dir(&apache.dir)
        .unwrap()
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("forged.")
                .filter(|rest| *rest != "wsgi")
                .map(str::to_string)
        })
        .expect("group b ran forged.wsgi");
    std::fs::remove_file(apache.path(&format!("forged.{b_uid}"))).unwrap();
    let r = apache.get("/forger");
    assert_eq!(r.status, 200, "{}", apache.error_log());
    assert_ne!(
        r.text(),
        "0",
        "the forger found no secret: the test proves nothing"
    );
    let log = apache.wait_for_log("Request origin could not be validated");
    assert!(
        log.contains("a request to daemon process group 'b' carried the wrong secret"),
        "{log}"
    );
    assert!(
        !apache.path(&format!("forged.{b_uid}")).exists(),
        "group b ran a forged request\n{log}"
    );
}

#[test]
fn connections_refused_by_a_group_do_not_count_towards_maximum_requests() {
    // Otherwise anyone allowed to connect could make the group recycle its processes.
    let apache = Apache::start(
        "daemon_refused_not_counted",
        &[("pid.wsgi", PID_APP)],
        "WSGISocketPrefix {dir}/wsgi\n\
         WSGIDaemonProcess site processes=1 threads=1 maximum-requests=3\n\
         WSGIScriptAlias /pid {dir}/pid.wsgi process-group=site",
    );
    let first = apache.get("/pid").text();
    let socket = sockets_in(&apache.dir).pop().expect("the group's socket");
    for _ in 0..20 {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        use std::io::Write;
        let _ = s.write_all(b"H\x05\x00\x00\x00junk!");
    }
    apache.wait_for_log("unreadable request");
    assert_eq!(apache.get("/pid").text(), first, "{}", apache.error_log());
    // Nor can they flood the log: at most a line a second.
    let log = apache.error_log();
    let lines = log.matches("unreadable request").count();
    assert!((1..=3).contains(&lines), "{lines} lines:\n{log}");
}
