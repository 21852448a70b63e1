#!/bin/sh
# README quick start: installs dependencies if needed, builds, runs the gateway.
#   npm start                       default config/gateway.yaml (in memory, no Redis/Kafka)
#   npm start -- --config FILE      another config
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_node_modules
build
# A larger young generation: the broker allocates per message and spends much of its time in
# scavenges otherwise (measured here: +6% fan-in, +16% QoS 1 throughput with 32 MB).
exec node --max-semi-space-size=32 dist/src/cli.js "$@"
