#!/bin/sh
# Builds the Go load generator (bench/loadgen-go) into .cache/go/bin/mqgw-loadgen.
# Modules come from the Go proxy into .cache/go/mod on the first run; later runs are
# incremental builds (about a second). Prints the binary's path.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
command -v go >/dev/null 2>&1 || { echo "loadgen: the Go toolchain (go) is needed to build bench/loadgen-go" >&2; exit 1; }
mkdir -p "$root/.cache/go/bin"
(cd bench/loadgen-go && GOMODCACHE="$root/.cache/go/mod" GOCACHE="$root/.cache/go/build" GOFLAGS=-mod=mod \
  GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go build -o "$root/.cache/go/bin/mqgw-loadgen" .)
echo "$root/.cache/go/bin/mqgw-loadgen"
