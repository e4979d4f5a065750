#!/usr/bin/env bash
# Installs what is missing, builds the module, and serves examples/hello.wsgi on
# http://127.0.0.1:8000/ with a throw-away Apache config, in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_packages
ensure_rust
build_module

PORT="${PORT:-8000}"
RUN="$(mktemp -d /tmp/mod_wsgi_rs_example.XXXXXX)"
chmod 755 "$RUN"
cp examples/hello.wsgi "$RUN/"
chmod 644 "$RUN/hello.wsgi"
USER_LINES=""
[ "$(id -u)" = 0 ] && USER_LINES=$'User www-data\nGroup www-data'
MODULES="$(apxs -q LIBEXECDIR)"
cat > "$RUN/httpd.conf" <<CONF
ServerRoot "$RUN"
DefaultRuntimeDir "$RUN"
PidFile "$RUN/httpd.pid"
ErrorLog /dev/stderr
LogLevel warn
ServerName 127.0.0.1
Listen 127.0.0.1:$PORT
$USER_LINES
LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
LoadModule wsgi_module "$PWD/target/release/libmod_wsgi.so"
WSGIApplicationGroup %{GLOBAL}
WSGIScriptAlias / "$RUN/hello.wsgi"
<Directory "$RUN">
    Require all granted
</Directory>
CONF
/usr/sbin/apache2 -d "$RUN" -f "$RUN/httpd.conf" -t
echo "Serving examples/hello.wsgi on http://127.0.0.1:$PORT/ (Ctrl-C stops it)"
exec /usr/sbin/apache2 -d "$RUN" -f "$RUN/httpd.conf" -DFOREGROUND
