# Reads the request body in 64 KiB reads and answers with how many bytes came.
def application(environ, start_response):
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    count = 0
    while remaining > 0:
        piece = environ["wsgi.input"].read(min(65536, remaining))
        if not piece:
            break
        count += len(piece)
        remaining -= len(piece)
    body = str(count).encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
