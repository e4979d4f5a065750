//! The integration-test harness: a real Apache httpd with our module, on 127.0.0.1 and a free
//! port, configured from a generated file in a fresh directory, and stopped by the pid in its
//! PidFile. Plus a small HTTP/1.1 client that reports exactly what came over the wire.

#![allow(dead_code)]

pub mod apps;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const APACHE: &str = "/usr/sbin/apache2";
pub const MODULES: &str = "/usr/lib/apache2/modules";

/// The module under test: `$MOD_WSGI_SO`, else this checkout's release build.
pub fn module_path() -> PathBuf {
    let path = match std::env::var_os("MOD_WSGI_SO") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/libmod_wsgi.so"),
    };
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --release` first (the test script does)",
        path.display()
    );
    // `cargo test` builds the library for the tests but does not refresh the .so that Apache
    // loads: an edit followed by `cargo test` alone would test the previous build.
    if std::env::var_os("MOD_WSGI_SO").is_none() {
        let built = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        if let Some(newer) = newest_file(&src).filter(|(t, _)| *t > built) {
            panic!(
                "{} is older than {}: run `cargo build --release` first (the test script does)",
                path.display(),
                newer.1.display()
            );
        }
    }
    path.canonicalize().unwrap()
}

/// The most recently modified file under `dir`, with its modification time.
fn newest_file(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                newest_file(&path)
            } else {
                Some((entry.metadata().ok()?.modified().ok()?, path))
            }
        })
        .max_by_key(|(t, _)| *t)
}

/// The Python the module under test was built for: `$MOD_WSGI_PYTHON`, else Debian's.
pub fn python() -> PathBuf {
    std::env::var_os("MOD_WSGI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/python3".into())
}

/// "major.minor" of [`python`].
pub fn python_version() -> String {
    let out = Command::new(python())
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("run the test Python");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A fresh directory readable by Apache's children (which run as www-data when we are root).
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let base = std::env::temp_dir().join("mod_wsgi_rs_tests");
    let dir = base.join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for d in [&base, &dir] {
        set_mode(d, 0o777);
    }
    dir
}

/// mod_ssl directives serving the main server over TLS with a fresh self-signed certificate for
/// 127.0.0.1 (made with `openssl` in a directory named after `name`).
pub fn tls_config(name: &str) -> String {
    let keys = temp_dir(&format!("{name}_keys"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(keys.join("key.pem"))
        .arg("-out")
        .arg(keys.join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    format!(
        "LoadModule ssl_module {MODULES}/mod_ssl.so\n\
         SSLEngine on\n\
         SSLCertificateFile {keys}/cert.pem\n\
         SSLCertificateKeyFile {keys}/key.pem\n",
        keys = keys.display()
    )
}

/// POSTs to `path` a body announced as `declared` bytes of which only `sent` come, then waits
/// (without closing) for whatever the server answers; returns that answer as text.
pub fn stalled_upload(port: u16, path: &str, declared: usize, sent: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    s.write_all(sent).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Options of a test server.
pub struct Options {
    /// Threads per child (event MPM); two children are started.
    pub threads: u32,
    pub processes: u32,
    /// Replaces the `LoadModule wsgi_module …` line when set.
    pub load_module: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: 8,
            processes: 1,
            load_module: None,
        }
    }
}

pub struct Apache {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

/// The config every test server shares; `extra` is the test's own part.
pub fn config_text(dir: &Path, port: u16, opts: &Options, extra: &str) -> String {
    let user = if is_root() {
        "User www-data\nGroup www-data\n"
    } else {
        ""
    };
    let load = opts
        .load_module
        .clone()
        .unwrap_or_else(|| format!("LoadModule wsgi_module \"{}\"", module_path().display()));
    // A Python whose own prefix Apache's User cannot read (a pyenv under /root) is tested with
    // a readable copy of its prefix as the default Python home.
    let home = match std::env::var("MOD_WSGI_PYTHON_HOME") {
        Ok(h) if !extra.contains("WSGIPythonHome") => format!("WSGIPythonHome \"{h}\"\n"),
        _ => String::new(),
    };
    let load = format!("{load}\n{home}");
    let (threads, processes) = (opts.threads, opts.processes);
    let workers = threads * processes;
    format!(
        r#"ServerRoot "{dir}"
DefaultRuntimeDir "{dir}"
PidFile "{dir}/httpd.pid"
ScoreBoardFile "{dir}/scoreboard"
ErrorLog "{dir}/error.log"
LogLevel info
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
{user}LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule mime_module {MODULES}/mod_mime.so
LoadModule alias_module {MODULES}/mod_alias.so
{load}
StartServers {processes}
ServerLimit {processes}
ThreadLimit {threads}
ThreadsPerChild {threads}
MaxRequestWorkers {workers}
MinSpareThreads 1
MaxSpareThreads {workers}
TypesConfig /etc/mime.types
KeepAlive On
Timeout 20
<Directory />
    Require all denied
</Directory>
<Directory "{dir}">
    Require all granted
</Directory>
{extra}
"#,
        dir = dir.display()
    )
}

/// Runs `apache2 -t` on a config; returns (passed, output).
pub fn config_test(name: &str, extra: &str) -> (bool, String) {
    apache_command(name, extra, "-t")
}

/// Runs `apache2 <flag>` (`-t`, `-M`, …) on the base config plus `extra`; returns (succeeded,
/// output).
pub fn apache_command(name: &str, extra: &str, flag: &str) -> (bool, String) {
    let dir = temp_dir(name);
    let conf = dir.join("httpd.conf");
    std::fs::write(
        &conf,
        config_text(&dir, free_port(), &Options::default(), extra),
    )
    .unwrap();
    run_apache(&dir, &conf, flag)
}

/// Runs `apache2 -t` on the config in `dir`; returns (passed, output).
fn check_config(dir: &Path, conf: &Path) -> (bool, String) {
    run_apache(dir, conf, "-t")
}

/// Python variables a developer's shell may export (`PYTHONDONTWRITEBYTECODE`, …) that would
/// change what the embedded Python does; Apache started as a service does not see them.
const PYTHON_ENV: &[&str] = &[
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONOPTIMIZE",
    "PYTHONWARNINGS",
    "PYTHONHASHSEED",
    "PYTHON_EGG_CACHE",
    "PYTHONUNBUFFERED",
];

/// `apache2` with the environment of a service.
fn apache_command_line() -> Command {
    let mut cmd = Command::new(APACHE);
    for var in PYTHON_ENV {
        cmd.env_remove(var);
    }
    cmd
}

fn run_apache(dir: &Path, conf: &Path, flag: &str) -> (bool, String) {
    let out = apache_command_line()
        .arg("-d")
        .arg(dir)
        .arg("-f")
        .arg(conf)
        .arg(flag)
        .output()
        .expect("run apache2 -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Apache {
    /// Writes `files` (name, content) into a fresh directory, then starts Apache with `extra`
    /// appended to the base config. `{dir}` in `extra` and in files is that directory.
    pub fn start(name: &str, files: &[(&str, &str)], extra: &str) -> Apache {
        Self::start_with(name, files, extra, Options::default())
    }

    pub fn start_with(name: &str, files: &[(&str, &str)], extra: &str, opts: Options) -> Apache {
        let dir = temp_dir(name);
        let d = dir.display().to_string();
        for (file, content) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content.replace("{dir}", &d)).unwrap();
            set_mode(path.parent().unwrap(), 0o777);
        }
        let conf = dir.join("httpd.conf");
        // The free port can be taken (by a client connection's local port) between the probe
        // and Apache's bind: then Apache exits at once saying so, and another port is tried.
        for attempt in 1.. {
            let port = free_port();
            std::fs::write(
                &conf,
                config_text(&dir, port, &opts, &extra.replace("{dir}", &d)),
            )
            .unwrap();
            let (ok, text) = check_config(&dir, &conf);
            assert!(ok, "apache2 -t failed for {name}:\n{text}");
            let child = apache_command_line()
                .arg("-d")
                .arg(&dir)
                .arg("-f")
                .arg(&conf)
                .arg("-DFOREGROUND")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.join("console.log")).unwrap(),
                ))
                .spawn()
                .expect("start apache2");
            let mut apache = Apache {
                dir: dir.clone(),
                port,
                child: Some(child),
            };
            if attempt < 4 && apache.exited_on_port_in_use() {
                continue;
            }
            apache.wait_ready();
            return apache;
        }
        unreachable!()
    }

    /// Whether Apache ended straight away because its port was in use (it is then reaped).
    fn exited_on_port_in_use(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        let child = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                let console =
                    std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
                if console.contains("Address already in use") {
                    self.child = None;
                    return true;
                }
                return false;
            }
            if self.dir.join("httpd.pid").exists()
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.dir.join("httpd.pid").exists()
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("apache did not start; error log:\n{}", self.error_log());
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the error log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.error_log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http_request(self.port, method, path, headers, body)
    }

    /// Stops Apache (SIGTERM to the pid in its PidFile), waits for it, and returns the log.
    pub fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let pid = std::fs::read_to_string(self.dir.join("httpd.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .unwrap_or(child.id() as i32);
            // httpd's event MPM can crash (in close_worker_sockets) when an ungraceful stop
            // races a worker still closing the connection of the last request: give the workers
            // a moment to finish first, so a crash in a test is ours, not that one.
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: signalling the httpd parent this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("apache did not stop within 20 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            stop_daemon_processes(&self.error_log());
            // Every test checks this: Apache's parent must never crash, stopping included.
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = status.signal() {
                panic!(
                    "Apache's parent died of signal {signal} while stopping\n{}",
                    self.error_log()
                );
            }
        }
        self.error_log()
    }
}

/// The pids of the daemon-mode processes (supervisors and their processes) an error log names.
pub fn daemon_pids(log: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for line in log.lines() {
        let pid = if let Some(rest) = line.split("(supervisor pid ").nth(1) {
            rest.split(',').next()
        } else if line.contains("): Starting process '") {
            line.split("mod_wsgi (pid=")
                .nth(1)
                .and_then(|r| r.split(')').next())
        } else {
            None
        };
        if let Some(pid) = pid.and_then(|p| p.trim().parse().ok()) {
            pids.push(pid);
        }
    }
    pids
}

/// Starts gdb in batch mode on process `pid` with the `-ex` commands `commands`, its standard
/// output piped, and returns once gdb has stopped every thread of the process (so whatever the
/// process does from then on is seen). scripts/test.sh installs gdb.
pub fn gdb_attached(pid: i32, commands: &[&str]) -> Child {
    let mut gdb = Command::new("gdb");
    gdb.args(["-batch", "-nx", "-p", &pid.to_string()]);
    for command in commands {
        gdb.args(["-ex", command]);
    }
    let gdb = gdb
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gdb runs (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !every_thread_traced(pid) {
        assert!(Instant::now() < deadline, "gdb did not attach to {pid}");
        std::thread::sleep(Duration::from_millis(50));
    }
    gdb
}

fn every_thread_traced(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        std::fs::read_to_string(task.path().join("status")).is_ok_and(|status| {
            status
                .lines()
                .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        })
    })
}

/// Whether process `pid` still runs (a zombie does not count).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// After Apache has stopped: waits (bounded) for the daemon processes it started to finish
/// their shutdown, and kills any that do not, by pid.
fn stop_daemon_processes(log: &str) {
    let pids = daemon_pids(log);
    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|&p| process_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only processes that are still Apache's program (a pid is not reused by anything else).
    let is_apache = |pid: i32| {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == Path::new(APACHE))
    };
    for &pid in pids.iter().filter(|&&p| process_alive(p) && is_apache(p)) {
        // SAFETY: signalling a daemon process this test's Apache started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if std::thread::panicking() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
        } else {
            // A crash of Apache's parent as it stops fails the test.
            self.stop();
        }
    }
}

/// What came back for one request.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when the connection ended before the response was complete (a truncated body or
    /// a chunked body without its last chunk).
    pub complete: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection (closed afterwards).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    let mut has_length = false;
    for (k, v) in headers {
        has_length |=
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length && (!body.is_empty() || method == "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_response(stream, method == "HEAD")
}

/// Reads one line of a response head into `line`, each byte a character (HTTP heads are
/// Latin-1, as WSGI's native strings are); 0 at the end of the stream.
fn read_head_line(reader: &mut impl BufRead, line: &mut String) -> usize {
    let mut bytes = Vec::new();
    let n = reader.read_until(b'\n', &mut bytes).unwrap_or(0);
    line.extend(bytes.iter().map(|&b| char::from(b)));
    n
}

pub fn read_response(stream: TcpStream, head_only: bool) -> Response {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    assert!(read_head_line(&mut reader, &mut line) > 0, "no status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        if read_head_line(&mut reader, &mut line) == 0 {
            break;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let mut complete = true;
    if head_only || status == 304 || status == 204 {
    } else if get("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        complete = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let Ok(size) = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            else {
                break;
            };
            if size == 0 {
                complete = true;
                break;
            }
            let mut chunk = vec![0; size + 2];
            if reader.read_exact(&mut chunk).is_err() {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = get("Content-Length").and_then(|v| v.parse::<usize>().ok()) {
        let _ = (&mut reader).take(len as u64).read_to_end(&mut body);
        complete = body.len() == len;
    } else {
        let _ = reader.read_to_end(&mut body);
    }
    let _ = reader.get_ref().shutdown(Shutdown::Both);
    Response {
        status,
        headers,
        body,
        complete,
    }
}
