//! Starting and stopping the embedded CPython of one Apache child process (DESIGN.md rule 3:
//! Python starts in child_init, never in the root parent).

use super::attach::{self, attached};
use crate::config::HashSeed;
use pyo3::ffi;
use pyo3::Python;
use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::raw::c_char;
use std::path::Path;

/// What the global `WSGIPython*` directives configure.
#[derive(Debug, Clone, Default)]
pub struct PythonSettings {
    /// `WSGIPythonHome`: a prefix (like `/usr`) or a virtual environment.
    pub home: Option<String>,
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
    /// Writes one warning line to the server's error log (for the signal interceptor). Called
    /// with the GIL released.
    pub log_warning: Option<fn(&str)>,
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
/// thread state is cached and detached, and `attached` works from any thread.
/// `prepare` runs once, attached to the new main interpreter, before any request.
pub fn initialize(
    settings: &PythonSettings,
    prepare: impl FnOnce(Python<'_>) -> pyo3::PyResult<()>,
) -> Result<(), String> {
    if attach::is_running() {
        return Ok(());
    }
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
            if let Some(home) = &settings.home {
                let (field, value) = match home_setting(home) {
                    HomeSetting::Executable(exe) => (&mut config.executable as *mut _, exe),
                    HomeSetting::Home(prefix) => (&mut config.home as *mut _, prefix),
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
                if let Some(home) = &settings.home {
                    msg.push_str(&format!(" (WSGIPythonHome is '{home}': is it a Python {} prefix or virtual environment readable by this user?)", crate::PYTHON_VERSION));
                }
                return Err(msg);
            }
            Ok(())
        })();
        ffi::PyConfig_Clear(&mut config);
        result?;
        attach::remember_main_thread_state(ffi::PyEval_SaveThread());
    }
    attach::set_running(true);
    attached(|py| super::setup::prepare_main_interpreter(py, settings, prepare))
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

/// Finalises Python (at child exit), first running `release` attached (to let go of references
/// kept outside Python). Must run on a thread that is not attached.
pub fn finalize(release: impl FnOnce(Python<'_>)) {
    if !attach::is_running() {
        return;
    }
    let _ = attached(|py| {
        super::setup::before_finalize(py);
        release(py)
    });
    attach::set_running(false);
    // SAFETY: Python is initialised; this thread takes the GIL with its cached main-interpreter
    // state and finalises; nothing uses Python afterwards (RUNNING is false).
    unsafe {
        ffi::PyEval_RestoreThread(attach::cached_main_thread_state());
        ffi::Py_FinalizeEx();
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
    fn plain_prefix_is_a_home() {
        assert_eq!(
            home_setting("/nonexistent/prefix"),
            HomeSetting::Home("/nonexistent/prefix".into())
        );
    }
}
