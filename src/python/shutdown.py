# What an interpreter runs as the child process exits, before it is destroyed (or Python is
# finalised).
import sys


def join_threads(timeout):
    """Waits up to `timeout` seconds for the non-daemon threads the application started, as
    Python's own shutdown would (but bounded). Returns the names of the application's threads
    still running: (non-daemon ones, daemon ones)."""
    threading = sys.modules.get("threading")
    if threading is None:
        return [], []
    import time

    deadline = time.monotonic() + max(0.0, timeout)
    run_threading_exit_hooks(threading)
    current = threading.current_thread()
    main = threading.main_thread()

    def started_by_the_application(thread):
        # Request threads show up as dummy threads; the main thread is ours.
        return (
            thread is not current
            and thread is not main
            and not isinstance(thread, threading._DummyThread)
        )

    for thread in threading.enumerate():
        if started_by_the_application(thread) and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    running = [
        t
        for t in threading.enumerate()
        if started_by_the_application(t) and t.is_alive()
    ]
    return (
        [t.name for t in running if not t.daemon],
        [t.name for t in running if t.daemon],
    )


def run_threading_exit_hooks(threading):
    """What Python's own shutdown does before it waits for threads: the hooks registered with
    threading._register_atexit (concurrent.futures stops its worker threads there), run once."""
    hooks = getattr(threading, "_threading_atexits", None)
    if not hooks:
        return
    threading._SHUTTING_DOWN = True
    calls = list(reversed(hooks))
    hooks.clear()
    for call in calls:
        try:
            call()
        except Exception:
            import traceback

            traceback.print_exc()


def run_exit_callbacks():
    """The atexit callbacks, for an interpreter that cannot be destroyed (finalisation would run
    them), then the standard streams flushed."""
    import atexit

    atexit._run_exitfuncs()
    for name in ("stdout", "stderr"):
        try:
            getattr(sys, name).flush()
        except Exception:
            pass
