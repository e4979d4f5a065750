//! The hooks httpd calls: post_config (banner), child_init (start Python), translate_name
//! (`WSGIScriptAlias`), and the handler that runs a WSGI script.

use super::bindings as ap;
use super::boundary::ffi_boundary;
use super::config::{dir_config, server_config};
use super::log::{
    request_log, request_logger, server_info_log, server_log, server_warning, APLOG_ERR,
    APLOG_INFO, APLOG_NOTICE,
};
use super::pool::{c_bytes, pstrdup};
use super::request::{table_get, Request};
use crate::config::groups::{
    resolve_application_group, resolve_callable_object, resolve_process_group, GroupRequest,
};
use crate::config::python::{
    DEFAULT_DESTROY_INTERPRETER, DEFAULT_RESTRICT_SIGNAL, DEFAULT_RESTRICT_STDIN,
    DEFAULT_RESTRICT_STDOUT,
};
use crate::config::script_alias::{mapped_filename, prefix_match_len};
use crate::config::{AliasOptions, AliasPattern, RequestSettings, ScriptAlias, ServerConfig};
use crate::python::{self, PythonSettings};
use crate::script::{load_application, LoadError};
use crate::wsgi::environ::{complete_cgi_vars, RequestFacts};
use crate::wsgi::process_log::CurrentRequest;
use crate::wsgi::{run_app, Outcome, ServerInfo};
use std::ffi::{c_void, CStr};
use std::os::raw::{c_char, c_int};
use std::ptr;
use std::sync::OnceLock;

const OK: c_int = ap::OK as c_int;
const DECLINED: c_int = ap::DECLINED;
const SERVER_ERROR: c_int = ap::HTTP_INTERNAL_SERVER_ERROR as c_int;

/// The handler name `WSGIScriptAlias` sets and `SetHandler wsgi-script` selects.
const HANDLER: &CStr = c"wsgi-script";
/// The request note that marks a request mapped by `WSGIScriptAlias` (as C mod_wsgi names it).
const ALIAS_NOTE: &CStr = c"alias-forced-type";
const NOTE_PROCESS_GROUP: &CStr = c"mod_wsgi.process_group";
const NOTE_APPLICATION_GROUP: &CStr = c"mod_wsgi.application_group";
const NOTE_CALLABLE_OBJECT: &CStr = c"mod_wsgi.callable_object";
const NOTE_PASS_AUTHORIZATION: &CStr = c"mod_wsgi.pass_authorization";

type SslIsHttps = unsafe extern "C" fn(*mut ap::conn_rec) -> c_int;
/// mod_ssl's `ssl_is_https`, when mod_ssl is loaded.
static SSL_IS_HTTPS: OnceLock<Option<SslIsHttps>> = OnceLock::new();

/// The status of a request whose application failed before it responded: 500, or 408 when the
/// client was too slow to send the body it announced (the application's read timed out).
///
/// # Safety
/// `r` must be a live request.
pub(super) unsafe fn failed_status(r: *mut ap::request_rec) -> c_int {
    // SAFETY: live request (caller's contract).
    if unsafe { super::request::body_timed_out(r) } {
        ap::HTTP_REQUEST_TIME_OUT as c_int
    } else {
        SERVER_ERROR
    }
}

/// Whether `c` is a TLS connection, by mod_ssl (false without it).
///
/// # Safety
/// `c` must be a live connection.
pub(super) unsafe fn is_https(c: *mut ap::conn_rec) -> bool {
    // SAFETY: a live connection (caller's contract), given to mod_ssl's own function.
    SSL_IS_HTTPS
        .get()
        .copied()
        .flatten()
        .is_some_and(|f| unsafe { f(c) } != 0)
}

pub(crate) unsafe extern "C" fn register_hooks(p: *mut ap::apr_pool_t) {
    ffi_boundary("register_hooks", (), || {
        // mod_alias's Alias/Redirect take precedence, as with C mod_wsgi; ours runs before
        // mod_userdir and mod_vhost_alias.
        static BEFORE_US: ModuleNames<2> = ModuleNames([c"mod_alias.c".as_ptr(), ptr::null()]);
        static AFTER_US: ModuleNames<3> = ModuleNames([
            c"mod_userdir.c".as_ptr(),
            c"mod_vhost_alias.c".as_ptr(),
            ptr::null(),
        ]);
        let middle = ap::APR_HOOK_MIDDLE as c_int;
        crate::wsgi::process_log::set_server_log(super::log::process_server_log);
        // SAFETY: registering hook functions with static predecessor/successor lists (null
        // terminated) during httpd's hook registration phase.
        unsafe {
            ap::ap_hook_check_config(Some(check_config), ptr::null(), ptr::null(), middle);
            ap::ap_hook_post_config(Some(post_config), ptr::null(), ptr::null(), middle);
            ap::ap_hook_child_init(Some(child_init), ptr::null(), ptr::null(), middle);
            // After the core's pre_mpm, which creates the scoreboard.
            ap::ap_hook_pre_mpm(
                Some(pre_mpm),
                ptr::null(),
                ptr::null(),
                ap::APR_HOOK_REALLY_LAST as c_int,
            );
            ap::ap_hook_translate_name(
                Some(translate_name),
                BEFORE_US.0.as_ptr(),
                AFTER_US.0.as_ptr(),
                middle,
            );
            ap::ap_hook_handler(Some(handler), ptr::null(), ptr::null(), middle);
            super::auth::register(p);
        }
    })
}

