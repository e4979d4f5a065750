//! Apache's side of `WSGIAuthUserScript` (the `wsgi` authentication provider, for
//! `AuthBasicProvider wsgi` and `AuthDigestProvider wsgi`), `WSGIAuthGroupScript` (the
//! `wsgi-group` authorization provider, for `Require wsgi-group NAME…`) and `WSGIAccessScript`
//! (an access checker). Each runs its script in Apache's child, in the main interpreter unless
//! the directive names an `application-group=`, as C mod_wsgi does; `wsgi::auth` calls the
//! Python functions.

use super::bindings as ap;
use super::boundary::ffi_boundary;
use super::config::dir_config;
use super::log::{request_log, request_logger};
use super::pool::{c_bytes, pstrdup};
use super::request::table_entries;
use crate::config::trusted_proxies::header_environ_name;
use crate::config::HookScript;
use crate::python;
use crate::python::scoped::Scoped;
use crate::wsgi::auth::{self, Authn, HookCall, TlsLookup};
use crate::wsgi::environ::CgiVars;
use crate::wsgi::process_log::CurrentRequest;
use crate::wsgi::Level;
use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

const APLOG_ERR: u32 = ap::APLOG_ERR;

static AUTHN_PROVIDER: ap::authn_provider = ap::authn_provider {
    check_password: Some(check_password),
    get_realm_hash: Some(get_realm_hash),
};

static AUTHZ_PROVIDER: ap::authz_provider = ap::authz_provider {
    check_authorization: Some(check_authorization),
    parse_require_line: None,
};

/// Registers the providers and the access checker (from `register_hooks`).
///
/// # Safety
/// `p` is the pool httpd gives `register_hooks`.
pub(super) unsafe fn register(p: *mut ap::apr_pool_t) {
    static BEFORE_ACCESS: super::hooks::ModuleNames<2> =
        super::hooks::ModuleNames([c"mod_ssl.c".as_ptr(), ptr::null()]);
    static AFTER_ACCESS: super::hooks::ModuleNames<2> =
        super::hooks::ModuleNames([c"mod_authz_host.c".as_ptr(), ptr::null()]);
    let per_conf = ap::AP_AUTH_INTERNAL_PER_CONF as c_int;
    // SAFETY: the providers are statics that live as long as the module; the name lists are
    // static and null-terminated; httpd is registering hooks.
    unsafe {
        ap::ap_register_auth_provider(
            p,
            c"authn".as_ptr(),
            c"wsgi".as_ptr(),
            c"0".as_ptr(),
            &AUTHN_PROVIDER as *const ap::authn_provider as *const c_void,
            per_conf,
        );
        ap::ap_register_auth_provider(
            p,
            c"authz".as_ptr(),
            c"wsgi-group".as_ptr(),
            c"0".as_ptr(),
            &AUTHZ_PROVIDER as *const ap::authz_provider as *const c_void,
            per_conf,
        );
        ap::ap_hook_check_access(
            Some(access_checker),
            BEFORE_ACCESS.0.as_ptr(),
            AFTER_ACCESS.0.as_ptr(),
            ap::APR_HOOK_MIDDLE as c_int,
            per_conf,
        );
    }
}

/// Runs `f` with the hook script's call in its interpreter; None when Python is not running
/// in this process (logged).
///
/// # Safety
/// `r` must be a live request.
unsafe fn with_hook_call<R>(
    r: *mut ap::request_rec,
    script: &HookScript,
    directive: &str,
    f: impl FnOnce(pyo3::Python<'_>, &HookCall<'_>) -> R,
) -> Option<R> {
    // SAFETY: live request (caller's contract).
    unsafe { with_hook_call_vars(r, script, directive, hook_environ(r), Tls::Offered, f) }
}

/// Whether a hook's environ has `mod_ssl.is_https` and `mod_ssl.var_lookup` (C gives them to the
/// authentication and access hooks only).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tls {
    Offered,
    NotOffered,
}

/// mod_ssl's `ssl_var_lookup(pool, server, connection, request, name)`.
type SslVarLookup = unsafe extern "C" fn(
    *mut ap::apr_pool_t,
    *mut ap::server_rec,
    *mut ap::conn_rec,
    *mut ap::request_rec,
    *mut c_char,
) -> *mut c_char;

/// A hook call's request, asked about its connection's TLS.
struct RequestTls(*mut ap::request_rec);

