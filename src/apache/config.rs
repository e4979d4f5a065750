//! httpd's side of our configuration: the create/merge callbacks for per-server and
//! per-directory config, the directive handler behind every `WSGI*` directive, and lookups.

use super::bindings as ap;
use super::boundary::ffi_boundary;
use super::pool::{c_bytes, give_to_pool, pstrdup};
use crate::config::directives::{not_supported_message, Action, Scope, DIRECTIVES};
use crate::config::{AliasPattern, DirConfig, RegexHandle, ServerConfig};
use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::ptr;

/// Reads this module's slot of an httpd config vector.
///
/// # Safety
/// `vector` must be a module_config/per_dir_config vector of a live server or request.
unsafe fn module_slot(vector: *mut ap::ap_conf_vector_t) -> *mut c_void {
    // SAFETY: the vector is an array indexed by module_index (http_config.h's
    // ap_get_module_config macro); our index was assigned when httpd loaded the module.
    unsafe {
        let index = (*ptr::addr_of!(crate::wsgi_module)).module_index as usize;
        *(vector as *mut *mut c_void).add(index)
    }
}

/// The merged per-server config of `s`.
///
/// # Safety
/// `s` must be a live server_rec whose config was created by this module.
pub unsafe fn server_config<'a>(s: *const ap::server_rec) -> &'a ServerConfig {
    // SAFETY: create/merge_server_config stored a pool-owned ServerConfig in our slot.
    unsafe { &*(module_slot((*s).module_config) as *const ServerConfig) }
}

/// Each server of the list that starts at `s` (the main server, then the virtual hosts) with its
/// configuration, leaving out a virtual host whose configuration is one already listed: httpd
/// gives a host without any of this module's directives the main server's, the same object, and
/// its groups and imports must not count twice.
///
/// # Safety
/// `s` must be the main server of a configuration this module's config hooks built.
pub unsafe fn servers_with_own_config<'a>(
    s: *mut ap::server_rec,
) -> Vec<(*mut ap::server_rec, &'a ServerConfig)> {
    let mut servers: Vec<(*mut ap::server_rec, &'a ServerConfig)> = Vec::new();
    let mut server = s;
    while !server.is_null() {
        // SAFETY: every server of the list has our config; `next` ends with null.
        unsafe {
            let config = server_config(server);
            if !servers.iter().any(|(_, seen)| std::ptr::eq(*seen, config)) {
                servers.push((server, config));
            }
            server = (*server).next;
        }
    }
    servers
}

/// The merged per-directory config of a request.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn dir_config<'a>(r: *const ap::request_rec) -> &'a DirConfig {
    // SAFETY: create/merge_dir_config stored a pool-owned DirConfig in our slot.
    unsafe { &*(module_slot((*r).per_dir_config) as *const DirConfig) }
}

pub(crate) unsafe extern "C" fn create_server_config(
    p: *mut ap::apr_pool_t,
    _s: *mut ap::server_rec,
) -> *mut c_void {
    ffi_boundary("create_server_config", ptr::null_mut(), || {
        // SAFETY: httpd passes a live config pool.
        unsafe { give_to_pool(p, ServerConfig::default()) as *mut c_void }
    })
}

pub(crate) unsafe extern "C" fn merge_server_config(
    p: *mut ap::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    ffi_boundary("merge_server_config", ptr::null_mut(), || {
        // SAFETY: both were created by create_server_config and live in the config pool.
        let merged = unsafe {
            ServerConfig::merge(
                &*(base as *const ServerConfig),
                &*(add as *const ServerConfig),
            )
        };
        // SAFETY: httpd passes a live config pool.
        unsafe { give_to_pool(p, merged) as *mut c_void }
    })
}

pub(crate) unsafe extern "C" fn create_dir_config(
    p: *mut ap::apr_pool_t,
    _dir: *mut c_char,
) -> *mut c_void {
    ffi_boundary("create_dir_config", ptr::null_mut(), || {
        // SAFETY: httpd passes a live config pool.
        unsafe { give_to_pool(p, DirConfig::default()) as *mut c_void }
    })
}

pub(crate) unsafe extern "C" fn merge_dir_config(
    p: *mut ap::apr_pool_t,
    base: *mut c_void,
    add: *mut c_void,
) -> *mut c_void {
    ffi_boundary("merge_dir_config", ptr::null_mut(), || {
        // SAFETY: both were created by create_dir_config and live in the config pool.
        let merged =
            unsafe { DirConfig::merge(&*(base as *const DirConfig), &*(add as *const DirConfig)) };
        // SAFETY: httpd passes a live config pool.
        unsafe { give_to_pool(p, merged) as *mut c_void }
    })
}

