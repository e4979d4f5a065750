//! Thin wrappers over the process-level system calls a daemon process group needs: forking,
//! dropping root, signal masks, resource limits, the process name. Each returns a Rust error
//! naming what failed; the callers decide what a failure means.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// The signals that stop or recycle the supervisor and the daemon processes. The supervisor
/// takes them synchronously (blocked, then collected with `sigtimedwait`); a daemon process
/// catches them and reads them from a pipe ([`forward_signals`]).
pub const CONTROL_SIGNALS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];

/// What `fork` returned to this process.
pub enum Forked {
    Parent(i32),
    Child,
}

/// Forks this process. The caller must be single-threaded (Apache's parent and our supervisor
/// are), as the child only has the calling thread.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no preconditions of its own; the single-thread requirement is the
    // caller's (documented above).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Forks this process with [`CONTROL_SIGNALS`] blocked in the child from its first instruction:
/// one sent to it before it has replaced the handlers it inherited stays pending until it waits
/// for them, instead of reaching a handler of its parent's. Apache's parent, which forks the
/// supervisors, has handlers for all four that only set flags the supervisor never reads: a
/// graceful restart right after another sent its SIGTERM to a supervisor forked milliseconds
/// before, which lost it and kept its group running for the rest of Apache's life. The parent's
/// own mask is as it was when this returns. Single-threaded caller, as for [`fork`].
pub fn fork_with_control_signals_held() -> io::Result<Forked> {
    let held = signal_set(&CONTROL_SIGNALS);
    // SAFETY: zeroed is a valid sigset_t to be written by pthread_sigmask.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are initialised (held) or written (before) by the call.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &held, &mut before) };
    let forked = fork();
    if !matches!(forked, Ok(Forked::Child)) {
        // SAFETY: `before` is the mask pthread_sigmask reported above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    }
    forked
}

/// Ends this process at once, without running the atexit handlers and destructors it inherited
/// from Apache's parent (which belong to the parent).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Set in a process forked from a daemon process (by the application: `os.fork()` without
/// `exec`), which must not go on serving requests beside the supervised processes.
static FORKED_BY_APPLICATION: AtomicBool = AtomicBool::new(false);

extern "C" fn mark_forked() {
    FORKED_BY_APPLICATION.store(true, Ordering::Relaxed);
}

/// From now on, a fork of this process marks the child (see [`forked_by_application`]).
pub fn watch_for_forks() {
    // SAFETY: registers a handler that only stores to an atomic, which is async-signal-safe.
    unsafe { libc::pthread_atfork(None, None, Some(mark_forked)) };
}

/// Whether this process is a fork of a daemon process made after [`watch_for_forks`].
pub fn forked_by_application() -> bool {
    FORKED_BY_APPLICATION.load(Ordering::Relaxed)
}

fn check(ret: i32, what: &str) -> io::Result<()> {
    if ret == -1 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(())
    }
}

/// The identity a daemon process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub user_name: String,
    /// With None, the user's groups from the group database (initgroups); else exactly these.
    pub supplementary_groups: Option<Vec<u32>>,
}

/// Switches this process from root to `who` (group first, then supplementary groups, then the
/// user, so no step needs privileges the previous one gave up). Does nothing when not root.
pub fn become_user(who: &Identity) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    // SAFETY: plain system calls with integer arguments.
    check(unsafe { libc::setgid(who.gid) }, "setgid")?;
    match &who.supplementary_groups {
        Some(groups) => {
            let mut all = vec![who.gid];
            all.extend(groups.iter().copied().filter(|g| *g != who.gid));
            // SAFETY: the pointer and length describe `all`, alive across the call.
            check(
                unsafe { libc::setgroups(all.len(), all.as_ptr()) },
                "setgroups",
            )?;
        }
        None => {
            let name = CString::new(who.user_name.as_str())
                .map_err(|_| io::Error::other("user name contains a NUL byte"))?;
            // SAFETY: name is a NUL-terminated string alive across the call.
            check(
                unsafe { libc::initgroups(name.as_ptr(), who.gid) },
                "initgroups",
            )?;
        }
    }
    // SAFETY: plain system call.
    check(unsafe { libc::setuid(who.uid) }, "setuid")?;
    // Belt and braces: a process that could get root back must not run applications.
    // SAFETY: plain system call.
    if who.uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(io::Error::other(
            "setuid(0) still succeeds after dropping root",
        ));
    }
    Ok(())
}

