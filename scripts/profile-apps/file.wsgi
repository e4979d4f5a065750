# A file beside this script (data.bin, made by the script that copies these apps) through
# wsgi.file_wrapper.
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.bin")


def application(environ, start_response):
    f = open(PATH, "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(os.fstat(f.fileno()).st_size))])
    return environ["wsgi.file_wrapper"](f, 65536)
