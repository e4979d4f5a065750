//! Reading Apache's scoreboard (the shared memory in which the parent and every child record
//! their processes and workers) into a safe snapshot for `mod_wsgi.server_metrics()`.
//!
//! A process sees the scoreboard only if it was created before the process was forked from
//! Apache's parent: Apache's children always do; daemon processes do because their supervisors
//! are forked after it (see `daemons::start_groups`).

use super::bindings as ap;
use crate::wsgi::metrics::{ProcessMetrics, ServerMetrics, WorkerMetrics};
use std::os::raw::c_char;
use std::ptr;

/// The scoreboard now; None when this process has none.
pub fn read() -> Option<ServerMetrics> {
    // SAFETY: ap_exists_scoreboard_image only reads httpd's global pointer.
    if unsafe { ap::ap_exists_scoreboard_image() } == 0 {
        return None;
    }
    // SAFETY: the scoreboard exists (checked above) and stays mapped for the process's life;
    // the global record is copied out with one volatile read, as other processes write it.
    let global = unsafe {
        let g = ap::ap_get_scoreboard_global();
        if g.is_null() {
            return None;
        }
        ptr::read_volatile(g)
    };
    let processes = (0..global.server_limit.max(0))
        .filter_map(|i| process(i, global.thread_limit))
        .collect();
    Some(ServerMetrics {
        server_limit: global.server_limit,
        thread_limit: global.thread_limit,
        running_generation: global.running_generation,
        restart_time: global.restart_time,
        current_time: crate::daemon::now_us(),
        processes,
    })
}

/// Process slot `i` and its `thread_limit` workers.
fn process(i: i32, thread_limit: i32) -> Option<ProcessMetrics> {
    // SAFETY: i is below the scoreboard's server_limit, for which httpd returns a pointer into
    // the mapped scoreboard (null otherwise, checked); the record is copied out at once.
    let p = unsafe {
        let p = ap::ap_get_scoreboard_process(i);
        if p.is_null() {
            return None;
        }
        ptr::read_volatile(p)
    };
    let workers = (0..thread_limit.max(0))
        .filter_map(|j| worker(i, j))
        .collect();
    Some(ProcessMetrics {
        process_num: i,
        pid: p.pid,
        generation: p.generation,
        quiescing: p.quiescing != 0,
        workers,
    })
}

fn worker(i: i32, j: i32) -> Option<WorkerMetrics> {
    // SAFETY: i and j are within the scoreboard's limits, for which httpd returns a pointer into
    // the mapped scoreboard (null otherwise, checked); the record is copied out at once, so a
    // worker updating it meanwhile can at worst give mixed fields, never a bad read.
    let w = unsafe {
        let w = ap::ap_get_scoreboard_worker_from_indexes(i, j);
        if w.is_null() {
            return None;
        }
        ptr::read_volatile(w)
    };
    Some(WorkerMetrics {
        thread_num: w.thread_num,
        generation: w.generation,
        status: w.status,
        access_count: w.access_count as u64,
        bytes_served: w.bytes_served as u64,
        start_time: w.start_time,
        stop_time: w.stop_time,
        last_used: w.last_used,
        client: text(&w.client),
        request: text(&w.request),
        vhost: text(&w.vhost),
    })
}

/// A fixed-size C string field up to its first NUL (or its end: a field being rewritten may
/// have none).
fn text(field: &[c_char]) -> Vec<u8> {
    field
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect()
}