/// Sets every locale category of this process to `locale`; false when it is not installed (or
/// not a valid name), which leaves the locale as it was.
pub fn set_locale(locale: &str) -> bool {
    let Ok(name) = CString::new(locale) else {
        return false;
    };
    // SAFETY: name is a NUL-terminated string alive across the call; the caller is the
    // single-threaded supervisor, before any thread of its own or Python exists.
    !unsafe { libc::setlocale(libc::LC_ALL, name.as_ptr()) }.is_null()
}

/// Asks the kernel to send `signal` to this process when its parent exits, and reports whether
/// the parent is still `parent` (it may have gone before the request was made).
pub fn die_with_parent(signal: i32, parent: i32) -> bool {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; getppid has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
        libc::getppid() == parent
    }
}

fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset only writes into it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks (`block` true) or unblocks `signals` for the calling thread; threads started
/// afterwards inherit the mask.
pub fn mask_signals(signals: &[i32], block: bool) {
    let set = signal_set(signals);
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: set is initialised; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
}

/// Restores the default action of `signal` (Apache's parent installs handlers that make no
/// sense in a daemon process).
pub fn default_action(signal: i32) {
    // SAFETY: SIG_DFL is always a valid disposition.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
}

/// Ignores `signal` (SIGPIPE: a write to a socket whose reader has gone is an error, not death).
pub fn ignore(signal: i32) {
    // SAFETY: SIG_IGN is always a valid disposition.
    unsafe { libc::signal(signal, libc::SIG_IGN) };
}

/// The write end of the pipe that [`forward_signals`]' handler writes to, and the process it
/// belongs to (-1 before).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
static SIGNALLED_PROCESS: AtomicI32 = AtomicI32::new(-1);

extern "C" fn forward_signal(signal: libc::c_int) {
    // SAFETY: only async-signal-safe calls (getpid, write, signal, raise); errno is put back
    // as it was for the code the signal interrupted.
    unsafe {
        let errno = *libc::__errno_location();
        if libc::getpid() == SIGNALLED_PROCESS.load(Ordering::Relaxed) {
            let byte = signal as u8;
            libc::write(
                SIGNAL_PIPE.load(Ordering::Relaxed),
                (&byte as *const u8).cast(),
                1,
            );
        } else {
            // A process the application forked (multiprocessing, say) inherited the handler:
            // the signal is its own, with its default action, not a stop for the daemon
            // process whose pipe it also inherited.
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        *libc::__errno_location() = errno;
    }
}

/// The signals caught by [`forward_signals`], in arrival order.
pub struct ForwardedSignals {
    read: OwnedFd,
}

impl ForwardedSignals {
    /// Waits for the next signal; None if the pipe fails (it never closes: its write end is
    /// the handler's, for the life of the process).
    pub fn next(&self) -> Option<i32> {
        let mut byte = 0u8;
        loop {
            // SAFETY: reads one byte into a one-byte buffer from a descriptor we own.
            let n = unsafe { libc::read(self.read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
            if n == 1 {
                return Some(byte as i32);
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
    }
}

/// Catches `signals` in this process with a handler that writes each to a pipe, read with
/// [`ForwardedSignals::next`], then unblocks them for the calling thread, whose mask the threads
/// it starts afterwards inherit. A daemon process must not keep them blocked for a `sigtimedwait`
/// thread, as the supervisor does: a blocked mask is inherited by every thread the application
/// starts and every program it runs, and `subprocess.Popen(...).terminate()` then could not
/// stop a child. Python also sees a handler that is not its own, so `signal.getsignal()`
/// answers None for them, as with C mod_wsgi, and importing `signal` leaves SIGINT alone.
pub fn forward_signals(signals: &[i32]) -> io::Result<ForwardedSignals> {
    let mut ends = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `ends`.
    check(
        unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2",
    )?;
    // SAFETY: both descriptors are new and owned here; the write end is handed to the handler
    // for the life of the process (never closed).
    let read = unsafe { OwnedFd::from_raw_fd(ends[0]) };
    // A full pipe (signals faster than they are read) drops one rather than block a handler.
    // SAFETY: plain fcntl on the new write end.
    unsafe { libc::fcntl(ends[1], libc::F_SETFL, libc::O_NONBLOCK) };
    SIGNAL_PIPE.store(ends[1], Ordering::Relaxed);
    // SAFETY: getpid has no preconditions.
    SIGNALLED_PROCESS.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    for &signal in signals {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (above).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = forward_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: action is initialised; the old action is not wanted.
        check(
            unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) },
            "sigaction",
        )?;
    }
    mask_signals(signals, false);
    Ok(ForwardedSignals { read })
}

/// Waits up to `timeout` for one of the blocked `signals`; None when none came.
pub fn wait_signal(signals: &[i32], timeout: Duration) -> Option<i32> {
    let set = signal_set(signals);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    loop {
        // SAFETY: set and ts are initialised; the siginfo is not wanted.
        let got = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if got > 0 {
            return Some(got);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// Sends `signal` to process `pid`; false if it is gone.
pub fn kill(pid: i32, signal: i32) -> bool {
    // SAFETY: kill takes plain integers; pid is one of our own children or the parent.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signalled(i32),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Ended::Exited(code) => write!(f, "exited with code {code}"),
            Ended::Signalled(sig) => write!(f, "was killed by signal {sig} ({})", signal_name(sig)),
        }
    }
}

/// The conventional name of a signal, for log lines a person reads.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "signal",
    }
}

/// Reaps one ended child without waiting; None when no child has ended.
pub fn reap_one() -> Option<(i32, Ended)> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let ended = if libc::WIFSIGNALED(status) {
        Ended::Signalled(libc::WTERMSIG(status))
    } else {
        Ended::Exited(libc::WEXITSTATUS(status))
    };
    Some((pid, ended))
}

/// Sets a resource limit (soft and hard).
pub fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: limit is initialised.
    check(unsafe { libc::setrlimit(resource, &limit) }, "setrlimit")
}

