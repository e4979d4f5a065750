//! The handler's daemon-mode path: the request goes to its process group over the group's
//! socket, and the response comes back through Apache as the embedded path's would.

use super::bindings as ap;
use super::daemons;
use super::hooks::{log_script_error, prepare_request};
use super::pool::pstrdup;
use crate::config::RequestSettings;
use crate::daemon::client::{self, Exchange, Target};
use crate::daemon::error_override::ErrorOverride;
use crate::daemon::internal_redirect::InternalRedirect;
use crate::daemon::script_owner::{self, FileFacts, Names, Refusal, ScriptOwner};
use crate::daemon::wire::RequestHead;
use crate::wsgi::headers::latin1_bytes;
use std::os::raw::c_int;
use std::path::Path;

const SERVER_ERROR: c_int = ap::HTTP_INTERNAL_SERVER_ERROR as c_int;
const FORBIDDEN: c_int = ap::HTTP_FORBIDDEN as c_int;

/// Runs request `r` in daemon process group `settings.process_group`.
///
/// # Safety
/// `r` must be the live request of the handler call.
#[inline(never)]
pub(super) unsafe fn handle(
    r: *mut ap::request_rec,
    mut settings: Box<RequestSettings>,
    filename: &[u8],
) -> c_int {
    let name = settings.process_group.clone();
    let Some(route) = daemons::route(&name) else {
        if let Some(why) = daemons::why_not_started(&name) {
            log_script_error(
                r,
                &format!("Daemon process group '{name}' is not running: at start-up, {why}"),
                filename,
            );
            return ap::HTTP_SERVICE_UNAVAILABLE as c_int;
        }
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
    if let Some(owner) = &route.script_owner {
        if let Err(refusal) = check_script_owner(owner, filename) {
            let (msg, path) = match refusal {
                Refusal::Script(msg) => (msg, filename.to_vec()),
                Refusal::Parent(msg) => (msg, parent_dir(filename)),
            };
            log_script_error(r, &msg, &path);
            return FORBIDDEN;
        }
    }
    // SAFETY: r is live (caller's contract) for everything below; Request does not outlive it.
    unsafe {
        let (mut request, vars) = match prepare_request(r, &mut settings, filename) {
            Ok(prepared) => prepared,
            Err(status) => return status,
        };
        let mut head = RequestHead {
            token: daemons::token_for(&route),
            script: match &settings.handler_script {
                Some(script) => script.as_bytes().to_vec(),
                None => filename.to_vec(),
            },
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
        let mut redirect = InternalRedirect::new(&mut request);
        let mut io = ErrorOverride::new(&mut redirect, settings.error_override);
        let exchange = client::forward(&target, &mut head, &mut io);
        let overridden = io.overridden();
        let location = redirect.location().map(str::to_string);
        // What the exchange added, for the access log (`%{mod_wsgi.queue_start}e`), as C.
        request.export_named(&head.vars, client::EXCHANGE_VARS);
        drop(request);
        match (exchange, overridden, location) {
            (Exchange::Done, Some(status), _) => {
                // As C does: Apache's error response then uses its own status line.
                (*r).status = ap::HTTP_OK as c_int;
                (*r).status_line = std::ptr::null();
                c_int::from(status)
            }
            (Exchange::Done, None, Some(location)) => internal_redirect(r, &location),
            (Exchange::Done, None, None) => ap::OK as c_int,
            (Exchange::Status(500), ..) => super::hooks::failed_status(r),
            (Exchange::Status(status), ..) => c_int::from(status),
        }
    }
}

/// Serves the local URL `location` in place of a daemon response that asked for it (status
/// 200 with a local `Location`), as mod_cgi does: as a GET, without a request body.
///
/// # Safety
/// `r` must be the live request of the handler call, with no response sent yet.
unsafe fn internal_redirect(r: *mut ap::request_rec, location: &str) -> c_int {
    // SAFETY: r is live (caller's contract); strings are copied into its pool, which outlives
    // the redirected request.
    unsafe {
        // C has sent all of the body to the daemon before it reads the response; here the
        // application reads what it wants, so what is left is read and dropped now, or the
        // redirected request (sharing the connection's input) would get it as its own.
        ap::ap_discard_request_body(r);
        (*r).method = pstrdup((*r).pool, b"GET");
        (*r).method_number = ap::M_GET as c_int;
        ap::apr_table_unset((*r).headers_in, c"Content-Length".as_ptr());
        ap::ap_internal_redirect_handler(pstrdup((*r).pool, &latin1_bytes(location)), r);
    }
    ap::OK as c_int
}

/// Applies `script-user=`/`script-group=` to the script and its directory (stat'ed here, in the
/// Apache child, before anything is sent to the group).
fn check_script_owner(owner: &ScriptOwner, filename: &[u8]) -> Result<(), Refusal> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let facts = |path: &Path| {
        std::fs::metadata(path).ok().map(|m| FileFacts {
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
        })
    };
    let script = Path::new(std::ffi::OsStr::from_bytes(filename));
    let parent = || script.parent().and_then(&facts);
    let user = |uid: u32| {
        crate::config::accounts::lookup_user(&format!("#{uid}"))
            .ok()
            .map(|a| a.name)
    };
    let group = |gid: u32| {
        crate::config::accounts::lookup_group(&format!("#{gid}"))
            .ok()
            .map(|g| g.name)
    };
    let names = Names {
        user: &user,
        group: &group,
    };
    script_owner::check(owner, facts(script), &parent, &names)
}

/// The directory part of a script's path, with its trailing '/', as C names it in the log.
fn parent_dir(filename: &[u8]) -> Vec<u8> {
    match filename.iter().rposition(|&b| b == b'/') {
        Some(i) => filename[..=i].to_vec(),
        None => filename.to_vec(),
    }
}
