//! The global Python directives as `PyConfig` fields, set before `Py_InitializeFromConfig`. Each
//! is set only when its directive is present, so what the environment says (for example
//! `PYTHONDONTWRITEBYTECODE`) still applies otherwise, as it does with C mod_wsgi.

use super::runtime::{status_error, PythonSettings};
use crate::config::HashSeed;
use pyo3::ffi;

/// Copies `settings` into `config`.
///
/// # Safety
/// `config` must have been initialised by `PyConfig_InitPythonConfig` and not yet cleared.
pub(super) unsafe fn apply(
    config: &mut ffi::PyConfig,
    settings: &PythonSettings,
) -> Result<(), String> {
    if let Some(level) = settings.optimize {
        config.optimization_level = i32::try_from(level).map_err(|_| "optimize level too large")?;
    }
    if settings.dont_write_bytecode {
        config.write_bytecode = 0;
    }
    // Setting use_hash_seed (0 or 1) also makes CPython ignore PYTHONHASHSEED, so the directive
    // wins over the environment, as C mod_wsgi's own PYTHONHASHSEED did.
    match settings.hash_seed {
        Some(HashSeed::Random) => {
            config.use_hash_seed = 0;
            config.hash_seed = 0;
        }
        Some(HashSeed::Fixed(seed)) => {
            config.use_hash_seed = 1;
            config.hash_seed = seed.into();
        }
        None => {}
    }
    for option in &settings.warnings {
        let wide = wide_string(option);
        // SAFETY: config is initialised (the caller's contract); the list copies the
        // NUL-terminated wide string, which lives until the call returns.
        let failed = unsafe {
            let status = ffi::PyWideStringList_Append(&mut config.warnoptions, wide.as_ptr());
            (ffi::PyStatus_Exception(status) != 0).then_some(status)
        };
        if let Some(status) = failed {
            return Err(status_error("cannot add a warnings option", &status));
        }
    }
    Ok(())
}

/// `text` as a NUL-terminated `wchar_t` string (UTF-32 on the platforms Apache runs on), decoded
/// from the config file's UTF-8 without depending on the process locale.
fn wide_string(text: &str) -> Vec<libc::wchar_t> {
    text.chars()
        .map(|c| c as libc::wchar_t)
        .chain(std::iter::once(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_strings_are_nul_terminated_code_points() {
        let w = wide_string("ignore:é");
        assert_eq!(w.len(), 9);
        assert_eq!(w[7], 'é' as libc::wchar_t);
        assert_eq!(w[8], 0);
    }
}
