#!/bin/bash
# CPU time and context switches per request on each side of a WSGI module's Apache tree: Apache's
# own processes and, in daemon mode, the daemon processes. Steadier than requests per second on
# a small machine, and it says which side a change helped.
#
#   scripts/cost-per-side.sh MODULE.so embedded|daemon hello|echo|big|file [SECONDS] [CONNECTIONS]
#
# Runs the benchmark harness's own configuration for the mode (../shared/bench, `--config-only`)
# on 127.0.0.1, warms it up with wrk for 2 s, then loads it with wrk for SECONDS (default 5) over
# CONNECTIONS (default 50; echo posts 1 MiB; big and file are the harness's 1 MiB stream and
# 10 MiB file_wrapper apps), reading /proc before and after: CPU µs and context switches
# (voluntary and not) per request, by side, and wrk's count of non-2xx answers (a fast error must
# not pass for a fast request). Stops Apache by its pid. Not part of the test suite.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

module=$(realpath "$1")
mode=$2
test=$3
seconds=${4:-5}
connections=${5:-50}
threads=$((connections < 2 ? 1 : 2))
port=${PORT:-18298}
work=$(mktemp -d /tmp/mod_wsgi_rs_cost.XXXXXX)
chmod 0755 "$work"
parent=
stop() {
    if [ -n "$parent" ]; then
        kill "$parent" 2>/dev/null || true
        while kill -0 "$parent" 2>/dev/null; do sleep 0.2; done
    fi
    rm -rf "$work"
}
trap stop EXIT

start_bench_apache "$module" "$mode" "$work" "$port"
parent=$(cat "$work/run/httpd.pid")
url="http://127.0.0.1:$port/$test"
script=()
if [ "$test" = echo ]; then
    head -c 1048576 /dev/zero | tr '\0' a >"$work/body"
    printf 'local f = io.open("%s", "rb")\nwrk.method = "POST"\nwrk.body = f:read("*a")\nf:close()\n' \
        "$work/body" >"$work/post.lua"
    url="http://127.0.0.1:$port/echo"
    script=(-s "$work/post.lua")
fi
wrk -t"$threads" -c"$connections" -d2s "${script[@]}" "$url" >/dev/null

# CPU seconds and context switches of the tree, by side: "apache:CPU:SWITCHES daemon:…".
snapshot() {
    PYTHONPATH="$(dirname "$0")" /usr/bin/python3 - "$parent" <<'PY'
import os, sys
from proc_tree import children

parent = int(sys.argv[1])
tick = os.sysconf("SC_CLK_TCK")


sides = {}
for pid in [parent] + children(parent) + [g for c in children(parent) for g in children(c)]:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        side = "apache" if "apache2" in open(f"/proc/{pid}/cmdline").read() else "daemon"
        switches = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            for line in open(f"/proc/{pid}/task/{task}/status"):
                if "ctxt_switches" in line:
                    switches += int(line.split()[1])
        total = sides.setdefault(side, [0.0, 0])
        total[0] += (int(fields[11]) + int(fields[12])) / tick
        total[1] += switches
    except OSError:
        pass
print(" ".join(f"{side}:{cpu}:{switches}" for side, (cpu, switches) in sorted(sides.items())))
PY
}

before=$(snapshot)
out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" "${script[@]}" "$url")
after=$(snapshot)
requests=$(echo "$out" | awk '/requests in/ {print $1}')
non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
/usr/bin/python3 - "$before" "$after" "$requests" "${non2xx:-0}" <<'PY'
import sys

parse = lambda text: {w.split(":")[0]: w.split(":")[1:] for w in text.split()}
before, after, n = parse(sys.argv[1]), parse(sys.argv[2]), int(sys.argv[3])
line = f"requests={n} non-2xx={sys.argv[4]}"
for side, (cpu, switches) in sorted(after.items()):
    cpu0, switches0 = before.get(side, [0, 0])
    line += (f"  {side}: {(float(cpu) - float(cpu0)) * 1e6 / n:.1f} CPU µs/request,"
             f" {(int(switches) - int(switches0)) / n:.2f} switches/request")
print(line)
PY
