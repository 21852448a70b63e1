#!/bin/sh
# Benchmarks: npm run bench            every bench/*.bench.ts
#             npm run bench -- acl-auth   one of them
#             npm run bench -- connections --max=250000   flags (--x=y) go to every bench named
# Results are printed as tables and written to bench/results/*.json.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
# compare: Mosquitto is one of the peers; `patch` reverses this project's Aedes patch for the plain Aedes peer.
missing=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
command -v patch >/dev/null 2>&1 || missing="$missing patch"
# The Go load generator (bench/loadgen-go), built below.
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
[ -z "$missing" ] || apt_install $missing
ensure_node_modules
build
# bench/compare drives the brokers with it (--loadgen=go, the default); an incremental build.
sh scripts/loadgen.sh >/dev/null
# Flags (--x=y) are passed to the benches; the other arguments name them.
names=""
flags=""
for arg in "$@"; do
  case "$arg" in --*) flags="$flags $arg" ;; *) names="$names $arg" ;; esac
done
set -- $names
if [ "$#" -eq 0 ]; then
  set -- $(ls dist/bench/*.bench.js | sed 's|dist/bench/||; s|\.bench\.js$||')
fi
for name in "$@"; do
  echo "== bench/$name" >&2
  node --expose-gc --max-old-space-size=8192 "dist/bench/$name.bench.js" $flags
done