/// A null-terminated list of module names for hook ordering; httpd keeps the pointer.
pub(super) struct ModuleNames<const N: usize>(pub(super) [*const c_char; N]);

// SAFETY: pointers to static C strings, never written.
unsafe impl<const N: usize> Sync for ModuleNames<N> {}

/// Checks that need the whole configuration (every virtual host), so `apache2 -t` reports them.
unsafe extern "C" fn check_config(
    _pconf: *mut ap::apr_pool_t,
    _plog: *mut ap::apr_pool_t,
    _ptemp: *mut ap::apr_pool_t,
    s: *mut ap::server_rec,
) -> c_int {
    ffi_boundary("check_config", OK, || {
        // SAFETY: s is the main server of the configuration just read.
        match unsafe { super::daemons::check_configuration(s) } {
            Ok(()) => OK,
            Err(msg) => {
                // Before the logs are opened this goes to stderr, where `apache2 -t` shows it.
                server_log(s, ap::APLOG_EMERG, &msg);
                ap::HTTP_INTERNAL_SERVER_ERROR as c_int
            }
        }
    })
}

unsafe extern "C" fn post_config(
    pconf: *mut ap::apr_pool_t,
    plog: *mut ap::apr_pool_t,
    ptemp: *mut ap::apr_pool_t,
    s: *mut ap::server_rec,
) -> c_int {
    // SAFETY: as httpd calls the hook.
    let status = unsafe { configure(pconf, plog, ptemp, s) };
    // The parent is done with the configuration code until the next restart (this function is
    // serving code: see `release_start_up_code`).
    crate::daemon::process::release_start_up_code();
    status
}

/// The post_config hook's work: the version banner, the daemon groups, start-up notices.
#[inline(never)]
unsafe fn configure(
    pconf: *mut ap::apr_pool_t,
    _plog: *mut ap::apr_pool_t,
    _ptemp: *mut ap::apr_pool_t,
    s: *mut ap::server_rec,
) -> c_int {
    ffi_boundary("post_config", OK, || {
        let banner = format!(
            "mod_wsgi-rs/{} Python/{}",
            crate::VERSION,
            crate::PYTHON_VERSION
        );
        // SAFETY: pconf is the live config pool; the component string is copied into it.
        unsafe { ap::ap_add_version_component(pconf, pstrdup(pconf, banner.as_bytes())) };
        // httpd reads its config twice at start-up; say it once, on the pass that serves.
        // SAFETY: ap_state_query only reads httpd's state.
        let serving = unsafe { ap::ap_state_query(ap::AP_SQ_MAIN_STATE as c_int) }
            == ap::AP_SQ_MS_CREATE_CONFIG as c_int;
        if serving {
            // SAFETY: pconf and s are this generation's; the parent is single-threaded here.
            unsafe { super::daemons::start_groups(pconf, s) };
        }
        // SAFETY: s is the main server, whose config was created by this module.
        if serving && unsafe { server_config(s) }.python.verbose_debugging == Some(true) {
            server_log(
                s,
                APLOG_NOTICE,
                "mod_wsgi-rs: WSGIVerboseDebugging is accepted but adds nothing; for detailed \
                 logging from mod_wsgi-rs use `LogLevel wsgi:debug`",
            );
        }
        // SAFETY: as above.
        if serving && unsafe { server_config(s) }.python.per_interpreter_gil == Some(true) {
            server_log(
                s,
                APLOG_NOTICE,
                "mod_wsgi-rs: WSGIPerInterpreterGIL On is experimental: CPython 3.12 and 3.13 \
                 have crashing bugs with interpreters that have a GIL of their own (see \
                 docs/directives.md); test the application with this exact Python release",
            );
        }
        // SAFETY: as above.
        if let (true, Some(mechanism)) = (serving, &unsafe { server_config(s) }.accept_mutex) {
            server_log(
                s,
                APLOG_NOTICE,
                &format!(
                    "mod_wsgi-rs: WSGIAcceptMutex {mechanism} is accepted but not needed: the \
                     processes of a daemon group take connections without an accept lock"
                ),
            );
        }
        OK
    })
}

/// The scoreboard now exists (first start, or a full restart): start the daemon groups that
/// waited for it.
unsafe extern "C" fn pre_mpm(_p: *mut ap::apr_pool_t, _sb_type: ap::ap_scoreboard_e) -> c_int {
    let status = start_deferred_groups();
    crate::daemon::process::release_start_up_code();
    status
}

