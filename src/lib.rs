//! mod_wsgi-rs: an Apache httpd 2.4 module that runs WSGI applications in an embedded CPython.
//!
//! The exported `wsgi_module` is the Apache module; everything that touches Apache or APR
//! pointers lives under `apache/`, everything that touches raw CPython API under `python/`, and
//! the WSGI logic (`wsgi/`, `script`) is written against safe types.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod buf;
pub mod config;
pub mod daemon;
pub mod md5;
pub mod python;
pub mod script;
pub mod sha256;
pub mod wsgi;

#[cfg(not(test))]
pub mod apache;

/// This crate's version, as shown in the server banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Python version (major.minor) this module was built for.
pub const PYTHON_VERSION: &str = env!("MOD_WSGI_RS_BUILT_FOR_PYTHON");
/// The Python interpreter the module was built against (its prefix is the default home).
pub const PYTHON_EXECUTABLE: &str = env!("MOD_WSGI_RS_PYTHON_EXECUTABLE");

#[cfg(not(test))]
pub use apache::module::wsgi_module;

/// The text of a panic payload, for logs and exceptions.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
