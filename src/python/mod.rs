//! The embedded CPython: start-up and shutdown, the application groups' sub-interpreters,
//! attaching threads, and objects built with the raw C API. The only place besides `apache/`
//! with `unsafe` code.

pub mod attach;
mod interpreters;
pub mod method;
pub mod objects;
mod pyconfig;
mod restrict;
pub mod runtime;
pub mod scoped;
pub mod setup;

pub use attach::{attached, attached_to, detached, inside_python, AttachError, NotRunning};
pub use runtime::{finalize, initialize, PythonSettings};
