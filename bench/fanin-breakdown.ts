/**
 * Where fanin-90's latency sits (issue #14): lays the generator's latency peaks per 100 ms of each
 * paced window (bench/results/compare.json) beside the kernel's TCP queues (bench/kernel-queues.ts)
 * and, for the gateway, the in-process probe (bench/fanin-probe.ts), and converts each queue into
 * the time it holds at the offered rate (bytes / (wire bytes per message x msgs per ms)).
 *
 *   node dist/bench/fanin-breakdown.js compare.json kq.jsonl [probe.jsonl]
 *
 * Per paced run: the queues' p50 / p99 / max over the window, and their mean in the 100 ms slices
 * whose latency peak was at least the run's p99 (where the tail is made). Queues:
 *   pub sendQ  generator-side publisher sockets, bytes written not yet acked (the broker's receive
 *              window is full or the broker's core did not run the loopback softirq);
 *   pub recvQ  broker-side publisher sockets, bytes the broker has not read yet;
 *   sub sendQ  broker-side subscriber socket, bytes written not yet read by the generator's socket;
 *   sub recvQ  generator-side subscriber socket, bytes the generator has not read yet.
 * Publisher queues: the largest one publisher holds, at its share of the rate (the broker reads
 * the publishers in turn). Probe: age of the bytes written (read -> write call) and event-loop delay.
 */
import { readFileSync } from 'node:fs'

interface Sample { t: number, listen: number[], socks: Array<[number, number, number, number]> }
interface Probe { t: number, elu: number, eldMaxMs: number, ageMaxMs: number, ageMeanMs: number, maxRead: number, reads: number, writes: number, chunks: number, readBytes: number, writeBytes: number, needDrainMs: number, maxWritable: number }
interface Paced { windowStartUnixMs: number, latencyPeakPer100ms: number[], offeredPerSecond: number, wireBytesPerDelivery: number, latencyMs: { p50: number, p99: number, max: number }, sendLagMs?: { p99: number } }

const [cmp, kqFile, probeFile] = process.argv.slice(2)
if (cmp === undefined || kqFile === undefined) throw new Error('usage: fanin-breakdown.js compare.json kq.jsonl [probe.jsonl]')
const lines = <T>(f: string): T[] => readFileSync(f, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T)
const samples = lines<Sample>(kqFile)
const probes = probeFile === undefined ? [] : lines<Probe>(probeFile)
const raw = (JSON.parse(readFileSync(cmp, 'utf8')) as { scenarios: Record<string, { raw: Record<string, { all: Array<{ raw: { paced: Paced } } | { paced: Paced }> }> }> }).scenarios['fanin-90']!.raw

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]!
}
const mean = (xs: number[]): number => xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length
const f1 = (x: number): string => Number.isNaN(x) ? '-' : x.toFixed(1)

type Q = 'pubSendQ' | 'pubRecvQ' | 'subSendQ' | 'subRecvQ'
const QS: Q[] = ['pubSendQ', 'pubRecvQ', 'subSendQ', 'subRecvQ']

