#!/bin/sh
# Benchmarks: npm run bench            every bench/*.bench.ts
#             npm run bench -- acl-auth   one of them
# Results are printed as tables and written to bench/results/*.json.
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_node_modules
build
if [ "$#" -eq 0 ]; then
  set -- $(ls dist/bench/*.bench.js | sed 's|dist/bench/||; s|\.bench\.js$||')
fi
for name in "$@"; do
  echo "== bench/$name" >&2
  node --expose-gc --max-old-space-size=8192 "dist/bench/$name.bench.js"
done
