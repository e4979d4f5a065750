//! The only place that touches Apache httpd and APR pointers.

mod auth;
pub mod bindings;
pub mod boundary;
pub mod config;
mod daemon_request;
pub mod daemons;
mod dispatch;
pub mod hooks;
pub mod log;
pub mod module;
mod other_child;
pub mod pool;
mod preload;
pub mod request;
pub mod scoreboard;
pub mod secret;
