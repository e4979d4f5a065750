//! The embedded CPython: start-up and shutdown, attaching threads, and objects built with the
//! raw C API. The only place besides `apache/` with `unsafe` code.

pub mod attach;
pub mod method;
pub mod objects;
mod pyconfig;
mod restrict;
pub mod runtime;
pub mod setup;

pub use attach::{attached, detached, NotRunning};
pub use runtime::{finalize, initialize, PythonSettings};
pub mod scoped;