/// The pre_mpm hook's work: the daemon groups that waited for the scoreboard.
#[inline(never)]
fn start_deferred_groups() -> c_int {
    ffi_boundary("pre_mpm", OK, || {
        // SAFETY: httpd runs pre_mpm in its parent, single-threaded, before forking children.
        unsafe { super::daemons::start_deferred_groups() };
        OK
    })
}

pub(super) fn mpm_query(what: u32) -> c_int {
    let mut value: c_int = 0;
    // SAFETY: ap_mpm_query writes one int for these query codes.
    unsafe { ap::ap_mpm_query(what as c_int, &mut value) };
    value
}

/// What the `mod_wsgi` and `apache` Python modules and the environ report about this server.
pub(super) fn server_info() -> ServerInfo {
    let threaded = mpm_query(ap::AP_MPMQ_IS_THREADED) != ap::AP_MPMQ_NOT_SUPPORTED as c_int;
    let forked = mpm_query(ap::AP_MPMQ_IS_FORKED) != ap::AP_MPMQ_NOT_SUPPORTED as c_int;
    let threads = if threaded {
        mpm_query(ap::AP_MPMQ_MAX_THREADS)
    } else {
        1
    };
    // The configured limit, not how many child slots have been used so far (which depends on
    // when a child asks).
    let processes = if forked {
        mpm_query(ap::AP_MPMQ_MAX_DAEMONS)
    } else {
        1
    };
    let text = |p: *const c_char| {
        // SAFETY: httpd's version strings are static C strings.
        String::from_utf8_lossy(unsafe { c_bytes(p) }).into_owned()
    };
    // SAFETY: these return pointers to static strings httpd owns.
    let (description, mpm_name, build_date) = unsafe {
        (
            text(ap::ap_get_server_description()),
            text(ap::ap_show_mpm()),
            text(ap::ap_get_server_built()),
        )
    };
    ServerInfo {
        process_group: String::new(),
        multithread: threaded,
        multiprocess: mpm_query(ap::AP_MPMQ_MAX_DAEMONS) > 1,
        maximum_processes: processes.max(1),
        threads_per_process: threads.max(1),
        apache_maximum_processes: processes.max(1),
        apache_threads_per_process: threads.max(1),
        apache_version: (
            ap::AP_SERVER_MAJORVERSION_NUMBER,
            ap::AP_SERVER_MINORVERSION_NUMBER,
            ap::AP_SERVER_PATCHLEVEL_NUMBER,
        ),
        description,
        mpm_name,
        build_date,
        server_metrics: None,
    }
}

unsafe extern "C" fn finalize_python(_data: *mut c_void) -> ap::apr_status_t {
    ffi_boundary("child exit", 0, || {
        python::finalize();
        0
    })
}

/// What Python starts with, from the main server's global directives.
pub(super) fn python_settings(conf: &ServerConfig) -> PythonSettings {
    let p = &conf.python;
    PythonSettings {
        home: conf.python_home.clone(),
        home_option: None,
        path: conf.python_path.clone(),
        optimize: p.optimize,
        dont_write_bytecode: p.dont_write_bytecode == Some(true),
        warnings: p.warnings.clone(),
        hash_seed: p.hash_seed,
        eggs: p.eggs.clone(),
        restrict_stdin: p.restrict_stdin.unwrap_or(DEFAULT_RESTRICT_STDIN),
        restrict_stdout: p.restrict_stdout.unwrap_or(DEFAULT_RESTRICT_STDOUT),
        restrict_signal: p.restrict_signal.unwrap_or(DEFAULT_RESTRICT_SIGNAL),
        per_interpreter_gil: p.per_interpreter_gil == Some(true),
        case_sensitive: p.case_sensitive != Some(false),
        log_warning: Some(server_warning),
        log_info: Some(server_info_log),
    }
}

unsafe extern "C" fn child_init(pchild: *mut ap::apr_pool_t, s: *mut ap::server_rec) {
    // SAFETY: as httpd calls the hook.
    unsafe { start_child(pchild, s) };
    // Requests need none of the start-up code (this function is serving code: see
    // `release_start_up_code`).
    crate::daemon::process::release_start_up_code();
}

