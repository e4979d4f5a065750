//! UNIX-domain socket plumbing for daemon mode: the listening socket a daemon process group
//! accepts on, the Apache child's connect (with a retry policy for daemon restarts), socket
//! options, peer credentials, and the two system calls the frame layer needs: a vectored send
//! that may carry one file descriptor (SCM_RIGHTS), and a receive that collects any descriptors
//! that arrive. Every `unsafe` block of daemon mode lives here, each a thin wrapper around one
//! libc call.

use crate::buf::UninitBuf;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// The mode of a listening socket's file: only its owner (the daemon's user) may connect.
pub const SOCKET_MODE: u32 = 0o600;

/// Most descriptors one receive accepts. Linux hands over the descriptors of at most one send per
/// receive on a stream socket, and our sender attaches at most one, so this is generous; more
/// means the peer is not speaking our protocol (and the kernel closes what did not fit).
const MAX_FDS_PER_RECV: usize = 8;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Takes ownership of a descriptor a successful system call just returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful socket/accept4 call, so it is open and
    // nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The socket address of `path`; an error (naming the path and the limit) when it does not fit
/// `sun_path` with its terminating NUL, or contains a NUL.
fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    let limit = addr.sun_path.len() - 1;
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid socket path {:?}", path),
        ));
    }
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {:?} is {} bytes long; a UNIX socket path may have at most {} bytes",
                path,
                bytes.len(),
                limit
            ),
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn stream_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain system call with constant arguments.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    Ok(owned(fd))
}

fn set_int_option(fd: BorrowedFd<'_>, name: libc::c_int, value: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` is a live c_int and the length passed is its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Creates the listening socket of a daemon process group at `path`.
///
/// The socket is made ready under a temporary name beside `path` (bound, mode 0600, owner
/// `owner` if given, listening) and then renamed onto `path`, so an Apache child connecting
/// while a graceful restart replaces the socket reaches either the old socket or the new one,
/// never a half-made one it may not open (EACCES) or that refuses it. A stale socket at `path`
/// (left by an earlier run) is replaced; any other kind of file there is an error. Setting the
/// owner needs the right to chown, i.e. root. Non-zero `send_buffer`/`receive_buffer` set
/// SO_SNDBUF/SO_RCVBUF.
pub fn bind_listener(
    path: &Path,
    backlog: u32,
    owner: Option<(u32, u32)>,
    send_buffer: u32,
    receive_buffer: u32,
) -> io::Result<OwnedFd> {
    sockaddr(path)?;
    // The socket is made under an unpredictable name, then renamed over whatever is at `path`
    // (as C mod_wsgi, which removes it): a local user who can write to the socket directory
    // cannot keep the group from starting by planting a file or a symbolic link where the
    // socket goes. A directory there is an error. Socket paths always end `.PID.N.sock`, so no
    // file of anyone's is replaced by mistake.
    let staging = staging_path(path);
    let staging = if sockaddr(&staging).is_ok() {
        staging
    } else {
        // A path so long that the suffix does not fit is made in place (as the only way left).
        remove_entry(path)?;
        path.to_owned()
    };
    let sock = listen_at(&staging, backlog, owner, send_buffer, receive_buffer);
    let sock = sock.and_then(|sock| {
        if staging != path {
            std::fs::rename(&staging, path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot move socket {:?} to {:?}: {}", staging, path, e),
                )
            })?;
        }
        Ok(sock)
    });
    if sock.is_err() && staging != path {
        let _ = std::fs::remove_file(&staging);
    }
    sock
}

/// `path` with a random suffix: where a new socket is made before it replaces `path`.
fn staging_path(path: &Path) -> std::path::PathBuf {
    let mut random = [0u8; 8];
    // SAFETY: getrandom writes at most random.len() bytes into it.
    let n = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    if n != random.len() as isize {
        random = (std::process::id() as u64 ^ now_nanos()).to_le_bytes();
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.new", u64::from_le_bytes(random)));
    std::path::PathBuf::from(staging)
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Removes what is at `path` (not following a symbolic link), unless it is a directory.
fn remove_entry(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{:?} is a directory, where the socket should be", path),
        )),
        Ok(_) => std::fs::remove_file(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot remove {:?}: {}", path, e))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot inspect socket path {:?}: {}", path, e),
        )),
    }
}

