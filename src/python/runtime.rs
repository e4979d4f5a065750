//! Starting and stopping the embedded CPython of one Apache child process (DESIGN.md rule 3:
//! Python starts in child_init, never in the root parent).

use super::attach::{self, attached};
use super::interpreters::Left;
use crate::config::HashSeed;
use pyo3::ffi;
use pyo3::{PyTypeInfo, Python};
use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::raw::c_char;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a child process waits at exit for the non-daemon threads applications started
/// (Python itself would wait for ever). Apache starts signalling a child that has not exited
/// after 3 seconds, and kills it after about 10.
pub const THREAD_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The settings Python started with, for the application groups' interpreters and for logging.
static SETTINGS: OnceLock<PythonSettings> = OnceLock::new();

/// Lets go of the references kept outside Python to objects of the attached interpreter, just
/// before it is destroyed.
static RELEASE: OnceLock<fn(Python<'_>)> = OnceLock::new();

/// Called attached to each interpreter as the process stops, before its threads are waited for
/// (`mod_wsgi`'s `process_stopping` event).
static STOPPING: OnceLock<fn(Python<'_>)> = OnceLock::new();

/// Installs the function [`stopping`] runs.
pub fn set_stopping_hook(f: fn(Python<'_>)) {
    let _ = STOPPING.set(f);
}

/// Runs the stopping hook attached to an interpreter about to go (a panic in it is contained).
pub(super) fn stopping(py: Python<'_>) {
    if let Some(f) = STOPPING.get() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(py)));
    }
}

/// Runs the release function given to [`initialize`] attached to an interpreter about to go.
pub(super) fn release(py: Python<'_>) {
    if let Some(release) = RELEASE.get() {
        release(py);
    }
}

/// Whether application groups' sub-interpreters get a GIL of their own.
pub(super) fn per_interpreter_gil() -> bool {
    SETTINGS.get().is_some_and(|s| s.per_interpreter_gil)
}

/// Logs an informational line to the server's error log (with the GIL released).
pub(super) fn log_info(msg: &str) {
    if let Some(log) = SETTINGS.get().and_then(|s| s.log_info) {
        log(msg);
    }
}

/// Logs a warning to the server's error log (with the GIL released).
pub(super) fn log_warning(msg: &str) {
    match SETTINGS.get().and_then(|s| s.log_warning) {
        Some(log) => log(msg),
        None => eprintln!("{msg}"),
    }
}

/// What the global `WSGIPython*` directives configure.
#[derive(Debug, Clone, Default)]
pub struct PythonSettings {
    /// `WSGIPythonHome`: a prefix (like `/usr`) or a virtual environment.
    pub home: Option<String>,
    /// Where `home` was set, for messages: a daemon group's `python-home=` option; None for
    /// `WSGIPythonHome`.
    pub home_option: Option<&'static str>,
    /// `WSGIPythonPath`: site directories put at the front of `sys.path`.
    pub path: Vec<String>,
    /// `WSGIPythonOptimize`: `PyConfig.optimization_level` when set.
    pub optimize: Option<u32>,
    /// `WSGIDontWriteBytecode On`: `PyConfig.write_bytecode = 0`.
    pub dont_write_bytecode: bool,
    /// `WSGIPythonWarnings`: appended to `PyConfig.warnoptions`.
    pub warnings: Vec<String>,
    /// `WSGIPythonHashSeed`: `PyConfig.use_hash_seed`/`hash_seed` when set.
    pub hash_seed: Option<HashSeed>,
    /// `WSGIPythonEggs`: `PYTHON_EGG_CACHE` in the environment Python starts with.
    pub eggs: Option<String>,
    /// `WSGIRestrictStdin`, `WSGIRestrictStdout`, `WSGIRestrictSignal`.
    pub restrict_stdin: bool,
    pub restrict_stdout: bool,
    pub restrict_signal: bool,
    /// `WSGIPerInterpreterGIL On` (Python 3.12+): each application group's sub-interpreter gets a
    /// GIL of its own instead of sharing the main interpreter's.
    pub per_interpreter_gil: bool,
    /// `WSGICaseSensitivity` (default On): Off names script modules after lower-cased paths.
    pub case_sensitive: bool,
    /// Writes one warning line to the server's error log (for the signal interceptor). Called
    /// with the GIL released.
    pub log_warning: Option<fn(&str)>,
    /// Writes one informational line to the server's error log (interpreters created and
    /// destroyed). Called with the GIL released.
    pub log_info: Option<fn(&str)>,
}

/// Whether script paths are taken as written (`WSGICaseSensitivity On`, the default) when a
/// script's module is named.
pub fn case_sensitive_paths() -> bool {
    SETTINGS.get().is_none_or(|s| s.case_sensitive)
}

