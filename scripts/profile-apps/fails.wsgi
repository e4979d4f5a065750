# A script that cannot be imported: its traceback goes to the error log.
raise ImportError("profiled import failure")
