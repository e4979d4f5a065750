//! Daemon process groups on Apache's side: checking the groups once the configuration is read,
//! starting each group's supervisor from Apache's parent, stopping it when the configuration
//! goes (restart or stop), and the routes Apache's children use to reach the groups.

use super::bindings as ap;
use super::boundary::ffi_boundary;
use super::config::server_config;
use super::log::{process_server_log, server_log, set_process_server, APLOG_ERR, APLOG_INFO};
use super::other_child;
use super::pool::c_bytes;
use crate::config::accounts;
use crate::config::daemon::DaemonProcess;
use crate::config::ServerConfig;
use crate::daemon::plan::{self, GroupPlan, StartupImport, Token};
use crate::daemon::process::{self, Forked, Identity};
use crate::daemon::{supervisor, unix};
use crate::python::PythonSettings;
use std::ffi::{c_void, CString};
use std::os::fd::{AsFd, IntoRawFd, RawFd};
use std::os::raw::c_int;
use std::path::PathBuf;
use std::ptr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How Apache's children reach a group (set in the parent before the children are forked).
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub socket: PathBuf,
    /// The `ServerName` of the virtual host that defined the group; None: the main server
    /// (usable from every host).
    pub defined_in: Option<Vec<u8>>,
    pub processes: u32,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub header_buffer_size: usize,
    /// The most response body bytes a child holds at once (response-buffer-size).
    pub response_buffer_size: usize,
    /// How long one write of the response to the client may block (response-socket-timeout,
    /// else socket-timeout); None: Apache's `Timeout`, as for any response.
    pub response_timeout: Option<Duration>,
    /// Who the group's processes run as (part of its secret).
    pub uid: u32,
    pub gid: u32,
    /// `script-user=`/`script-group=`: who must own the scripts sent to the group.
    pub script_owner: Option<crate::daemon::script_owner::ScriptOwner>,
    listener: RawFd,
}

static ROUTES: Mutex<Vec<Route>> = Mutex::new(Vec::new());

fn routes() -> MutexGuard<'static, Vec<Route>> {
    ROUTES.lock().unwrap_or_else(|p| p.into_inner())
}

/// The route to group `name`, if one is configured.
pub fn route(name: &str) -> Option<Route> {
    routes().iter().find(|r| r.name == name).cloned()
}

/// The groups of this generation that could not be started, with why (their socket could not
/// be made): their requests are answered 503 with that, not as if no such group existed.
static NOT_STARTED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn not_started() -> MutexGuard<'static, Vec<(String, String)>> {
    NOT_STARTED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why group `name` is configured but was not started, if it was not.
pub fn why_not_started(name: &str) -> Option<String> {
    not_started()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, why)| why.clone())
}

/// The secret requests to the group of `route` carry (derived in an Apache child; see
/// secret.rs).
pub fn token_for(route: &Route) -> Token {
    super::secret::cached_group_token(&route.name, route.uid, route.gid).unwrap_or([0; 32])
}

/// Every group of the configuration with the server it was defined in.
///
/// # Safety
/// `s` must be the main server of a configuration this module's config hooks built.
unsafe fn all_groups(s: *mut ap::server_rec) -> Vec<(*mut ap::server_rec, DaemonProcess)> {
    // SAFETY: caller's contract.
    unsafe { super::config::servers_with_own_config(s) }
        .into_iter()
        .flat_map(|(server, config)| {
            config
                .daemon_groups
                .iter()
                .map(move |g| (server, g.clone()))
        })
        .collect()
}