/// The child_init hook's work: Python and the scripts to import at process start.
#[inline(never)]
unsafe fn start_child(pchild: *mut ap::apr_pool_t, s: *mut ap::server_rec) {
    ffi_boundary("child_init", (), || {
        // SAFETY: looking up an optional function by name; the result is null or mod_ssl's
        // ssl_is_https, which has this signature.
        let _ = SSL_IS_HTTPS.set(unsafe {
            let f = ap::apr_dynamic_fn_retrieve(c"ssl_is_https".as_ptr());
            f.map(|f| std::mem::transmute::<unsafe extern "C" fn(), SslIsHttps>(f))
        });
        // SAFETY: s is the main server, whose config was created by this module.
        let conf = unsafe { server_config(s) };
        super::daemons::close_listeners_in_child();
        // SAFETY: as above; every server of the list has our config.
        let imports: Vec<_> = unsafe { super::preload::import_scripts(s) }
            .into_iter()
            .filter(|i| i.process_group.is_empty())
            .collect();
        let pid = std::process::id();
        // As in C mod_wsgi: with embedded mode refused, Python starts in Apache's children only
        // for scripts to import at process start, or for access and authentication scripts.
        if conf.python.restrict_embedded == Some(true)
            && imports.is_empty()
            && !crate::config::hook_script::configured()
        {
            server_log(
                s,
                APLOG_INFO,
                &format!("mod_wsgi (pid={pid}): Python not started: WSGIRestrictEmbedded On."),
            );
            return;
        }
        server_log(
            s,
            APLOG_INFO,
            &format!("mod_wsgi (pid={pid}): Initializing Python."),
        );
        let settings = python_settings(conf);
        let mut info = server_info();
        // As C mod_wsgi 4.9.4: the flag starts unset (-1) and only an explicit Off turns the
        // scoreboard off in Apache's children.
        if conf.server_metrics != Some(false) {
            info.server_metrics = Some(super::scoreboard::read);
        }
        let prepare =
            move |py: pyo3::Python<'_>, group: &str| crate::wsgi::interp::prepare(py, &info, group);
        let started = python::initialize(&settings, prepare, crate::wsgi::interp::release);
        let running = started.is_ok();
        match started {
            // WSGIDestroyInterpreter Off: as in C mod_wsgi, Python is left as it is when the
            // child exits (no atexit callbacks, no finalisation), for applications whose
            // threads or extensions hang or crash in Py_FinalizeEx.
            Ok(())
                if !conf
                    .python
                    .destroy_interpreter
                    .unwrap_or(DEFAULT_DESTROY_INTERPRETER) => {}
            Ok(()) => {
                // SAFETY: pchild lives until the child exits; the cleanup runs once then.
                unsafe {
                    ap::apr_pool_cleanup_register(
                        pchild,
                        ptr::null(),
                        Some(finalize_python),
                        Some(ap::apr_pool_cleanup_null),
                    )
                };
            }
            Err(e) => server_log(
                s,
                APLOG_ERR,
                &format!(
                    "mod_wsgi (pid={}): Python could not be started: {e}",
                    std::process::id()
                ),
            ),
        }
        if running {
            super::preload::import_configured_scripts(s, &imports);
        }
        crate::daemon::process::release_start_up_memory();
    })
}

/// Whether `alias` matches `uri`; returns the matched location, the script target (with regex
/// substitutions made) and how many bytes of the URI matched.
///
/// # Safety
/// `r` must be a live request whose `uri` is `uri`.
unsafe fn match_alias(
    r: *mut ap::request_rec,
    alias: &ScriptAlias,
    uri: &[u8],
) -> Option<(Vec<u8>, Vec<u8>, usize)> {
    match &alias.pattern {
        AliasPattern::Prefix(location) => {
            let len = prefix_match_len(uri, location.as_bytes())?;
            Some((
                location.as_bytes().to_vec(),
                alias.target.as_bytes().to_vec(),
                len,
            ))
        }
        AliasPattern::Regex(_) => {
            let regex = alias.regex?.0 as *const ap::ap_regex_t;
            let mut matches =
                [ap::ap_regmatch_t { rm_so: 0, rm_eo: 0 }; ap::AP_MAX_REG_MATCH as usize];
            // SAFETY: regex was compiled by ap_pregcomp in the config pool; r->uri is a C
            // string; matches has room for AP_MAX_REG_MATCH entries.
            unsafe {
                let uri_c = (*r).uri;
                if ap::ap_regexec(regex, uri_c, matches.len(), matches.as_mut_ptr(), 0) != 0 {
                    return None;
                }
                let end = matches[0].rm_eo as usize;
                let target_c = pstrdup((*r).pool, alias.target.as_bytes());
                let target = ap::ap_pregsub(
                    (*r).pool,
                    target_c,
                    uri_c,
                    matches.len(),
                    matches.as_mut_ptr(),
                );
                if target.is_null() {
                    return None;
                }
                Some((uri[..end].to_vec(), c_bytes(target).to_vec(), end))
            }
        }
    }
}

unsafe extern "C" fn translate_name(r: *mut ap::request_rec) -> c_int {
    ffi_boundary("translate_name", DECLINED, || {
        // SAFETY: r is the live request being translated; strings set on it are pool copies.
        unsafe {
            let uri = c_bytes((*r).uri);
            if !uri.is_empty() && uri[0] != b'/' {
                return DECLINED;
            }
            let conf = server_config((*r).server);
            for alias in &conf.aliases {
                let Some((location, target, matched)) = match_alias(r, alias, uri) else {
                    continue;
                };
                if matched == 0 {
                    continue;
                }
                let pool = (*r).pool;
                (*r).filename = pstrdup(pool, &mapped_filename(&target, &location, uri, matched))
                    as *mut c_char;
                (*r).handler = HANDLER.as_ptr();
                let notes = (*r).notes;
                ap::apr_table_setn(notes, ALIAS_NOTE.as_ptr(), HANDLER.as_ptr());
                let opts = &alias.options;
                for (note, value) in [
                    (NOTE_PROCESS_GROUP, &opts.process_group),
                    (NOTE_APPLICATION_GROUP, &opts.application_group),
                    (NOTE_CALLABLE_OBJECT, &opts.callable_object),
                ] {
                    if let Some(v) = value {
                        ap::apr_table_setn(notes, note.as_ptr(), pstrdup(pool, v.as_bytes()));
                    }
                }
                if let Some(pass) = opts.pass_authorization {
                    let v = if pass { c"1" } else { c"0" };
                    ap::apr_table_setn(notes, NOTE_PASS_AUTHORIZATION.as_ptr(), v.as_ptr());
                }
                return OK;
            }
            DECLINED
        }
    })
}

