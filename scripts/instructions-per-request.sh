#!/bin/bash
# Instructions (user space, counted by valgrind's callgrind) that one Apache process spends per
# request, for a WSGI module: a figure that does not move with machine load, unlike req/s.
#
#   scripts/instructions-per-request.sh MODULE.so TEST [N]
#
# TEST is one of the benchmark harness's apps (../shared/bench/apps): hello, echo (1 MiB POST),
# big (1 MiB in 16 yields) or file (10 MiB through wsgi.file_wrapper). Apache runs single-process
# (-X) on 127.0.0.1 under callgrind twice, serving N/5 and N requests; the difference divided by
# the extra requests is the cost of one request, start-up excluded. Kernel time (socket copies,
# sendfile) is not counted. Needs valgrind and curl; benchmarks only, not part of the test suite.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

module=$(realpath "$1")
test=$2
n=${3:-200}
here=$(cd "$(dirname "$0")/.." && pwd)
apps=$(realpath "${BENCH_APPS:-$here/../shared/bench/apps}")
port=${PORT:-18290}
work=$(mktemp -d /tmp/mod_wsgi_rs_ir.XXXXXX)
chmod 0777 "$work"
trap 'rm -rf "$work"' EXIT

case $test in
hello | big | file) curl_args=() ;;
echo)
    head -c 1048576 /dev/zero | tr '\0' a >"$work/body"
    curl_args=(--data-binary "@$work/body" -H "Content-Type: application/octet-stream")
    ;;
*) echo "unknown test $test (hello, echo, big, file)" >&2; exit 2 ;;
esac

{
    measuring_conf_head "$work" "$port" "$module"
    cat <<EOF
KeepAlive On
WSGIApplicationGroup %{GLOBAL}
WSGIScriptAlias /$test $apps/$test.wsgi
<Directory $apps>
    Require all granted
</Directory>
EOF
} >"$work/httpd.conf"

# Total instructions of a run that serves $1 requests.
run() {
    local out=$work/callgrind.out
    rm -f "$out" "$work/httpd.pid"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        apache2 -X -f "$work/httpd.conf" >"$work/valgrind.log" 2>&1 &
    local vg=$!
    # Apache switches to www-data before callgrind writes its file at exit.
    for _ in $(seq 1 100); do [ -e "$out" ] && break; sleep 0.1; done
    chmod 0666 "$out"
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/$test" "${curl_args[@]}" && break
        sleep 0.3
    done
    for _ in $(seq 2 "$1"); do
        curl -s -o /dev/null "http://127.0.0.1:$port/$test" "${curl_args[@]}"
    done
    kill "$(cat "$work/httpd.pid")"
    wait "$vg" || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

few=$((n / 5))
small=$(run "$few")
large=$(run "$n")
echo "$(basename "$module") $test: $(((large - small) / (n - few))) instructions/request"
