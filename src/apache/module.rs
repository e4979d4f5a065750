//! The exported Apache module structure and hook registration.

use super::bindings as ap;
use super::config::{
    create_dir_config, create_server_config, merge_dir_config, merge_server_config, COMMANDS,
};
use super::hooks::register_hooks;
use std::os::raw::{c_int, c_ulong};
use std::ptr;

/// The module httpd loads (`LoadModule wsgi_module …`). It is a `static mut` because httpd writes
/// its module index and list links into it; its name is `mod_wsgi.c` so `<IfModule mod_wsgi.c>`
/// matches existing configs.
#[no_mangle]
#[allow(non_upper_case_globals)]
pub static mut wsgi_module: ap::module = ap::module {
    version: ap::MODULE_MAGIC_NUMBER_MAJOR as c_int,
    minor_version: ap::MODULE_MAGIC_NUMBER_MINOR as c_int,
    module_index: -1,
    name: c"mod_wsgi.c".as_ptr(),
    dynamic_load_handle: ptr::null_mut(),
    next: ptr::null_mut(),
    magic: ap::MODULE_MAGIC_COOKIE as c_ulong,
    rewrite_args: None,
    create_dir_config: Some(create_dir_config),
    merge_dir_config: Some(merge_dir_config),
    create_server_config: Some(create_server_config),
    merge_server_config: Some(merge_server_config),
    cmds: COMMANDS.0.as_ptr(),
    register_hooks: Some(register_hooks),
    flags: 0,
};
