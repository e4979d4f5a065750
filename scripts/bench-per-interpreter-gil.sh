#!/bin/bash
# Throughput of two application groups running CPU-bound requests in one Apache child, with
# WSGIPerInterpreterGIL Off and On (Python 3.12 or later).
#
#   scripts/bench-per-interpreter-gil.sh MODULE.so PYTHON_HOME [SECONDS]
#
# MODULE.so must be built for the Python at PYTHON_HOME (a prefix readable by www-data, such as
# the copies scripts/test.sh makes under /tmp/mod_wsgi_rs_pythons/). One child with 16 threads;
# wrk loads /a and /b (one group each) at the same time. Needs wrk; benchmarks only.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

module=$(realpath "$1")
home=$(realpath "$2")
seconds=${3:-10}
port=${PORT:-18295}
work=$(mktemp -d /tmp/mod_wsgi_rs_gil.XXXXXX)
chmod 0777 "$work"
trap 'rm -rf "$work"' EXIT

cat >"$work/cpu.wsgi" <<'EOF'
def application(environ, start_response):
    total = 0
    for i in range(200000):
        total += i * i
    body = str(total).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
EOF

run() {
    local gil=$1
    {
        measuring_conf_head "$work" "$port" "$module"
        cat <<EOF
StartServers 1
ServerLimit 1
ThreadLimit 16
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
WSGIPythonHome $home
WSGIPerInterpreterGIL $gil
WSGIScriptAlias /a $work/cpu.wsgi application-group=A
WSGIScriptAlias /b $work/cpu.wsgi application-group=B
<Directory $work>
    Require all granted
</Directory>
EOF
    } >"$work/httpd.conf"
    apache2 -f "$work/httpd.conf" -k start
    for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/a" && break; sleep 0.1; done
    curl -sf -o /dev/null "http://127.0.0.1:$port/b"
    wrk -t1 -c4 -d"${seconds}s" "http://127.0.0.1:$port/a" >"$work/a.txt" &
    local a=$!
    wrk -t1 -c4 -d"${seconds}s" "http://127.0.0.1:$port/b" >"$work/b.txt"
    wait "$a"
    local pid
    pid=$(cat "$work/httpd.pid")
    kill "$pid"
    while [ -e "/proc/$pid" ]; do sleep 0.1; done
    local ra rb
    ra=$(awk '/Requests\/sec/ {print $2}' "$work/a.txt")
    rb=$(awk '/Requests\/sec/ {print $2}' "$work/b.txt")
    echo "WSGIPerInterpreterGIL $gil: /a $ra req/s, /b $rb req/s, total $(awk "BEGIN {print $ra + $rb}")"
}

run Off
run On
