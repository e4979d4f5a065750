#!/usr/bin/env python3
"""Functional checks of mod_ceiling on one port (keep-alive, pipelining,
split headers/body, Expect, chunked, short body) against an httpd that loads
mod_ceiling with ceiling-filters.conf or ceiling-direct.conf on 127.0.0.1.
Usage: check.py PORT filters|direct   (exit 1 on any failure)"""
import http.client, socket, sys, time
port, variant = int(sys.argv[1]), sys.argv[2]
import os
BENCH = os.environ.get("BENCH_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "..", "..", "..", "shared", "bench"))
FILE = open(os.path.join(BENCH, "data", "static", "10m.bin"), "rb").read()
fails = 0
def ok(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what)
    fails += not cond

c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def req(method, path, body=None, headers={}):
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse(); return r.status, dict(r.getheaders()), r.read()
# one keep-alive connection for everything, so a mis-read body shows up
for n in (0, 1, 1024, 2919, 2921, 7999, 8000, 65535, 65536, 65537, 100000, 1 << 20, 3 << 20):
    st, h, b = req("POST", "/echo", b"a" * n, {"Content-Type": "application/octet-stream"})
    ok(st == 200 and b == str(n).encode() and h.get("Content-Length") == str(len(b))
       and h.get("Content-Type") == "text/plain", "echo %d -> %s %r" % (n, st, b))
    st, h, b = req("GET", "/hello")
    ok(st == 200 and b == b"Hello, world!", "  hello after echo %d on same conn" % n)
st, h, b = req("GET", "/echo"); ok(b == b"0", "GET /echo -> %r" % b)
st, h, b = req("GET", "/big")
ok(st == 200 and b == b"x" * (1 << 20) and h["Content-Length"] == "1048576"
   and h["Content-Type"] == "application/octet-stream", "big %d bytes" % len(b))
st, h, b = req("GET", "/file")
ok(st == 200 and b == FILE and h.get("X-File-Wrapper") == "yes", "file %d bytes, X-File-Wrapper %s" % (len(b), h.get("X-File-Wrapper")))
st, h, b = req("HEAD", "/hello"); ok(st == 200 and h["Content-Length"] == "13" and b == b"", "HEAD /hello")
st, h, b = req("GET", "/hello"); ok(b == b"Hello, world!", "hello after HEAD")
c.close()

def raw(chunks, pause=0.0, expect_responses=1, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    for i, ch in enumerate(chunks):
        if i: time.sleep(pause)
        s.sendall(ch)
    data = b""
    s.settimeout(timeout)
    while data.count(b"HTTP/1.1 ") < expect_responses or not data.endswith((b"!", b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9", b">\n")):
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d: break
        data += d
    s.close()
    return data

def post(n, extra=""):
    return ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n" % (n, extra)).encode()
# pipelined: body + next request in the same segment (buffered > C-L)
d = raw([post(5) + b"aaaaa" + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"], expect_responses=2)
ok(d.count(b"HTTP/1.1 200") == 2 and b"\r\n\r\n5" in d and d.endswith(b"Hello, world!"), "pipelined POST(5)+GET")
d = raw([post(100000) + b"a" * 100000 + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"], expect_responses=2)
ok(d.count(b"HTTP/1.1 200") == 2 and b"\r\n\r\n100000" in d and d.endswith(b"Hello, world!"), "pipelined POST(100000)+GET")
# headers first, body later (nothing buffered: all via recv / filters)
d = raw([post(70000), b"a" * 70000], pause=0.3)
ok(d.startswith(b"HTTP/1.1 200") and d.endswith(b"\r\n\r\n70000"), "headers, pause, body 70000")
# part of the body with the headers, rest later
d = raw([post(70000) + b"a" * 3000, b"a" * 67000], pause=0.3)
ok(d.startswith(b"HTTP/1.1 200") and d.endswith(b"\r\n\r\n70000"), "headers+3000, pause, 67000")
# Expect: 100-continue (client waits for the interim response first)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(post(2000, "Expect: 100-continue\r\n"))
first = s.recv(100)
s.sendall(b"a" * 2000)
rest = b""
while not rest.endswith(b"2000"):
    d = s.recv(4096)
    if not d: break
    rest += d
s.close()
ok(first.startswith(b"HTTP/1.1 100") and rest.endswith(b"\r\n\r\n2000"), "Expect: 100-continue -> %r..." % first[:20])
# chunked
d = raw([b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\naaaaa\r\n0\r\n\r\n"])
want = b"HTTP/1.1 411" if variant == "direct" else b"HTTP/1.1 200"
ok(d.startswith(want), "chunked -> %r" % d[:12])
# client sends less than Content-Length and closes
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(post(50000) + b"a" * 100); time.sleep(0.2); s.sendall(b"a" * 20000); s.shutdown(socket.SHUT_WR)
d = b""
while True:
    x = s.recv(4096)
    if not x: break
    d += x
s.close()
ok(not d.startswith(b"HTTP/1.1 200"), "short body + close -> %r" % d[:12])
print("FAILURES:", fails)
sys.exit(1 if fails else 0)