impl TlsLookup for RequestTls {
    fn is_https(&self) -> bool {
        // SAFETY: the request is live while the hook call (its Scoped) lasts.
        unsafe { super::hooks::is_https((*self.0).connection) }
    }

    fn var_lookup(&self, name: &[u8]) -> Option<Vec<u8>> {
        let r = self.0;
        // SAFETY: looking up an optional function by name: null, or mod_ssl's ssl_var_lookup,
        // which has this signature. The request is live while the hook call lasts; the name is
        // copied NUL-terminated into its pool, and the value read out before the call returns.
        unsafe {
            let lookup = ap::apr_dynamic_fn_retrieve(c"ssl_var_lookup".as_ptr())?;
            let lookup = std::mem::transmute::<unsafe extern "C" fn(), SslVarLookup>(lookup);
            let name = pstrdup((*r).pool, name) as *mut c_char;
            let value = lookup((*r).pool, (*r).server, (*r).connection, r, name);
            (!value.is_null()).then(|| c_bytes(value).to_vec())
        }
    }
}

/// [`with_hook_call`] with the request's variables `vars` for the environ.
///
/// # Safety
/// `r` must be a live request.
pub(super) unsafe fn with_hook_call_vars<R>(
    r: *mut ap::request_rec,
    script: &HookScript,
    directive: &str,
    vars: CgiVars,
    tls: Tls,
    f: impl FnOnce(pyo3::Python<'_>, &HookCall<'_>) -> R,
) -> Option<R> {
    if python::inside_python() {
        // See the handler: a subrequest of a filter over a WSGI response.
        request_log(
            r,
            APLOG_ERR,
            &format!(
                "mod_wsgi (pid={}): {directive} script '{}' cannot run for a subrequest made \
                 while a WSGI application runs on the same thread; not supported.",
                std::process::id(),
                script.path
            ),
        );
        return None;
    }
    // SAFETY: live request (caller's contract).
    let (group, reloading) = unsafe {
        let group = match &script.application_group {
            Some(configured) => super::hooks::application_group(r, Some(configured)),
            // The main interpreter by default (C: no group named is %{GLOBAL}).
            None => String::new(),
        };
        (group, dir_config(r).script_reloading())
    };
    let log = |level: Level, line: &str| request_log(r, super::log::level_of(level), line);
    let ran = python::attached_to(&group, |py| {
        // SAFETY: `current` ends inside this call, so r outlives every use of the logger.
        let current = CurrentRequest::enter(unsafe { request_logger(r) });
        let mut lookup: Box<dyn TlsLookup> = Box::new(RequestTls(r));
        let result = Scoped::run(py, &mut lookup, |lookup| {
            let call = HookCall {
                script: &script.path,
                application_group: &group,
                reloading,
                vars: &vars,
                log: &log,
                tls: (tls == Tls::Offered).then_some(lookup),
            };
            f(py, &call)
        });
        current.finish(py);
        result
    });
    match ran {
        Ok(result) => Some(result),
        Err(e) => {
            let why = match e {
                python::AttachError::NotRunning => {
                    "Python is not running in this process (WSGIRestrictEmbedded On?)".to_string()
                }
                python::AttachError::NoInterpreter(why) => {
                    format!("cannot create the interpreter of application group '{group}': {why}")
                }
            };
            request_log(
                r,
                APLOG_ERR,
                &format!(
                    "mod_wsgi (pid={}): {directive} '{}' cannot run: {why}.",
                    std::process::id(),
                    script.path
                ),
            );
            None
        }
    }
}

/// The user name or password httpd passes, as Python gets it (`str` from UTF-8, as C builds
/// it); None (logged) when it is not UTF-8.
fn text_arg<'a>(r: *mut ap::request_rec, what: &str, bytes: &'a [u8]) -> Option<&'a str> {
    let text = std::str::from_utf8(bytes).ok();
    if text.is_none() {
        request_log(
            r,
            APLOG_ERR,
            &format!(
                "mod_wsgi (pid={}): The {what} is not UTF-8 and cannot be given to the \
                 authentication script.",
                std::process::id()
            ),
        );
    }
    text
}