unsafe extern "C" fn handler(r: *mut ap::request_rec) -> c_int {
    // SAFETY: r is the live request httpd hands to the handler.
    ffi_boundary("handler", SERVER_ERROR, || unsafe { handle(r) })
}

/// Logs a Python exception's traceback, one entry per line, against request `r`.
fn log_traceback(r: *mut ap::request_rec, py: pyo3::Python<'_>, err: &pyo3::PyErr) {
    for line in crate::wsgi::adapter::exception_report(py, err) {
        request_log(r, APLOG_ERR, &line);
    }
}

pub(super) fn log_script_error(r: *mut ap::request_rec, what: &str, filename: &[u8]) {
    request_log(
        r,
        APLOG_ERR,
        &format!("{what}: {}", String::from_utf8_lossy(filename)),
    );
}

/// The options a matched `WSGIScriptAlias` left in the request notes.
///
/// # Safety
/// `notes` must be the live notes table of a request.
unsafe fn alias_options(notes: *const ap::apr_table_t) -> Option<AliasOptions> {
    // SAFETY: live table (caller's contract).
    let get = |key: &CStr| {
        unsafe { table_get(notes, key) }.map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let aliased = get(ALIAS_NOTE).is_some_and(|v| v.eq_ignore_ascii_case("wsgi-script"));
    aliased.then(|| AliasOptions {
        process_group: get(NOTE_PROCESS_GROUP),
        application_group: get(NOTE_APPLICATION_GROUP),
        callable_object: get(NOTE_CALLABLE_OBJECT),
        pass_authorization: get(NOTE_PASS_AUTHORIZATION).map(|v| v == "1"),
    })
}

/// The request-body checks C mod_wsgi makes before running anything.
///
/// # Safety
/// `r` must be a live request.
unsafe fn check_request_body(
    r: *mut ap::request_rec,
    filename: &[u8],
    chunked_allowed: bool,
) -> Result<(), c_int> {
    // SAFETY: live request and its headers table.
    let headers = unsafe { (*r).headers_in };
    // SAFETY: as above.
    if let Some(te) = unsafe { table_get(headers, c"Transfer-Encoding") } {
        if !te.eq_ignore_ascii_case(b"chunked") {
            let te = String::from_utf8_lossy(te);
            log_script_error(r, &format!("Unexpected value for Transfer-Encoding of '{te}' supplied. Only 'chunked' supported."), filename);
            return Err(ap::HTTP_NOT_IMPLEMENTED as c_int);
        }
        if !chunked_allowed {
            log_script_error(
                r,
                "Received request requiring chunked transfer encoding, but optional support \
                 for chunked transfer encoding has not been enabled.",
                filename,
            );
            return Err(ap::HTTP_LENGTH_REQUIRED as c_int);
        }
        // SAFETY: as above.
        if unsafe { table_get(headers, c"Content-Length") }.is_some() {
            log_script_error(
                r,
                "Unexpected Content-Length header supplied where Transfer-Encoding was \
                 specified as 'chunked'.",
                filename,
            );
            return Err(ap::HTTP_BAD_REQUEST as c_int);
        }
        return Ok(());
    }
    // SAFETY: as above.
    if let Some(len) = unsafe { table_get(headers, c"Content-Length") } {
        let text = String::from_utf8_lossy(len);
        let Ok(length) = text.trim().parse::<u64>() else {
            log_script_error(
                r,
                &format!("Invalid Content-Length header value of '{text}' was supplied."),
                filename,
            );
            return Err(ap::HTTP_BAD_REQUEST as c_int);
        };
        // SAFETY: live request.
        let limit = unsafe { ap::ap_get_limit_req_body(r) } as u64;
        if limit != 0 && length > limit {
            log_script_error(
                r,
                &format!(
                    "Request body of {length} bytes exceeds LimitRequestBody of {limit} bytes"
                ),
                filename,
            );
            return Err(ap::HTTP_REQUEST_ENTITY_TOO_LARGE as c_int);
        }
    }
    Ok(())
}

/// Facts for the environ that come from the request and connection rather than CGI variables.
///
/// # Safety
/// `r` must be a live request.
pub(super) unsafe fn request_facts(r: *mut ap::request_rec) -> RequestFacts {
    // SAFETY: live request, connection and local address; strings are copied out.
    unsafe {
        let c = (*r).connection;
        if (*r).log_id.is_null() {
            ap::ap_run_generate_log_id(c, r, &mut (*r).log_id);
        }
        let optional = |p: *const c_char| {
            (!p.is_null()).then(|| String::from_utf8_lossy(c_bytes(p)).into_owned())
        };
        let local = (*c).local_addr;
        RequestFacts {
            authorization: table_get((*r).headers_in, c"Authorization").map(<[u8]>::to_vec),
            is_https: is_https(c),
            handler: optional((*r).handler).unwrap_or_default(),
            request_start_us: (*r).request_time,
            request_id: optional((*r).log_id),
            connection_id: optional((*c).log_id),
            listener_host: if local.is_null() {
                String::new()
            } else {
                optional((*local).hostname).unwrap_or_default()
            },
            is_head: (*r).header_only != 0,
            has_content_filters: {
                let first = (*r).output_filters;
                !first.is_null()
                    && !(*first).frec.is_null()
                    && (*(*first).frec).ftype < ap::ap_filter_type_AP_FTYPE_PROTOCOL
            },
            listener_port: if local.is_null() { 0 } else { (*local).port },
        }
    }
}

/// Decides where request `r` is served: its settings (whose process group is '' for embedded
/// mode) and script, or the status it is answered with (declined, or refused).
///
/// # Safety
/// `r` must be the live request of this handler call.
#[inline(never)]
unsafe fn route(r: *mut ap::request_rec) -> Result<(Box<RequestSettings>, Vec<u8>), c_int> {
    // SAFETY: r is live for this call; strings read from it are copied before it changes.
    unsafe {
        if (*r).handler.is_null() {
            return Err(DECLINED);
        }
        let handler = c_bytes((*r).handler);
        let handler_script =
            if handler == HANDLER.to_bytes() || handler == b"application/x-httpd-wsgi" {
                None
            } else {
                match dir_config(r).handler_script(handler) {
                    Some(script) => Some(script),
                    None => return Err(DECLINED),
                }
            };
        if super::boundary::panic_requested_for(c_bytes((*r).uri)) {
            panic!("deliberate panic (MOD_WSGI_RS_PANIC_URI)");
        }
        let filename = c_bytes((*r).filename).to_vec();
        let alias = alias_options((*r).notes);
        // A handler script serves whatever Apache hands its handler, file or not, as in C.
        if handler_script.is_none() {
            if alias.is_none() && ap::ap_allow_options(r) & ap::OPT_EXECCGI as c_int == 0 {
                log_script_error(r, "Options ExecCGI is off in this directory", &filename);
                return Err(ap::HTTP_FORBIDDEN as c_int);
            }
            if (*r).finfo.filetype == ap::apr_filetype_e_APR_NOFILE {
                log_script_error(
                    r,
                    "Target WSGI script not found or unable to stat",
                    &filename,
                );
                return Err(ap::HTTP_NOT_FOUND as c_int);
            }
            if (*r).finfo.filetype == ap::apr_filetype_e_APR_DIR {
                log_script_error(
                    r,
                    "Attempt to invoke directory as WSGI application",
                    &filename,
                );
                return Err(ap::HTTP_FORBIDDEN as c_int);
            }
        }
        if (*r).used_path_info == ap::AP_REQ_REJECT_PATH_INFO as c_int
            && !c_bytes((*r).path_info).is_empty()
        {
            log_script_error(r, "AcceptPathInfo off disallows user's path", &filename);
            return Err(ap::HTTP_NOT_FOUND as c_int);
        }
        let mut settings = match handler_script {
            Some(script) => RequestSettings::for_handler_script(dir_config(r), script),
            None => RequestSettings::resolve(dir_config(r), alias.as_ref()),
        };
        settings.process_group = process_group(r, settings.configured_process_group.as_deref());
        if settings.callable_object.starts_with('%') {
            settings.callable_object = callable_object(r, &settings.callable_object);
        }
        super::dispatch::apply(r, &mut settings)?;
        // Before the embedded shortcut, as in C: a restriction without %{GLOBAL} refuses
        // embedded mode too.
        if !settings.process_group_allowed() {
            log_script_error(
                r,
                &format!(
                    "Daemon process called '{}' cannot be accessed by this WSGI application as \
                     not a member of allowed groups",
                    settings.process_group
                ),
                &filename,
            );
            return Err(SERVER_ERROR);
        }
        if !settings.process_group.is_empty() {
            return Ok((Box::new(settings), filename));
        }
        if server_config((*r).server).python.restrict_embedded == Some(true) {
            log_script_error(
                r,
                "Embedded mode of mod_wsgi disabled by runtime configuration",
                &filename,
            );
            return Err(SERVER_ERROR);
        }
        if python::inside_python() {
            // A subrequest made on this thread while it runs an application whose response
            // passes through a filter that makes subrequests (mod_include's INCLUDES).
            log_script_error(
                r,
                "A WSGI script cannot serve a subrequest made while a WSGI application runs on \
                 the same thread (a filter such as mod_include's INCLUDES over a WSGI response \
                 including another WSGI URL); not supported in embedded mode",
                &filename,
            );
            return Err(SERVER_ERROR);
        }
        Ok((Box::new(settings), filename))
    }
}

/// Runs the WSGI script a request maps to: decides where it is served (`route`), then serves it
/// here (`serve_embedded`) or passes it to its daemon process group.
///
/// The application runs on this thread's stack below these frames, and so does every C call it
/// makes, so what is not needed while it runs is in functions of their own, which have returned,
/// or are not called, by then: the decisions about the request, the other mode's way, and what
/// only a failure does. With them inlined, the way from Apache's handler to the application took
/// 4.8 KB of stack (C's: 0.4 KB), and an application twelve middleware layers deep touched one
/// 4 KiB page of stack more than in C in every Apache thread that served it.
///
/// # Safety
/// `r` must be the live request of this handler call.
unsafe fn handle(r: *mut ap::request_rec) -> c_int {
    // SAFETY: r is live for this call (caller's contract).
    unsafe {
        match route(r) {
            Ok((settings, filename)) if settings.process_group.is_empty() => {
                serve_embedded(r, settings, &filename)
            }
            Ok((settings, filename)) => super::daemon_request::handle(r, settings, &filename),
            Err(status) => status,
        }
    }
}

/// Serves request `r` in embedded mode with `settings`: runs its script's application on this
/// thread, attached to the interpreter of its application group.
///
/// # Safety
/// `r` must be the live request of this handler call.
#[inline(never)]
unsafe fn serve_embedded(
    r: *mut ap::request_rec,
    mut settings: Box<RequestSettings>,
    filename: &[u8],
) -> c_int {
    // SAFETY: r is live for this call; strings read from it are copied before it changes.
    unsafe {
        let (request, vars) = match prepare_request(r, &mut settings, filename) {
            Ok(prepared) => prepared,
            Err(status) => return status,
        };
        let resource = String::from_utf8_lossy(filename).into_owned();
        let (script, mtime) = match settings.handler_script.as_deref() {
            // Not the file the request maps to: its own modification time (0 if it cannot be
            // read, which then fails to load and is logged).
            Some(script) => (script, crate::script::file_modification_time(script)),
            None => (resource.as_str(), (*r).finfo.mtime),
        };
        let group = settings.application_group.clone();
        let mut served_by: Option<Box<dyn crate::wsgi::RequestIo>> = None;
        let ran = python::attached_to(&group, |py| {
            let _active = crate::wsgi::process_metrics::ActiveRequest::begin();
            // SAFETY: `current` ends inside this handler, so r outlives every use of the logger.
            let current = CurrentRequest::enter(request_logger(r));
            let report_reload_check = |py: pyo3::Python<'_>, err: &pyo3::PyErr| {
                request_log(
                    r,
                    APLOG_ERR,
                    &format!(
                        "mod_wsgi (pid={}): Exception occurred in reload_required() of WSGI script '{script}'; the script is not reloaded.",
                        std::process::id()
                    ),
                );
                log_traceback(r, py, err);
            };
            let served = match load_application(
                py,
                script,
                Some(&resource),
                mtime,
                settings.script_reloading,
                &settings.callable_object,
                &report_reload_check,
            ) {
                Ok(app) => {
                    let (outcome, io) = run_app(py, &app, &vars, script, Box::new(request));
                    served_by = Some(io);
                    Ok(outcome == Outcome::Sent)
                }
                Err(failed) => Err(script_not_loaded(r, py, failed, script, &settings)),
            };
            // After a script that failed to load too: what it printed without a newline is
            // logged with this request, not with the next one this thread serves.
            current.finish(py);
            match served {
                Ok(true) => Ok(()),
                Ok(false) => Err(failed_status(r)),
                Err(status) => Err(status),
            }
        });
        if let Some(mut io) = served_by {
            // The end of a small response, kept while the application ran. A client that has
            // gone by now is no one's error: the response was complete.
            let _ = io.send_deferred();
        }
        match ran {
            Ok(Ok(())) => OK,
            Ok(Err(status)) => status,
            Err(error) => not_attached(r, error, &group),
        }
    }
}

