# What WSGIRestrictStdin, WSGIRestrictStdout and WSGIRestrictSignal put in an interpreter, as C
# mod_wsgi 4.9.4 does. Run with __name__ == "mod_wsgi", so the class is mod_wsgi.Restricted.
import os
import sys


class Restricted:
    """Stands in for sys.stdin or sys.stdout: every attribute lookup (read, write, fileno, …)
    raises OSError, so an application that uses the stream fails loudly instead of reading or
    corrupting what Apache's process has on that descriptor."""

    __slots__ = ("_mod_wsgi_stream",)

    def __init__(self, stream):
        self._mod_wsgi_stream = stream

    def __getattribute__(self, name):
        stream = object.__getattribute__(self, "_mod_wsgi_stream")
        raise OSError("%s access restricted by mod_wsgi" % stream)


def intercept_signals(signal_module, log_warning):
    """Replaces signal.signal so that a registration is ignored and logged with the caller's
    stack: Apache owns this process's signals (SIGTERM, SIGHUP, SIGUSR1, SIGWINCH, …). As in C
    mod_wsgi the handler given is returned, and a process forked by the application (whose pid
    differs) may register handlers of its own."""
    register = signal_module.signal
    pid = os.getpid()

    def signal(signalnum, handler):
        if os.getpid() != pid:
            return register(signalnum, handler)
        import operator
        import traceback

        log_warning(
            "mod_wsgi (pid=%d): Callback registration for signal %d ignored."
            % (pid, operator.index(signalnum))
        )
        for entry in traceback.format_stack(sys._getframe(1)):
            for line in entry.rstrip("\n").split("\n"):
                log_warning(line)
        return handler

    signal.__qualname__ = "signal"
    signal_module.signal = signal
