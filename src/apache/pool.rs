//! Values owned by an APR pool: Rust boxes dropped by a pool cleanup, and C strings copied into a
//! pool so httpd can keep pointers to them.

use super::bindings as ap;
use super::boundary::ffi_boundary;
use std::ffi::{c_void, CStr};
use std::os::raw::c_char;

unsafe extern "C" fn drop_boxed<T>(data: *mut c_void) -> ap::apr_status_t {
    ffi_boundary("pool cleanup", 0, || {
        // SAFETY: data came from Box::into_raw in `give_to_pool::<T>` and this cleanup runs once.
        drop(unsafe { Box::from_raw(data as *mut T) });
        0
    })
}

/// Moves `value` into memory whose lifetime is the pool's: it is dropped when the pool is
/// cleared or destroyed. Returns the raw pointer httpd will hand back to us.
///
/// # Safety
/// `pool` must be a live APR pool.
pub unsafe fn give_to_pool<T>(pool: *mut ap::apr_pool_t, value: T) -> *mut T {
    let raw = Box::into_raw(Box::new(value));
    // SAFETY: pool is live (caller's contract); the cleanup frees exactly this allocation.
    unsafe {
        ap::apr_pool_cleanup_register(
            pool,
            raw as *const c_void,
            Some(drop_boxed::<T>),
            Some(ap::apr_pool_cleanup_null),
        )
    };
    raw
}

/// Copies bytes into the pool as a NUL-terminated C string (an interior NUL ends it early).
///
/// # Safety
/// `pool` must be a live APR pool.
pub unsafe fn pstrdup(pool: *mut ap::apr_pool_t, bytes: &[u8]) -> *const c_char {
    // SAFETY: apr_pstrmemdup copies len bytes from a valid slice and NUL-terminates the copy.
    unsafe { ap::apr_pstrmemdup(pool, bytes.as_ptr() as *const c_char, bytes.len()) }
}

/// The `size` bytes stored in `pool` under `key`, allocated and filled by `init` the first time
/// (the same bytes for the rest of the pool's life). Only plain data belongs there: a process
/// pool outlives every load of this module.
///
/// # Safety
/// `pool` must be a live APR pool that is never cleared while the bytes are used; `key` must
/// only ever name `size` bytes made by this function.
pub unsafe fn userdata_once(
    pool: *mut ap::apr_pool_t,
    key: &CStr,
    size: usize,
    init: impl FnOnce(*mut u8),
) -> *mut c_void {
    // SAFETY: caller's contract; `apr_pool_userdata_set` copies the key, so it need not outlive
    // this load of the module.
    unsafe {
        let mut data: *mut c_void = std::ptr::null_mut();
        ap::apr_pool_userdata_get(&mut data, key.as_ptr(), pool);
        if data.is_null() {
            data = ap::apr_palloc(pool, size as ap::apr_size_t);
            init(data.cast());
            ap::apr_pool_userdata_set(data, key.as_ptr(), None, pool);
        }
        data
    }
}

/// Borrows a C string httpd owns as bytes (empty for null).
///
/// # Safety
/// `p` must be null or a NUL-terminated string that outlives `'a`.
pub unsafe fn c_bytes<'a>(p: *const c_char) -> &'a [u8] {
    if p.is_null() {
        &[]
    } else {
        // SAFETY: non-null and NUL-terminated by the caller's contract.
        unsafe { CStr::from_ptr(p) }.to_bytes()
    }
}
