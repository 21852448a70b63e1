#!/bin/sh
# README test command: installs what the suite needs (idempotent), builds, runs every test.
#   npm test                        whole suite
#   npm test -- dist/test/config/load.test.js    chosen files (after a build)
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Real programs the tests talk to: Mosquitto's command-line clients, Redis (each test
# starts its own redis-server on a free port), openssl (TLS certificates).
missing=""
command -v mosquitto_pub >/dev/null 2>&1 || missing="$missing mosquitto-clients"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v redis-sentinel >/dev/null 2>&1 || missing="$missing redis-sentinel"
# The access layer's tests run openresty/nginx.conf on the stream Lua module: an installed
# OpenResty, else Debian's nginx with ngx_stream_lua_module.so built from ../shared/vendor
# (scripts/stream-lua.sh, below) against OpenResty's LuaJIT (libluajit2-5.1-dev). The Lua
# unit tests need a `luajit`: luajit2's (Debian's `luajit` package conflicts with luajit2).
installed () { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
if command -v openresty >/dev/null 2>&1; then
  command -v luajit >/dev/null 2>&1 || missing="$missing luajit2"
else
  for p in nginx libnginx-mod-stream luajit2 libluajit2-5.1-dev lua-resty-lrucache libpcre2-dev zlib1g-dev libssl-dev gcc make; do
    installed "$p" || missing="$missing $p"
  done
fi
# Real Apache Kafka for the bridge tests: Java runs the broker, Maven fetches its jars (scripts/kafka/kafka.sh).
command -v java >/dev/null 2>&1 || missing="$missing openjdk-17-jre-headless"
command -v mvn >/dev/null 2>&1 || missing="$missing maven"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
# promtool checks and unit-tests the Prometheus alert rules in ops/ (test/ops/).
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
# Eclipse Paho Go interop (test/interop/go-interop.test.ts builds it; modules and build cache under .cache/go).
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
[ -z "$missing" ] || apt_install $missing

# Eclipse Paho (Python) in a private virtual environment.
VENV=.cache/venv
if ! "$VENV/bin/python" -c 'import paho.mqtt' >/dev/null 2>&1; then
  echo "setup: python venv with paho-mqtt" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q --disable-pip-version-check 'paho-mqtt>=2,<3' >&2
fi

ensure_node_modules
build
# Lint: typescript-eslint, plus the layering rules (no import cycles, src/ never imports
# plugins/, no source file over 400 lines); see eslint.config.js.
# Whole-suite runs only (chosen files skip it: `npm run lint` runs it alone).
if [ "$#" -eq 0 ]; then echo "lint: eslint" >&2; npx eslint .; fi

# Only *.test.js files are tests (node 20's --test would also run helper modules in a directory).
if [ "$#" -eq 0 ]; then set -- $(find dist/test -name '*.test.js' | sort); fi

# Downloads happen here, not inside a test's time bound: Kafka's jars (Maven, first run
# only) for the Kafka tests, and the Eclipse Paho Go interop client (Go modules, then a
# build; the test's own build is then a no-op) for test/interop/go-interop.test.ts.
case " $* " in *kafka*) sh scripts/kafka/kafka.sh fetch >/dev/null ;; esac
# The stream Lua module for the access-layer tests (first run only: about 20-45 s; a no-op
# with OpenResty installed or the module already in .cache/stream-lua/).
case " $* " in *access-layer*) sh scripts/stream-lua.sh ;; esac
case " $* " in *go-interop*)
  echo "setup: Go interop client" >&2
  root=$(pwd)
  (cd test/interop/go && GOMODCACHE="$root/.cache/go/mod" GOCACHE="$root/.cache/go/build" GOFLAGS=-mod=mod \
    GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go build -o "$root/.cache/go/bin/mqgw-interop" .) ;;
esac
# The Go load generator of the benchmarks (scripts/loadgen.sh), for test/bench/loadgen-idle.test.ts
# and test/bench/loadgen-go.test.ts.
case " $* " in *loadgen*) echo "setup: Go load generator" >&2; sh scripts/loadgen.sh >/dev/null ;; esac

# One file at a time: tests start servers and measure deliveries; 2 cores are not enough
# for parallel files to stay out of each other's way.
# Node 20's runner applies --test-timeout to each test FILE as a whole (a { timeout } given
# inside a file cannot extend it, and the flag does not reach single tests): 120 s bounds
# every file and so every test in it. The longest files (Kafka with broker restarts) take
# about 45 s; a test that needs its own tighter bound gives { timeout } in its it().
exec node --test --test-concurrency=1 --test-timeout=120000 "$@"
