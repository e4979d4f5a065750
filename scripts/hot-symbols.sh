#!/bin/bash
# Writes src/hot-symbols.txt: the functions of the module that a running server executes (start-up,
# configuration, child start, requests in embedded and daemon mode), found by running Apache
# under valgrind's callgrind and serving each of the benchmark apps. build.rs hands the list to
# the linker, which puts these functions next to each other at the start of `.text`.
#
#   scripts/hot-symbols.sh [MODULE.so]     (default: target/release/libmod_wsgi.so)
#
# Why: the kernel maps a shared library's code into a process in 64 KiB blocks around each page
# the process touches. About 190 KB of the module's 800 KB of code runs, but spread over every
# block, so every Apache process mapped nearly all of it. Rerun after changing the request path
# or upgrading Rust (symbol names carry hashes; names no longer found are ignored, and
# tests/code_layout.rs says when too many are missing). Needs valgrind and curl.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")/.." && pwd)
module=$(realpath "${1:-$here/target/release/libmod_wsgi.so}")
apps=$(realpath "${BENCH_APPS:-$here/../shared/bench/apps}")
port=${PORT:-18295}
work=$(mktemp -d /tmp/mod_wsgi_rs_hot.XXXXXX)
chmod 0777 "$work"
trap 'rm -rf "$work"' EXIT
head -c 1048576 /dev/zero | tr '\0' a >"$work/body"
# Failing apps too: an exception's traceback reaching the error log is common enough in service.
printf 'raise ImportError("profiled import failure")\n' >"$work/fails.wsgi"
printf 'def application(environ, start_response):\n    raise RuntimeError("profiled")\n' \
    >"$work/raises.wsgi"

# $1: the mode's directives. Runs Apache under callgrind (every process, forks included), serves
# every app a few times, stops Apache by its pid and leaves one profile per process in $work.
profile() {
    local mode=$1 directives=$2
    {
        measuring_conf_head "$work" "$port" "$module"
        cat <<EOF
KeepAlive On
WSGIApplicationGroup %{GLOBAL}
$directives
WSGIScriptAlias /hello $apps/hello.wsgi
WSGIScriptAlias /echo $apps/echo.wsgi
WSGIScriptAlias /big $apps/big.wsgi
WSGIScriptAlias /file $apps/file.wsgi
WSGIScriptAlias /environ $apps/environ.wsgi
WSGIScriptAlias /fails $work/fails.wsgi
WSGIScriptAlias /raises $work/raises.wsgi
<Directory $apps>
    Require all granted
</Directory>
<Directory $work>
    Require all granted
</Directory>
EOF
    } >"$work/httpd.conf"
    rm -f "$work/httpd.pid"
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/callgrind.$mode.%p" \
        apache2 -DFOREGROUND -f "$work/httpd.conf" >"$work/valgrind.$mode.log" 2>&1 &
    local vg=$!
    for _ in $(seq 1 300); do
        # Apache's children switch to www-data before callgrind writes their files at exit.
        chmod 0777 "$work" && chmod 0666 "$work"/callgrind.* 2>/dev/null || true
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/hello" && break
        sleep 0.3
    done
    for _ in 1 2 3 4; do
        for app in hello big file environ/sub fails raises options/hello; do
            curl -s -o /dev/null --max-time 20 "http://127.0.0.1:$port/$app"
        done
        for app in echo options/echo; do
            curl -s -o /dev/null --max-time 20 --data-binary "@$work/body" \
                "http://127.0.0.1:$port/$app"
        done
    done
    kill "$(cat "$work/httpd.pid")"
    wait "$vg" || true
    # Daemon processes finish on their own after Apache has gone; their profiles are written
    # when they end.
    for _ in $(seq 1 100); do
        pgrep -f "$work/httpd.conf" >/dev/null || break
        sleep 0.3
    done
}

# /options/…: the groups named by WSGIScriptAlias options, as the usual daemon-mode configuration
# (`WSGIScriptAlias / site.wsgi process-group=site application-group=%{GLOBAL}`) names them.
profile embedded "WSGIScriptAlias /options/hello $apps/hello.wsgi application-group=%{GLOBAL}
WSGIScriptAlias /options/echo $apps/echo.wsgi application-group=%{GLOBAL}"
profile daemon "WSGIRestrictEmbedded On
WSGISocketPrefix $work/wsgi
WSGIDaemonProcess hot processes=1 threads=4 display-name=%{GROUP}
WSGIProcessGroup hot
WSGIScriptAlias /options/hello $apps/hello.wsgi process-group=hot application-group=%{GLOBAL}
WSGIScriptAlias /options/echo $apps/echo.wsgi process-group=hot application-group=%{GLOBAL}"

# The functions of our module that ran, by their symbol names, kept only if the module has them:
# first those both modes ran, then those only embedded mode ran, then daemon mode's own, so a
# server in one mode touches as few of the other's blocks of code as it can.
/usr/bin/python3 - "$module" "$work" >"$here/src/hot-symbols.txt" <<'EOF'
import glob, re, subprocess, sys

module, work = sys.argv[1], sys.argv[2]


def ran_in(mode):
    ran = set()
    for path in glob.glob(f"{work}/callgrind.{mode}.*"):
        objects, names, current = {}, {}, None
        for line in open(path, errors="replace"):
            m = re.match(r"(c?)ob=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                if m.group(3):
                    objects[m.group(2)] = m.group(3)
                if not m.group(1):
                    current = objects.get(m.group(2), "")
                continue
            m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3)
                if not m.group(1) and current == module:
                    ran.add(names[m.group(2)])
    return ran


symbols = set(subprocess.run(["nm", "--defined-only", module], capture_output=True, text=True,
                             check=True).stdout.split())
embedded, daemon = ran_in("embedded") & symbols, ran_in("daemon") & symbols
# Symbol names carry hashes that depend on the compiler: say which one (LLD skips "#" lines).
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
print(f"# {rustc}")
# Which of these run depends on the request and the configuration more than two short runs show:
# the request I/O of both ends, the directive handlers and the C shims (src/apache/shim.c) are
# kept whole.
either = {s for s in symbols if re.search(r"RequestIo|6config10directives|^mod_wsgi_rs_", s)}
embedded |= either
daemon |= either
for group in (embedded & daemon, embedded - daemon, daemon - embedded):
    for name in sorted(group):
        print(name)
EOF
echo "$(wc -l <"$here/src/hot-symbols.txt") functions in src/hot-symbols.txt" >&2