/// What both authentication providers share: runs `f` with the `WSGIAuthUserScript` of `r`, the
/// user name and `other` (the password, or the realm: `what`) as text. None when there is no
/// script, an argument is not UTF-8 or Python cannot run it (each logged): the provider then
/// answers AUTH_GENERAL_ERROR.
///
/// # Safety
/// `r` must be a live request; `user` and `other` NUL-terminated strings httpd passed.
unsafe fn with_user_script<R>(
    r: *mut ap::request_rec,
    user: *const c_char,
    other: *const c_char,
    what: &str,
    f: impl FnOnce(pyo3::Python<'_>, &HookCall<'_>, &str, &str) -> R,
) -> Option<R> {
    // SAFETY: live request and NUL-terminated strings (caller's contract).
    let (script, user, other) = unsafe {
        (
            dir_config(r).auth_user_script.clone(),
            c_bytes(user),
            c_bytes(other),
        )
    };
    let Some(script) = script else {
        return no_script(r, "user authentication", None);
    };
    let (Some(user), Some(other)) = (text_arg(r, "user name", user), text_arg(r, what, other))
    else {
        return None;
    };
    // SAFETY: live request.
    unsafe {
        with_hook_call(r, &script, "WSGIAuthUserScript", |py, call| {
            f(py, call, user, other)
        })
    }
}

unsafe extern "C" fn check_password(
    r: *mut ap::request_rec,
    user: *const c_char,
    password: *const c_char,
) -> ap::authn_status {
    ffi_boundary(
        "check_password",
        ap::authn_status_AUTH_GENERAL_ERROR,
        || {
            // SAFETY: httpd calls the provider with a live request and NUL-terminated strings.
            let decided =
                unsafe { with_user_script(r, user, password, "password", auth::check_password) };
            match decided.unwrap_or(Authn::Error) {
                Authn::Granted(None) => ap::authn_status_AUTH_GRANTED,
                Authn::Granted(Some(name)) => {
                    // SAFETY: live request; the name is copied into its pool.
                    unsafe { (*r).user = pstrdup((*r).pool, name.as_bytes()) as *mut c_char };
                    ap::authn_status_AUTH_GRANTED
                }
                Authn::Denied => ap::authn_status_AUTH_DENIED,
                Authn::NotFound => ap::authn_status_AUTH_USER_NOT_FOUND,
                Authn::Error => ap::authn_status_AUTH_GENERAL_ERROR,
            }
        },
    )
}

unsafe extern "C" fn get_realm_hash(
    r: *mut ap::request_rec,
    user: *const c_char,
    realm: *const c_char,
    rethash: *mut *mut c_char,
) -> ap::authn_status {
    ffi_boundary(
        "get_realm_hash",
        ap::authn_status_AUTH_GENERAL_ERROR,
        || {
            // SAFETY: httpd calls the provider with a live request and NUL-terminated strings.
            let found = unsafe { with_user_script(r, user, realm, "realm", auth::realm_hash) };
            match found {
                Some(Ok(Some(hash))) => {
                    // SAFETY: live request; rethash is httpd's out pointer; the hash is copied
                    // into the request's pool.
                    unsafe { *rethash = pstrdup((*r).pool, &hash) as *mut c_char };
                    ap::authn_status_AUTH_USER_FOUND
                }
                Some(Ok(None)) => ap::authn_status_AUTH_USER_NOT_FOUND,
                _ => ap::authn_status_AUTH_GENERAL_ERROR,
            }
        },
    )
}

/// Said once per process: `WSGIGroupAuthoritative Off` was configured, which Apache 2.4 has no
/// use for.
static GROUP_AUTHORITATIVE_NOTED: AtomicBool = AtomicBool::new(false);

