//! Which requests a daemon process is serving, in memory its supervisor shares: when the process
//! dies, the supervisor's log line names the requests it took with it next to its pid and the
//! signal or exit code. It also records how far the process got: one that got as far as serving
//! and then dies is replaced at once, however soon, not held back as a process failing to start;
//! one that has begun to stop (it accepts nothing more and finishes what it serves) is replaced
//! at once, while it finishes.

use std::io;

/// Bytes kept per thread: a length byte and the request id (Apache's are 11-24 characters).
const SLOT: usize = 64;

/// How far the process has got, in the byte after the threads' slots.
const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

pub struct Scoreboard {
    base: *mut u8,
    slots: usize,
}

// SAFETY: each slot is written by one thread of the daemon process only, and read by the
// supervisor only after that process has ended; the stage byte is only used as an atomic.
unsafe impl Send for Scoreboard {}
// SAFETY: as above.
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    /// Shared memory for `slots` threads, inherited by the processes forked afterwards.
    pub fn new(slots: usize) -> io::Result<Scoreboard> {
        // One slot more, whose first byte says the process is serving.
        let len = (slots.max(1) + 1) * SLOT;
        // SAFETY: an anonymous shared mapping of `len` bytes; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Scoreboard {
            base: base.cast(),
            slots: slots.max(1),
        })
    }

    /// Records that thread `slot` serves request `id` (empty: none).
    pub fn set(&self, slot: usize, id: &[u8]) {
        if slot >= self.slots {
            return;
        }
        let n = id.len().min(SLOT - 1);
        // SAFETY: slot < slots, so the SLOT bytes at base + slot*SLOT are inside the mapping;
        // only this slot's thread writes them.
        unsafe {
            let p = self.base.add(slot * SLOT);
            std::ptr::copy_nonoverlapping(id.as_ptr(), p.add(1), n);
            *p = n as u8;
        }
    }

    pub fn clear(&self, slot: usize) {
        self.set(slot, b"");
    }

    fn stage(&self) -> &std::sync::atomic::AtomicU8 {
        // SAFETY: the byte after the threads' slots is inside the mapping (see new), and only
        // ever used as an atomic.
        unsafe { &*(self.base.add(self.slots * SLOT) as *const std::sync::atomic::AtomicU8) }
    }

    /// Records that the process has started and is serving.
    pub fn mark_ready(&self) {
        self.stage()
            .store(READY, std::sync::atomic::Ordering::Release);
    }

    /// Records that the process, having served, has begun to stop: it accepts no more
    /// connections, so the group needs its replacement now.
    pub fn mark_stopping(&self) {
        let _ = self.stage().compare_exchange(
            READY,
            STOPPING,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        );
    }

    /// Whether the process has begun to stop (see mark_stopping).
    pub fn stopping(&self) -> bool {
        self.stage().load(std::sync::atomic::Ordering::Acquire) == STOPPING
    }

    /// Whether the process that used the board got as far as serving; cleared for the next.
    pub fn take_ready(&self) -> bool {
        self.stage()
            .swap(STARTING, std::sync::atomic::Ordering::AcqRel)
            != STARTING
    }

    /// The requests being served, as recorded; all slots are cleared.
    pub fn take(&self) -> Vec<String> {
        (0..self.slots)
            .filter_map(|slot| {
                // SAFETY: inside the mapping (slot < slots); the writers have ended.
                let id = unsafe {
                    let p = self.base.add(slot * SLOT);
                    let n = (*p as usize).min(SLOT - 1);
                    std::slice::from_raw_parts(p.add(1), n).to_vec()
                };
                self.clear(slot);
                (!id.is_empty()).then(|| String::from_utf8_lossy(&id).into_owned())
            })
            .collect()
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in new().
        unsafe { libc::munmap(self.base.cast(), (self.slots + 1) * SLOT) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_process_records_what_its_parent_reads() {
        let board = Scoreboard::new(3).unwrap();
        board.set(0, b"first");
        // SAFETY: the child only writes to the shared mapping and exits at once.
        match unsafe { libc::fork() } {
            0 => {
                board.set(2, b"from-the-child");
                board.clear(0);
                // SAFETY: ends the forked test process without running the harness.
                unsafe { libc::_exit(0) };
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
        }
        assert_eq!(board.take(), ["from-the-child"]);
        assert!(!board.take_ready());
        match unsafe { libc::fork() } {
            0 => {
                board.mark_ready();
                // SAFETY: ends the forked test process without running the harness.
                unsafe { libc::_exit(0) };
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
        }
        assert!(board.take_ready());
        assert!(!board.take_ready(), "cleared for the next process");
        board.mark_stopping();
        assert!(
            !board.stopping(),
            "a process that never served is not replaced early"
        );
        board.mark_ready();
        board.mark_stopping();
        assert!(board.stopping());
        assert!(board.take_ready(), "a stopping process had served");
        assert!(!board.stopping());
        assert!(board.take().is_empty());
        board.set(1, &[b'x'; 100]);
        assert_eq!(board.take(), ["x".repeat(63)]);
    }
}
