//! APR's "other child" registrations: how Apache's parent hears about processes it forked that
//! are not its MPM's children (our daemon groups' supervisors).
//!
//! Two facts of APR 1.7 shape this module. Unregistering data that is not registered crashes the
//! process (APR dereferences the entry it did not find), so a registration is only ever undone
//! once, by whoever knows it is still there. And the MPM's reaper asks the registrations about
//! every process it reaps that is not one of its children: one nobody claims is logged as "long
//! lost child came home!".

use super::bindings as ap;
use super::boundary::ffi_boundary;
use std::os::raw::{c_int, c_void};
use std::ptr;

/// A supervisor of a configuration generation that has gone, finishing its requests on its own.
struct Finishing {
    proc_: ap::apr_proc_t,
}

/// Claims `pid`, a supervisor that is finishing after a restart, for the rest of the parent's
/// life (the process pool), so that reaping it is not reported as a lost child. The claim ends
/// when the process is reaped.
///
/// # Safety
/// Only in Apache's parent, single-threaded; `server` is the live main server.
pub(super) unsafe fn claim_until_reaped(server: *const ap::server_rec, pid: libc::pid_t) {
    let finishing = Box::into_raw(Box::new(Finishing {
        // SAFETY: apr_proc_t is plain data; zero is "no process".
        proc_: unsafe { std::mem::zeroed() },
    }));
    // SAFETY: `finishing` lives until `finished` frees it, which APR calls when the registration
    // ends (the process reaped, or the process pool destroyed at exit); the process pool outlives
    // every configuration generation.
    unsafe {
        (*finishing).proc_.pid = pid;
        ap::apr_proc_other_child_register(
            &mut (*finishing).proc_,
            Some(finished),
            finishing as *mut c_void,
            ptr::null_mut(),
            (*(*server).process).pool,
        );
    }
}

/// APR's news about a claimed process: once it is reaped, the claim ends.
unsafe extern "C" fn finished(reason: c_int, data: *mut c_void, _status: c_int) {
    ffi_boundary("finishing supervisor event", (), || match reason as u32 {
        // SAFETY: `data` is registered (this is its registration's callback, and it is only
        // unregistered here or by APR, which then calls back with UNREGISTER, below).
        ap::APR_OC_REASON_DEATH | ap::APR_OC_REASON_LOST => unsafe {
            ap::apr_proc_other_child_unregister(data)
        },
        // SAFETY: the Box made in claim_until_reaped; APR calls this once, as the registration
        // goes, and does not use `data` afterwards.
        ap::APR_OC_REASON_UNREGISTER => drop(unsafe { Box::from_raw(data as *mut Finishing) }),
        _ => {}
    })
}
