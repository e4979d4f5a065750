# 1 MiB streamed as 16 yields of 64 KiB, with a Content-Length.
PIECE = b"x" * 65536


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(16 * len(PIECE)))])
    for _ in range(16):
        yield PIECE
