#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds the module, runs the unit tests and
# the integration tests (real Apache httpd on 127.0.0.1), then the same integration tests with
# the module built for each other Python of the matrix that is installed (pyenv's 3.12, 3.13).
#   scripts/test.sh                 everything
#   PYTHONS="" scripts/test.sh      Debian's Python only
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# gdb: tests/code_layout.rs checks that a breakpoint set before Apache starts is kept.
ensure_packages gdb
ensure_rust

build_module
log "unit and integration tests, Python $(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') (Debian)"
cargo test --release --locked

PYENV_ROOT="${PYENV_ROOT:-$(command -v pyenv >/dev/null 2>&1 && pyenv root || echo "$HOME/.pyenv")}"
for want in ${PYTHONS-3.12 3.13}; do
    prefix="$(ls -d "$PYENV_ROOT"/versions/"$want".* 2>/dev/null | sort -V | tail -n 1 || true)"
    python="$prefix/bin/python$want"
    if [ -z "$prefix" ] || [ ! -x "$python" ] || [ ! -e "$prefix/lib/libpython$want.so" ]; then
        log "skipping Python $want: no shared pyenv build in $PYENV_ROOT/versions"
        continue
    fi
    target="target/py$want"
    log "building for Python $want ($python)"
    PYO3_PYTHON="$python" CARGO_TARGET_DIR="$target" cargo build --release --locked
    # Apache's children run as www-data, which cannot read a Python under /root: test with a
    # readable copy of its prefix as WSGIPythonHome (what a deployment must provide too).
    home="/tmp/mod_wsgi_rs_pythons/$want"
    if [ ! -x "$home/bin/python$want" ]; then
        log "copying the Python $want prefix to $home"
        rm -rf "$home" && mkdir -p "$home/bin" "$home/lib"
        cp -a "$python" "$home/bin/"
        tar -C "$prefix/lib" --exclude="python$want/test" --exclude="python$want/site-packages" \
            -cf - "python$want" | tar -C "$home/lib" -xf -
        mkdir -p "$home/lib/python$want/site-packages"
        chmod -R a+rX /tmp/mod_wsgi_rs_pythons
    fi
    log "integration tests, Python $want"
    MOD_WSGI_SO="$PWD/$target/release/libmod_wsgi.so" MOD_WSGI_PYTHON="$home/bin/python$want" \
        MOD_WSGI_PYTHON_HOME="$home" cargo test --release --locked --test '*'
done
log "all tests passed"
