/**
 * GC trace of a broker process with wall-clock times, to lay beside a load generator's latency
 * timeline (bench/gc-latency.ts). Loaded into the gateway with
 *
 *   GC_LOG=/tmp/gc.jsonl BENCH_GATEWAY_NODE_ARGS="--import ./dist/bench/gc-log.js" node dist/bench/compare.bench.js fanin-90 ...
 *
 * One JSON line per collection: pid, start (Unix ms), duration (ms), kind (V8's: 1 minor /
 * scavenge, 2 major, 4 incremental marking step, 8 weak callbacks). --trace-gc prints the same
 * pauses, but timed from the isolate's start and mixed into the broker's stdout, which the bench
 * keeps only the tail of. Once a second also a line with kind "heap": the young generation's
 * capacity (new_space, both semi-spaces' worth V8 reports), old space used, and RSS. Lines are
 * buffered and appended once a second and at exit, so the traced process does no file write per
 * collection.
 */
import { appendFileSync } from 'node:fs'
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks'
import { getHeapSpaceStatistics } from 'node:v8'

const file = process.env.GC_LOG
if (file !== undefined && file !== '') {
  let lines: string[] = []
  const flush = (): void => {
    if (lines.length === 0) return
    appendFileSync(file, lines.join(''))
    lines = []
  }
  const origin = performance.timeOrigin
  new PerformanceObserver((list) => {
    for (const e of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) {
      lines.push(JSON.stringify({ pid: process.pid, start: origin + e.startTime, duration: e.duration, kind: e.detail?.kind ?? 0 }) + '\n')
    }
  }).observe({ entryTypes: ['gc'] })
  const heap = (): void => {
    const space = (name: string): { space_size: number, space_used_size: number } | undefined => getHeapSpaceStatistics().find((x) => x.space_name === name)
    lines.push(JSON.stringify({ pid: process.pid, start: Date.now(), kind: 'heap', newSpaceBytes: space('new_space')?.space_size, oldUsedBytes: space('old_space')?.space_used_size, rssBytes: process.memoryUsage.rss() }) + '\n')
    flush()
  }
  setInterval(heap, 1000).unref()
  process.on('exit', flush)
}
