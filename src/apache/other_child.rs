//! APR's "other child" registrations: how Apache's parent hears about processes it forked that
//! are not its MPM's children (our daemon groups' supervisors).
//!
//! Facts of httpd and APR 1.7 that shape this module:
//! - The MPM's reaper asks the registrations about every process it reaps that is not one of its
//!   children; one nobody claims is logged as "long lost child came home!". A supervisor of a
//!   generation that has gone is still finishing its requests when the parent reaps it.
//! - httpd unloads this module and loads it again (often at another address) on every restart,
//!   and for good when it stops: a registration must not outlive the configuration pool, or the
//!   parent calls into code that is gone. So a finishing supervisor's pid is handed over, in the
//!   process pool (which outlives the module), to the next generation, which claims it in its own
//!   configuration pool.
//! - Unregistering data that is not registered crashes the process (APR dereferences the entry it
//!   did not find), so a registration is only ever undone by whoever knows it is still there.

use super::bindings as ap;
use super::boundary::ffi_boundary;
use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::ptr;

/// The process-pool userdata that carries the pids from one generation to the next.
const HANDED_OVER: &CStr = c"mod_wsgi_rs.finishing_supervisors";

/// Finishing supervisors carried over at most (more only means more "lost child" lines).
const MOST: usize = 64;

/// Plain data in the process pool, the same layout in every load of the module.
#[repr(C)]
struct HandedOver {
    count: usize,
    pids: [libc::pid_t; MOST],
}

/// The hand-over list, made the first time it is needed.
///
/// # Safety
/// Apache's parent, single-threaded; `server` is the live main server.
unsafe fn handed_over(server: *const ap::server_rec) -> *mut HandedOver {
    // SAFETY: the userdata is only ever a HandedOver made here, in the process pool, which is
    // never cleared; zeroed, it is an empty list.
    unsafe {
        let size = size_of::<HandedOver>();
        super::pool::userdata_once((*(*server).process).pool, HANDED_OVER, size, |bytes| {
            ptr::write_bytes(bytes, 0, size)
        })
        .cast()
    }
}

/// Leaves `pid`, a supervisor finishing after its configuration went, to the next generation
/// (see [`claim_handed_over`]).
///
/// # Safety
/// Apache's parent, single-threaded; `server` is the live main server.
pub(super) unsafe fn hand_over(server: *const ap::server_rec, pid: libc::pid_t) {
    // SAFETY: caller's contract; the list is plain data only the parent's thread touches.
    unsafe {
        let list = &mut *handed_over(server);
        if list.count < MOST {
            list.pids[list.count] = pid;
            list.count += 1;
        }
    }
}

/// A claimed supervisor's registration.
struct Claim {
    proc_: ap::apr_proc_t,
    pid: libc::pid_t,
    /// The parent has reaped it: nothing to hand over when the registration goes.
    reaped: bool,
    server: *const ap::server_rec,
}

/// Claims, in this generation's configuration pool `pconf`, the finishing supervisors the last
/// generation handed over, so that the parent's reaping of each is recognised.
///
/// # Safety
/// Apache's parent, single-threaded, in post_config; `server` is the main server and `pconf` the
/// configuration pool of this generation.
pub(super) unsafe fn claim_handed_over(pconf: *mut ap::apr_pool_t, server: *const ap::server_rec) {
    // SAFETY: caller's contract.
    let list = unsafe { &mut *handed_over(server) };
    let pids = list.pids[..list.count].to_vec();
    list.count = 0;
    for pid in pids {
        // Only a child of ours that still runs (one that has ended is reaped here, unlogged).
        // SAFETY: waitpid on a single pid, without blocking.
        if unsafe { libc::waitpid(pid, ptr::null_mut(), libc::WNOHANG) } != 0 {
            continue;
        }
        let claim = Box::into_raw(Box::new(Claim {
            // SAFETY: apr_proc_t is plain data; zero is "no process".
            proc_: unsafe { std::mem::zeroed() },
            pid,
            reaped: false,
            server,
        }));
        // SAFETY: `claim` lives until `claimed` frees it when the registration goes: when the
        // process is reaped, or with `pconf`, before httpd unloads this module.
        unsafe {
            (*claim).proc_.pid = pid;
            ap::apr_proc_other_child_register(
                &mut (*claim).proc_,
                Some(claimed),
                claim as *mut c_void,
                ptr::null_mut(),
                pconf,
            );
        }
    }
}

/// APR's news about a claimed supervisor.
unsafe extern "C" fn claimed(reason: c_int, data: *mut c_void, _status: c_int) {
    ffi_boundary("finishing supervisor event", (), || {
        let claim = data as *mut Claim;
        match reason as u32 {
            ap::APR_OC_REASON_DEATH | ap::APR_OC_REASON_LOST => {
                // SAFETY: `data` is this registration's Claim, registered until APR calls back
                // with UNREGISTER (below), which this call makes happen.
                unsafe {
                    (*claim).reaped = true;
                    ap::apr_proc_other_child_unregister(data);
                }
            }
            ap::APR_OC_REASON_UNREGISTER => {
                // SAFETY: the Box made in claim_handed_over; APR calls this once, as the
                // registration goes, and does not use `data` afterwards.
                let claim = unsafe { Box::from_raw(claim) };
                if !claim.reaped {
                    // The configuration is going while it still runs: on to the next one.
                    // SAFETY: the parent, in a cleanup of its configuration pool.
                    unsafe { hand_over(claim.server, claim.pid) };
                }
            }
            _ => {}
        }
    })
}
