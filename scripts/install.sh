#!/usr/bin/env bash
# Installs the built module into Apache, the way apxs installs a module on Debian:
#   <modules dir>/mod_wsgi_rs.so                 (never over Debian's mod_wsgi.so)
#   /etc/apache2/mods-available/wsgi_rs.load     (LoadModule wsgi_module …)
#   /etc/apache2/mods-available/wsgi_rs.conf
# then `a2enmod wsgi_rs` enables it. DESTDIR=/some/root installs below that root instead;
# MODULE=/path/to/libmod_wsgi.so installs that file instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DESTDIR="${DESTDIR:-}"
if [ -z "${MODULE:-}" ]; then
    ensure_packages
    ensure_rust
    build_module
    MODULE="target/release/libmod_wsgi.so"
fi
[ -f "$MODULE" ] || { echo "no module at $MODULE" >&2; exit 1; }

MODULES_DIR="$(apxs -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)"
CONF_DIR="${APACHE_CONF_DIR:-/etc/apache2}"
target="$MODULES_DIR/mod_wsgi_rs.so"

install -d "$DESTDIR$MODULES_DIR" "$DESTDIR$CONF_DIR/mods-available"
install -m 644 "$MODULE" "$DESTDIR$target"
sed "s|@MODULE_PATH@|$target|" conf/wsgi_rs.load > "$DESTDIR$CONF_DIR/mods-available/wsgi_rs.load"
install -m 644 conf/wsgi_rs.conf "$DESTDIR$CONF_DIR/mods-available/wsgi_rs.conf"
echo "installed $target"
echo "installed $CONF_DIR/mods-available/wsgi_rs.load and wsgi_rs.conf"

if [ -e "$DESTDIR$CONF_DIR/mods-enabled/wsgi.load" ]; then
    echo "WARNING: the C mod_wsgi is enabled (mods-enabled/wsgi.load). It defines the same"
    echo "         wsgi_module, so both cannot load at once: run 'a2dismod wsgi' before"
    echo "         'a2enmod wsgi_rs'."
else
    echo "enable it with: a2enmod wsgi_rs && systemctl restart apache2"
fi
