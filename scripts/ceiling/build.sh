#!/bin/sh
# Build mod_ceiling.so (apxs, apache2-dev) and ceiling_relay outside the repo.
#   scripts/ceiling/build.sh [OUTDIR]      (default /tmp/ceiling-build)
# Result: OUTDIR/mod_ceiling.so, OUTDIR/ceiling_relay (the daemon-mode relay;
# mod_ceiling runs the ceiling_relay next to itself unless
# CeilingRelayProgram says otherwise). Warnings are errors.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-/tmp/ceiling-build}"
mkdir -p "$OUT"
# libtool writes its objects next to the source
cp "$HERE/mod_ceiling.c" "$HERE/ceiling_relay.c" "$HERE/ceiling_relay.h" "$OUT/"
cd "$OUT"
apxs -c -Wc,-O2 -Wc,-Wall -Wc,-Wextra -Wc,-Werror mod_ceiling.c >build.log 2>&1 \
    || { cat build.log >&2; exit 1; }
gcc -O2 -Wall -Wextra -Werror -pthread -o ceiling_relay.new ceiling_relay.c \
    >>build.log 2>&1 || { cat build.log >&2; exit 1; }
# new inodes (cp/mv): a running httpd keeps the .so it mapped, and a running
# relay's binary is never written to (ETXTBSY)
cp .libs/mod_ceiling.so mod_ceiling.so.new && mv -f mod_ceiling.so.new mod_ceiling.so
mv -f ceiling_relay.new ceiling_relay
echo "$OUT/mod_ceiling.so"
echo "$OUT/ceiling_relay"
