#!/bin/bash
# Writes src/hot-symbols.txt: the functions of the module that a running server executes, found
# by running Apache under valgrind's callgrind and serving each of the apps in
# scripts/profile-apps: first those that serve (requests in embedded and daemon mode, the
# supervisor's loop), then the marker `mod_wsgi_rs_start_up_code`, then those only start-up runs
# (configuration, Python's initialisation, child and process start). build.rs hands the list to
# the linker, which lays these functions out in that order at the start of `.text`.
#
#   scripts/hot-symbols.sh [MODULE.so]           (default: target/release/libmod_wsgi.so)
#   scripts/hot-symbols.sh --check [MODULE.so]   (tests/code_layout.rs runs this)
#
# Why: the kernel maps a shared library's code into a process in 64 KiB blocks around each page
# the process touches, and a process keeps them. About 400 KB of the module's 1 MB of code runs;
# spread out, it touched every block, and every Apache process mapped nearly all of it. Once its
# start-up is over, each process unmaps the module's code (`process::release_start_up_code`) and
# maps again only the blocks of the serving code it runs. Rerun after changing the request path
# or upgrading Rust (symbol names carry hashes; names no longer found are ignored). One function
# left out of the list costs a whole block (64 KiB) in every tree: `--check` runs the same
# servers and requests without valgrind and fails if any process of the tree maps module code
# outside the blocks of the listed serving functions. Needs root (page maps), curl, and valgrind
# (not for --check).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The blocks of module code a healthy embedded-mode tree may map (the code segment starts on a
# block boundary, `-z separate-code` in build.rs): 128 KiB. C mod_wsgi's whole tree maps 136-144
# KiB. The serving code of both modes and embedded mode's own must fit; a change that makes it
# outgrow them fails here, and the way back is to keep what a server does not run (a feature's
# body behind its check, failure handling) in functions of their own.
EMBEDDED_BLOCKS=2

check=
if [ "${1:-}" = --check ]; then
    check=1
    shift
fi
here=$(cd "$(dirname "$0")/.." && pwd)
module=$(realpath "${1:-$here/target/release/libmod_wsgi.so}")
port=${PORT:-18295}
work=$(mktemp -d /tmp/mod_wsgi_rs_hot.XXXXXX)
chmod 0777 "$work"
trap 'rm -rf "$work"' EXIT
apps="$work/apps"
cp -r "$here/scripts/profile-apps" "$apps"
head -c 4194304 /dev/zero >"$apps/data.bin"
chmod -R a+rX "$apps"
head -c 1048576 /dev/zero | tr '\0' a >"$work/body"

# The configuration of a mode ($1: its directives); failing apps too, since an exception's
# traceback reaching the error log is common enough in service.
write_conf() {
    {
        measuring_conf_head "$work" "$port" "$module"
        cat <<EOF
KeepAlive On
WSGIApplicationGroup %{GLOBAL}
$1
WSGIScriptAlias /hello $apps/hello.wsgi
WSGIScriptAlias /echo $apps/echo.wsgi
WSGIScriptAlias /big $apps/big.wsgi
WSGIScriptAlias /file $apps/file.wsgi
WSGIScriptAlias /environ $apps/environ.wsgi
WSGIScriptAlias /fails $apps/fails.wsgi
WSGIScriptAlias /raises $apps/raises.wsgi
<Directory $apps>
    Require all granted
</Directory>
EOF
    } >"$work/httpd.conf"
    rm -f "$work/httpd.pid"
}

# Waits for Apache (started in the background, pid $1) to answer, then serves the apps a few
# times: $2 is `normal` (the apps that answer), `errors` (those that fail or raise) or `all`.
serve_requests() {
    for _ in $(seq 1 300); do
        # Under callgrind, Apache's children switch to www-data before they write their files.
        chmod 0777 "$work" && chmod 0666 "$work"/callgrind.* 2>/dev/null || true
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/hello" && break
        kill -0 "$1" 2>/dev/null || { cat "$work/error.log" >&2; exit 1; }
        sleep 0.3
    done
    local gets=() posts=()
    if [ "$2" != errors ]; then
        gets+=(hello big file environ/sub options/hello)
        # hello ignores the body it is sent, which a daemon may still read after the response.
        posts+=(echo options/echo hello)
    fi
    if [ "$2" != normal ]; then
        gets+=(fails raises)
    fi
    for _ in 1 2 3 4; do
        for app in "${gets[@]}"; do
            curl -s -o /dev/null --max-time 20 "http://127.0.0.1:$port/$app"
        done
        for app in "${posts[@]}"; do
            curl -s -o /dev/null --max-time 20 --data-binary "@$work/body" \
                "http://127.0.0.1:$port/$app"
        done
    done
}

