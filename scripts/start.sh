#!/bin/sh
# README quick start: installs dependencies if needed, builds, runs the gateway.
#   npm start                       default config/gateway.yaml (in memory, no Redis/Kafka)
#   npm start -- --config FILE      another config
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_node_modules
build
exec node dist/src/cli.js "$@"