/// Binds a new socket at `path` (which must be free), secures its file and listens.
fn listen_at(
    path: &Path,
    backlog: u32,
    owner: Option<(u32, u32)>,
    send_buffer: u32,
    receive_buffer: u32,
) -> io::Result<OwnedFd> {
    let (addr, len) = sockaddr(path)?;
    let sock = stream_socket()?;
    if send_buffer != 0 {
        set_int_option(sock.as_fd(), libc::SO_SNDBUF, send_buffer)?;
    }
    if receive_buffer != 0 {
        set_int_option(sock.as_fd(), libc::SO_RCVBUF, receive_buffer)?;
    }
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size.
    cvt(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    })
    .map_err(|e| io::Error::new(e.kind(), format!("cannot bind socket {:?}: {}", path, e)))?;
    // Not listening yet, so nobody can connect before the mode and owner are right. (umask is
    // process-wide and would race with other threads, hence chmod instead.)
    let secure = || -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    };
    secure().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot set mode/owner of socket {:?}: {}", path, e),
        )
    })?;
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: plain system call on a descriptor we own.
    cvt(unsafe { libc::listen(sock.as_raw_fd(), backlog) }).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on socket {:?}: {}", path, e),
        )
    })?;
    Ok(sock)
}

/// Connects to the socket at `path` (blocking; the descriptor is close-on-exec). The error of a
/// failed connect is returned unchanged in kind (see [`is_retryable`]).
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let (addr, len) = sockaddr(path)?;
    let sock = stream_socket()?;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size.
        let ret = unsafe {
            libc::connect(
                sock.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        match cvt(ret) {
            Ok(_) => return Ok(sock),
            // A UNIX stream connect interrupted while waiting for backlog room has not
            // connected (Linux aborts it), so trying again is correct.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Accepts one connection (close-on-exec). EINTR is retried; on a non-blocking listener with
/// nothing pending the error has kind `WouldBlock`.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: null address pointers are allowed and mean "don't report the peer address".
        let ret = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        match cvt(ret) {
            Ok(fd) => return Ok(owned(fd)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Where a daemon process's free serving threads wait for the next connection, all at once.
///
/// The listener is in an epoll set, edge-triggered and exclusive. A connection reaches one
/// process of the group: the kernel offers it to each process's set in turn and stops at the
/// first one with a thread waiting, so the other processes sleep on (C mod_wsgi has them take
/// turns with an accept mutex for the same end). In that process it wakes one thread, the one
/// that began waiting last (epoll's waiters are last in, first out), so one request after
/// another stays on the same few threads, whose stacks, arenas and caches are warm. No thread
/// is woken just to take over the waiting, as a turn passed from thread to thread needs.
///
/// An edge is one arrival, not "connections are queued": two arrivals close together can
/// leave one waiting with no thread told of it. So a thread that accepted looks whether more
/// are queued and, if so, wakes one more thread of its process through an eventfd. The stop
/// pipe, level-triggered, wakes every thread in turn.
pub struct ConnectionWaiter {
    epoll: OwnedFd,
    listener: RawFd,
    /// The eventfd that wakes one more waiting thread (edge-triggered too).
    more: OwnedFd,
    /// The read end of the stop pipe, kept open while in the epoll set.
    _stop: OwnedFd,
}

/// What woke a thread in [`ConnectionWaiter::next`].
pub enum Woken {
    Connection(OwnedFd),
    /// The stop pipe is readable.
    Stop,
    /// Nothing to do (another thread or process took the connection, or a signal).
    Nothing,
}

const LISTENER_TOKEN: u64 = 1;
const STOP_TOKEN: u64 = 2;
const MORE_TOKEN: u64 = 3;

impl ConnectionWaiter {
    /// `listener` must be non-blocking (other threads and processes of the group accept from
    /// it too) and stay open as long as the waiter; `stop` is the read end of a pipe written to
    /// stop.
    pub fn new(listener: BorrowedFd<'_>, stop: OwnedFd) -> io::Result<ConnectionWaiter> {
        // SAFETY: epoll_create1 has no preconditions; the descriptor is new and owned once.
        let epoll = owned(cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?);
        // SAFETY: eventfd has no preconditions; the descriptor is new and owned once.
        let more = owned(cvt(unsafe {
            libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
        })?);
        let waiter = ConnectionWaiter {
            epoll,
            listener: listener.as_raw_fd(),
            more,
            _stop: stop,
        };
        let edge = libc::EPOLLIN | libc::EPOLLET;
        waiter.add(
            listener.as_raw_fd(),
            LISTENER_TOKEN,
            edge | libc::EPOLLEXCLUSIVE,
        )?;
        waiter.add(waiter.more.as_raw_fd(), MORE_TOKEN, edge)?;
        waiter.add(waiter._stop.as_raw_fd(), STOP_TOKEN, libc::EPOLLIN)?;
        Ok(waiter)
    }

    fn add(&self, fd: RawFd, token: u64, events: libc::c_int) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: event is a valid epoll_event for the call; the descriptors are open.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) })
            .map(drop)
    }

    /// Waits for a connection (accepted here) or the stop pipe.
    pub fn next(&self) -> io::Result<Woken> {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: room for the one event asked for.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), &mut event, 1, -1) };
        match cvt(n) {
            Ok(1) => {}
            Ok(_) => return Ok(Woken::Nothing),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Woken::Nothing),
            Err(e) => return Err(e),
        }
        match event.u64 {
            STOP_TOKEN => return Ok(Woken::Stop),
            MORE_TOKEN => {
                let mut count = [0u8; 8];
                // SAFETY: reads the eventfd's 8-byte counter into a buffer of that size; a
                // failure (another thread reset it first) changes nothing.
                unsafe { libc::read(self.more.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
            }
            _ => {}
        }
        // SAFETY: the listener stays open as long as the waiter (new's contract).
        let listener = unsafe { BorrowedFd::borrow_raw(self.listener) };
        let Ok(conn) = accept(listener) else {
            return Ok(Woken::Nothing);
        };
        if readable_now(listener) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a buffer of that size to the eventfd; if its counter
            // were full, a wake is already pending.
            unsafe { libc::write(self.more.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
        Ok(Woken::Connection(conn))
    }
}

/// Whether `fd` has input waiting (for a listener: a connection), without waiting.
fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLIN != 0 }
}

