# Fills the `mod_wsgi` and `apache` modules every interpreter gets (as C mod_wsgi 4.9.4 provides
# them). `info` is a dict of what the server knows; `FileWrapper` is wsgi.file_wrapper's class.
def fill(mod_wsgi, apache, info, FileWrapper):
    mod_wsgi.version = info["mod_wsgi_version"]
    mod_wsgi.rs_version = info["rs_version"]
    mod_wsgi.process_group = info["process_group"]
    mod_wsgi.application_group = info["application_group"]
    mod_wsgi.maximum_processes = info["maximum_processes"]
    mod_wsgi.threads_per_process = info["threads_per_process"]
    mod_wsgi.FileWrapper = FileWrapper
    apache.version = info["apache_version"]
    apache.maximum_processes = info["apache_maximum_processes"]
    apache.threads_per_process = info["apache_threads_per_process"]
    apache.description = info["description"]
    apache.mpm_name = info["mpm_name"]
    apache.build_date = info["build_date"]


import codecs as _codecs
import io as _io


class LogStream(_io.TextIOBase):
    """sys.stdout and sys.stderr: text written here goes to Apache's error log, one entry per
    line (attributed to the request the writing thread serves, if any)."""

    line_buffering = True
    write_through = True

    def __init__(self, raw_write, raw_flush, name):
        self._raw_write = raw_write
        self._raw_flush = raw_flush
        self._name = name
        self._encoding = "utf-8"
        self._errors = "replace"
        self._buffer = None

    @property
    def name(self):
        return self._name

    @property
    def buffer(self):
        # Made when first asked for: most applications never do, and until then the class is
        # not even compiled (log_buffer.py).
        global _LogBuffer
        if self._buffer is None:
            if _LogBuffer is None:
                _LogBuffer = _log_buffer_class()
            self._buffer = _LogBuffer(self)
        return self._buffer

    @property
    def encoding(self):
        return self._encoding

    @property
    def errors(self):
        return self._errors

    def writable(self):
        return True

    def write(self, text):
        self._raw_write(text)
        return len(text)

    def flush(self):
        self._raw_flush()

    # Closing only flushes, as for wsgi.errors: a `with sys.stdout:` block, or a library closing
    # what it was given, must not break every later print() of the process.
    @property
    def closed(self):
        return False

    def close(self):
        self.flush()

    def reconfigure(self, *, encoding=None, errors=None, newline=None, line_buffering=None,
                    write_through=None):
        """As TextIOWrapper's: accepted so that the common `sys.stdout.reconfigure(...)` works.
        The text reaches the error log as it is, whatever the encoding named."""
        self.flush()
        if encoding is not None:
            _codecs.lookup(encoding)
            self._encoding = encoding
        if errors is not None:
            _codecs.lookup_error(errors)
            self._errors = errors

    def __repr__(self):
        return "<mod_wsgi.LogStream name=%r>" % self._name


_LogBuffer = None


def install_streams(sys, raw_write, raw_flush, log_buffer_class):
    global _log_buffer_class
    _log_buffer_class = log_buffer_class
    sys.stdout = LogStream(raw_write, raw_flush, "<stdout>")
    sys.stderr = LogStream(raw_write, raw_flush, "<stderr>")


def give_stream_api(cls, name):
    """The attributes of a text stream that libraries look for on wsgi.errors, beyond the
    write/writelines/flush PEP 3333 asks for (its other methods, writable() to __exit__(), are
    the type's own)."""
    cls.name = name
    cls.encoding = "utf-8"
    cls.errors = "replace"
    cls.line_buffering = True
    cls.write_through = True
    cls.closed = False
    cls.mode = "w"
    _io.TextIOBase.register(cls)