/// Sets this process's scheduling priority (nice value).
pub fn set_priority(priority: i32) -> io::Result<()> {
    // SAFETY: plain system call on this process.
    check(
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, priority) },
        "setpriority",
    )
}

/// Sets this process's file mode creation mask.
pub fn set_umask(mask: u32) {
    // SAFETY: plain system call.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// Gives back to the kernel the pages start-up freed (Python compiling and importing allocates
/// and frees much), which glibc otherwise keeps where they lie in the heap; a process that then
/// idles holds only what it uses. Once, after start-up, so no request pays for it.
pub fn release_start_up_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

/// Where the module's start-up code begins: scripts/hot-symbols.sh lists the functions a
/// serving process runs, then this one, then the functions only start-up runs (configuration,
/// Python's initialisation, process set-up), and the linker lays them out in that order, with
/// the code that never ran in the profile after them. Only the layout check looks for it.
#[no_mangle]
pub extern "C" fn mod_wsgi_rs_start_up_code() -> u32 {
    1
}

/// Drops this process's mappings of the module's code and constants once start-up has run. The
/// kernel maps a library's pages in 64 KiB blocks around each page read, and a process keeps
/// them mapped for its whole life, so every Apache process held the blocks of the start-up code
/// (about 180 KB) as well as those of the code that serves requests, and in embedded mode those
/// of daemon mode's serving code that shared a block with start-up code. Afterwards each process
/// maps again only the blocks it uses: serving code, laid out by mode before the marker. The
/// pages stay in the page cache; a later start-up (a graceful restart, a new process) maps them
/// again.
///
/// The caller must itself be serving code (listed before the marker), or returning to it would
/// map a block of start-up code again. Cannot panic, so hooks may call it outside their panic
/// boundary.
pub fn release_start_up_code() {
    // A debugger's breakpoints are writes to these pages, which unmapping would drop.
    if traced() {
        return;
    }
    let marker = mod_wsgi_rs_start_up_code as extern "C" fn() -> u32 as usize;
    let page = 4096;
    for (segment_start, segment_end) in read_only_segments(marker).into_iter().flatten() {
        let (start, end) = (
            segment_start.div_ceil(page) * page,
            segment_end / page * page,
        );
        if end > start {
            // SAFETY: whole pages of one of this module's segments that the loader maps
            // read-only and never writes (code, constants, symbol tables; the module has no text
            // relocations, and the relocated data is in a writable segment): they are a private
            // file mapping whose pages all equal the file's, so MADV_DONTNEED only unmaps them
            // and the next read maps them again from the page cache.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
}

/// Whether a debugger (or strace) is attached to this process.
fn traced() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("TracerPid:"))
            .is_some_and(|pid| pid.trim() != "0")
    })
}