/// Sets or clears O_NONBLOCK.
pub fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // SAFETY: plain fcntl on a borrowed, open descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let new = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) })?;
    }
    Ok(())
}

fn set_timeout(fd: BorrowedFd<'_>, name: libc::c_int, t: Option<Duration>) -> io::Result<()> {
    let tv = match t {
        // A zero timeval means "no timeout" to the kernel, which is not what zero means here.
        Some(d) if d.is_zero() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a socket timeout of zero is not allowed",
            ))
        }
        Some(d) => libc::timeval {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            // At least 1 µs so that a sub-microsecond timeout does not become "none".
            tv_usec: if d.as_secs() == 0 {
                d.subsec_micros().max(1) as libc::suseconds_t
            } else {
                d.subsec_micros() as libc::suseconds_t
            },
        },
        None => libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: `tv` is a live timeval and the length passed is its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Sets SO_RCVTIMEO and SO_SNDTIMEO; `None` means wait forever. A blocking call that times out
/// fails with kind `WouldBlock` (EAGAIN). A zero duration is an error.
pub fn set_timeouts(
    fd: BorrowedFd<'_>,
    recv: Option<Duration>,
    send: Option<Duration>,
) -> io::Result<()> {
    set_timeout(fd, libc::SO_RCVTIMEO, recv)?;
    set_timeout(fd, libc::SO_SNDTIMEO, send)
}