function analyse (broker: string, round: number, p: Paced): void {
  const t0 = p.windowStartUnixMs
  const t1 = t0 + p.latencyPeakPer100ms.length * 100
  const win = samples.filter((s) => s.t >= t0 && s.t < t1)
  // The broker's port: the listening port with 11 server-side connections (10 publishers, 1 subscriber) most often.
  const votes = new Map<number, number>()
  for (const s of win) {
    const per = new Map<number, number>()
    for (const [lp] of s.socks) if (s.listen.includes(lp)) per.set(lp, (per.get(lp) ?? 0) + 1)
    for (const [port, n] of per) if (n === 11) votes.set(port, (votes.get(port) ?? 0) + 1)
  }
  const port = [...votes].sort((a, b) => b[1] - a[1])[0]?.[0]
  if (port === undefined) { console.log(`${broker} round ${round}: no kernel samples in the window`); return }
  // Per connection (its client port): server-side [sendQ, recvQ], client-side [sendQ, recvQ] per sample.
  const score = new Map<number, number>()
  for (const s of win) {
    for (const [lp, rp, tx, rx] of s.socks) {
      if (lp === port) score.set(rp, (score.get(rp) ?? 0) + tx - rx)
      else if (rp === port) score.set(lp, (score.get(lp) ?? 0) + rx - tx)
    }
  }
  const sub = [...score].sort((a, b) => b[1] - a[1])[0]?.[0]
  const perMsgMs = (p.offeredPerSecond / 1000) * p.wireBytesPerDelivery // bytes per ms at the offered rate
  const series: Record<Q, Array<{ t: number, ms: number }>> = { pubSendQ: [], pubRecvQ: [], subSendQ: [], subRecvQ: [] }
  for (const s of win) {
    let pubSend = 0; let pubRecv = 0; let subSend = 0; let subRecv = 0
    for (const [lp, rp, tx, rx] of s.socks) {
      if (lp === port) {
        if (rp === sub) subSend = tx
        else pubRecv = Math.max(pubRecv, rx)
      } else if (rp === port) {
        if (lp === sub) subRecv = rx
        else pubSend = Math.max(pubSend, tx)
      }
    }
    series.pubSendQ.push({ t: s.t, ms: pubSend / (perMsgMs / 10) })
    series.pubRecvQ.push({ t: s.t, ms: pubRecv / (perMsgMs / 10) })
    series.subSendQ.push({ t: s.t, ms: subSend / perMsgMs })
    series.subRecvQ.push({ t: s.t, ms: subRecv / perMsgMs })
  }
  const slow = p.latencyPeakPer100ms.map((peak, i) => ({ i, peak })).filter((x) => x.peak >= p.latencyMs.p99).map((x) => x.i)
  const inSlices = (xs: Array<{ t: number, ms: number }>, idx: number[]): number[] => xs.filter((x) => idx.includes(Math.floor((x.t - t0) / 100))).map((x) => x.ms)
  const pr = probes.filter((x) => x.t > t0 && x.t <= t1 + 100)
  const prSlow = pr.filter((x) => slow.includes(Math.floor((x.t - 100 - t0) / 100)))
  console.log(`\n${broker} round ${round}: offered ${p.offeredPerSecond} msgs/s, ${p.wireBytesPerDelivery} B/msg; latency p50 ${f1(p.latencyMs.p50)} p99 ${f1(p.latencyMs.p99)} max ${f1(p.latencyMs.max)} ms; gen lag p99 ${f1(p.sendLagMs?.p99 ?? NaN)} ms; ${win.length} kernel samples, ${slow.length} slices at/over p99`)
  console.log('  queue (ms at rate)   p50     p99     max   mean in p99 slices')
  for (const q of QS) {
    const xs = series[q].map((x) => x.ms)
    console.log(`  ${q.padEnd(18)} ${f1(pct(xs, 50)).padStart(6)}  ${f1(pct(xs, 99)).padStart(6)}  ${f1(Math.max(0, ...xs)).padStart(6)}  ${f1(mean(inSlices(series[q], slow))).padStart(6)}`)
  }
  if (pr.length > 0) {
    const col = (k: keyof Probe, xs: Probe[]): number[] => xs.map((x) => x[k])
    console.log('  probe (per 100 ms)   p50     p99     max   mean in p99 slices')
    for (const k of ['ageMaxMs', 'ageMeanMs', 'eldMaxMs', 'elu', 'maxRead', 'needDrainMs', 'maxWritable'] as Array<keyof Probe>) {
      const xs = col(k, pr)
      console.log(`  ${String(k).padEnd(18)} ${f1(pct(xs, 50)).padStart(6)}  ${f1(pct(xs, 99)).padStart(6)}  ${f1(Math.max(0, ...xs)).padStart(6)}  ${f1(mean(col(k, prSlow))).padStart(6)}`)
    }
    const reads = pr.reduce((a, x) => a + x.reads, 0); const rb = pr.reduce((a, x) => a + x.readBytes, 0)
    const writes = pr.reduce((a, x) => a + x.writes, 0); const wb = pr.reduce((a, x) => a + x.writeBytes, 0)
    console.log(`  reads ${reads} (${f1(rb / Math.max(1, reads))} B each), writes ${writes} (${f1(wb / Math.max(1, writes))} B each)`)
  }
  if (process.env.BREAKDOWN_SLICES === '1') {
    for (let i = 0; i < p.latencyPeakPer100ms.length; i++) {
      const at = (q: Q): string => f1(Math.max(0, ...series[q].filter((x) => Math.floor((x.t - t0) / 100) === i).map((x) => x.ms)))
      const pb = pr.find((x) => Math.floor((x.t - 100 - t0) / 100) === i)
      console.log(`   ${String(i).padStart(3)} peak ${f1(p.latencyPeakPer100ms[i]!).padStart(6)}  ${QS.map((q) => `${q} ${at(q).padStart(6)}`).join(' ')}${pb === undefined ? '' : `  age ${f1(pb.ageMaxMs)} eld ${f1(pb.eldMaxMs)} elu ${pb.elu}`}`)
    }
  }
}

for (const [broker, r] of Object.entries(raw)) {
  r.all.forEach((run, i) => {
    const p = 'paced' in run ? run.paced : run.raw.paced
    if (p?.latencyPeakPer100ms !== undefined) analyse(broker, i + 1, p)
  })
}
