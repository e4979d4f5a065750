# Shared by the scripts in this directory: installs what building and testing need.
# Debian 12 packages: Apache httpd and its development files (apxs, headers), Python's headers,
# libclang for bindgen, a C compiler, curl for the example, and the C mod_wsgi the benchmarks
# compare against (installed, never enabled by us).
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

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "installing Rust (Debian's cargo and rustc)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cargo rustc >/dev/null
    fi
}

build_module() {
    log "building target/release/libmod_wsgi.so"
    cargo build --release --locked "$@"
}