# Stops Apache by its pid and waits for it ($1, started in the background) and for the daemon
# processes, which finish on their own after Apache has gone (under callgrind, their profiles
# are written as they end).
stop_apache() {
    kill "$(cat "$work/httpd.pid")"
    wait "$1" || true
    for _ in $(seq 1 100); do
        pgrep -f "$work/httpd.conf" >/dev/null || break
        sleep 0.3
    done
}

# /options/…: the groups named by WSGIScriptAlias options, as the usual daemon-mode configuration
# (`WSGIScriptAlias / site.wsgi process-group=site application-group=%{GLOBAL}`) names them.
EMBEDDED="WSGIScriptAlias /options/hello $apps/hello.wsgi application-group=%{GLOBAL}
WSGIScriptAlias /options/echo $apps/echo.wsgi application-group=%{GLOBAL}"
DAEMON="WSGIRestrictEmbedded On
WSGISocketPrefix $work/wsgi
WSGIDaemonProcess hot processes=1 threads=4 display-name=%{GROUP}
WSGIProcessGroup hot
WSGIScriptAlias /options/hello $apps/hello.wsgi process-group=hot application-group=%{GLOBAL}
WSGIScriptAlias /options/echo $apps/echo.wsgi process-group=hot application-group=%{GLOBAL}"

if [ -n "$check" ]; then
    status=0
    for mode in embedded daemon; do
        if [ $mode = embedded ]; then write_conf "$EMBEDDED"; else write_conf "$DAEMON"; fi
        evict_page_cache "$module"
        apache2 -DFOREGROUND -f "$work/httpd.conf" >"$work/apache.log" 2>&1 &
        apache=$!
        if [ $mode = embedded ]; then
            # A healthy embedded server runs the code of the first two groups only, and in
            # at most EMBEDDED_BLOCKS blocks.
            serve_requests "$apache" normal
            sleep 1
            PYTHONPATH="$here/scripts" /usr/bin/python3 "$here/scripts/mapped_outside.py" \
                "$module" "$apache" "$here/src/hot-symbols.txt" embedded-normal \
                "$EMBEDDED_BLOCKS" || status=1
        fi
        serve_requests "$apache" all
        sleep 1
        PYTHONPATH="$here/scripts" /usr/bin/python3 "$here/scripts/mapped_outside.py" \
            "$module" "$apache" "$here/src/hot-symbols.txt" "$mode" || status=1
        stop_apache "$apache"
    done
    exit $status
fi

# Runs Apache under callgrind (every process, forks included), serves every app a few times,
# stops Apache by its pid and leaves the profiles of each process in $work: a process starts a
# new one (callgrind.MODE.PID.N) each time it begins a request (translate_name, the first of our
# hooks Apache runs for one; a daemon's connection) or a round of its supervisor's loop, and
# when it begins to stop (an Apache child, a daemon's reaper, a supervisor stopping its group),
# so everything before a process's first such point is its start-up, and its last profile (no
# number) its exit.
profile() {
    write_conf "$2"
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/callgrind.$1.%p" \
        --dump-before='*6apache5hooks14translate_name17h*' \
        --dump-before='*6daemon5serve10connection17h*' \
        --dump-before='*6daemon10supervisor16replace_stopping17h*' \
        --dump-before='*6daemon10supervisor7forward17h*' \
        --dump-before=ap_run_child_stopping \
        --dump-before='*6daemon6worker12spawn_reaper17h*' \
        apache2 -DFOREGROUND -f "$work/httpd.conf" >"$work/valgrind.$1.log" 2>&1 &
    local vg=$!
    serve_requests "$vg" "$3"
    stop_apache "$vg"
}

profile embedded "$EMBEDDED" normal
profile embedded-errors "$EMBEDDED" errors
profile daemon "$DAEMON" normal
profile daemon-errors "$DAEMON" errors

# The functions of our module that ran, by their symbol names, kept only if the module has them,
# in two parts: those a serving process runs (its numbered profiles after the first), then a
# marker, then those only start-up (or exit) runs; once start-up is over, each process unmaps
# the module's code from the marker on (`release_start_up_code`). The serving part has four
# groups, each headed by a comment line: what both modes run to answer, what only embedded mode
# runs, what only a failing request runs (a script that cannot load, an application that
# raises), and what only daemon mode runs. A healthy server in one mode so touches as few blocks of
# the other's code, and of error handling, as it can: an embedded one only the first two groups
# (`--check` holds that to EMBEDDED_BLOCKS blocks). The start-up part is ordered the same way.
/usr/bin/python3 - "$module" "$work" >"$here/src/hot-symbols.txt" <<'EOF'
import collections, glob, os, re, subprocess, sys

module, work = sys.argv[1], sys.argv[2]