/// The process at the other end of a connected UNIX socket, as of when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// SO_PEERCRED of a connected UNIX socket.
pub fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a live ucred and `len` holds its size; the kernel writes at most that.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    if len as usize != size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_PEERCRED returned a short answer",
        ));
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Sends `bufs` with one `sendmsg` (MSG_NOSIGNAL: a closed peer is an EPIPE error, not a
/// SIGPIPE), attaching `pass` with SCM_RIGHTS when given. Returns how many bytes went out, which
/// may be fewer than offered; the descriptor travels with the first byte. EINTR is returned to
/// the caller (nothing was sent then).
pub fn send_vectored(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    pass: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    // Room for one cmsghdr carrying one int, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; all zeroes is a valid value (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec; sendmsg only reads through the pointer.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    if let Some(pass) = pass {
        // SAFETY: CMSG_SPACE is pure arithmetic.
        let space = unsafe { libc::CMSG_SPACE(size_of::<RawFd>() as libc::c_uint) } as usize;
        debug_assert!(space <= size_of::<[u64; 4]>());
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `control`, which is large enough for one header with one
        // int (checked above) and 8-byte aligned, so CMSG_FIRSTHDR is non-null and its header
        // and data lie inside `control`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as libc::c_uint) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), pass.as_raw_fd());
        }
    }
    // SAFETY: `msg` points at `bufs` and `control`, both alive for the call.
    cvt_size(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })
}

/// Receives into `buf` with one `recvmsg` (MSG_CMSG_CLOEXEC), appending every descriptor that
/// arrives (SCM_RIGHTS) to `fds`, so none is leaked or lost. Returns the byte count (0 at EOF).
/// If the kernel had to drop descriptors for lack of room (MSG_CTRUNC), the result is an
/// InvalidData error (the peer is not speaking our protocol; drop the connection); the
/// descriptors that did arrive are still in `fds`. EINTR is returned to the caller.
pub fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    // SAFETY: initialised bytes are valid MaybeUninit<u8>, and recv only writes bytes.
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    recv_uninit_with_fds(fd, buf, fds)
}

/// [`recv_with_fds`] into memory not yet initialised; the first `n` bytes (the result) are
/// initialised when it returns.
pub fn recv_uninit_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    // Aligned for cmsghdr; room for MAX_FDS_PER_RECV descriptors.
    let mut control = [MaybeUninit::<u64>::uninit(); 2 + MAX_FDS_PER_RECV];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 2 + MAX_FDS_PER_RECV]>() as _;
    // SAFETY: `msg` points at `iov` (covering `buf`) and `control`, all alive and writable for
    // the call; the kernel writes at most their lengths.
    let n = cvt_size(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    // SAFETY: after a successful recvmsg, msg_control/msg_controllen describe the control
    // messages the kernel wrote into `control`; CMSG_FIRSTHDR/NXTHDR stay within that length
    // and CMSG_DATA of an SCM_RIGHTS message holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors,
    // each newly installed in this process and owned by nobody else.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let bytes = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..bytes / size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(data.add(i));
                    fds.push_back(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer sent more file descriptors than expected; some were dropped",
        ));
    }
    Ok(n)
}

/// [`recv_with_fds`] of up to `max` bytes straight into the unfilled part of `dest`, which
/// counts them as filled.
pub fn recv_into(
    fd: BorrowedFd<'_>,
    dest: &mut UninitBuf<'_>,
    max: usize,
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let want = max.min(dest.remaining());
    // SAFETY: spare_ptr() points at remaining() >= want writable bytes of dest, which nothing
    // else uses while this slice lives.
    let spare =
        unsafe { std::slice::from_raw_parts_mut(dest.spare_ptr().cast::<MaybeUninit<u8>>(), want) };
    let n = recv_uninit_with_fds(fd, spare, fds)?;
    // SAFETY: the kernel wrote the first n (<= want) bytes of spare.
    unsafe { dest.advance(n) };
    Ok(n)
}