/// Logs why a request's script could not give its application, and answers the status: 404
/// when the script has no such callable, else the failure's status.
///
/// # Safety
/// `r` must be the live request of this handler call.
#[cold]
#[inline(never)]
unsafe fn script_not_loaded(
    r: *mut ap::request_rec,
    py: pyo3::Python<'_>,
    failed: LoadError,
    script: &str,
    settings: &RequestSettings,
) -> c_int {
    // SAFETY: live request (caller's contract).
    unsafe {
        if let LoadError::NoCallable = failed {
            request_log(
                r,
                APLOG_ERR,
                &format!(
                    "mod_wsgi (pid={}): Target WSGI script '{script}' does not contain WSGI application '{}'.",
                    std::process::id(),
                    settings.callable_object
                ),
            );
            return ap::HTTP_NOT_FOUND as c_int;
        }
        for line in failed.report(py, script) {
            request_log(r, APLOG_ERR, &line);
        }
        failed_status(r)
    }
}

/// Logs why request `r` could not be attached to the interpreter of application group `group`,
/// and answers 500.
#[cold]
#[inline(never)]
fn not_attached(r: *mut ap::request_rec, error: python::AttachError, group: &str) -> c_int {
    match error {
        python::AttachError::NotRunning => request_log(
            r,
            APLOG_ERR,
            "mod_wsgi-rs: Python is not running in this process (see the errors logged when the child started)",
        ),
        python::AttachError::NoInterpreter(why) => request_log(
            r,
            APLOG_ERR,
            &format!(
                "mod_wsgi (pid={}): Cannot create interpreter '{group}': {why}",
                std::process::id()
            ),
        ),
    }
    SERVER_ERROR
}

