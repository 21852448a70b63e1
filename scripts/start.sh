#!/bin/sh
# README quick start: installs dependencies if needed, builds, runs the gateway.
#   npm start                       default config/gateway.yaml (in memory, no Redis/Kafka)
#   npm start -- --config FILE      another config
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_node_modules
build
# One V8 flag: --initial-old-space-size=64. With the default, V8 kept the old generation's limit
# ~23 MB above a ~25 MB live heap and, that being less than its young generation, marked the whole
# heap every ~0.4 s under fan-in load (11 mark-compacts in 8 s, each a 6-25 ms pause, collecting
# ~2 MB). With 64: 4, and fan-in's maximum +4-9 % (bench/compare fanin-90, 4 interleaved pairs);
# idle RSS per connection unchanged (bench/memory 4.52 / 4.56 KiB at 10k / 15k). V8 does not take it
# from NODE_OPTIONS, so it is on the command line here, in the Dockerfile and docker-compose.yml,
# and in bench/brokers.ts; node:cluster workers inherit it.
# Otherwise no V8 flags: --max-semi-space-size=32 once bought +6-16% throughput; since deliveries stopped
# allocating per subscriber it measures within noise (bench compare, 3 rounds) and costs idle RSS.
# Re-measured for fan-in p99 at 90 % load (issue #14): the latency spikes did not line up with
# scavenges (bench/gc-latency.ts), and idle RSS at 10k connections went from 6.0 KiB per connection
# to 8.9 (32 MB) and 11.5 (64 MB). Where a deployment wants fewer scavenges anyway:
# NODE_OPTIONS=--max-semi-space-size=32 npm start (workers inherit it).
exec node --initial-old-space-size=64 dist/app/cli.js "$@"