/// The whole-configuration checks `apache2 -t` makes: group names are unique, and every
/// process group a `WSGIImportScript` or `WSGIScriptAlias` names literally is defined where it
/// can be used.
///
/// # Safety
/// `s` must be the main server of a configuration this module's config hooks built.
pub(super) unsafe fn check_configuration(s: *mut ap::server_rec) -> Result<(), String> {
    // SAFETY: caller's contract.
    let groups = unsafe { all_groups(s) };
    for (i, (_, g)) in groups.iter().enumerate() {
        if groups[..i].iter().any(|(_, other)| other.name == g.name) {
            return Err(format!(
                "WSGIDaemonProcess{}: a daemon process group named '{}' is defined twice \
                 (names are shared by all virtual hosts)",
                place(&g.defined_at),
                g.name
            ));
        }
    }
    let mut server = s;
    while !server.is_null() {
        // SAFETY: as in all_groups.
        let conf = unsafe { server_config(server) };
        // A `WSGIScriptAlias` naming both groups is among the imports too: name it as such.
        let wanted = conf.import_scripts.iter().map(|i| {
            let by_alias = conf
                .aliases
                .iter()
                .any(|a| crate::config::ImportScript::from_alias(a).as_ref() == Some(i));
            let directive = if by_alias {
                "WSGIScriptAlias"
            } else {
                "WSGIImportScript"
            };
            (directive, i.clone())
        });
        for (directive, import) in wanted {
            let name = &import.process_group;
            if name.is_empty() {
                continue;
            }
            let at = place(&import.defined_at);
            let Some((home, _)) = groups.iter().find(|(_, g)| &g.name == name) else {
                return Err(format!(
                    "{directive}{at}: no WSGIDaemonProcess named '{name}' is defined"
                ));
            };
            // SAFETY: both are servers of the list.
            if !unsafe { reachable_from(*home, server, s) } {
                return Err(format!(
                    "{directive}{at}: the daemon process group '{name}' is defined in another \
                     virtual host and cannot be used here"
                ));
            }
        }
        // SAFETY: as in all_groups.
        server = unsafe { (*server).next };
    }
    Ok(())
}

/// ` (line N of FILE)`, or nothing when the place is not known.
fn place(defined_at: &Option<String>) -> String {
    defined_at
        .as_ref()
        .map(|at| format!(" ({at})"))
        .unwrap_or_default()
}

/// Whether a group defined in `home` serves requests of `server`: groups of the main server
/// serve all; a virtual host's serve the hosts with the same `ServerName`.
///
/// # Safety
/// All three must be live servers.
unsafe fn reachable_from(
    home: *mut ap::server_rec,
    server: *mut ap::server_rec,
    main: *mut ap::server_rec,
) -> bool {
    // SAFETY: caller's contract.
    home == main || home == server || unsafe { hostname(home) == hostname(server) }
}

/// # Safety
/// `s` must be a live server.
unsafe fn hostname(s: *const ap::server_rec) -> Option<Vec<u8>> {
    // SAFETY: caller's contract; the name is copied.
    unsafe {
        let name = (*s).server_hostname;
        (!name.is_null()).then(|| c_bytes(name).to_vec())
    }
}

/// Whether request server `s` may use `route` (see `reachable_from`).
///
/// # Safety
/// `s` must be a live server.
pub unsafe fn may_use(route: &Route, s: *const ap::server_rec) -> bool {
    // SAFETY: caller's contract.
    route.defined_in.is_none() || unsafe { hostname(s) } == route.defined_in
}

/// The main server, for log lines of the parent that have no server at hand: with a null server
/// httpd logs only up to its default level (warning), so an INFO line would be lost.
fn main_server() -> *const ap::server_rec {
    // SAFETY: ap_server_conf is set by httpd before any configuration hook runs.
    unsafe { ap::ap_server_conf }
}

/// What Apache's parent keeps about a started group, owned by the configuration pool.
struct Started {
    plan: GroupPlan,
    /// The server (main or virtual host) the group is defined in: its error log takes the
    /// group's lines that belong to no request.
    home: *mut ap::server_rec,
    /// The supervisor, as APR's "other child" registration knows it.
    proc_: ap::apr_proc_t,
    /// The registration is in place (undoing one that is not crashes the parent: see
    /// other_child.rs).
    registered: bool,
    /// The supervisor `proc_` names runs (was started and has not been seen to end): the
    /// registration may be gone while it still runs, when its pool is cleared first.
    running: bool,
    socket: PathBuf,
    apache_pid: u32,
    /// The configuration pool the registration belongs to.
    pool: *mut ap::apr_pool_t,
}

