//! The secrets that tell a daemon process group a request comes from one of Apache's children.
//!
//! One random master secret lives in httpd's process pool (so it survives restarts: children of
//! an old generation still reach the new generation's daemons). Each group's token is derived
//! from it and the group's name, so the processes of one group, which run
//! applications, hold their own token only and cannot make requests to another group, which may
//! run as another user. Apache's parent keeps only the master; its children derive the tokens
//! they send; a group's supervisor derives its own token right after the fork and then wipes the
//! master from its memory, before any application code runs in the processes it forks. The
//! token is HMAC-SHA-256(master, "mod_wsgi-rs group token\0" ‖ name ‖ "\0" ‖ uid:gid): a
//! token learned while a group ran as one user is worthless once it runs as another.

use super::bindings as ap;
use crate::sha256::wipe;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

pub type Token = [u8; 32];

const MASTER_LEN: usize = 32;

/// The master secret's bytes in httpd's process pool (null until loaded).
static MASTER: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

/// Makes the master secret (the first time) or finds it again in httpd's process pool.
///
/// # Safety
/// `process_pool` must be httpd's process pool.
pub unsafe fn load_master(process_pool: *mut ap::apr_pool_t) {
    const KEY: &std::ffi::CStr = c"mod_wsgi_rs.daemon_secret";
    // SAFETY: the userdata is MASTER_LEN bytes userdata_once allocates in the same (never
    // cleared) pool; getrandom writes at most MASTER_LEN bytes into it.
    let data = unsafe {
        super::pool::userdata_once(process_pool, KEY, MASTER_LEN, |bytes| {
            let mut filled = 0usize;
            while filled < MASTER_LEN {
                let n = libc::getrandom(bytes.add(filled).cast(), MASTER_LEN - filled, 0);
                if n > 0 {
                    filled += n as usize;
                }
            }
        })
    };
    MASTER.store(data.cast(), Ordering::Release);
}

/// The token of daemon process group `group`, whose processes run as `uid`:`gid`; None before
/// the master was loaded (or after it was forgotten).
pub fn group_token(group: &str, uid: u32, gid: u32) -> Option<Token> {
    let master = MASTER.load(Ordering::Acquire);
    if master.is_null() {
        return None;
    }
    // SAFETY: a non-null MASTER points at MASTER_LEN bytes of the process pool, which lives as
    // long as the process; they are read in place, never copied whole.
    let key = unsafe { std::slice::from_raw_parts(master as *const u8, MASTER_LEN) };
    Some(crate::daemon::plan::derive_token(key, group, uid, gid))
}

/// [`group_token`], derived once per process (an Apache child sends it with every request to
/// the group).
pub fn cached_group_token(group: &str, uid: u32, gid: u32) -> Option<Token> {
    type Key = (String, u32, u32);
    static CACHE: Mutex<Vec<(Key, Token)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, token)) = cache
        .iter()
        .find(|((name, u, g), _)| name == group && *u == uid && *g == gid)
    {
        return Some(*token);
    }
    let token = group_token(group, uid, gid)?;
    cache.push(((group.to_string(), uid, gid), token));
    Some(token)
}

/// Wipes the master secret from this process's memory (a group's supervisor, once it has its
/// own token): the applications of its processes must not find it.
pub fn forget_master() {
    let master = MASTER.swap(ptr::null_mut(), Ordering::AcqRel);
    if master.is_null() {
        return;
    }
    // SAFETY: MASTER pointed at MASTER_LEN writable bytes of the process pool, which this
    // (forked) process has its own copy of.
    wipe(unsafe { std::slice::from_raw_parts_mut(master, MASTER_LEN) });
}
