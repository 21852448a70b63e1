#!/bin/sh
# README quick start: installs dependencies if needed, builds, runs the gateway.
#   npm start                       default config/gateway.yaml (in memory, no Redis/Kafka)
#   npm start -- --config FILE      another config
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_node_modules
build
# No V8 flags: --max-semi-space-size=32 once bought +6-16% throughput; since deliveries stopped
# allocating per subscriber it measures within noise (bench compare, 3 rounds) and costs idle RSS.
# Re-measured for fan-in p99 at 90 % load (issue #14): the latency spikes did not line up with
# scavenges (bench/gc-latency.ts), and idle RSS at 10k connections went from 6.0 KiB per connection
# to 8.9 (32 MB) and 11.5 (64 MB). Where a deployment wants fewer scavenges anyway:
# NODE_OPTIONS=--max-semi-space-size=32 npm start (workers inherit it).
exec node dist/app/cli.js "$@"
