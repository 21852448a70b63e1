/**
 * Where a fanin-90 / fanin-80 run's latency sat (issue #14), slice by slice: lays the generator's
 * latency peak per 100 ms of each paced window beside the kernel's TCP queues of that run
 * (bench/kernel-queues.ts, kept in compare.json with FANIN90_SAMPLES=1) and, for the gateway, the
 * in-process probe (bench/fanin-probe.ts): read -> write age of the bytes written, event-loop delay
 * and utilisation, read sizes.
 *
 *   FANIN90_SAMPLES=1 FANIN_PROBE_OUT=/tmp/probe.jsonl BENCH_GATEWAY_NODE_ARGS="--import ./dist/bench/fanin-probe.js" \
 *     node --expose-gc dist/bench/compare.bench.js fanin-90 --brokers=gateway,mosquitto --rounds=3 --retries=0
 *   node dist/bench/fanin-breakdown.js bench/results/compare.json [/tmp/probe.jsonl] [--slices] [--scenario=fanin-80]
 *
 * Per paced run: each queue's p50 / p99 / max (ms at the offered rate) and its mean in the slices
 * whose latency peak reached the run's p99; the probe's columns likewise; --slices prints every slice.
 */
import { readFileSync } from 'node:fs'
import { QUEUES, queueSeries, summariseQueues, type QueueSample } from './kernel-queues.js'

interface Probe { t: number, elu: number, eldMaxMs: number, ageMaxMs: number, ageMeanMs: number, maxRead: number, reads: number, writes: number, readBytes: number, writeBytes: number, needDrainMs: number, maxWritable: number }
interface Paced {
  windowStartUnixMs?: number, latencyPeakPer100ms?: number[], offeredPerSecond: number, wireBytesPerDelivery?: number
  latencyMs?: { p50: number, p99: number, max: number }, sendLagMs?: { p99: number }, kernelSamples?: QueueSample[]
  brokerCpuPercent?: number, otherCpuBrokerCore?: number, otherCpuLoadgenCore?: number
}
interface Raw { all: Array<{ paced?: Paced }> }

const args = process.argv.slice(2)
const files = args.filter((a) => !a.startsWith('--'))
const cmp = files[0]
if (cmp === undefined) throw new Error('usage: fanin-breakdown.js compare.json [probe.jsonl] [--slices] [--scenario=fanin-90]')
const scenario = args.find((a) => a.startsWith('--scenario='))?.slice('--scenario='.length) ?? 'fanin-90'
const slices = args.includes('--slices')
const probes = files[1] === undefined ? [] : readFileSync(files[1], 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Probe)
const result = JSON.parse(readFileSync(cmp, 'utf8')) as { scenarios: Record<string, { raw: Record<string, Raw> } | undefined> }
const raw = result.scenarios[scenario]?.raw
if (raw === undefined) throw new Error(`${cmp} has no ${scenario} run`)

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]!
}
const mean = (xs: number[]): number => xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length
const f1 = (x: number | undefined): string => x === undefined || Number.isNaN(x) ? '-' : x.toFixed(1)
const row = (name: string, xs: number[], inSlow: number[]): string =>
  `  ${name.padEnd(14)} ${f1(pct(xs, 50)).padStart(8)} ${f1(pct(xs, 99)).padStart(8)} ${f1(Math.max(0, ...xs)).padStart(8)} ${f1(mean(inSlow)).padStart(10)}`

function analyse (broker: string, round: number, p: Paced): void {
  const { windowStartUnixMs: t0, latencyPeakPer100ms: peaks, latencyMs } = p
  if (t0 === undefined || peaks === undefined || latencyMs === undefined) return
  const bytes = p.wireBytesPerDelivery ?? 117
  const samples = p.kernelSamples ?? []
  const slow = peaks.map((x, i) => ({ x, i })).filter((s) => s.x >= latencyMs.p99).map((s) => s.i)
  console.log(`\n${broker} round ${round}: offered ${p.offeredPerSecond} msgs/s; latency p50 ${f1(latencyMs.p50)} p99 ${f1(latencyMs.p99)} max ${f1(latencyMs.max)} ms; gen lag p99 ${f1(p.sendLagMs?.p99)} ms; broker CPU ${f1(p.brokerCpuPercent)} %, other CPU b/l ${f1(p.otherCpuBrokerCore)}/${f1(p.otherCpuLoadgenCore)} %; ${samples.length} kernel samples; ${slow.length} slices at/over p99`)
  console.log('  ms at the rate      p50      p99      max  p99 slices')
  const q = summariseQueues(samples, t0, peaks, latencyMs.p99, p.offeredPerSecond, bytes, 10)
  const series = queueSeries(samples, t0, t0 + peaks.length * 100, p.offeredPerSecond, bytes, 10)
  for (const name of QUEUES) console.log(row(name, series.map((s) => s[name]), [q[name].meanInSlowSlices].filter((x) => !Number.isNaN(x))))
  // Probe lines are written at the end of their 100 ms: line at t covers [t - 100, t).
  const slice = (t: number): number => Math.floor((t - 100 - t0) / 100)
  const pr = probes.filter((x) => slice(x.t) >= 0 && slice(x.t) < peaks.length)
  if (pr.length > 0) {
    const prSlow = pr.filter((x) => slow.includes(slice(x.t)))
    for (const k of ['ageMaxMs', 'ageMeanMs', 'eldMaxMs', 'elu', 'maxRead', 'needDrainMs', 'maxWritable'] as const) console.log(row(k, pr.map((x) => x[k]), prSlow.map((x) => x[k])))
    const reads = pr.reduce((a, x) => a + x.reads, 0)
    const writes = pr.reduce((a, x) => a + x.writes, 0)
    const msgs = pr.reduce((a, x) => a + x.writeBytes, 0) / bytes
    console.log(`  reads ${reads} (${f1(msgs / Math.max(1, reads))} messages each), writes ${writes} (${f1(msgs / Math.max(1, writes))} each)`)
  }
  if (slices) {
    for (let i = 0; i < peaks.length; i++) {
      const at = series.filter((s) => Math.floor((s.t - t0) / 100) === i)
      const pb = pr.find((x) => slice(x.t) === i)
      const qs = QUEUES.map((n) => `${n} ${f1(Math.max(0, ...at.map((s) => s[n]))).padStart(6)}`).join(' ')
      console.log(`   ${String(i).padStart(3)} peak ${f1(peaks[i]).padStart(7)}  ${qs}${pb === undefined ? '' : `  age ${f1(pb.ageMaxMs)} eld ${f1(pb.eldMaxMs)} elu ${pb.elu} reads ${pb.reads}`}`)
    }
  }
}

for (const [broker, r] of Object.entries(raw)) {
  r.all.forEach((run, i) => { if (run.paced !== undefined) analyse(broker, i + 1, run.paced) })
}
