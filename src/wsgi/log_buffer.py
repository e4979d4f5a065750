# `sys.stdout.buffer` and `sys.stderr.buffer`: compiled only when an application first asks for
# one (most never do), so that an interpreter does not keep this class's code otherwise.
import codecs as _codecs
import io as _io


class _LogBuffer(_io.BufferedIOBase):
    """`sys.stdout.buffer`: bytes written here are decoded as UTF-8 (an invalid sequence as
    U+FFFD) and logged as the text stream logs text."""

    def __init__(self, stream):
        self._stream = stream
        self._decoder = None

    @property
    def name(self):
        return self._stream.name

    def writable(self):
        return True

    # Closing it only flushes: the stream is the server's, and `io.TextIOWrapper(sys.stdout.buffer)`
    # closes it when the wrapper is collected, which must not silence the process's output.
    @property
    def closed(self):
        return False

    def close(self):
        self.flush()

    def write(self, data):
        data = memoryview(data).cast("B")
        if self._decoder is None:
            self._decoder = _codecs.getincrementaldecoder("utf-8")("replace")
        self._stream.write(self._decoder.decode(data))
        return len(data)

    def flush(self):
        self._stream.flush()