unsafe extern "C" fn check_authorization(
    r: *mut ap::request_rec,
    require_line: *const c_char,
    _parsed: *const c_void,
) -> ap::authz_status {
    ffi_boundary("check_authorization", ap::authz_status_AUTHZ_DENIED, || {
        // SAFETY: httpd calls the provider with a live request and a NUL-terminated line.
        let (user, config, require_line) =
            unsafe { ((*r).user, dir_config(r), c_bytes(require_line)) };
        if user.is_null() {
            return ap::authz_status_AUTHZ_DENIED_NO_USER;
        }
        // SAFETY: checked non-null; httpd's NUL-terminated user name.
        let user = unsafe { c_bytes(user) }.to_vec();
        if config.group_authoritative == Some(false)
            && !GROUP_AUTHORITATIVE_NOTED.swap(true, Ordering::Relaxed)
        {
            request_log(
                r,
                ap::APLOG_NOTICE,
                "mod_wsgi-rs: WSGIGroupAuthoritative Off has no effect with Apache 2.4 (nor in \
                 C mod_wsgi): put the Require lines that may grant access together in \
                 <RequireAny>",
            );
        }
        let Some(script) = config.auth_group_script.clone() else {
            return no_script(r, "group authorization", ap::authz_status_AUTHZ_DENIED);
        };
        let Some(user_text) = text_arg(r, "user name", &user) else {
            return ap::authz_status_AUTHZ_DENIED;
        };
        // SAFETY: live request.
        let groups = unsafe {
            with_hook_call(r, &script, "WSGIAuthGroupScript", |py, call| {
                auth::groups_for_user(py, call, user_text)
            })
        };
        let Some(Ok(groups)) = groups else {
            return ap::authz_status_AUTHZ_DENIED;
        };
        // SAFETY: live request.
        let uri = String::from_utf8_lossy(unsafe { c_bytes((*r).uri) }).into_owned();
        let pid = std::process::id();
        if groups.is_empty() {
            request_log(
                r,
                APLOG_ERR,
                &format!(
                    "mod_wsgi (pid={pid}): Authorization of user '{user_text}' to access '{uri}' \
                     failed. User is not a member of any groups."
                ),
            );
            return ap::authz_status_AUTHZ_DENIED;
        }
        let line = String::from_utf8_lossy(require_line);
        let wanted = crate::config::words::split_words(&line);
        if wanted
            .iter()
            .any(|w| groups.iter().any(|g| g == w.as_bytes()))
        {
            return ap::authz_status_AUTHZ_GRANTED;
        }
        request_log(
            r,
            APLOG_ERR,
            &format!(
                "mod_wsgi (pid={pid}): Authorization of user '{user_text}' to access '{uri}' \
                 failed. User is not a member of designated groups."
            ),
        );
        ap::authz_status_AUTHZ_DENIED
    })
}

unsafe extern "C" fn access_checker(r: *mut ap::request_rec) -> c_int {
    ffi_boundary(
        "access_checker",
        ap::HTTP_INTERNAL_SERVER_ERROR as c_int,
        || {
            // SAFETY: httpd calls the hook with a live request.
            match unsafe { dir_config(r) }.access_script.as_ref() {
                None => ap::DECLINED,
                // SAFETY: as above.
                Some(script) => unsafe { check_access(r, script) },
            }
        },
    )
}

/// `WSGIAccessScript`'s answer for `r`. Apart from the hook, which every request calls: only a
/// configuration with the script runs this, so its code stays out of the other servers' pages.
///
/// # Safety
/// `r` must be the live request of the hook call.
#[inline(never)]
unsafe fn check_access(r: *mut ap::request_rec, script: &HookScript) -> c_int {
    // SAFETY: live request and connection; the host string is httpd's (or null).
    let host = unsafe {
        let mut host = ap::ap_get_remote_host(
            (*r).connection,
            (*r).per_dir_config as *mut c_void,
            ap::REMOTE_HOST as c_int,
            ptr::null_mut(),
        );
        if host.is_null() {
            host = (*r).useragent_ip;
        }
        (!host.is_null()).then(|| String::from_utf8_lossy(c_bytes(host)).into_owned())
    };
    // SAFETY: live request.
    let allow = unsafe {
        with_hook_call(r, script, "WSGIAccessScript", |py, call| {
            auth::allow_access(py, call, host.as_deref())
        })
    };
    match allow {
        Some(None) => ap::DECLINED,
        Some(Some(true)) => ap::OK as c_int,
        _ => {
            // SAFETY: live request.
            let filename = unsafe { c_bytes((*r).filename) };
            request_log(
                r,
                APLOG_ERR,
                &format!(
                    "mod_wsgi (pid={}): Client denied by server configuration: '{}'.",
                    std::process::id(),
                    String::from_utf8_lossy(filename)
                ),
            );
            ap::HTTP_FORBIDDEN as c_int
        }
    }
}

/// A provider named in the configuration where no script is set: logged, and `failed`.
fn no_script<T>(r: *mut ap::request_rec, what: &str, failed: T) -> T {
    request_log(
        r,
        APLOG_ERR,
        &format!(
            "mod_wsgi (pid={}): Location of WSGI {what} script not provided.",
            std::process::id()
        ),
    );
    failed
}