/// What embedded and daemon mode do alike before running a script: resolve the application
/// group, check the request body, set up reading it, and build the CGI variables.
///
/// # Safety
/// `r` must be the live request of the handler call; the Request must not outlive it.
#[inline(never)]
pub(super) unsafe fn prepare_request(
    r: *mut ap::request_rec,
    settings: &mut RequestSettings,
    filename: &[u8],
) -> Result<(Request, crate::wsgi::environ::CgiVars), c_int> {
    // SAFETY: caller's contract.
    unsafe {
        // Before the CGI variables are added, so %{ENV:…} sees what C mod_wsgi's does.
        settings.application_group =
            application_group(r, settings.configured_application_group.as_deref());
        check_request_body(r, filename, settings.chunked_request)?;
        let mut request = Request::new(r);
        request.enable_sendfile(settings.enable_sendfile);
        request.setup_body()?;
        let mut vars = request.cgi_vars();
        complete_cgi_vars(&mut vars, settings, &request_facts(r));
        // As C: the access log (`%{mod_wsgi.process_group}e`) and other modules see them.
        request.export_last_vars(&vars, crate::wsgi::environ::MODULE_VAR_PREFIX);
        Ok((request, vars))
    }
}

/// The name of the application group (interpreter) request `r` runs in, from the configured
/// value (None: the default, `%{RESOURCE}`).
///
/// # Safety
/// `r` must be a live request.
pub(super) unsafe fn application_group(
    r: *mut ap::request_rec,
    configured: Option<&str>,
) -> String {
    // SAFETY: live request (caller's contract).
    unsafe { resolve_group(r, configured, resolve_application_group) }
}