/// Why a PyStatus failed, as text.
pub(super) fn status_error(what: &str, status: &ffi::PyStatus) -> String {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: PyStatus strings are static C strings from CPython.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    format!("{what}: {} {}", text(status.func), text(status.err_msg))
        .trim_end()
        .to_string()
}

/// Which PyConfig field a Python home sets: a virtual environment is found through its
/// interpreter (CPython reads `pyvenv.cfg` next to it), a plain prefix through `home`.
#[derive(Debug, PartialEq, Eq)]
pub enum HomeSetting {
    Executable(String),
    Home(String),
}

pub fn home_setting(home: &str) -> HomeSetting {
    let root = Path::new(home);
    if root.join("pyvenv.cfg").is_file() {
        HomeSetting::Executable(
            root.join("bin")
                .join("python")
                .to_string_lossy()
                .into_owned(),
        )
    } else {
        HomeSetting::Home(home.to_string())
    }
}

/// Initialises Python in this (child) process. On success the calling thread's main-interpreter
/// thread state is cached and detached, and `attached`/`attached_to` work from any thread.
/// `prepare` runs attached to each new interpreter before it serves a request, with the name of
/// its application group: once here for the main interpreter (''), then for each application
/// group's interpreter as it is created. `release` runs attached to each interpreter just before
/// it is destroyed (or Python finalised), to let go of references kept outside Python.
pub fn initialize(
    settings: &PythonSettings,
    prepare: impl Fn(Python<'_>, &str) -> pyo3::PyResult<()> + Send + Sync + 'static,
    release: fn(Python<'_>),
) -> Result<(), String> {
    if attach::is_running() {
        return Ok(());
    }
    let _ = SETTINGS.set(settings.clone());
    let _ = RELEASE.set(release);
    let prepare = std::sync::Arc::new(prepare);
    let for_groups = prepare.clone();
    super::interpreters::set_prepare(Box::new(move |py, group| {
        let settings = SETTINGS.get().expect("set before Python starts");
        super::setup::prepare_interpreter(py, settings, |py| for_groups(py, group))
    }));
    set_environment(settings);
    // SAFETY: PyConfig is initialised by PyConfig_InitPythonConfig before use and cleared after;
    // every string passed is a NUL-terminated CString that outlives the call.
    unsafe {
        let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let result = (|| {
            let mut argv = [c"mod_wsgi".as_ptr()];
            let status = ffi::PyConfig_SetBytesArgv(&mut config, 1, argv.as_mut_ptr());
            if ffi::PyStatus_Exception(status) != 0 {
                return Err(status_error("cannot set sys.argv", &status));
            }
            {
                let (field, value) = match settings.home.as_deref().map(home_setting) {
                    Some(HomeSetting::Executable(exe)) => (&mut config.executable as *mut _, exe),
                    Some(HomeSetting::Home(prefix)) => (&mut config.home as *mut _, prefix),
                    // Python would otherwise search for its prefix from Apache's own path
                    // (/usr/sbin/apache2) and end up with '/': start from the interpreter the
                    // module was built against, as if it were running.
                    None => (
                        &mut config.program_name as *mut _,
                        crate::PYTHON_EXECUTABLE.to_string(),
                    ),
                };
                let value = CString::new(value).map_err(|_| "WSGIPythonHome contains NUL")?;
                let status = ffi::PyConfig_SetBytesString(&mut config, field, value.as_ptr());
                if ffi::PyStatus_Exception(status) != 0 {
                    return Err(status_error("cannot set the Python home", &status));
                }
            }
            super::pyconfig::apply(&mut config, settings)?;
            let status = ffi::Py_InitializeFromConfig(&config);
            if ffi::PyStatus_Exception(status) != 0 {
                let mut msg = status_error("Python failed to start", &status);
                match &settings.home {
                    Some(home) => msg.push_str(&format!(" ({} is '{home}': is it a Python {} prefix or virtual environment readable by this user?)", settings.home_option.unwrap_or("WSGIPythonHome"), crate::PYTHON_VERSION)),
                    // A Python under a home directory (pyenv's) is often not readable by
                    // Apache's User.
                    None => msg.push_str(&format!(" (WSGIPythonHome is not set, so Python looks for its library from '{}', the Python {} the module was built for: can this user read it? WSGIPythonHome names another prefix)", crate::PYTHON_EXECUTABLE, crate::PYTHON_VERSION)),
                }
                return Err(msg);
            }
            Ok(())
        })();
        ffi::PyConfig_Clear(&mut config);
        result?;
        attach::remember_thread_state(ffi::PyEval_SaveThread());
    }
    attach::set_running(true);
    attached(|py| {
        // pyo3 creates its PanicException type in whichever interpreter first fetches an
        // error, and keeps it for the process: let that be the main interpreter.
        let _ = pyo3::panic::PanicException::type_object(py);
        super::setup::prepare_interpreter(py, settings, |py| prepare(py, ""))
    })
    .map_err(|_| "Python stopped during start-up".to_string())?
}

/// Sets the process environment that Python reads as it starts (and that `os.environ` copies).
/// Called from child_init, before the MPM starts this process's worker threads, so no other
/// thread reads the environment while it changes.
fn set_environment(settings: &PythonSettings) {
    if let Some(eggs) = &settings.eggs {
        // As C mod_wsgi's WSGIPythonEggs: for pkg_resources, which reads it when it extracts
        // an egg; set before start-up so .pth files run by `site` see it too.
        std::env::set_var("PYTHON_EGG_CACHE", eggs);
    }
}

/// Stops Python at child exit: destroys the application groups' interpreters, then finalises
/// Python, running the release function given to [`initialize`] attached to each interpreter
/// just before it goes. Non-daemon threads started by applications get
/// [`THREAD_SHUTDOWN_GRACE`] in all to end; an interpreter whose threads still run is not
/// destroyed, and then Python is not finalised (see `interpreters`), but every interpreter's
/// `atexit` callbacks run. Must run on the thread that initialised Python, not attached.
pub fn finalize() {
    if !attach::is_running() {
        return;
    }
    // No request can attach from here on.
    attach::set_running(false);
    let deadline = Instant::now() + THREAD_SHUTDOWN_GRACE;
    let mut left = match super::interpreters::destroy_all(deadline) {
        Ok(left) => left,
        Err(e) => vec![Left {
            description: format!("the application groups ({e})"),
            stuck: true,
        }],
    };
    let main = attach::main_thread_state();
    let finalise = attach::run_on(main, |py| {
        stopping(py);
        let running = super::setup::join_threads(py, deadline);
        super::setup::before_finalize(py);
        // Py_FinalizeEx stops daemon threads of the main interpreter itself.
        if !running.non_daemon.is_empty() {
            left.push(Left {
                description: format!("the main interpreter ({})", running.all().join(", ")),
                stuck: true,
            });
        }
        if left.is_empty() {
            release(py);
            true
        } else {
            super::setup::run_exit_callbacks(py);
            false
        }
    });
    if finalise {
        // SAFETY: Python is initialised; this thread takes the GIL with its cached
        // main-interpreter state and finalises; nothing uses Python afterwards (RUNNING is
        // false, and no sub-interpreter is left).
        unsafe {
            ffi::PyEval_RestoreThread(main);
            ffi::Py_FinalizeEx();
        }
    } else {
        let (warn, msg) = not_finalised_message(std::process::id(), &left);
        if warn {
            log_warning(&msg);
        } else {
            log_info(&msg);
        }
    }
}

/// What is logged when interpreters had to be left running at exit; true for a warning (a
/// thread that is not a daemon thread did not end in time).
fn not_finalised_message(pid: u32, left: &[Left]) -> (bool, String) {
    let list = left
        .iter()
        .map(|l| l.description.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if left.iter().any(|l| l.stuck) {
        (
            true,
            format!(
                "mod_wsgi (pid={pid}): Threads still running at exit in {list} (threads that are \
                 not daemon threads were given {} s to end): those interpreters were left as \
                 they are, so Python was not finalised in this process; atexit callbacks were \
                 run.",
                THREAD_SHUTDOWN_GRACE.as_secs()
            ),
        )
    } else {
        (
            false,
            format!(
                "mod_wsgi (pid={pid}): Daemon threads still running at exit in {list}: an \
                 interpreter cannot be destroyed under running threads, so those were left as \
                 they are and Python was not finalised in this process; atexit callbacks were \
                 run."
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venv_home_is_found_through_its_interpreter() {
        let dir = std::env::temp_dir().join(format!("mwrs-venv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        let got = home_setting(dir.to_str().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            got,
            HomeSetting::Executable(format!("{}/bin/python", dir.display()))
        );
    }

    #[test]
    fn threads_left_at_exit_are_a_warning_unless_all_are_daemon_threads() {
        let daemon = Left {
            description: "'a' ('poller' (daemon))".into(),
            stuck: false,
        };
        let stuck = Left {
            description: "'b' ('worker')".into(),
            stuck: true,
        };
        let (warn, msg) = not_finalised_message(7, std::slice::from_ref(&daemon));
        assert!(!warn);
        assert!(
            msg.starts_with("mod_wsgi (pid=7): Daemon threads still running at exit in 'a' ('poller' (daemon)):"),
            "{msg}"
        );
        let (warn, msg) = not_finalised_message(7, &[daemon, stuck]);
        assert!(warn);
        assert!(
            msg.contains(
                "Threads still running at exit in 'a' ('poller' (daemon)), 'b' ('worker')"
            ),
            "{msg}"
        );
        assert!(msg.contains("given 2 s to end"), "{msg}");
    }

    #[test]
    fn plain_prefix_is_a_home() {
        assert_eq!(
            home_setting("/nonexistent/prefix"),
            HomeSetting::Home("/nonexistent/prefix".into())
        );
    }
}
