# Shared by the scripts in this directory: installs what building and testing need.
# Debian 12 packages: Apache httpd and its development files (apxs, headers), Python's headers,
# libclang for bindgen, a C compiler and curl for the example. (The C mod_wsgi the benchmarks
# compare against, libapache2-mod-wsgi-py3, is not needed to build or test.)
APT_PACKAGES="apache2 apache2-dev python3-dev python3-venv libclang-dev gcc curl ca-certificates"

log() { printf '==> %s\n' "$*" >&2; }

ensure_packages() {
    local missing=()
    for p in $APT_PACKAGES "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        if [ "$(id -u)" != 0 ]; then
            echo "run as root (or install: apt-get install ${missing[*]})" >&2
            exit 1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The Rust toolchain: pyo3 needs Rust 1.85 or newer, newer than Debian 12's own cargo, and the
# module's code layout (build.rs) needs the LLD that rustc links with by default since 1.90.
RUST_MIN_MINOR=90

rust_ok() {
    command -v cargo >/dev/null 2>&1 || return 1
    local minor
    minor="$(rustc --version 2>/dev/null | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p')"
    [ -n "$minor" ] && [ "$minor" -ge "$RUST_MIN_MINOR" ]
}

ensure_rust() {
    [ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
    rust_ok && return 0
    log "installing Rust (stable, minimal profile) with rustup"
    if ! command -v rustup >/dev/null 2>&1; then
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    rustup toolchain install stable --profile minimal && rustup default stable
    rust_ok || { echo "Rust 1.$RUST_MIN_MINOR or newer is needed (rustc: $(rustc --version 2>&1))" >&2; exit 1; }
}

build_module() {
    log "building target/release/libmod_wsgi.so"
    cargo build --release --locked "$@"
}

# The start of the throw-away httpd.conf of the measuring scripts (instructions-per-request,
# hot-symbols, bench-per-interpreter-gil): Apache on 127.0.0.1:$2 with its pid and log in $1,
# the event MPM, as www-data, and the module $3.
measuring_conf_head() {
    cat <<EOF
ServerRoot /etc/apache2
Listen 127.0.0.1:$2
ServerName 127.0.0.1
PidFile $1/httpd.pid
ErrorLog $1/error.log
User www-data
Group www-data
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule wsgi_module $3
EOF
}

# Drops the page cache's copy of files $@ (a module not in use), so that the processes about to
# map them read them in as a loaded module's pages are read, by page faults and their
# read-ahead. Since Linux 6.18 a page fault maps a whole large folio around the page, and how
# large the cached folios are depends on how the file came into the cache: a module just written
# by the linker or `cp` can be mapped 128 KiB at a time, where the same module read in on faults
# is mapped in 64 KiB blocks, and a measurement of what a tree maps would then depend on how the
# file was last written rather than on its layout.
evict_page_cache() {
    sync "$@"
    /usr/bin/python3 - "$@" <<'EOF'
import os, sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
EOF
}

# Starts Apache with the benchmark harness's own configuration for mode $2 (embedded|daemon)
# and module $1, on 127.0.0.1:$4, with its run directory under $3 (../shared/bench, or
# $BENCH_DIR); returns once /hello answers. Apache's pid is then in $3/run/httpd.pid. Used by
# memory-by-mapping.sh and cost-per-side.sh.
start_bench_apache() {
    local module=$1 mode=$2 work=$3 port=$4
    local bench
    bench=$(realpath "${BENCH_DIR:-$(dirname "${BASH_SOURCE[0]}")/../../shared/bench}")
    BENCH_NO_SETUP=1 "$bench/run.sh" --config-only --module "$module" --servers "apache-$mode" \
        --out "$work/cfg" >/dev/null 2>&1
    mkdir "$work/run"
    chmod 0755 "$work/run"
    sed -e "s|^Define BENCH_RUNDIR .*|Define BENCH_RUNDIR \"$work/run\"|" \
        -e "s|^Define BENCH_PORT .*|Define BENCH_PORT \"$port\"|" \
        "$work/cfg/apache-$mode.pass1.httpd.conf" >"$work/httpd.conf"
    apache2 -d "$work/run" -f "$work/httpd.conf" -k start
    for _ in $(seq 1 100); do
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/hello" && break
        sleep 0.1
    done
}