/// The address ranges of the loaded segments (`PT_LOAD`) without write permission of the object
/// that holds `address`: the module's constants and its code.
fn read_only_segments(address: usize) -> [Option<(usize, usize)>; 4] {
    struct Search {
        address: usize,
        found: [Option<(usize, usize)>; 4],
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid description of one loaded object, whose program
        // headers are `dlpi_phnum` entries at `dlpi_phdr`; `data` is the Search below.
        let (search, info) = unsafe { (&mut *(data as *mut Search), &*info) };
        // SAFETY: as above.
        let headers =
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let loaded = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD)
            .map(|h| {
                let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                (start, start + h.p_memsz as usize, h.p_flags)
            });
        if !loaded
            .clone()
            .any(|(start, end, _)| (start..end).contains(&search.address))
        {
            return 0;
        }
        let read_only = loaded.filter(|&(_, _, flags)| flags & libc::PF_W == 0);
        for (slot, (start, end, _)) in search.found.iter_mut().zip(read_only) {
            *slot = Some((start, end));
        }
        1
    }
    let mut search = Search {
        address,
        found: [None; 4],
    };
    // SAFETY: `visit` only reads what the loader hands it and writes the Search it is given,
    // which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut search as *mut Search as *mut libc::c_void) };
    search.found
}

/// Lets the malloc arenas of the serving threads keep memory freed at the end of a request for
/// the next one. glibc hands the free top of an arena back to the kernel once it passes its trim
/// threshold, 128 KiB until the process has freed a block large enough to have had its own
/// mapping; the churn of `wsgi.input.read(65536)` buffers passes that on every large upload, and
/// the next request faults the same pages in again (about 20 page faults per 1 MiB request).
/// Freeing one such block now raises the thresholds (mapping 512 KiB, trimming 1 MiB) the way
/// glibc's own adjustment does, and leaves that adjustment working for larger blocks later.
pub fn keep_freed_heap_memory() {
    // SAFETY: a block from malloc, freed once; black_box keeps the pair from being optimised
    // away.
    unsafe {
        let block = std::hint::black_box(libc::malloc(512 << 10));
        libc::free(block);
    }
}

/// Names the calling thread (what `ps -L`, `top -H` and the kernel's `comm` show; 15 bytes).
pub fn set_thread_name(name: &str) {
    let short: String = name.chars().take(15).collect();
    if let Ok(c) = CString::new(short) {
        // SAFETY: c is a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

/// Rewrites the process's command line (what `ps` shows) in place: the memory of the original
/// arguments, which are contiguous, is overwritten with `title` (cut to fit) and NULs.
///
/// # Safety
/// `argv` must be the process's original argument vector of `argc` entries (from `main`), which
/// nothing reads as arguments any more.
pub unsafe fn set_command_line(argc: usize, argv: *const *mut libc::c_char, title: &str) {
    if argc == 0 || argv.is_null() {
        return;
    }
    // SAFETY: argv has argc valid, NUL-terminated strings laid out one after the other.
    unsafe {
        let start = *argv;
        let last = *argv.add(argc - 1);
        if start.is_null() || last.is_null() {
            return;
        }
        let end = last.add(libc::strlen(last));
        let room = end.offset_from(start) as usize;
        let bytes = title.as_bytes();
        let n = bytes.len().min(room);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, n);
        std::ptr::write_bytes(start.add(n), 0, room - n + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_reads_as_a_person_would_say_it() {
        assert_eq!(Ended::Exited(3).to_string(), "exited with code 3");
        assert_eq!(
            Ended::Signalled(libc::SIGKILL).to_string(),
            "was killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn a_blocked_signal_is_collected_synchronously() {
        std::thread::spawn(|| {
            mask_signals(&[libc::SIGUSR2], true);
            // SAFETY: raise to this thread only.
            unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2) };
            assert_eq!(
                wait_signal(&[libc::SIGUSR2], Duration::from_secs(5)),
                Some(libc::SIGUSR2)
            );
            assert_eq!(
                wait_signal(&[libc::SIGUSR2], Duration::from_millis(10)),
                None
            );
        })
        .join()
        .unwrap();
    }
}
