//! Process start: importing the scripts of `WSGIImportScript` (and of `WSGIScriptAlias` lines
//! that name both groups) into their interpreters before the child serves a request. A script
//! that fails is logged with its traceback and left to be retried by its first request.

use super::bindings as ap;
use super::log::{server_log, APLOG_ERR, APLOG_INFO};
use crate::config::ImportScript;
use crate::python::{self, AttachError};
use crate::script::{preload, Preloaded};

/// The scripts every server (the main one, then each virtual host) imports, in order.
///
/// # Safety
/// `s` must be the main server of a configuration this module's config hooks built.
pub(super) unsafe fn import_scripts(s: *mut ap::server_rec) -> Vec<ImportScript> {
    // SAFETY: caller's contract.
    unsafe { super::config::servers_with_own_config(s) }
        .into_iter()
        .flat_map(|(_, conf)| conf.import_scripts.iter().cloned())
        .collect()
}

/// Imports each script into its interpreter of this (child) process, logging to server `s`.
pub(super) fn import_configured_scripts(s: *const ap::server_rec, imports: &[ImportScript]) {
    for import in imports {
        import_one(s, import);
    }
}

fn import_one(s: *const ap::server_rec, import: &ImportScript) {
    let pid = std::process::id();
    let script = &import.script;
    let group = &import.application_group;
    let ran = python::attached_to(group, |py| match preload(py, script) {
        Ok(Preloaded::Loaded) => server_log(
            s,
            APLOG_INFO,
            &format!(
                "mod_wsgi (pid={pid}): Imported WSGI script '{script}' into interpreter '{group}'."
            ),
        ),
        Ok(Preloaded::AlreadyCurrent | Preloaded::Directory) => {}
        Err(err) => {
            server_log(
                s,
                APLOG_ERR,
                &format!(
                    "mod_wsgi (pid={pid}): Failed to import WSGI script '{script}' into \
                     interpreter '{group}' at process start; its first request will try again."
                ),
            );
            for line in crate::wsgi::adapter::exception_report(py, &err) {
                server_log(s, APLOG_ERR, &line);
            }
        }
    });
    match ran {
        Ok(()) => {}
        Err(AttachError::NotRunning) => {}
        Err(AttachError::NoInterpreter(why)) => server_log(
            s,
            APLOG_ERR,
            &format!("mod_wsgi (pid={pid}): Cannot create interpreter '{group}' to import WSGI script '{script}': {why}"),
        ),
    }
}
