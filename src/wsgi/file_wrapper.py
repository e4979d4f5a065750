# wsgi.file_wrapper (PEP 3333). When an application returns one whose `filelike` is a real file
# (a working fileno() and tell()), mod_wsgi-rs sends the file from its current position the way
# Apache sends static files; anything else is served by iterating over it, as here.
class FileWrapper:
    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration
