//! A request as the WSGI adapter sees it: Apache's `request_rec` behind safe accessors and the
//! `RequestIo` implementation (body in, status/headers/body out, logging).

use super::bindings as ap;
use super::boundary::ffi_boundary;
use super::log::{level_of, request_log};
use super::pool::{c_bytes, pstrdup};
use crate::buf::UninitBuf;
use crate::wsgi::environ::CgiVars;
use crate::wsgi::headers::latin1_bytes;
use crate::wsgi::{Level, PieceTaker, Pulled, RequestIo, ResponseHead};
use std::ffi::{c_void, CStr};
use std::os::raw::c_char;
use std::ptr;

/// The largest last piece of a response that `defer_last` copies to send later: a copy this
/// small comes from the bucket allocator's free lists (APR_BUCKET_BUFF_SIZE), and costs less
/// than the hold of the GIL it saves.
const DEFERRED_MAX: usize = 8000;

/// `EnableMMAP Off` in core's per-directory config (http_core.h).
const ENABLE_MMAP_OFF: u32 = 0;

/// Apache's description of an APR status code.
pub fn apr_error_text(status: ap::apr_status_t) -> String {
    let mut buf = [0 as c_char; 256];
    // SAFETY: apr_strerror writes a NUL-terminated message of at most buf.len() bytes.
    unsafe {
        ap::apr_strerror(status, buf.as_mut_ptr(), buf.len());
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

unsafe extern "C" fn close_file(file: *mut c_void) -> ap::apr_status_t {
    ffi_boundary("file cleanup", 0, || {
        // SAFETY: registered with the apr_file_t that send_file created; runs once.
        unsafe { ap::apr_file_close(file as *mut ap::apr_file_t) }
    })
}

pub struct Request {
    r: *mut ap::request_rec,
    out: *mut ap::apr_bucket_brigade,
    body_requested: bool,
    body_present: bool,
    /// `WSGIEnableSendfile`: file buckets may go out with sendfile.
    sendfile: bool,
    /// The client socket's timeout before `set_send_timeout` changed it, put back on drop.
    saved_timeout: Option<ap::apr_interval_time_t>,
    /// Brigades for `pull_body` (the bytes pulled, and each read), made at the first pull.
    pull_brigades: Option<(*mut ap::apr_bucket_brigade, *mut ap::apr_bucket_brigade)>,
    /// The brigade `read_body` reads through, made at the first read.
    read_brigade: Option<*mut ap::apr_bucket_brigade>,
    /// A write to the client failed: timed out, or (`client_gone`) anything else.
    write_timed_out: bool,
    client_gone: bool,
    /// `out` holds the end of the response, for `send_deferred` to pass on.
    deferred: bool,
}

// SAFETY: a Request is used by the thread running its handler (blocking calls are made with the
// GIL released, on the same thread); httpd keeps request_rec alive until the handler returns,
// and the Request does not outlive the handler.
unsafe impl Send for Request {}

impl Request {
    /// # Safety
    /// `r` must be the live request of the handler that creates this, which must not let the
    /// Request outlive it.
    pub unsafe fn new(r: *mut ap::request_rec) -> Request {
        // SAFETY: r is live; the brigade lives in the request pool.
        let out = unsafe { ap::apr_brigade_create((*r).pool, (*(*r).connection).bucket_alloc) };
        Request {
            r,
            out,
            body_requested: false,
            body_present: false,
            sendfile: false,
            saved_timeout: None,
            pull_brigades: None,
            read_brigade: None,
            write_timed_out: false,
            client_gone: false,
            deferred: false,
        }
    }

    /// Lets `wsgi.file_wrapper` files go out with sendfile (`WSGIEnableSendfile On`).
    pub fn enable_sendfile(&mut self, on: bool) {
        self.sendfile = on;
    }

    /// Whether `EnableMMAP` allows memory-mapping files served for this request.
    fn mmap_allowed(&self) -> bool {
        // SAFETY: r is live; the core module's per-directory config is always present and is a
        // core_dir_config.
        unsafe {
            let core = ap::ap_get_core_module_config(self.rec().per_dir_config)
                as *const ap::core_dir_config;
            core.is_null() || (*core).enable_mmap() != ENABLE_MMAP_OFF
        }
    }

    /// The client connection's socket.
    fn client_socket(&self) -> *mut ap::apr_socket_t {
        // SAFETY: r and its connection are live.
        unsafe { ap::ap_get_conn_socket((*self.r).connection) }
    }

    /// The outcome of passing response data to the filters, with why it failed noted.
    fn written(&mut self, status: ap::apr_status_t) -> Result<(), String> {
        if status == 0 {
            return Ok(());
        }
        if status == ap::APR_TIMEUP as ap::apr_status_t {
            self.write_timed_out = true;
        } else {
            self.client_gone = true;
        }
        Err(format!(
            "Apache/mod_wsgi failed to write response data: {}",
            apr_error_text(status)
        ))
    }

    /// Whether the response has ended without us: an input filter refused the body
    /// (LimitRequestBody, malformed chunking) and answered the client itself. Nothing of the
    /// application's may follow, or it would reach the client after the end (unframed, on a
    /// kept-alive connection).
    fn answered_by_apache(&self) -> bool {
        self.rec().eos_sent != 0
    }

    /// Refuses a write once Apache has answered the request itself (`answered_by_apache`); the
    /// application then stops as it does for a client that left.
    fn answered(&mut self) -> Result<(), String> {
        if !self.answered_by_apache() {
            return Ok(());
        }
        self.client_gone = true;
        Err(
            "Apache/mod_wsgi failed to write response data: Apache has answered the request \
             itself, having refused its body"
                .into(),
        )
    }

    /// Whether body bytes may go out: Apache has not answered the request itself, and the
    /// client is still there.
    fn writable(&mut self) -> Result<(), String> {
        self.answered()?;
        // SAFETY: r and its connection are live (constructor contract).
        if unsafe { (*(*self.r).connection).aborted } != 0 {
            self.client_gone |= !self.write_timed_out;
            return Err(
                "Apache/mod_wsgi failed to write response data: client closed the connection"
                    .into(),
            );
        }
        Ok(())
    }

    fn rec(&self) -> &ap::request_rec {
        // SAFETY: r is live for the Request's lifetime (constructor contract).
        unsafe { &*self.r }
    }
}

/// Reads `key` from an APR table.
///
/// # Safety
/// `table` must be a live APR table; the result borrows its storage.
pub unsafe fn table_get<'a>(table: *const ap::apr_table_t, key: &CStr) -> Option<&'a [u8]> {
    // SAFETY: live table; apr_table_get returns null or a NUL-terminated value it owns.
    let v = unsafe { ap::apr_table_get(table, key.as_ptr()) };
    if v.is_null() {
        None
    } else {
        // SAFETY: non-null C string owned by the table.
        Some(unsafe { c_bytes(v) })
    }
}

/// All entries of an APR table, in order.
///
/// # Safety
/// `table` must be a live APR table.
pub unsafe fn table_entries(table: *const ap::apr_table_t) -> CgiVars {
    // SAFETY: an apr_table_t begins with its apr_array_header_t of apr_table_entry_t (the
    // apr_table_elts macro); nelts entries are initialised.
    unsafe {
        let header = &*(table as *const ap::apr_array_header_t);
        let entries = std::slice::from_raw_parts(
            header.elts as *const ap::apr_table_entry_t,
            header.nelts as usize,
        );
        let pairs = entries
            .iter()
            .filter(|e| !e.key.is_null())
            .map(|e| (c_bytes(e.key), c_bytes(e.val)));
        let size = pairs.clone().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let mut vars = CgiVars::with_capacity(entries.len(), size);
        for (k, v) in pairs {
            vars.push(k, v);
        }
        vars
    }
}

impl Request {
    /// Apache's CGI variables for this request (what a CGI script would get), via httpd's own
    /// `ap_add_cgi_vars` and `ap_add_common_vars`.
    pub fn cgi_vars(&self) -> CgiVars {
        // SAFETY: r is live; both functions fill r->subprocess_env from the request.
        unsafe {
            ap::ap_add_cgi_vars(self.r);
            ap::ap_add_common_vars(self.r);
            table_entries(self.rec().subprocess_env)
        }
    }

    /// Adds the last variables of `vars`, those after the last one whose name does not start
    /// with `prefix` (the module's own, which come last), to Apache's environment of the request
    /// (`r->subprocess_env`), where the access log's `%{NAME}e`, mod_headers and mod_rewrite see
    /// them, and an internal redirect passes them on as `REDIRECT_NAME`. The entries are added,
    /// not set: a name the environment already has (a `SetEnv mod_wsgi.…`) is there twice.
    pub fn export_last_vars(&self, vars: &CgiVars, prefix: &[u8]) {
        let last = vars
            .iter()
            .rev()
            .take_while(|(k, _)| k.starts_with(prefix))
            .count();
        self.export(vars.iter_from(vars.len() - last));
    }

    /// Adds the variables `names` of `vars` to Apache's environment of the request (see
    /// [`Request::export_last_vars`]).
    pub fn export_named(&self, vars: &CgiVars, names: &[&str]) {
        self.export(
            names
                .iter()
                .filter_map(|name| Some((name.as_bytes(), vars.get(name)?))),
        );
    }

    /// Copies `pairs` into one block of the request pool (one allocation, not two per entry:
    /// this runs on every request) and adds them to `r->subprocess_env`.
    fn export<'v>(&self, pairs: impl Iterator<Item = (&'v [u8], &'v [u8])> + Clone) {
        let size: usize = pairs.clone().map(|(k, v)| k.len() + v.len() + 2).sum();
        if size == 0 {
            return;
        }
        // SAFETY: r is live; the block comes from its pool, which the table lives in, and is
        // `size` bytes: each key and value is copied in with its NUL, within that size.
        unsafe {
            let (pool, env) = ((*self.r).pool, (*self.r).subprocess_env);
            let mut at = ap::apr_palloc(pool, size) as *mut c_char;
            let mut copy = |bytes: &[u8]| {
                let start = at;
                std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, at, bytes.len());
                *at.add(bytes.len()) = 0;
                at = at.add(bytes.len() + 1);
                start
            };
            for (key, value) in pairs {
                let key = copy(key);
                let value = copy(value);
                ap::apr_table_addn(env, key, value);
            }
        }
    }

    /// Makes body reading possible; an error status when the request's framing is refused.
    pub fn setup_body(&mut self) -> Result<(), i32> {
        // SAFETY: r is live; called once before any read.
        let status =
            unsafe { ap::ap_setup_client_block(self.r, ap::REQUEST_CHUNKED_DECHUNK as i32) };
        if status == ap::OK as i32 {
            Ok(())
        } else {
            Err(status)
        }
    }
}