/// The single RAW_ARGS handler behind every directive; `cmd->info` is its index in DIRECTIVES.
pub(crate) unsafe extern "C" fn handle_directive(
    cmd: *mut ap::cmd_parms,
    mconfig: *mut c_void,
    args: *const c_char,
) -> *const c_char {
    let fallback = c"mod_wsgi-rs: internal error while reading a WSGI directive".as_ptr();
    ffi_boundary("directive handler", fallback, || {
        // SAFETY: httpd passes the live cmd_parms for this directive and its raw argument line.
        let (cmd_ref, args) = unsafe { (&*cmd, c_bytes(args)) };
        let directive = &DIRECTIVES[cmd_ref.info as usize];
        let name = directive.name_str();
        let result = (|| -> Result<(), String> {
            let context = match directive.scope {
                Scope::Global => ap::GLOBAL_ONLY,
                Scope::Server => ap::NOT_IN_DIR_LOC_FILE,
                // httpd itself keeps Section directives out of .htaccess and AuthConfig ones
                // out of the server and virtual hosts (by req_override).
                Scope::Directory | Scope::Section | Scope::AuthConfig => 0,
            };
            if context != 0 {
                // SAFETY: cmd is live; the returned message (if any) is a static/pool string.
                let err = unsafe { ap::ap_check_cmd_context(cmd, context) };
                if !err.is_null() {
                    // SAFETY: non-null, NUL-terminated message from httpd.
                    return Err(String::from_utf8_lossy(unsafe { c_bytes(err) }).into_owned());
                }
            }
            let args = std::str::from_utf8(args)
                .map_err(|_| format!("{name}: arguments are not valid UTF-8"))?;
            match directive.action {
                Action::Server(apply) => {
                    // SAFETY: cmd->server is the server being configured; its slot holds the
                    // ServerConfig created for it, which only the config thread touches now.
                    let conf = unsafe {
                        &mut *(module_slot((*cmd_ref.server).module_config) as *mut ServerConfig)
                    };
                    let counts = (
                        conf.aliases.len(),
                        conf.import_scripts.len(),
                        conf.daemon_groups.len(),
                    );
                    apply(conf, name, args)?;
                    // SAFETY: cmd is live; its directive (if any) and file name are httpd's.
                    let at = unsafe { directive_location(cmd_ref) };
                    if conf.aliases.len() > counts.0 {
                        conf.aliases.last_mut().unwrap().defined_at = at.clone();
                    }
                    for import in &mut conf.import_scripts[counts.1..] {
                        import.defined_at = at.clone();
                    }
                    if conf.daemon_groups.len() > counts.2 {
                        conf.daemon_groups.last_mut().unwrap().defined_at = at;
                    }
                    if let Some(alias) = conf.aliases.last_mut() {
                        if let (AliasPattern::Regex(re), None) = (&alias.pattern, alias.regex) {
                            // SAFETY: cmd->pool is the config pool, alive as long as the alias.
                            alias.regex = Some(unsafe { compile_regex(cmd_ref.pool, name, re)? });
                        }
                    }
                    Ok(())
                }
                Action::Dir(apply) => {
                    // SAFETY: for ACCESS_CONF/RSRC_CONF/OR_* directives httpd passes our DirConfig.
                    apply(unsafe { &mut *(mconfig as *mut DirConfig) }, name, args)
                }
                Action::NotYetSupported(why) => Err(not_supported_message(name, why)),
            }
        })();
        match result {
            Ok(()) => ptr::null(),
            // SAFETY: cmd->pool is live; httpd prints and discards the message.
            Err(msg) => unsafe { pstrdup(cmd_ref.pool, msg.as_bytes()) },
        }
    })
}

/// `line N of FILE` for the directive being read, as httpd names places in its messages.
///
/// # Safety
/// `cmd` must be the live cmd_parms of a directive handler call.
unsafe fn directive_location(cmd: &ap::cmd_parms) -> Option<String> {
    // SAFETY: caller's contract; the directive and its file name are httpd's, NUL-terminated.
    unsafe {
        let d = cmd.directive;
        if d.is_null() || (*d).filename.is_null() {
            return None;
        }
        Some(format!(
            "line {} of {}",
            (*d).line_num,
            String::from_utf8_lossy(c_bytes((*d).filename))
        ))
    }
}

/// Compiles a `WSGIScriptAliasMatch` pattern with httpd's regex engine into the config pool.
///
/// # Safety
/// `pool` must be the live config pool.
unsafe fn compile_regex(
    pool: *mut ap::apr_pool_t,
    name: &str,
    re: &str,
) -> Result<RegexHandle, String> {
    // SAFETY: the pattern is copied into the pool as a C string; ap_pregcomp registers the
    // compiled regex's cleanup on the same pool.
    let compiled = unsafe { ap::ap_pregcomp(pool, pstrdup(pool, re.as_bytes()), 0) };
    if compiled.is_null() {
        return Err(format!(
            "{name}: regular expression '{re}' could not be compiled"
        ));
    }
    Ok(RegexHandle(compiled as usize))
}

/// httpd's command table, built at compile time from DIRECTIVES (terminated by a zeroed entry).
#[repr(transparent)]
pub struct CommandTable(pub [ap::command_rec; DIRECTIVES.len() + 1]);

// SAFETY: the table is immutable after compilation and only holds pointers to static data.
unsafe impl Sync for CommandTable {}

const fn build_commands() -> CommandTable {
    let mut table: [ap::command_rec; DIRECTIVES.len() + 1] = unsafe {
        // SAFETY: command_rec is plain old data; an all-zero entry is httpd's terminator.
        std::mem::zeroed()
    };
    let mut i = 0;
    while i < DIRECTIVES.len() {
        let d = &DIRECTIVES[i];
        table[i].name = d.name.as_ptr();
        table[i].func = ap::cmd_func {
            raw_args: Some(handle_directive),
        };
        table[i].cmd_data = ptr::without_provenance_mut(i);
        table[i].req_override = match d.scope {
            Scope::Global | Scope::Server => ap::RSRC_CONF as c_int,
            Scope::Directory => (ap::RSRC_CONF | ap::ACCESS_CONF | ap::OR_FILEINFO) as c_int,
            Scope::Section => (ap::RSRC_CONF | ap::ACCESS_CONF) as c_int,
            Scope::AuthConfig => (ap::ACCESS_CONF | ap::OR_AUTHCFG) as c_int,
        };
        table[i].args_how = ap::cmd_how_RAW_ARGS;
        table[i].errmsg = d.help.as_ptr() as *const c_char;
        i += 1;
    }
    CommandTable(table)
}

pub static COMMANDS: CommandTable = build_commands();
