//! `wsgi.input` semantics over a byte source: `read`, `read(n)`, `readline([n])`, with a buffer
//! for what `readline` read past the end of a line. No Python here.

/// A blocking source of body bytes: fills the buffer, returns 0 at the end.
pub type Source<'a> = &'a mut (dyn FnMut(&mut [u8]) -> Result<usize, String> + Send);

use crate::buf::UninitBuf;

const CHUNK: usize = 64 * 1024;
const LINE_CHUNK: usize = 8 * 1024;

#[derive(Debug, Default)]
pub struct BodyReader {
    buffered: Vec<u8>,
    eof: bool,
    /// The first failure: every later read fails at once with it (as in C), rather than wait
    /// out another timeout on a body that is already broken.
    failed: Option<String>,
}

impl BodyReader {
    /// What `read` gets from the source, a failure remembered: a source that failed before is
    /// not asked again.
    fn read_source(
        &mut self,
        read: impl FnOnce() -> Result<usize, String>,
    ) -> Result<usize, String> {
        if let Some(first) = &self.failed {
            return Err(format!("Input is already in error state: {first}"));
        }
        read().inspect_err(|e| self.failed = Some(e.clone()))
    }

    fn take_buffered(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.buffered.len());
        self.buffered.drain(..n).collect()
    }

    /// Appends up to `want` more bytes from `src` to `out`; false at end of body.
    fn fill(&mut self, src: Source<'_>, out: &mut Vec<u8>, want: usize) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        let start = out.len();
        out.resize(start + want, 0);
        let n = self.read_source(|| src(&mut out[start..]));
        let n = n.inspect_err(|_| out.truncate(start))?;
        out.truncate(start + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// `read(size)`: up to `size` bytes (all that remain when `None`), fewer only at the end.
    pub fn read(&mut self, src: Source<'_>, size: Option<usize>) -> Result<Vec<u8>, String> {
        let limit = size.unwrap_or(usize::MAX);
        let mut out = self.take_buffered(limit);
        while out.len() < limit {
            let want = (limit - out.len()).min(CHUNK);
            if !self.fill(src, &mut out, want)? {
                break;
            }
        }
        Ok(out)
    }

    /// Fills `dest` completely unless the body ends first; `src` appends to it and returns how
    /// many bytes it added (0 at the end).
    pub fn read_into(
        &mut self,
        src: &mut (dyn FnMut(&mut UninitBuf<'_>) -> Result<usize, String> + Send),
        dest: &mut UninitBuf<'_>,
    ) -> Result<(), String> {
        let from_buffer = dest.extend_from_slice(&self.buffered);
        self.buffered.drain(..from_buffer);
        while dest.remaining() > 0 && !self.eof {
            if self.read_source(|| src(dest))? == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    /// `readline(size)`: up to and including the next `\n`, at most `size` bytes.
    pub fn readline(&mut self, src: Source<'_>, size: Option<usize>) -> Result<Vec<u8>, String> {
        let limit = size.unwrap_or(usize::MAX);
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buffered[scanned..].iter().position(|&b| b == b'\n') {
                return Ok(self.take_buffered((scanned + i + 1).min(limit)));
            }
            scanned = self.buffered.len();
            if self.buffered.len() >= limit {
                return Ok(self.take_buffered(limit));
            }
            let mut more = std::mem::take(&mut self.buffered);
            let got = self.fill(src, &mut more, LINE_CHUNK);
            self.buffered = more;
            if !got? {
                return Ok(self.take_buffered(limit));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body delivered in small, uneven pieces, as a network read would.
    fn source(body: &'static [u8]) -> impl FnMut(&mut [u8]) -> Result<usize, String> + Send {
        let mut pos = 0;
        move |buf: &mut [u8]| {
            let n = buf.len().min(3).min(body.len() - pos);
            buf[..n].copy_from_slice(&body[pos..pos + n]);
            pos += n;
            Ok(n)
        }
    }

    #[test]
    fn read_all_and_then_empty() {
        let mut s = source(b"hello world");
        let mut r = BodyReader::default();
        assert_eq!(r.read(&mut s, None).unwrap(), b"hello world");
        assert_eq!(r.read(&mut s, None).unwrap(), b"");
        assert_eq!(r.read(&mut s, Some(10)).unwrap(), b"");
    }

    #[test]
    fn read_n_returns_exactly_n_until_the_end() {
        let mut s = source(b"abcdefgh");
        let mut r = BodyReader::default();
        assert_eq!(r.read(&mut s, Some(5)).unwrap(), b"abcde");
        assert_eq!(r.read(&mut s, Some(5)).unwrap(), b"fgh");
        assert_eq!(r.read(&mut s, Some(0)).unwrap(), b"");
    }

    /// A source for `read_into` that hands out `body[start..]` three bytes at a time.
    fn uninit_source(
        body: &'static [u8],
        start: usize,
    ) -> impl FnMut(&mut UninitBuf<'_>) -> Result<usize, String> + Send {
        let mut pos = start;
        move |dest: &mut UninitBuf<'_>| {
            let n = dest.extend_from_slice(&body[pos..(pos + 3).min(body.len())]);
            pos += n;
            Ok(n)
        }
    }

    #[test]
    fn read_into_fills_the_buffer_across_pieces_and_after_readline() {
        const BODY: &[u8] = b"ab\ncdefghij";
        let mut lines = |buf: &mut [u8]| -> Result<usize, String> {
            let n = buf.len().min(5);
            buf[..n].copy_from_slice(&BODY[..n]);
            Ok(n)
        };
        let mut r = BodyReader::default();
        assert_eq!(r.readline(&mut lines, None).unwrap(), b"ab\n");
        // "cd" is left over from readline's read; the rest comes from the source.
        let mut s = uninit_source(BODY, 5);
        let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); 5];
        let mut buf = UninitBuf::new(&mut storage);
        r.read_into(&mut s, &mut buf).unwrap();
        assert_eq!(buf.filled(), 5);
        // SAFETY: the 5 bytes were written (filled() says so).
        let got: Vec<u8> = storage.iter().map(|b| unsafe { b.assume_init() }).collect();
        assert_eq!(got, b"cdefg");
        let mut big = [std::mem::MaybeUninit::<u8>::uninit(); 10];
        let mut buf = UninitBuf::new(&mut big);
        r.read_into(&mut s, &mut buf).unwrap();
        assert_eq!(buf.filled(), 3, "hij, then the end");
        let mut buf = UninitBuf::new(&mut big);
        r.read_into(&mut s, &mut buf).unwrap();
        assert_eq!(buf.filled(), 0);
    }

    #[test]
    fn readline_splits_lines_and_keeps_the_rest() {
        let mut s = source(b"one\ntwo\nthree");
        let mut r = BodyReader::default();
        assert_eq!(r.readline(&mut s, None).unwrap(), b"one\n");
        assert_eq!(r.readline(&mut s, None).unwrap(), b"two\n");
        assert_eq!(r.read(&mut s, Some(2)).unwrap(), b"th");
        assert_eq!(r.readline(&mut s, None).unwrap(), b"ree");
        assert_eq!(r.readline(&mut s, None).unwrap(), b"");
    }

    #[test]
    fn readline_honours_its_limit() {
        let mut s = source(b"abcdef\nxyz");
        let mut r = BodyReader::default();
        assert_eq!(r.readline(&mut s, Some(4)).unwrap(), b"abcd");
        assert_eq!(r.readline(&mut s, Some(10)).unwrap(), b"ef\n");
        assert_eq!(r.readline(&mut s, Some(10)).unwrap(), b"xyz");
    }

    #[test]
    fn errors_pass_through() {
        let mut s = |_: &mut [u8]| -> Result<usize, String> { Err("client went away".into()) };
        let mut r = BodyReader::default();
        assert_eq!(r.read(&mut s, None).unwrap_err(), "client went away");
    }

    #[test]
    fn after_a_failure_the_source_is_not_asked_again() {
        let mut calls = 0;
        let mut s = |_: &mut [u8]| -> Result<usize, String> {
            calls += 1;
            Err("timed out".into())
        };
        let mut r = BodyReader::default();
        assert_eq!(r.read(&mut s, Some(10)).unwrap_err(), "timed out");
        for _ in 0..3 {
            assert_eq!(
                r.readline(&mut s, None).unwrap_err(),
                "Input is already in error state: timed out"
            );
        }
        assert_eq!(calls, 1);
    }
}
