//! A buffer whose tail is not initialised yet: the storage of a new `bytes` object that the
//! request body is read straight into, without zeroing it first (for a 1 MiB body that is 1 MiB
//! of writes saved per request). Only bytes written through it count as filled, so no
//! uninitialised byte is ever exposed.

use std::mem::MaybeUninit;

pub struct UninitBuf<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    filled: usize,
}

impl<'a> UninitBuf<'a> {
    pub fn new(buf: &'a mut [MaybeUninit<u8>]) -> Self {
        UninitBuf { buf, filled: 0 }
    }

    /// Bytes written so far (the first `filled()` bytes are initialised).
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        // SAFETY: the first `filled` bytes have been written (extend_from_slice, or advance's
        // contract), so they are initialised u8s.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.filled) }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.filled
    }

    /// Appends as much of `data` as fits; returns how much that was.
    pub fn extend_from_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.remaining());
        for (slot, byte) in self.buf[self.filled..self.filled + n].iter_mut().zip(data) {
            slot.write(*byte);
        }
        self.filled += n;
        n
    }

    /// Where the next byte goes, for a C function that writes up to `remaining()` bytes.
    pub fn spare_ptr(&mut self) -> *mut u8 {
        self.buf[self.filled..].as_mut_ptr() as *mut u8
    }

    /// Counts `n` more bytes as filled.
    ///
    /// # Safety
    /// The `n` bytes from `spare_ptr()` must have been written, and `n <= remaining()`.
    pub unsafe fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.remaining());
        self.filled += n;
    }
}

/// Lets `fill` write up to `max` bytes after the end of `vec`, which keeps what it wrote.
pub fn fill_tail<R>(
    vec: &mut Vec<u8>,
    max: usize,
    fill: impl FnOnce(&mut UninitBuf<'_>) -> R,
) -> R {
    vec.reserve(max);
    let len = vec.len();
    let mut tail = UninitBuf::new(&mut vec.spare_capacity_mut()[..max]);
    let out = fill(&mut tail);
    let written = tail.filled();
    // SAFETY: the `written` bytes after `len` were written through `tail` (its filled count),
    // within the capacity reserved above.
    unsafe { vec.set_len(len + written) };
    out
}

/// Hands the whole pages inside `buf` back to the kernel, for a buffer about to be freed whose
/// memory the allocator would otherwise keep: glibc returns the free top of a thread's arena
/// only past 128 KiB (more once large blocks have been freed), so a 64 KiB buffer used once by
/// a thread stays resident in that thread's arena for the life of the process. The pages read
/// as zeros afterwards, and cost page faults when next used.
pub fn return_whole_pages(buf: &mut [u8]) {
    const PAGE: usize = 4096;
    let start = (buf.as_ptr() as usize).next_multiple_of(PAGE);
    let end = (buf.as_ptr() as usize + buf.len()) & !(PAGE - 1);
    if end > start {
        // SAFETY: [start, end) lies inside `buf`, which we borrow mutably, and is heap memory
        // (private anonymous pages, or a private mapping), where MADV_DONTNEED only replaces
        // the bytes with zeros (or the file's bytes): both valid u8s. The allocator's own
        // records lie outside the block it handed out.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_pages_read_as_zeros_and_the_bytes_around_them_stay() {
        let mut v = vec![7u8; 5 * 4096 + 100];
        return_whole_pages(&mut v[100..]);
        let base = v.as_ptr() as usize;
        let start = (base + 100).next_multiple_of(4096);
        let end = (base + v.len()) & !4095;
        let zeroed = v.iter().enumerate().filter(|&(i, &b)| {
            let inside = (start..end).contains(&(base + i));
            assert_eq!(b, if inside { 0 } else { 7 }, "byte {i}");
            inside
        });
        assert!(zeroed.count() >= 4 * 4096);
    }

    #[test]
    fn only_written_bytes_count_and_nothing_overflows() {
        let mut storage = [MaybeUninit::<u8>::uninit(); 5];
        let mut b = UninitBuf::new(&mut storage);
        assert_eq!(b.extend_from_slice(b"abc"), 3);
        assert_eq!((b.filled(), b.remaining()), (3, 2));
        assert_eq!(b.extend_from_slice(b"defg"), 2);
        assert_eq!((b.filled(), b.remaining()), (5, 0));
        assert_eq!(b.extend_from_slice(b"h"), 0);
    }

    #[test]
    fn fill_tail_keeps_what_was_written_and_no_more_than_max() {
        let mut v = b"ab".to_vec();
        let took = fill_tail(&mut v, 3, |tail| tail.extend_from_slice(b"cdefg"));
        assert_eq!((took, v.as_slice()), (3, b"abcde".as_slice()));
        fill_tail(&mut v, 4, |tail| tail.extend_from_slice(b"f"));
        assert_eq!(v, b"abcdef");
    }
}
