#!/bin/bash
# Where a WSGI module's Apache tree keeps its memory, by process and by mapping: the figures
# behind the benchmark's idle PSS, for comparing two modules (ours, Debian's C mod_wsgi).
#
#   scripts/memory-by-mapping.sh MODULE.so embedded|daemon
#
# Runs the benchmark harness's own configuration for the mode (../shared/bench, `--config-only`)
# on 127.0.0.1, sends one request to each app (the echo with a 1 MiB body, as the harness's
# checks do), waits, and prints for every process of the tree its PSS and private memory by
# mapping (the module's code, read-only data and data, libpython, heap, anonymous, the rest),
# then the pages of the module that the whole tree maps (/proc/PID/pagemap: what its PSS adds up
# to). Stops Apache by its pid. Needs root (pagemap frame numbers, Apache's User). Not part of the
# test suite.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

module=$(realpath "$1")
mode=$2
port=${PORT:-18297}
work=$(mktemp -d /tmp/mod_wsgi_rs_mem.XXXXXX)
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT

head -c 1048576 /dev/zero | tr '\0' a >"$work/body"
evict_page_cache "$module"
start_bench_apache "$module" "$mode" "$work" "$port"
for app in environ/sub big file; do
    curl -s -o /dev/null --max-time 20 "http://127.0.0.1:$port/$app"
done
curl -s -o /dev/null --max-time 20 --data-binary "@$work/body" "http://127.0.0.1:$port/echo"
sleep 2
parent=$(cat "$work/run/httpd.pid")

PYTHONPATH="$(dirname "$0")" /usr/bin/python3 - "$parent" <<'EOF'
import collections, os, re, struct, sys
from proc_tree import children

parent = int(sys.argv[1])



def is_daemon(pid):
    # A daemon process's name (mod_wsgi's display name, or our thread name) says "wsgi:".
    names = open(f"/proc/{pid}/cmdline", "rb").read() + open(f"/proc/{pid}/comm", "rb").read()
    return b"wsgi:" in names


tree = [(parent, "parent")]
for child in children(parent):
    grandchildren = children(child)
    if grandchildren:
        tree.append((child, "supervisor"))
    else:
        tree.append((child, "daemon" if is_daemon(child) else "child"))
    tree += [(g, "daemon") for g in grandchildren]

kinds = ["module r-xp", "module r--p", "module rw-p", "libpython", "[heap]", "[anon]", "other"]


def kind_of(perms, name):
    if "mod_wsgi" in name:
        return "module " + perms
    if "libpython" in name:
        return "libpython"
    if name in ("[heap]", ""):
        return name or "[anon]"
    return "other"


print(f"{'pid':>8} {'role':<10} {'PSS':>7} {'private':>7}  " + "  ".join(f"{k:>12}" for k in kinds))
totals = collections.Counter()
module_pages = collections.defaultdict(set)
for pid, role in tree:
    pss, private = collections.Counter(), collections.Counter()
    kind = None
    for line in open(f"/proc/{pid}/smaps"):
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if m:
            kind = kind_of(m.group(3), m.group(4).strip())
            continue
        if line.startswith("Pss:"):
            pss[kind] += int(line.split()[1])
        elif line.startswith(("Private_Clean:", "Private_Dirty:")):
            private[kind] += int(line.split()[1])
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in open(f"/proc/{pid}/maps"):
            fields = line.split()
            if len(fields) < 6 or "mod_wsgi" not in fields[5]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // 4096 * 8)
            data = pagemap.read((end - start) // 4096 * 8)
            for i in range(len(data) // 8):
                entry = struct.unpack_from("<Q", data, i * 8)[0]
                if entry >> 63:
                    module_pages[fields[1]].add(entry & ((1 << 55) - 1))
    totals.update(pss)
    cells = "  ".join(f"{pss[k]:>6}/{private[k]:<5}" for k in kinds)
    print(f"{pid:>8} {role:<10} {sum(pss.values()):>7} {sum(private.values()):>7}  {cells}")
print(f"{'':>8} {'total':<10} {sum(totals.values()):>7} {'':>7}  "
      + "  ".join(f"{totals[k]:>12}" for k in kinds))
print("KiB; each mapping as PSS/private. Module pages mapped by the tree (KiB): "
      + ", ".join(f"{perms} {len(pages) * 4}" for perms, pages in sorted(module_pages.items())))
EOF

kill -TERM "$parent"
for _ in $(seq 1 50); do
    kill -0 "$parent" 2>/dev/null || break
    sleep 0.2
done