/// Where a request notes that reading its body timed out (see [`body_timed_out`]).
const NOTE_BODY_TIMED_OUT: &CStr = c"mod_wsgi-rs.body_timed_out";

/// Whether reading `r`'s body from the client timed out: a handler that has no response to send
/// then answers 408 (Request Timeout), as C mod_wsgi does in daemon mode, not 500.
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn body_timed_out(r: *mut ap::request_rec) -> bool {
    // SAFETY: live request (caller's contract).
    unsafe { !ap::apr_table_get((*r).notes, NOTE_BODY_TIMED_OUT.as_ptr()).is_null() }
}

/// What a failed body read raises in the application (C mod_wsgi's words).
fn body_read_error(status: ap::apr_status_t) -> String {
    let why = match status {
        // A filter (the chunked decoder, LimitRequestBody) refused the body and has sent its own
        // error response already.
        ap::AP_FILTER_ERROR => "the request body was refused by Apache".to_string(),
        // What Apache's HTTP input filter answers to some permanent failures.
        s if s == libc::EAGAIN => "Connection was terminated".to_string(),
        // APR's words, which people search for, and what they mean here.
        s if s == ap::APR_INCOMPLETE as ap::apr_status_t => format!(
            "{} (the client closed the connection before sending the whole body)",
            apr_error_text(s)
        ),
        s if s == ap::APR_TIMEUP as ap::apr_status_t => format!(
            "{} (the client sent nothing more of the body in the time allowed: Apache's Timeout, or mod_reqtimeout's RequestReadTimeout)",
            apr_error_text(s)
        ),
        s => apr_error_text(s),
    };
    format!("Apache/mod_wsgi request data read error: {why}.")
}

