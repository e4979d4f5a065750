# The request-tracking and event API of the `mod_wsgi` module, as C mod_wsgi 4.9.4 has it:
# subscribe_events, subscribe_shutdown, event_callbacks, shutdown_callbacks, active_requests
# and request_data. The events themselves are published by events.rs.
#
# `active_requests` is made an attribute on its first lookup (through the module's __getattr__):
# until somebody asks for it, requests are not entered in it, which keeps a request that nobody
# watches from paying for a dict of its own.


def install(mod_wsgi, active_requests, activate, request_data):
    mod_wsgi.event_callbacks = []
    mod_wsgi.shutdown_callbacks = []

    def subscribe_events(callback):
        mod_wsgi.event_callbacks.append(callback)

    def subscribe_shutdown(callback):
        mod_wsgi.shutdown_callbacks.append(callback)

    def __getattr__(name):
        if name == "active_requests":
            activate()
            mod_wsgi.active_requests = active_requests
            return active_requests
        raise AttributeError("module 'mod_wsgi' has no attribute %r" % (name,))

    def __dir__():
        return sorted(set(mod_wsgi.__dict__) | {"active_requests"})

    for f in (subscribe_events, subscribe_shutdown, __getattr__, __dir__):
        f.__module__ = "mod_wsgi"
        f.__qualname__ = f.__name__
        setattr(mod_wsgi, f.__name__, f)
    mod_wsgi.request_data = request_data