/// The environ of a hook script, as C mod_wsgi builds it: the request headers (without its
/// credentials), the server's and connection's facts, and the request line's parts.
///
/// # Safety
/// `r` must be a live request.
unsafe fn hook_environ(r: *mut ap::request_rec) -> CgiVars {
    // SAFETY: live request, connection and server (caller's contract); every string read is
    // NUL-terminated and owned by httpd for the request's life.
    unsafe {
        let c = (*r).connection;
        let s = (*r).server;
        let text = |p: *const c_char| (!p.is_null()).then(|| c_bytes(p));
        let mut vars = CgiVars::with_capacity(48, 2048);
        for (name, value) in table_entries((*r).headers_in).iter() {
            let name = String::from_utf8_lossy(name);
            if name.eq_ignore_ascii_case("Content-Type") {
                vars.set("CONTENT_TYPE", value);
            } else if name.eq_ignore_ascii_case("Content-Length") {
                vars.set("CONTENT_LENGTH", value);
            } else if !name.eq_ignore_ascii_case("Authorization")
                && !name.eq_ignore_ascii_case("Proxy-Authorization")
                // As in the application's environ: a name that could pass for another's
                // (`X_User` for `X-User`) is left out.
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                vars.set(&header_environ_name(&name), value);
            }
        }
        vars.set(
            "SERVER_SIGNATURE",
            c_bytes(ap::ap_psignature(c"".as_ptr(), r)),
        );
        vars.set("SERVER_SOFTWARE", c_bytes(ap::ap_get_server_banner()));
        let name = ap::ap_escape_html2((*r).pool, ap::ap_get_server_name(r), 0);
        vars.set("SERVER_NAME", c_bytes(name));
        if let Some(ip) = text((*c).local_ip) {
            vars.set("SERVER_ADDR", ip);
        }
        vars.set("SERVER_PORT", ap::ap_get_server_port(r).to_string());
        let remote_host = ap::ap_get_remote_host(
            c,
            (*r).per_dir_config as *mut c_void,
            ap::REMOTE_HOST as c_int,
            ptr::null_mut(),
        );
        if let Some(host) = text(remote_host) {
            vars.set("REMOTE_HOST", host);
        }
        if let Some(ip) = text((*c).client_ip) {
            vars.set("REMOTE_ADDR", ip);
        }
        vars.set("DOCUMENT_ROOT", c_bytes(ap::ap_document_root(r)));
        if let Some(admin) = text((*s).server_admin) {
            vars.set("SERVER_ADMIN", admin);
        }
        if !(*c).client_addr.is_null() {
            vars.set("REMOTE_PORT", (*(*c).client_addr).port.to_string());
        }
        vars.set("SERVER_PROTOCOL", text((*r).protocol).unwrap_or_default());
        vars.set("REQUEST_METHOD", text((*r).method).unwrap_or_default());
        vars.set("QUERY_STRING", text((*r).args).unwrap_or_default());
        vars.set("REQUEST_URI", request_line_uri(text((*r).the_request)));
        let uri = text((*r).uri).unwrap_or_default();
        let path_info = text((*r).path_info).unwrap_or_default();
        let protocol = text((*r).protocol).unwrap_or_default();
        if protocol == b"INCLUDED" || path_info.is_empty() {
            vars.set("SCRIPT_NAME", uri);
            vars.set("PATH_INFO", path_info);
        } else {
            let start = ap::ap_find_path_info((*r).uri, (*r).path_info).max(0) as usize;
            vars.set("SCRIPT_NAME", &uri[..start.min(uri.len())]);
            vars.set("PATH_INFO", path_info);
        }
        vars
    }
}

/// The URI of a request line (`GET /a?b HTTP/1.1` → `/a?b`): what the client asked for, before
/// any rewriting.
fn request_line_uri(line: Option<&[u8]>) -> &[u8] {
    let line = line.unwrap_or_default();
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    words.next();
    words.next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_uri_is_the_second_word_of_the_request_line() {
        assert_eq!(
            request_line_uri(Some(b"GET /a/b?c=d HTTP/1.1")),
            b"/a/b?c=d"
        );
        assert_eq!(request_line_uri(Some(b"GET  /x")), b"/x");
        assert_eq!(request_line_uri(Some(b"GET")), b"");
        assert_eq!(request_line_uri(None), b"");
    }
}
