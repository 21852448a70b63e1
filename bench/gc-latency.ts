/**
 * Lays a broker's GC trace (bench/gc-log.ts) beside the latency timeline of the runs in a
 * bench/compare result file: for each run with a latency timeline (the Go generator's
 * latencyPerSecond / latencyPeakPer100ms, windowStartUnixMs), the collections in its window
 * (count, pause lengths, share of time), per second latency p99/max beside GC time, and every
 * 100 ms slice whose peak latency is over the threshold, with the GC pauses that fell in the time
 * its slowest message waited (from its due time to its delivery).
 *
 *   node dist/bench/gc-latency.js /tmp/gc.jsonl [bench/results/compare.json] [--over=50]
 */
import { readFileSync } from 'node:fs'

interface Gc { pid: number, start: number, duration: number, kind: number }
interface Heap { start: number, kind: 'heap', newSpaceBytes: number, oldUsedBytes: number, rssBytes: number }
interface Run {
  windowStartUnixMs: number, latencyPeakPer100ms: number[]
  latencyPerSecond: Array<{ n: number, p50: number, p99: number, max: number }>
  latencyMs?: { p50: number, p99: number, max: number }, deliveredPerSecond: number, offeredPerSecond?: number
}

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'))
const over = Number(process.argv.find((a) => a.startsWith('--over='))?.slice(7) ?? 50)
if (args[0] === undefined || !(over > 0)) {
  process.stderr.write('usage: node dist/bench/gc-latency.js GC_LOG [compare.json] [--over=MS]\n')
  process.exit(2)
}
const lines = readFileSync(args[0], 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Gc | Heap)
const gcs = lines.filter((l): l is Gc => l.kind !== 'heap').sort((a, b) => a.start - b.start)
const heaps = lines.filter((l): l is Heap => l.kind === 'heap')
const runs: Run[] = []
const collect = (v: unknown): void => {
  if (typeof v !== 'object' || v === null) return
  // The median round appears twice in a result file (median and all): once here.
  if ('windowStartUnixMs' in v && 'latencyPeakPer100ms' in v && !runs.some((r) => r.windowStartUnixMs === (v as Run).windowStartUnixMs)) runs.push(v as Run)
  for (const x of Object.values(v)) collect(x)
}
collect(JSON.parse(readFileSync(args[1] ?? 'bench/results/compare.json', 'utf8')))

const KIND: Record<number, string> = { 1: 'scavenge', 2: 'mark-compact', 4: 'incremental', 8: 'weak-cb' }
const pct = (s: number[], p: number): number => s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]!
const f = (n: number): string => n.toFixed(1)
/** GC time overlapping [from, to) and the longest such pause. */
const gcIn = (from: number, to: number): { ms: number, longest: number, n: number } => {
  let ms = 0; let longest = 0; let n = 0
  for (const g of gcs) {
    if (g.start >= to) break
    const o = Math.min(to, g.start + g.duration) - Math.max(from, g.start)
    if (o > 0) { ms += o; longest = Math.max(longest, g.duration); n++ }
  }
  return { ms, longest, n }
}

runs.sort((a, b) => a.windowStartUnixMs - b.windowStartUnixMs)
for (const r of runs) {
  const t0 = r.windowStartUnixMs
  const t1 = t0 + r.latencyPeakPer100ms.length * 100
  const inWin = gcs.filter((g) => g.start >= t0 && g.start < t1)
  const secs = (t1 - t0) / 1000
  const out: string[] = [`\n== run at ${new Date(t0).toISOString()}: offered ${r.offeredPerSecond?.toFixed(0) ?? '-'} msgs/s, delivered ${r.deliveredPerSecond.toFixed(0)}, latency p50 ${f(r.latencyMs?.p50 ?? NaN)} p99 ${f(r.latencyMs?.p99 ?? NaN)} max ${f(r.latencyMs?.max ?? NaN)} ms`]
  for (const k of [...new Set(inWin.map((g) => g.kind))].sort()) {
    const d = inWin.filter((g) => g.kind === k).map((g) => g.duration).sort((a, b) => a - b)
    out.push(`GC ${KIND[k] ?? k}: ${d.length} (${f(d.length / secs)}/s), pause p50 ${f(pct(d, 50))} p99 ${f(pct(d, 99))} max ${f(d[d.length - 1] ?? 0)} ms, ${f(d.reduce((a, b) => a + b, 0) / secs / 10)} % of the time`)
  }
  const h = heaps.filter((x) => x.start >= t0 && x.start < t1)
  if (h.length > 0) out.push(`heap over the window: new space ${f(Math.max(...h.map((x) => x.newSpaceBytes)) / 2 ** 20)} MiB, old space used up to ${f(Math.max(...h.map((x) => x.oldUsedBytes)) / 2 ** 20)} MiB, RSS up to ${f(Math.max(...h.map((x) => x.rssBytes)) / 2 ** 20)} MiB`)
  out.push('second  n        p99 ms   max ms  | GC n  GC ms  longest ms')
  r.latencyPerSecond.forEach((s, i) => {
    const g = gcIn(t0 + i * 1000, t0 + (i + 1) * 1000)
    out.push(`${String(i).padStart(6)}  ${String(s.n).padEnd(8)} ${f(s.p99).padStart(6)}  ${f(s.max).padStart(7)}  | ${String(g.n).padStart(4)} ${f(g.ms).padStart(6)}  ${f(g.longest).padStart(6)}`)
  })
  // Slices over the threshold: what GC did while their slowest message waited.
  const spikes = r.latencyPeakPer100ms.map((peak, i) => ({ i, peak })).filter((x) => x.peak > over)
  let explained = 0
  for (const { i, peak } of spikes) {
    const end = t0 + (i + 1) * 100
    const g = gcIn(end - peak, end)
    if (g.ms >= peak / 4) explained++
    if (spikes.length <= 12 || peak === Math.max(...spikes.map((x) => x.peak))) out.push(`  slice ${(i / 10).toFixed(1)} s: peak ${f(peak)} ms; GC in its wait: ${g.n} pauses, ${f(g.ms)} ms, longest ${f(g.longest)} ms`)
  }
  // Baseline: GC share of any 100 ms slice, to compare with the spikes'.
  const base = r.latencyPeakPer100ms.map((_, i) => gcIn(t0 + i * 100, t0 + (i + 1) * 100).ms)
  out.push(`slices over ${over} ms: ${spikes.length} of ${r.latencyPeakPer100ms.length}; with GC >= 1/4 of the slowest wait: ${explained}; GC per 100 ms slice overall: mean ${f(base.reduce((a, b) => a + b, 0) / Math.max(1, base.length))} ms, max ${f(Math.max(0, ...base))} ms`)
  process.stdout.write(out.join('\n') + '\n')
}
if (runs.length === 0) process.stdout.write('no run with a latency timeline (Go generator, latency on) in the result file\n')