/// Starts every configured group (Apache's parent, once per configuration generation).
///
/// # Safety
/// `pconf` must be the configuration pool and `s` the main server of this generation.
pub(super) unsafe fn start_groups(pconf: *mut ap::apr_pool_t, s: *mut ap::server_rec) {
    // SAFETY: caller's contract.
    unsafe { other_child::claim_handed_over(pconf, s) };
    // SAFETY: caller's contract.
    let groups = unsafe { all_groups(s) };
    routes().clear();
    not_started().clear();
    if groups.is_empty() {
        return;
    }
    // SAFETY: s is live; its process_rec holds httpd's process pool.
    unsafe { super::secret::load_master((*(*s).process).pool) };
    // SAFETY: s is the main server, whose config this module built.
    let main_conf = unsafe { server_config(s) };
    // SAFETY: ap_unixd_config is filled by the User/Group directives before post_config.
    let (apache_uid, apache_gid, apache_user) = unsafe {
        let c = ptr::addr_of!(ap::ap_unixd_config);
        (
            (*c).user_id,
            (*c).group_id,
            String::from_utf8_lossy(c_bytes((*c).user_name)).into_owned(),
        )
    };
    // SAFETY: pconf is live; the prefix is resolved into it.
    let prefix = unsafe { socket_prefix(pconf, main_conf) };
    let apache_pid = std::process::id();
    // The MPM counts its generations from 0 and moves to the next one before the configuration
    // is read again, so this is the generation whose children will use these routes.
    let generation = (main_conf.socket_rotation == Some(true))
        .then(|| super::hooks::mpm_query(ap::AP_MPMQ_GENERATION));
    let mut plans = Vec::new();
    for (index, (home, group)) in groups.iter().enumerate() {
        let socket = plan::socket_path(&prefix, apache_pid, generation, index + 1);
        // SAFETY: home is a live server.
        let io_timeout = if group.options.socket_timeout.is_zero() {
            Duration::from_micros(unsafe { (**home).timeout }.max(0) as u64)
        } else {
            group.options.socket_timeout
        };
        let o = &group.options;
        let socket_owner = o.socket_user.as_ref().map_or(apache_uid, |a| a.uid);
        let listener = match unix::bind_listener(
            &socket,
            o.listen_backlog,
            Some((socket_owner, apache_gid)),
            o.send_buffer_size,
            o.receive_buffer_size,
        )
        .and_then(|fd| unix::set_nonblocking(fd.as_fd(), true).map(|()| fd))
        {
            Ok(fd) => fd.into_raw_fd(),
            Err(e) => {
                let why = format!(
                    "cannot create the socket '{}' of daemon process group '{}': {e}",
                    socket.display(),
                    group.name
                );
                server_log(
                    s,
                    APLOG_ERR,
                    &format!(
                        "mod_wsgi-rs: {why}. Its requests will fail with 503; check \
                         WSGISocketPrefix."
                    ),
                );
                not_started().push((group.name.clone(), why));
                continue;
            }
        };
        let identity = identity(group, apache_uid, apache_gid, &apache_user);
        let working_directory = o.home.clone().or_else(|| {
            (identity.uid != apache_uid)
                .then(|| accounts::lookup_user(&format!("#{}", identity.uid)).ok())
                .flatten()
                .map(|a| a.home)
        });
        routes().push(Route {
            name: group.name.clone(),
            uid: identity.uid,
            gid: identity.gid,
            socket: socket.clone(),
            // SAFETY: home is a live server.
            defined_in: if *home == s {
                None
            } else {
                unsafe { hostname(*home) }
            },
            processes: o.processes,
            connect_timeout: o.connect_timeout,
            io_timeout,
            header_buffer_size: o.header_buffer_size as usize,
            response_buffer_size: o.response_buffer_size as usize,
            response_timeout: [o.response_socket_timeout, o.socket_timeout]
                .into_iter()
                .find(|t| !t.is_zero()),
            script_owner: crate::daemon::script_owner::ScriptOwner::of(o),
            listener,
        });
        let mut info = super::hooks::server_info();
        info.process_group = group.name.clone();
        info.multithread = o.threads > 1;
        info.multiprocess = o.multiprocess;
        info.maximum_processes = o.processes as i32;
        info.threads_per_process = o.threads as i32;
        if o.server_metrics {
            info.server_metrics = Some(super::scoreboard::read);
        }
        plans.push((
            GroupPlan {
                name: group.name.clone(),
                options: o.clone(),
                identity,
                working_directory_required: o.home.is_some(),
                working_directory,
                listener,
                socket_path: socket,
                // Derived by the forked supervisor itself (forget_inherited).
                token: [0; 32],
                io_timeout,
                // SAFETY: geteuid has no preconditions.
                allowed_peers: vec![apache_uid, unsafe { libc::geteuid() }],
                python: group_python(main_conf, group),
                // SAFETY: s is the main server of this configuration.
                imports: unsafe { startup_imports(s, &group.name) },
                server_info: info,
                apache_pid: apache_pid as i32,
                log: process_server_log,
                forget_inherited,
                set_title,
            },
            *home,
        ));
    }
    // SAFETY: ap_exists_scoreboard_image only reads httpd's global pointer.
    if unsafe { ap::ap_exists_scoreboard_image() } == 0 {
        // First start: httpd creates the scoreboard after post_config (in pre_mpm), and a
        // process forked before that never sees it, so mod_wsgi.server_metrics() would have
        // nothing to read in the daemons. As C mod_wsgi does, fork once it exists.
        deferred().extend(plans.into_iter().map(|(plan, home)| Deferred {
            pconf,
            plan,
            home,
            apache_pid,
        }));
        return;
    }
    for (plan, home) in plans {
        // SAFETY: pconf is live; the parent is single-threaded here.
        unsafe { start_supervisor(pconf, plan, home, apache_pid) };
    }
}

