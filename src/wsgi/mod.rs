//! The WSGI adapter (PEP 3333), written against safe types: the server side is the `RequestIo`
//! trait, the Python side pyo3's `Bound` API.

pub mod adapter;
pub mod auth;
pub mod callbacks;
pub mod dispatch;
pub mod environ;
mod environ_strings;
pub mod events;
pub mod headers;
pub mod input;
pub mod interp;
pub mod io;
pub mod metrics;
pub mod process_log;
pub mod process_metrics;
mod process_metrics_py;
pub mod proxy_headers;
pub mod stacks;
pub mod state;

pub use adapter::{run_app, Outcome};
pub use interp::ServerInfo;
pub use io::{Level, PieceTaker, Pulled, RequestIo, ResponseHead};
