# An application that raises: a 500 and a traceback in the error log.
def application(environ, start_response):
    raise RuntimeError("profiled")