/// A group whose supervisor waits for the scoreboard (see `start_groups`).
struct Deferred {
    pconf: *mut ap::apr_pool_t,
    plan: GroupPlan,
    home: *mut ap::server_rec,
    apache_pid: u32,
}

// SAFETY: only Apache's parent, single-threaded during start-up, makes and takes these.
unsafe impl Send for Deferred {}

static DEFERRED: Mutex<Vec<Deferred>> = Mutex::new(Vec::new());

fn deferred() -> MutexGuard<'static, Vec<Deferred>> {
    DEFERRED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forks the supervisors `start_groups` left for when the scoreboard exists (httpd's pre_mpm
/// phase on first start; nothing to do on a restart).
///
/// # Safety
/// Apache's parent, single-threaded, after the scoreboard was created and before the MPM forks
/// its children, with the configuration pool the groups were planned in still live.
pub(super) unsafe fn start_deferred_groups() {
    let waiting = std::mem::take(&mut *deferred());
    for d in waiting {
        // SAFETY: caller's contract; d.pconf is the live configuration pool.
        unsafe { start_supervisor(d.pconf, d.plan, d.home, d.apache_pid) };
    }
}

/// The user, group and supplementary groups a group's processes run as.
fn identity(
    group: &DaemonProcess,
    apache_uid: u32,
    apache_gid: u32,
    apache_user: &str,
) -> Identity {
    let o = &group.options;
    let (uid, user_name) = match &o.user {
        Some(a) => (a.uid, a.name.clone()),
        None => (apache_uid, apache_user.to_string()),
    };
    Identity {
        uid,
        gid: o.group.as_ref().map_or(apache_gid, |g| g.gid),
        user_name,
        supplementary_groups: (!o.supplementary_groups.is_empty())
            .then(|| o.supplementary_groups.iter().map(|g| g.gid).collect()),
    }
}

/// Python settings of a group: the global ones, with the group's python-home (else
/// `WSGIPythonHome`), python-path and python-eggs (`WSGIPythonPath` and `WSGIPythonEggs` are
/// for Apache's own children only, as in C mod_wsgi: one project's path must not reach another's
/// group) and home (first on `sys.path`, as in C mod_wsgi).
fn group_python(main: &ServerConfig, group: &DaemonProcess) -> PythonSettings {
    let o = &group.options;
    let mut settings = super::hooks::python_settings(main);
    if o.python_home.is_some() {
        settings.home = o.python_home.clone();
        settings.home_option = Some("python-home=");
    }
    settings.path = o.python_path.clone();
    settings.eggs = o.python_eggs.clone();
    if let Some(home) = &o.home {
        settings.path.insert(0, home.clone());
    }
    settings
}

/// The scripts of every server that the processes of group `name` import at start.
///
/// # Safety
/// `s` must be the main server of a configuration this module's config hooks built.
unsafe fn startup_imports(s: *mut ap::server_rec, name: &str) -> Vec<StartupImport> {
    // SAFETY: caller's contract.
    unsafe { super::preload::import_scripts(s) }
        .into_iter()
        .filter(|i| i.process_group == name)
        .map(|i| StartupImport {
            script: i.script,
            application_group: i.application_group,
        })
        .collect()
}

/// The socket path prefix: `WSGISocketPrefix` relative to ServerRoot, else `wsgi` in Apache's
/// runtime directory (`DefaultRuntimeDir`, /var/run/apache2 on Debian), which Apache's user can
/// search.
///
/// # Safety
/// `pconf` must be the live configuration pool.
unsafe fn socket_prefix(pconf: *mut ap::apr_pool_t, conf: &ServerConfig) -> String {
    // SAFETY: the functions return strings allocated in pconf.
    unsafe {
        let resolved = match &conf.socket_prefix {
            Some(prefix) => {
                let c = CString::new(prefix.as_str()).unwrap_or_default();
                ap::ap_server_root_relative(pconf, c.as_ptr())
            }
            None => ap::ap_runtime_dir_relative(pconf, c"wsgi".as_ptr()),
        };
        if resolved.is_null() {
            return conf.socket_prefix.clone().unwrap_or_else(|| "wsgi".into());
        }
        String::from_utf8_lossy(c_bytes(resolved)).into_owned()
    }
}

/// Forks the supervisor of `plan`, a group defined in server `home`, and has the configuration
/// pool stop it.
///
/// # Safety
/// `pconf` must be the live configuration pool and `home` a server of its configuration; the
/// caller must be single-threaded.
unsafe fn start_supervisor(
    pconf: *mut ap::apr_pool_t,
    plan: GroupPlan,
    home: *mut ap::server_rec,
    apache_pid: u32,
) {
    let started = Box::into_raw(Box::new(Started {
        socket: plan.socket_path.clone(),
        plan,
        home,
        // SAFETY: apr_proc_t is plain data; zero is "no process".
        proc_: unsafe { std::mem::zeroed() },
        registered: false,
        running: false,
        apache_pid,
        pool: pconf,
    }));
    // SAFETY: `started` lives until the pool cleanup below frees it.
    unsafe {
        fork_supervisor(started, pconf);
        ap::apr_pool_cleanup_register(
            pconf,
            started as *const c_void,
            Some(stop_group),
            Some(ap::apr_pool_cleanup_null),
        );
    }
}

/// Forks (again) the supervisor of a started group and registers it with APR, so Apache's parent
/// hears when it dies.
///
/// # Safety
/// `started` must be live; `pool` the configuration pool.
unsafe fn fork_supervisor(started: *mut Started, pool: *mut ap::apr_pool_t) {
    // SAFETY: caller's contract.
    let st = unsafe { &mut *started };
    match process::fork_with_control_signals_held() {
        Ok(Forked::Child) => {
            // SAFETY: a server of the live configuration, which the forked process keeps.
            unsafe { set_process_server(st.home) };
            supervisor::run(st.plan.clone())
        }
        Ok(Forked::Parent(pid)) => {
            st.proc_.pid = pid;
            // SAFETY: proc_ and started live until stop_group unregisters and frees them.
            unsafe {
                ap::apr_proc_other_child_register(
                    &mut st.proc_,
                    Some(supervisor_event),
                    started as *mut c_void,
                    ptr::null_mut(),
                    pool,
                )
            };
            st.registered = true;
            st.running = true;
            server_log(
                main_server(),
                APLOG_INFO,
                &format!(
                    "mod_wsgi-rs: Started daemon process group '{}' (supervisor pid {pid}, \
                     socket '{}').",
                    st.plan.name,
                    st.socket.display()
                ),
            );
        }
        Err(e) => server_log(
            main_server(),
            APLOG_ERR,
            &format!(
                "mod_wsgi-rs: Cannot start daemon process group '{}': {e}",
                st.plan.name
            ),
        ),
    }
}

/// APR's news about a supervisor: when it died while Apache runs, start it again.
unsafe extern "C" fn supervisor_event(reason: c_int, data: *mut c_void, status: c_int) {
    ffi_boundary("daemon supervisor event", (), || {
        let started = data as *mut Started;
        match reason as u32 {
            ap::APR_OC_REASON_UNREGISTER => {
                // APR removes the registration: asked to (here, or by stop_group), or because
                // the pool it was made in is being cleared, which may come before stop_group
                // (a supervisor started again registered after stop_group's cleanup, and pool
                // cleanups run last first). stop_group must not undo it again: APR crashes.
                // SAFETY: data is the Started registered with this callback, alive until
                // stop_group frees it (after which it is no longer registered).
                unsafe { (*started).registered = false };
                return;
            }
            ap::APR_OC_REASON_DEATH | ap::APR_OC_REASON_LOST => {}
            _ => return,
        }
        // SAFETY: unregistering the registration this callback belongs to (APR calls back with
        // UNREGISTER first).
        unsafe { ap::apr_proc_other_child_unregister(data) };
        // SAFETY: as above; no other reference to it is live.
        let st = unsafe { &mut *started };
        st.running = false;
        let mut state: c_int = 0;
        // SAFETY: ap_mpm_query writes one int.
        unsafe { ap::ap_mpm_query(ap::AP_MPMQ_MPM_STATE as c_int, &mut state) };
        if state == ap::AP_MPMQ_STOPPING as c_int {
            return;
        }
        server_log(
            main_server(),
            APLOG_ERR,
            &format!(
                "mod_wsgi-rs: The supervisor (pid {}) of daemon process group '{}' has died \
                 (status {status}); starting it again.",
                st.proc_.pid, st.plan.name
            ),
        );
        // SAFETY: the registration and the pool are those of the live configuration.
        unsafe { fork_supervisor(started, st.pool) };
    })
}

/// The configuration is going (restart or stop): remove the socket so no new request reaches
/// the group, then tell the supervisor to stop; its processes serve what is already queued and
/// finish their requests (within shutdown-timeout) on their own, so Apache's restart does not
/// wait for them.
unsafe extern "C" fn stop_group(data: *mut c_void) -> ap::apr_status_t {
    ffi_boundary("daemon group cleanup", 0, || {
        let raw = data as *mut Started;
        // Apache's children run the configuration pool's cleanups too when they exit; only the
        // parent owns the group.
        // SAFETY: data is the Started registered with this cleanup, which runs once.
        if std::process::id() != unsafe { (*raw).apache_pid } {
            return 0;
        }
        // SAFETY: as above; read before unregistering, whose callback writes `registered`.
        let (registered, running, pid) =
            unsafe { ((*raw).registered, (*raw).running, (*raw).proc_.pid) };
        if registered {
            // SAFETY: registered with this data, and not undone since (see supervisor_event).
            unsafe { ap::apr_proc_other_child_unregister(data) };
        }
        // SAFETY: the Box made in start_supervisor; nothing refers to it any more.
        let started = unsafe { Box::from_raw(raw) };
        let _ = std::fs::remove_file(&started.socket);
        // SAFETY: the parent's own copy of the listener, not used after this.
        unsafe { libc::close(started.plan.listener) };
        if running {
            process::kill(pid, libc::SIGTERM);
            // On a restart the parent reaps it later, once it has finished: the next generation
            // claims it then.
            // SAFETY: the parent, single-threaded in a pool cleanup; the main server is live.
            unsafe { other_child::hand_over(main_server(), pid) };
        }
        0
    })
}

/// In each Apache child: the groups' listening sockets are the daemons' business.
pub(super) fn close_listeners_in_child() {
    for r in routes().iter() {
        // SAFETY: the child's inherited copy of a listener it never uses.
        unsafe { libc::close(r.listener) };
    }
}

/// In a forked supervisor, first thing: closes Apache's listening sockets and the other groups'
/// sockets, derives the group's own token, and wipes the master secret (see secret.rs).
fn forget_inherited(keep: RawFd, group: &str, uid: u32, gid: u32) -> Token {
    // SAFETY: closes the listeners httpd opened in this (forked) process; nothing here accepts.
    unsafe { ap::ap_close_listeners() };
    for r in routes().iter().filter(|r| r.listener != keep) {
        // SAFETY: an inherited descriptor this process does not use.
        unsafe { libc::close(r.listener) };
    }
    let token = super::secret::group_token(group, uid, gid).unwrap_or([0; 32]);
    super::secret::forget_master();
    token
}

/// `display-name`: what `ps` shows for a daemon process.
fn set_title(title: &str) {
    // SAFETY: ap_server_conf's process_rec holds the argv httpd's main received; nothing reads
    // it as arguments in a daemon process.
    unsafe {
        let s = ap::ap_server_conf;
        if s.is_null() || (*s).process.is_null() {
            return;
        }
        let p = (*s).process;
        process::set_command_line((*p).argc as usize, (*p).argv as *const *mut _, title);
    }
}