def ran_in(path):
    """The module's functions with instructions of their own in one profile."""
    ran, objects, names, obj, current, skip = set(), {}, {}, None, None, False
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"(c?)ob=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3):
                objects[m.group(2)] = m.group(3)
            if not m.group(1):
                obj = objects.get(m.group(2), "")
            continue
        m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3):
                names[m.group(2)] = m.group(3)
            if not m.group(1):
                current = names[m.group(2)] if obj == module else None
            continue
        if line.startswith("calls="):
            skip = True  # the next cost line is the call's, not the caller's own
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            if current and not skip:
                ran.add(current)
            skip = False
    return ran


def profiles(mode):
    """(serving, start-up): what ran in the mode's processes once serving, and before."""
    by_process = collections.defaultdict(list)
    for path in glob.glob(f"{work}/callgrind.{mode}.*"):
        parts = os.path.basename(path).split(".")
        by_process[parts[2]].append((int(parts[3]) if len(parts) > 3 else None, path))
    serving, start_up = set(), set()
    for parts in by_process.values():
        for number, path in parts:
            (serving if number is not None and number > 1 else start_up).update(ran_in(path))
    return serving, start_up


symbols = set(subprocess.run(["nm", "--defined-only", module], capture_output=True, text=True,
                             check=True).stdout.split())
marker = "mod_wsgi_rs_start_up_code"
(emb_serving, emb_start), (dae_serving, dae_start) = profiles("embedded"), profiles("daemon")
(emb_failing, emb_start_2), (dae_failing, dae_start_2) = (profiles("embedded-errors"),
                                                          profiles("daemon-errors"))
emb_start |= emb_start_2
dae_start |= dae_start_2
# Which of these run depends on the request and the configuration more than these short runs
# show: the request I/O of both ends and the C shims (src/apache/shim.c) are kept whole with the
# serving code (with the mode that ran them; else the daemon process's own with daemon mode and
# the rest with both), the directive handlers with the start-up code. The hooks and the waits
# that call `release_start_up_code` run on after it, so they are serving code however rarely
# they run.
kept = {s for s in symbols if re.search(r"RequestIo|^mod_wsgi_rs_", s)} - {marker}
kept_daemon_side = {s for s in kept if "mod_wsgi..daemon.." in s}
kept_unran = kept - emb_serving - dae_serving
releasing = {s for s in symbols if re.search(
    r"5hooks(11post_config|7pre_mpm|10child_init)17h|7process21release_start_up_code17h", s)}
releasing_daemon = {s for s in symbols if re.search(
    r"6worker12wait_serving17h|6worker5State(13wait_for_stop|20wait_for_stop_within)17h", s)}
directives = {s for s in symbols if re.search(r"6config10directives", s)}
embedded = (emb_serving | (kept_unran - kept_daemon_side) | releasing) & symbols
daemon = (dae_serving | kept_unran | releasing | releasing_daemon) & symbols
failing = ((emb_failing | dae_failing) & symbols) - embedded - daemon
serving = embedded | daemon | failing
emb_start = ((emb_start | directives) & symbols) - serving
dae_start = ((dae_start | directives) & symbols) - serving
# Symbol names carry hashes that depend on the compiler: say which one (LLD skips "#" lines).
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
print(f"# {rustc}")
# Daemon mode's own code that a failing request in embedded mode runs too goes first in its
# group, beside the failing requests' code, so such a request maps one block more, not two.
daemon_only = daemon - embedded
groups = [("serving, both modes", sorted(embedded & daemon)),
          ("serving, embedded mode only", sorted(embedded - daemon)),
          ("serving, failing requests only", sorted(failing)),
          ("serving, daemon mode only", sorted(daemon_only & emb_failing)
           + sorted(daemon_only - emb_failing))]
for title, group in groups:
    print(f"# {title}")
    for name in group:
        print(name)
print(marker)
for group in (emb_start & dae_start, emb_start - dae_start, dae_start - emb_start):
    for name in sorted(group):
        print(name)
EOF
echo "$(wc -l <"$here/src/hot-symbols.txt") functions in src/hot-symbols.txt" >&2

# The constants the listed serving functions read, by the linker's input sections, which build.rs
# puts first in `.rodata` (see scripts/hot_rodata.py, which also finds, among the linker's maps
# that build.rs asks for, the one of this module).
{
    echo "# $(rustc --version)"
    # shellcheck disable=SC2046  # the maps, newest first; their paths have no spaces
    /usr/bin/python3 "$here/scripts/hot_rodata.py" "$module" "$here/src/hot-symbols.txt" \
        $(ls -t "$here"/target/*/build/mod_wsgi_rs-*/out/module.map 2>/dev/null)
} >"$work/hot-rodata.txt"
mv "$work/hot-rodata.txt" "$here/src/hot-rodata.txt"
echo "$(grep -vc '^#' "$here/src/hot-rodata.txt") sections of constants in src/hot-rodata.txt" >&2