/// The daemon process group request `r` runs in ('' for Apache's own child).
///
/// # Safety
/// `r` must be a live request.
pub(super) unsafe fn process_group(r: *mut ap::request_rec, configured: Option<&str>) -> String {
    // SAFETY: live request (caller's contract).
    unsafe { resolve_group(r, configured, resolve_process_group) }
}

/// A `%{ENV:NAME}` variable for request `r`: its notes, then its environment, then the
/// process's.
///
/// # Safety
/// `r` must be a live request.
unsafe fn request_variable(r: *mut ap::request_rec, name: &str) -> Option<Vec<u8>> {
    let key = std::ffi::CString::new(name).ok()?;
    // SAFETY: live request (caller's contract); the tables' strings are copied out.
    unsafe {
        table_get((*r).notes, &key)
            .or_else(|| table_get((*r).subprocess_env, &key))
            .map(<[u8]>::to_vec)
    }
    .or_else(|| {
        use std::os::unix::ffi::OsStringExt;
        std::env::var_os(name).map(OsStringExt::into_vec)
    })
}

/// The callable `configured` names for request `r` (`%{ENV:…}` looked up now).
///
/// # Safety
/// `r` must be a live request.
pub(super) unsafe fn callable_object(r: *mut ap::request_rec, configured: &str) -> String {
    // SAFETY: live request (caller's contract).
    resolve_callable_object(configured, &|name| unsafe { request_variable(r, name) })
}

type Resolver = fn(Option<&str>, &GroupRequest<'_>, &dyn Fn(&str) -> Option<Vec<u8>>) -> String;

/// Resolves a group value against request `r`'s facts and variables.
///
/// # Safety
/// `r` must be a live request.
unsafe fn resolve_group(
    r: *mut ap::request_rec,
    configured: Option<&str>,
    resolve: Resolver,
) -> String {
    // SAFETY: live request, server and tables; strings are borrowed only for this call.
    unsafe {
        let optional = |p: *const c_char| (!p.is_null()).then(|| c_bytes(p));
        let request = GroupRequest {
            server_hostname: optional((*(*r).server).server_hostname).unwrap_or_default(),
            port: ap::ap_get_server_port(r),
            hostname: optional((*r).hostname),
            uri: optional((*r).uri).unwrap_or_default(),
            path_info: optional((*r).path_info).unwrap_or_default(),
        };
        let env = |name: &str| request_variable(r, name);
        resolve(configured, &request, &env)
    }
}
