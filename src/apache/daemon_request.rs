//! The handler's daemon-mode path: the request goes to its process group over the group's
//! socket, and the response comes back through Apache as the embedded path's would.

use super::bindings as ap;
use super::daemons;
use super::hooks::{log_script_error, prepare_request};
use crate::config::RequestSettings;
use crate::daemon::client::{self, Exchange, Target};
use crate::daemon::wire::RequestHead;
use std::os::raw::c_int;

const SERVER_ERROR: c_int = ap::HTTP_INTERNAL_SERVER_ERROR as c_int;

/// Runs request `r` in daemon process group `settings.process_group`.
///
/// # Safety
/// `r` must be the live request of the handler call.
pub(super) unsafe fn handle(
    r: *mut ap::request_rec,
    mut settings: RequestSettings,
    filename: &[u8],
) -> c_int {
    let name = settings.process_group.clone();
    let Some(route) = daemons::route(&name) else {
        log_script_error(
            r,
            &format!("No WSGI daemon process called '{name}' has been configured"),
            filename,
        );
        return SERVER_ERROR;
    };
    // SAFETY: r is live (caller's contract).
    if !unsafe { daemons::may_use(&route, (*r).server) } {
        log_script_error(
            r,
            &format!("Daemon process called '{name}' cannot be accessed by this WSGI application"),
            filename,
        );
        return SERVER_ERROR;
    }
    // SAFETY: r is live (caller's contract) for everything below; Request does not outlive it.
    unsafe {
        let (mut request, vars) = match prepare_request(r, &mut settings, filename) {
            Ok(prepared) => prepared,
            Err(status) => return status,
        };
        let mut head = RequestHead {
            token: daemons::token(),
            script: filename.to_vec(),
            application_group: settings.application_group.clone(),
            callable_object: settings.callable_object.clone(),
            script_reloading: settings.script_reloading,
            vars,
        };
        let target = Target {
            group: &route.name,
            socket: &route.socket,
            processes: route.processes,
            connect_timeout: route.connect_timeout,
            io_timeout: route.io_timeout,
            header_buffer_size: route.header_buffer_size,
            response_buffer_size: route.response_buffer_size,
            response_timeout: route.response_timeout,
        };
        match client::forward(&target, &mut head, &mut request) {
            Exchange::Done => ap::OK as c_int,
            Exchange::Status(status) => c_int::from(status),
        }
    }
}