impl Request {
    /// Whether there is a body to read (asked of Apache once, before the first read).
    fn start_body(&mut self) -> Result<bool, String> {
        if !self.body_requested {
            self.body_requested = true;
            // SAFETY: r is live and set up for reading.
            self.body_present = unsafe { ap::ap_should_client_block(self.r) } != 0;
        }
        Ok(self.body_present)
    }
}

impl Request {
    /// Reads body bytes into `buf` (`len` bytes writable); 0 at the end of the body.
    ///
    /// # Safety
    /// `buf` must be writable for `len` bytes.
    unsafe fn read_into(&mut self, buf: *mut u8, len: usize) -> Result<usize, String> {
        let r = self.r;
        // SAFETY: r is live; the brigade lives in the request pool, like the request.
        let bb = *self.read_brigade.get_or_insert_with(|| unsafe {
            ap::apr_brigade_create((*r).pool, (*(*r).connection).bucket_alloc)
        });
        let mut status = 0;
        // SAFETY: r is live and its body set up; bb is empty (the call leaves it so); buf is
        // writable for len bytes (caller's contract).
        let n = unsafe { ap::mod_wsgi_rs_read_body(r, bb, buf as *mut c_char, len, &mut status) };
        if n < 0 {
            return Err(self.read_failed(status));
        }
        Ok(n as usize)
    }