/// How long the Apache child waits between attempts to connect to a daemon that is (re)starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Give up once this much time has passed since the first attempt; zero means no retry.
    pub timeout: Duration,
}

impl RetryPolicy {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_millis(200);

    /// The pause before retry number `attempt` (0 for the first retry), given the time elapsed
    /// since the first attempt: 5 ms doubling per attempt up to 200 ms, never past the timeout;
    /// `None` once `elapsed` has reached the timeout.
    pub fn delay(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if elapsed >= self.timeout {
            return None;
        }
        let step = Self::FIRST
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(Self::MAX)
            .min(Self::MAX);
        Some(step.min(self.timeout - elapsed))
    }
}

/// Whether a connect error is worth retrying while a daemon restarts: nobody listening yet
/// (ECONNREFUSED), backlog full (EAGAIN), or the socket file being replaced (ENOENT).
pub fn is_retryable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNREFUSED) | Some(libc::EAGAIN) | Some(libc::ENOENT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::test_util::TempDir;
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_connection_wakes_the_thread_that_began_waiting_last_and_a_stop_wakes_all() {
        use std::os::unix::net::UnixListener;
        use std::sync::{Arc, Mutex};
        let dir = TempDir::new("waiter");
        let path = dir.0.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop_read, stop_write) = std::io::pipe().unwrap();
        let waiter =
            Arc::new(ConnectionWaiter::new(listener.as_fd(), OwnedFd::from(stop_read)).unwrap());
        let woken = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let (waiter, woken) = (waiter.clone(), woken.clone());
                let t = std::thread::spawn(move || loop {
                    match waiter.next().unwrap() {
                        Woken::Connection(_) => woken.lock().unwrap().push(format!("{i} conn")),
                        Woken::Stop => {
                            woken.lock().unwrap().push(format!("{i} stop"));
                            return;
                        }
                        Woken::Nothing => {}
                    }
                });
                // Each in epoll_wait before the next starts.
                std::thread::sleep(Duration::from_millis(100));
                t
            })
            .collect();
        let _client = UnixStream::connect(&path).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(*woken.lock().unwrap(), ["2 conn"]);
        std::io::Write::write_all(&mut &stop_write, b"x").unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let mut all = woken.lock().unwrap().clone();
        all.sort();
        assert_eq!(all, ["0 stop", "1 stop", "2 conn", "2 stop"]);
    }

    /// Threads, each with its own waiter on the listener at `path` (one waiter per thread
    /// stands for one process each), that record what woke them: `"W conn"` or `"W nothing"`.
    /// Each holds a connection for `hold` before waiting again.
    fn waiting_threads(
        listener: &std::os::unix::net::UnixListener,
        waiters: usize,
        threads_each: usize,
        hold: Duration,
    ) -> (
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        Vec<std::io::PipeWriter>,
    ) {
        use std::sync::{Arc, Mutex};
        let woken = Arc::new(Mutex::new(Vec::new()));
        let mut stops = Vec::new();
        for w in 0..waiters {
            let (stop_read, stop_write) = std::io::pipe().unwrap();
            stops.push(stop_write);
            let waiter = Arc::new(
                ConnectionWaiter::new(listener.as_fd(), OwnedFd::from(stop_read)).unwrap(),
            );
            for _ in 0..threads_each {
                let (waiter, woken) = (waiter.clone(), woken.clone());
                std::thread::spawn(move || loop {
                    match waiter.next().unwrap() {
                        Woken::Connection(_) => {
                            woken.lock().unwrap().push(format!("{w} conn"));
                            std::thread::sleep(hold);
                        }
                        Woken::Nothing => woken.lock().unwrap().push(format!("{w} nothing")),
                        Woken::Stop => return,
                    }
                });
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        (woken, stops)
    }

    #[test]
    fn a_connection_wakes_one_process_of_the_group_not_each() {
        use std::os::unix::net::UnixListener;
        let dir = TempDir::new("waiter_exclusive");
        let path = dir.0.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (woken, stops) = waiting_threads(&listener, 3, 2, Duration::ZERO);
        let _clients: Vec<_> = (0..3)
            .map(|_| {
                let c = UnixStream::connect(&path).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                c
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let seen = woken.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            3,
            "one wake per connection, no thread of another process woken for nothing: {seen:?}"
        );
        assert!(seen.iter().all(|e| e.ends_with("conn")), "{seen:?}");
        for mut s in stops {
            std::io::Write::write_all(&mut s, b"x").unwrap();
        }
    }

    #[test]
    fn connections_that_arrive_together_are_all_taken() {
        use std::os::unix::net::UnixListener;
        let dir = TempDir::new("waiter_burst");
        let path = dir.0.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        // Two processes of three threads, each thread busy a while with what it took: a burst
        // of twenty connections, more than there are free threads at any time.
        let (woken, stops) = waiting_threads(&listener, 2, 3, Duration::from_millis(30));
        let _clients: Vec<_> = (0..20)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let taken = || {
            woken
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.ends_with("conn"))
                .count()
        };
        while taken() < 20 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(taken(), 20, "{:?}", woken.lock().unwrap());
        for mut s in stops {
            std::io::Write::write_all(&mut s, b"x").unwrap();
        }
    }

    /// Our effective uid and gid (the owner of /proc/self).
    fn own_ids() -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self").unwrap();
        (m.uid(), m.gid())
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn listener_has_mode_0600_and_accepts() {
        let dir = TempDir::new("bind");
        let path = dir.0.join("s.sock");
        let l = bind_listener(&path, 10, None, 65536, 65536).unwrap();
        assert_eq!(mode(&path), 0o600);
        let c = connect(&path).unwrap();
        let a = accept(l.as_fd()).unwrap();
        let me = peer_credentials(a.as_fd()).unwrap();
        assert_eq!(me.pid as u32, std::process::id());
        drop(c);
    }

    #[test]
    fn owner_is_applied() {
        let dir = TempDir::new("own");
        let path = dir.0.join("s.sock");
        // Our own uid/gid: allowed without privileges.
        let (uid, gid) = own_ids();
        bind_listener(&path, 1, Some((uid, gid)), 0, 0).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = TempDir::new("stale");
        let path = dir.0.join("s.sock");
        let old = bind_listener(&path, 1, None, 0, 0).unwrap();
        drop(old); // the file stays behind, as after a crash
        assert!(path.exists());
        assert_eq!(
            connect(&path).unwrap_err().raw_os_error(),
            Some(libc::ECONNREFUSED)
        );
        let l = bind_listener(&path, 1, None, 0, 0).unwrap();
        let _c = connect(&path).unwrap();
        accept(l.as_fd()).unwrap();
    }

    #[test]
    fn a_replaced_socket_is_never_missing_or_refusing() {
        // While a new listener replaces a live one, a connecting client must reach one of
        // them: no moment without the file (ENOENT) or with one not yet listening.
        let dir = TempDir::new("replace");
        let path = dir.0.join("s.sock");
        let mut live = vec![bind_listener(&path, 4096, None, 0, 0).unwrap()];
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connector = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match connect(&path) {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        };
        for _ in 0..200 {
            live.push(bind_listener(&path, 4096, None, 0, 0).unwrap());
            if live.len() > 2 {
                live.remove(0);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = connector.join().unwrap();
        assert!(ok > 0);
        assert!(
            failed.is_empty(),
            "{} of {} failed: {:?}",
            failed.len(),
            ok + failed.len(),
            &failed[..1]
        );
        assert!(!dir.0.join("s.sock.new").exists());
    }

    #[test]
    fn what_squats_at_the_socket_path_is_replaced_but_a_directory() {
        let dir = TempDir::new("squat");
        let path = dir.0.join("s.sock");
        let elsewhere = dir.0.join("elsewhere");
        std::fs::write(&elsewhere, b"kept").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let l = bind_listener(&path, 1, None, 0, 0).unwrap();
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());
        assert_eq!(
            std::fs::read(&elsewhere).unwrap(),
            b"kept",
            "the link is not followed"
        );
        drop(l);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"planted").unwrap();
        drop(bind_listener(&path, 1, None, 0, 0).unwrap());
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = bind_listener(&path, 1, None, 0, 0).unwrap_err();
        assert!(err.to_string().contains("s.sock"), "{err}");
        assert!(path.is_dir());
        // Nothing is left behind by the failed attempt.
        let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn too_long_path_is_refused_not_truncated() {
        let dir = TempDir::new("long");
        let path = dir.0.join("x".repeat(200));
        let err = bind_listener(&path, 1, None, 0, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(msg.contains("xxxx") && msg.contains("107"), "{}", msg);
        assert!(!path.exists());
        assert_eq!(
            connect(&path).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn connect_to_missing_socket_is_retryable() {
        let dir = TempDir::new("missing");
        let err = connect(&dir.0.join("none.sock")).unwrap_err();
        assert!(is_retryable(&err), "{}", err);
    }

    #[test]
    fn accept_on_nonblocking_listener_would_block() {
        let dir = TempDir::new("nb");
        let path = dir.0.join("s.sock");
        let l = bind_listener(&path, 1, None, 0, 0).unwrap();
        set_nonblocking(l.as_fd(), true).unwrap();
        assert_eq!(
            accept(l.as_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        set_nonblocking(l.as_fd(), false).unwrap();
    }

    #[test]
    fn peer_credentials_of_a_pair_are_ours() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_credentials(a.as_fd()).unwrap();
        let (uid, gid) = own_ids();
        assert_eq!(
            c,
            PeerCred {
                pid: std::process::id() as i32,
                uid,
                gid
            }
        );
    }

    #[test]
    fn receive_timeout_is_would_block() {
        let (a, _b) = UnixStream::pair().unwrap();
        set_timeouts(a.as_fd(), Some(Duration::from_millis(20)), None).unwrap();
        let mut fds = VecDeque::new();
        let err = recv_with_fds(a.as_fd(), &mut [0u8; 4], &mut fds).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(set_timeouts(a.as_fd(), Some(Duration::ZERO), None).is_err());
        set_timeouts(a.as_fd(), None, None).unwrap();
    }

    #[test]
    fn retry_delays_double_cap_and_stop() {
        let p = RetryPolicy {
            timeout: Duration::from_secs(10),
        };
        let ms = Duration::from_millis;
        let got: Vec<_> = (0..8).map(|a| p.delay(a, ms(0)).unwrap()).collect();
        assert_eq!(
            got,
            [
                ms(5),
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(200),
                ms(200)
            ]
        );
        assert_eq!(p.delay(u32::MAX, ms(0)), Some(ms(200)));
        assert_eq!(p.delay(3, ms(9_990)), Some(ms(10)));
        assert_eq!(p.delay(0, ms(10_000)), None);
        assert_eq!(p.delay(0, ms(20_000)), None);
        let none = RetryPolicy {
            timeout: Duration::ZERO,
        };
        assert_eq!(none.delay(0, Duration::ZERO), None);
    }

    #[test]
    fn retryable_errors() {
        for e in [libc::ECONNREFUSED, libc::EAGAIN, libc::ENOENT] {
            assert!(is_retryable(&io::Error::from_raw_os_error(e)));
        }
        for e in [libc::EACCES, libc::ENOTSOCK, libc::EPIPE] {
            assert!(!is_retryable(&io::Error::from_raw_os_error(e)));
        }
        assert!(!is_retryable(&io::Error::other("x")));
    }
}
