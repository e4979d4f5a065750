//! `WSGIDispatchScript` in the handler: before a request goes to its process group, the
//! script's functions may choose another process group, application group or callable. It runs
//! in Apache's child, in the main interpreter unless its `application-group=` names another.

use super::bindings as ap;
use super::config::dir_config;
use super::hooks::{application_group, callable_object, process_group, request_facts};
use super::request::Request;
use crate::config::{HookScript, RequestSettings};
use crate::wsgi::dispatch::{ask, Overrides};
use crate::wsgi::environ::complete_cgi_vars;
use std::os::raw::c_int;

/// Applies the dispatch script configured for `r`, if any, to `settings`: Err(500) when the
/// script failed (logged).
///
/// # Safety
/// `r` must be the live request of the handler call.
pub(super) unsafe fn apply(
    r: *mut ap::request_rec,
    settings: &mut RequestSettings,
) -> Result<(), c_int> {
    // SAFETY: live request (caller's contract).
    match unsafe { dir_config(r) }.dispatch_script.as_ref() {
        None => Ok(()),
        // SAFETY: as above.
        Some(script) => unsafe { dispatch(r, script, settings) },
    }
}

/// Asks `script` about `r` and applies its answer. Apart from [`apply`], which every request
/// calls: only a configuration with the script runs this, so its code stays out of the other
/// servers' pages.
///
/// # Safety
/// `r` must be the live request of the handler call.
#[inline(never)]
unsafe fn dispatch(
    r: *mut ap::request_rec,
    script: &HookScript,
    settings: &mut RequestSettings,
) -> Result<(), c_int> {
    // SAFETY: live request (caller's contract) for every call below.
    unsafe {
        // The environ the application would get (C builds it before dispatching).
        let mut seen = settings.clone();
        seen.application_group = application_group(r, seen.configured_application_group.as_deref());
        let mut vars = Request::new(r).cgi_vars();
        complete_cgi_vars(&mut vars, &seen, &request_facts(r));
        let asked = super::auth::with_hook_call_vars(
            r,
            script,
            "WSGIDispatchScript",
            vars,
            super::auth::Tls::NotOffered,
            ask,
        );
        let Some(Ok(overrides)) = asked else {
            return Err(ap::HTTP_INTERNAL_SERVER_ERROR as c_int);
        };
        let Overrides {
            process_group: group,
            application_group: interpreter,
            callable_object: callable,
        } = overrides;
        if let Some(group) = group {
            // Resolved as WSGIProcessGroup's value is (%{GLOBAL}, %{ENV:…}).
            settings.process_group = process_group(r, Some(&group));
        }
        if let Some(interpreter) = interpreter {
            settings.configured_application_group = Some(interpreter);
        }
        if let Some(callable) = callable {
            settings.callable_object = callable_object(r, &callable);
        }
        Ok(())
    }
}