    /// The error of a failed body read, with a timeout noted for [`body_timed_out`].
    fn read_failed(&mut self, status: ap::apr_status_t) -> String {
        if status == ap::APR_TIMEUP as ap::apr_status_t {
            // SAFETY: r is live; the note's key and value are static strings.
            unsafe {
                ap::apr_table_setn((*self.r).notes, NOTE_BODY_TIMED_OUT.as_ptr(), c"1".as_ptr())
            };
        }
        body_read_error(status)
    }
}

impl RequestIo for Request {
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        if !self.start_body()? || buf.is_empty() {
            return Ok(0);
        }
        // SAFETY: buf is writable for buf.len() bytes.
        unsafe { self.read_into(buf.as_mut_ptr(), buf.len()) }
    }

    fn pull_body(
        &mut self,
        max: usize,
        chunk: usize,
        take: &mut PieceTaker<'_>,
    ) -> Result<Pulled, String> {
        if !self.start_body()? || max == 0 {
            return Ok(Pulled {
                bytes: 0,
                taken: Ok(()),
            });
        }
        let r = self.r;
        // SAFETY: r is live; the brigades live in the request pool, like the request.
        let (pulled, tmp) = *self.pull_brigades.get_or_insert_with(|| unsafe {
            let (pool, alloc) = ((*r).pool, (*(*r).connection).bucket_alloc);
            (
                ap::apr_brigade_create(pool, alloc),
                ap::apr_brigade_create(pool, alloc),
            )
        });
        let (mut bytes, mut taken) = (0, Ok(()));
        let mut iov: Vec<ap::iovec> = Vec::new();
        while bytes < max && taken.is_ok() {
            let want = (max - bytes).min(chunk.max(1));
            // SAFETY: r is live and its body set up; both brigades are empty (cleaned up after
            // every round).
            let mut status = 0;
            let n = unsafe {
                ap::mod_wsgi_rs_pull_body(r, pulled, tmp, want, (bytes == 0) as i32, &mut status)
            };
            if n <= 0 {
                // SAFETY: the brigade is ours and live.
                unsafe { ap::apr_brigade_cleanup(pulled as *mut c_void) };
                if n < 0 {
                    return Err(self.read_failed(status));
                }
                break;
            }
            // SAFETY: the pulled buckets have all been read (mod_wsgi_rs_pull_body reads them),
            // so their bytes stay where iov points until the brigade is cleaned up, after `take`;
            // iov has room for `cap` entries each time.
            taken = unsafe {
                let mut cap = iov.capacity() as i32;
                loop {
                    let needed = ap::mod_wsgi_rs_brigade_iovec(pulled, iov.as_mut_ptr(), cap);
                    if needed <= cap {
                        iov.set_len(needed.max(0) as usize);
                        break;
                    }
                    iov.reserve_exact(needed as usize);
                    cap = iov.capacity() as i32;
                }
                let pieces: Vec<&[u8]> = iov
                    .iter()
                    .map(|v| std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len))
                    .collect();
                let taken = take(&pieces);
                drop(pieces);
                iov.set_len(0);
                ap::apr_brigade_cleanup(pulled as *mut c_void);
                taken
            };
            bytes += n as usize;
        }
        Ok(Pulled { bytes, taken })
    }

    fn expect_continue(&mut self) {
        let r = self.r;
        // SAFETY: r is live. The interim response is sent with the request's status set to 100
        // for the call (as Apache's own modules do), then the status is put back; Apache clears
        // expecting_100 so the input filter will not send a second one.
        unsafe {
            if (*r).expecting_100 == 0 {
                return;
            }
            let (status, line) = ((*r).status, (*r).status_line);
            (*r).status = ap::HTTP_CONTINUE as i32;
            (*r).status_line = c"100 Continue".as_ptr();
            ap::ap_send_interim_response(r, 0);
            (*r).status = status;
            (*r).status_line = line;
        }
    }

    fn read_body_into(&mut self, dest: &mut UninitBuf<'_>) -> Result<usize, String> {
        if !self.start_body()? || dest.remaining() == 0 {
            return Ok(0);
        }
        // SAFETY: `spare_ptr()` is writable for `remaining()` bytes; read_into writes at most
        // that many and returns how many it wrote, which is what `advance` counts.
        unsafe {
            let n = self.read_into(dest.spare_ptr(), dest.remaining())?;
            dest.advance(n);
            Ok(n)
        }
    }

    fn send_headers(&mut self, head: &ResponseHead) -> Result<(), String> {
        if self.answered_by_apache() {
            return Ok(());
        }
        let r = self.r;
        // SAFETY: r is live; every string stored in the request is copied into its pool first.
        unsafe {
            let pool = (*r).pool;
            (*r).status = head.status as i32;
            (*r).status_line = pstrdup(pool, &latin1_bytes(&head.status_line));
            for (name, value) in &head.headers {
                let value_c = pstrdup(pool, &latin1_bytes(value));
                if name.eq_ignore_ascii_case("content-type") {
                    ap::ap_set_content_type(r, value_c);
                } else if name.eq_ignore_ascii_case("content-length") {
                    if let Some(len) = head.content_length {
                        ap::ap_set_content_length(r, len as ap::apr_off_t);
                    }
                } else {
                    let table = if name.eq_ignore_ascii_case("www-authenticate") {
                        (*r).err_headers_out
                    } else {
                        (*r).headers_out
                    };
                    ap::apr_table_add(table, pstrdup(pool, &latin1_bytes(name)), value_c);
                }
            }
        }
        Ok(())
    }

    fn write_body(&mut self, data: &[u8], flush: bool) -> Result<(), String> {
        self.writable()?;
        // SAFETY: r and the brigade are live; data is valid for the call (the bucket is
        // transient: Apache copies it if it must keep it after the call returns).
        let status = unsafe {
            ap::mod_wsgi_rs_write(
                self.r,
                self.out,
                data.as_ptr() as *const c_char,
                data.len(),
                flush as i32,
            )
        };
        self.written(status)
    }

    fn write_last(&mut self, data: &[u8]) -> Result<(), String> {
        self.writable()?;
        // SAFETY: as in write_body; the brigade is passed with the end of the response.
        let status = unsafe {
            ap::mod_wsgi_rs_write_end(self.r, self.out, data.as_ptr() as *const c_char, data.len())
        };
        self.written(status)
    }

    fn defer_last(&mut self, data: &[u8]) -> bool {
        if data.len() > DEFERRED_MAX || self.writable().is_err() {
            return false;
        }
        // SAFETY: r and the brigade are live; the piece is copied into the brigade.
        unsafe {
            ap::mod_wsgi_rs_queue_end(self.r, self.out, data.as_ptr() as *const c_char, data.len())
        };
        self.deferred = true;
        true
    }

    fn send_deferred(&mut self) -> Result<(), String> {
        if !std::mem::take(&mut self.deferred) {
            return Ok(());
        }
        self.writable()?;
        // SAFETY: r and the brigade are live; the brigade is passed and emptied.
        let status = unsafe { ap::mod_wsgi_rs_pass(self.r, self.out) };
        self.written(status)
    }

    fn send_file(&mut self, fd: i32, offset: u64, len: u64) -> Result<(), String> {
        self.answered()?;
        // Apache may send the file after this returns (a kept-alive connection sets buckets
        // aside), when the application may have closed `fd`: give Apache its own descriptor,
        // closed with the request's pool.
        // SAFETY: dup of a descriptor the caller keeps open for this call.
        let mut own = unsafe { libc::dup(fd) };
        if own < 0 {
            return Err(format!(
                "cannot duplicate the file descriptor of wsgi.file_wrapper: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: r, its pool and the brigade are live; `own` is a descriptor we own, wrapped in
        // an apr_file_t in the request pool and closed by that pool's cleanup.
        unsafe {
            let pool = (*self.r).pool;
            let mut file: *mut ap::apr_file_t = ptr::null_mut();
            let flags = if self.sendfile {
                (ap::APR_FOPEN_READ | ap::APR_FOPEN_SENDFILE_ENABLED) as i32
            } else {
                ap::APR_FOPEN_READ as i32
            };
            let status = ap::apr_os_file_put(&mut file, &mut own, flags, pool);
            if status != 0 {
                libc::close(own);
                return Err(format!(
                    "cannot send wsgi.file_wrapper: {}",
                    apr_error_text(status)
                ));
            }
            ap::apr_pool_cleanup_register(
                pool,
                file as *const c_void,
                Some(close_file),
                Some(ap::apr_pool_cleanup_null),
            );
            let bucket = ap::apr_brigade_insert_file(
                self.out,
                file,
                offset as ap::apr_off_t,
                len as ap::apr_off_t,
                pool,
            );
            // As Apache's own file handler does for EnableMMAP Off (files on network mounts).
            if !self.mmap_allowed() {
                ap::apr_bucket_file_enable_mmap(bucket, 0);
            }
        }
        // Not passed yet: the file is the whole response, and goes to the filters with the end
        // of the response in one brigade (end_response), as C sends it. Apache's byte-range
        // filter answers a Range request only for a response it sees whole, so downloads resume
        // and videos seek.
        Ok(())
    }

    fn end_response(&mut self) -> Result<(), String> {
        if self.answered_by_apache() {
            return Ok(());
        }
        // SAFETY: r and the brigade are live; the brigade is passed and emptied.
        let status = unsafe { ap::mod_wsgi_rs_end(self.r, self.out) };
        self.written(status)
    }

    fn client_gone(&self) -> bool {
        self.client_gone
    }

    fn abort_response(&mut self) {
        if self.answered_by_apache() {
            return;
        }
        // SAFETY: r and the brigade are live.
        unsafe { ap::mod_wsgi_rs_abort(self.r, self.out) };
    }

    fn log(&mut self, level: Level, msg: &str) {
        request_log(self.r, level_of(level), msg);
    }

    fn set_send_timeout(&mut self, timeout: std::time::Duration) {
        let sock = self.client_socket();
        if sock.is_null() {
            return;
        }
        // SAFETY: sock is the live connection's socket; the timeout is only read and written.
        unsafe {
            if self.saved_timeout.is_none() {
                let mut old: ap::apr_interval_time_t = 0;
                if ap::apr_socket_timeout_get(sock, &mut old) == 0 {
                    self.saved_timeout = Some(old);
                }
            }
            let micros = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
            ap::apr_socket_timeout_set(sock, micros);
        }
    }
}

impl Drop for Request {
    /// Puts back the client socket's timeout for the rest of the connection (keep-alive).
    fn drop(&mut self) {
        if let Some(old) = self.saved_timeout.take() {
            let sock = self.client_socket();
            if !sock.is_null() {
                // SAFETY: the connection outlives the request, and so its socket this drop.
                unsafe { ap::apr_socket_timeout_set(sock, old) };
            }
        }
    }
}
