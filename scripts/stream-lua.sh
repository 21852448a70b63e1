#!/bin/sh
# The stream Lua module the access layer (openresty/nginx.conf) needs, for the tests.
#   sh scripts/stream-lua.sh        idempotent; prints what it uses on stderr
#
# An installed `openresty` is used as is (it has the module built in). Otherwise this builds
# the dynamic module ngx_stream_lua_module.so once for Debian's own nginx 1.22.1, from the
# unmodified source archives in the vendor directory (../shared/vendor beside the repository,
# or $MQGW_VENDOR_DIR; its README.md is the recipe), after checking them against its
# SHA256SUMS. Results, kept between runs under .cache/stream-lua/ (never in the repository):
#   ngx_stream_lua_module.so    load after /usr/lib/nginx/modules/ngx_stream_module.so
#   lua-resty-core/lib/         the lua-resty-core that matches the module (first in lua_package_path)
# The Debian packages (nginx, libnginx-mod-stream, libluajit2-5.1-dev, build tools) are
# installed by scripts/test.sh. About 20-45 s on 2 cores, once.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if command -v openresty >/dev/null 2>&1; then
  echo "stream-lua: using the installed openresty ($(command -v openresty))" >&2
  exit 0
fi

NGINX_VERSION=1.22.1
STREAM_LUA=stream-lua-nginx-module-0.0.14
RESTY_CORE=lua-resty-core-0.1.28
# The vendor directory: MQGW_VENDOR_DIR, else ../shared/vendor beside this checkout, else beside
# the repository this one was cloned from (a CI clone in a scratch directory has no ../shared).
VENDOR=${MQGW_VENDOR_DIR:-$ROOT/../shared/vendor}
if [ -z "${MQGW_VENDOR_DIR:-}" ] && [ ! -d "$VENDOR" ]; then
  origin=$(git -C "$ROOT" config --get remote.origin.url 2>/dev/null | sed 's|^file://||') || origin=""
  case "$origin" in /*) [ -d "$origin/../shared/vendor" ] && VENDOR=$origin/../shared/vendor ;; esac
fi
OUT=$ROOT/.cache/stream-lua
LUAJIT_INC=/usr/include/luajit-2.1

fail () { echo "stream-lua: $*" >&2; exit 1; }

command -v nginx >/dev/null 2>&1 || fail "no openresty and no nginx: install openresty, or the Debian packages nginx libnginx-mod-stream libluajit2-5.1-dev libpcre2-dev zlib1g-dev libssl-dev lua-resty-lrucache gcc make (scripts/test.sh does)"
have=$(nginx -v 2>&1 | sed -n 's|^nginx version: nginx/\([0-9.]*\).*|\1|p')
[ "$have" = "$NGINX_VERSION" ] || fail "the module is built for nginx $NGINX_VERSION (the vendored source), but nginx is '$have'; install openresty instead"
[ -f "$LUAJIT_INC/luajit.h" ] || fail "missing $LUAJIT_INC/luajit.h: install the Debian package libluajit2-5.1-dev"
[ -d "$VENDOR" ] || fail "no vendor directory $VENDOR (set MQGW_VENDOR_DIR to the directory holding the nginx, stream-lua and lua-resty-core archives and SHA256SUMS)"

# The stamp names the archives' checksums and the nginx binary: a new archive or a new nginx
# (a Debian update) rebuilds; otherwise nothing is done.
stamp_want=$(cd "$VENDOR" && sha256sum "nginx-$NGINX_VERSION.tar.gz" "$STREAM_LUA.tar.gz" "$RESTY_CORE.tar.gz"; sha256sum "$(command -v nginx)")
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp_want" ] && [ -f "$OUT/ngx_stream_lua_module.so" ] && [ -f "$OUT/lua-resty-core/lib/resty/core.lua" ]; then
  exit 0
fi

echo "stream-lua: building ngx_stream_lua_module.so for nginx $NGINX_VERSION from $VENDOR (once, about 45 s)" >&2
# Only the three archives this build uses must match SHA256SUMS (it may list others).
for f in "nginx-$NGINX_VERSION.tar.gz" "$STREAM_LUA.tar.gz" "$RESTY_CORE.tar.gz"; do
  [ -f "$VENDOR/$f" ] || fail "missing $VENDOR/$f"
  (cd "$VENDOR" && grep "  $f\$" SHA256SUMS | sha256sum -c --status -) || fail "$VENDOR/$f does not match $VENDOR/SHA256SUMS"
done

rm -rf "$OUT"
mkdir -p "$OUT/build"
trap 'rm -rf "$OUT/build"' EXIT
tar -xzf "$VENDOR/nginx-$NGINX_VERSION.tar.gz" -C "$OUT/build"
tar -xzf "$VENDOR/$STREAM_LUA.tar.gz" -C "$OUT/build"
tar -xzf "$VENDOR/$RESTY_CORE.tar.gz" -C "$OUT/build"
# Same compatibility signature as Debian's binary (--with-compat, stream, stream_ssl,
# pcre-jit), so that its nginx loads the module. The archive is the repository tree (a
# GitHub tag), whose configure script is auto/configure, run from the top directory.
(
  cd "$OUT/build/nginx-$NGINX_VERSION"
  LUAJIT_LIB=/usr/lib/x86_64-linux-gnu LUAJIT_INC=$LUAJIT_INC auto/configure --with-compat --with-stream \
    --with-stream_ssl_module --with-pcre-jit --add-dynamic-module="$OUT/build/$STREAM_LUA" >"$OUT/build/configure.log" 2>&1 \
    || { tail -20 "$OUT/build/configure.log" >&2; exit 1; }
  make -j"$(nproc)" modules >"$OUT/build/make.log" 2>&1 || { tail -30 "$OUT/build/make.log" >&2; exit 1; }
)
cp "$OUT/build/nginx-$NGINX_VERSION/objs/ngx_stream_lua_module.so" "$OUT/"
mkdir -p "$OUT/lua-resty-core"
cp -R "$OUT/build/$RESTY_CORE/lib" "$OUT/lua-resty-core/"
printf '%s\n' "$stamp_want" > "$OUT/stamp"
echo "stream-lua: built $OUT/ngx_stream_lua_module.so" >&2
