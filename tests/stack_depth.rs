//! How much of a thread's stack the module uses on the way to the application. The application
//! runs below it on the same stack, and so does every C call it makes, so each byte used here
//! moves the application's deepest point down; a thread keeps every page of stack it has once
//! touched. With 4.8 KB of frames between Apache's handler and Python (C mod_wsgi: 0.4 KB), an
//! application twelve middleware layers deep touched one 4 KiB page more than in C in every
//! Apache thread that served it (25 threads: 100 KiB more per child); a daemon process's request
//! threads started 9.6 KB down, 4 KB of it a copy of the group's settings.
//!
//! Measured with gdb (scripts/test.sh installs it): a breakpoint on `getpgid`, which the
//! application calls and nothing else in the process does, and the stack pointers of the frames
//! from the thread's start (or Apache's `ap_run_handler`) to the first frame of libpython.

mod common;

use common::{Apache, Options};

const APP: &str = "import os\n\
def application(environ, start_response):\n\
\x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
\x20   if environ['PATH_INFO'] == '/probe':\n\
\x20       os.getpgid(0)\n\
\x20   return [str(os.getpid()).encode()]\n";

/// Walks the stack of the thread stopped at the breakpoint, oldest frame first, and prints the
/// bytes between the reference frame (`ap_run_handler` when there is one, else the thread's
/// first frame) and the first frame of libpython, where the application's call begins.
const MEASURE: &str = "python
frames = []
f = gdb.newest_frame()
while f is not None:
    frames.append((int(f.read_register('rsp')), gdb.solib_name(f.pc()) or '', f.name() or ''))
    f = f.older()
frames.reverse()
base = frames[0][0]
for sp, lib, name in frames:
    if name == 'ap_run_handler':
        base = sp
    if 'libpython' in lib:
        print('DEPTH %d' % (base - sp))
        break
end";

/// The bytes of stack between the reference frame and Python's, in the process that serves
/// `apache`'s `/app` (pid `pid`), for one request.
fn depth_to_python(apache: &Apache, pid: i32) -> usize {
    depth_to_python_at(apache, pid, "/app/probe")
}

fn depth_to_python_at(apache: &Apache, pid: i32, path: &str) -> usize {
    let gdb = common::gdb_attached(pid, &["break getpgid", "continue", MEASURE]);
    let answer = apache.get(path);
    assert_eq!(answer.status, 200);
    let out = gdb.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    said.lines()
        .find_map(|line| line.strip_prefix("DEPTH "))
        .and_then(|depth| depth.trim().parse().ok())
        .unwrap_or_else(|| panic!("gdb measured nothing:\n{said}"))
}

fn serving_pid(apache: &Apache) -> i32 {
    // Twice: the first request loads the script.
    apache.get("/app");
    apache.get("/app").text().parse().expect("the app's pid")
}

/// Embedded mode: from Apache's handler to the application's call, 4.8 KB before (of which the
/// handler's decisions about the request 1.5 KB, and the adapter's sending of the response
/// 1.3 KB); now under 3.5 KB.
#[test]
fn embedded_mode_leaves_the_application_most_of_the_stack() {
    let apache = Apache::start_with(
        "stack_depth_embedded",
        &[("app.wsgi", APP)],
        "WSGIScriptAlias /app {dir}/app.wsgi",
        Options {
            threads: 1,
            ..Options::default()
        },
    );
    let pid = serving_pid(&apache);
    let depth = depth_to_python(&apache, pid);
    eprintln!("embedded mode: {depth} bytes of stack before Python");
    assert!(
        depth <= 3584,
        "{depth} bytes of stack between ap_run_handler and Python"
    );
}

/// Daemon mode: from a request thread's start to the application's call, 9.6 KB before; now
/// under 6 KiB.
#[test]
fn daemon_mode_leaves_the_application_most_of_the_stack() {
    let apache = Apache::start(
        "stack_depth_daemon",
        &[("app.wsgi", APP)],
        "WSGISocketPrefix {dir}/wsgi\n\
         WSGIDaemonProcess depth processes=1 threads=1\n\
         WSGIScriptAlias /app {dir}/app.wsgi process-group=depth",
    );
    let pid = serving_pid(&apache);
    let depth = depth_to_python(&apache, pid);
    eprintln!("daemon mode: {depth} bytes of stack before Python");
    assert!(
        depth <= 6144,
        "{depth} bytes of stack between a request thread's start and Python"
    );
}

/// Embedded mode: from Apache's handler to the code of a script being loaded, which runs (with
/// all it imports) as deep as that on the thread that first serves it: 2.8 KB before (C's: 0.9
/// KB), of which the call through `exec()` 0.4 KB; now under 2.6 KB.
#[test]
fn a_script_loads_near_the_top_of_the_stack() {
    let probe_at_import = "import os\n\
        os.getpgid(0)\n\
        def application(environ, start_response):\n\
        \x20   start_response('200 OK', [])\n\
        \x20   return [b'loaded']\n";
    let apache = Apache::start_with(
        "stack_depth_load",
        &[("app.wsgi", probe_at_import), ("pid.wsgi", APP)],
        "WSGIScriptAlias /pid {dir}/pid.wsgi\nWSGIScriptAlias /app {dir}/app.wsgi",
        Options {
            threads: 1,
            ..Options::default()
        },
    );
    let pid: i32 = apache.get("/pid").text().parse().expect("the app's pid");
    let depth = depth_to_python_at(&apache, pid, "/app");
    eprintln!("embedded mode: {depth} bytes of stack before a script's code");
    assert!(
        depth <= 2600,
        "{depth} bytes of stack between ap_run_handler and a loading script"
    );
}
