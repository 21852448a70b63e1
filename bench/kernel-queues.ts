/**
 * The kernel's TCP queues of one broker's connections during a bench run (issue #14, fanin-90):
 * where a message waits between the generator and the broker and back. Every `everyMs` (20 by
 * default) the sampler reads /proc/net/tcp (one file read; `ss -tnmi` would fork a process per
 * sample) and keeps, for each connection to the broker's port, the Send-Q and Recv-Q of both
 * ends: tx_queue (bytes written and not yet acknowledged by the peer: it may include bytes already
 * in the peer's Recv-Q, so a connection's two queues can overlap) and rx_queue (bytes received and
 * not yet read by the owner). It runs in the harness process (the load generator's
 * core): about 0.1-0.3 ms of CPU per sample with a few dozen sockets.
 *
 * summariseQueues turns a fan-in's samples into time at the offered rate (bytes / (wire bytes per
 * message x messages per ms)):
 *   pubSendQ  generator-side publisher socket: written, not yet taken by the broker's kernel
 *             socket (the broker's receive window is full);
 *   pubRecvQ  broker-side publisher socket: received, not yet read by the broker;
 *   subSendQ  broker-side subscriber socket: written by the broker, not yet acknowledged;
 *   subRecvQ  generator-side subscriber socket: received, not yet read by the generator.
 * Publisher queues count the fullest publisher at its share of the rate (the broker reads the
 * publishers in turn, so that one is the last to be served); the subscriber is the connection
 * that sends the most and receives the least.
 */
import { readFileSync } from 'node:fs'

/** One connection in one sample: [client port, server Send-Q, server Recv-Q, client Send-Q, client Recv-Q]. */
export type ConnQueues = [number, number, number, number, number]
export interface QueueSample { t: number, conns: ConnQueues[] }

const hexPort = (addr: string): number => parseInt(addr.slice(addr.indexOf(':') + 1), 16)

/** The queues of every established connection to 127.0.0.1:`port` (IPv4) now. */
export function readQueues (port: number): ConnQueues[] {
  const byClient = new Map<number, ConnQueues>()
  // Only lines naming the port (as local or remote "ADDR:PORT "), before splitting any.
  const tag = `:${port.toString(16).toUpperCase().padStart(4, '0')} `
  const lines = readFileSync('/proc/net/tcp', 'utf8').split('\n')
  for (let i = 1; i < lines.length; i++) {
    if (!lines[i]!.includes(tag)) continue
    const f = lines[i]!.trim().split(/\s+/)
    if (f.length < 5 || f[3] !== '01') continue
    const lp = hexPort(f[1]!)
    const rp = hexPort(f[2]!)
    if (lp !== port && rp !== port) continue
    const [tx, rx] = f[4]!.split(':').map((h) => parseInt(h, 16)) as [number, number]
    const client = lp === port ? rp : lp
    const c = byClient.get(client) ?? [client, 0, 0, 0, 0]
    if (lp === port) { c[1] = tx; c[2] = rx } else { c[3] = tx; c[4] = rx }
    byClient.set(client, c)
  }
  return [...byClient.values()]
}

/** Samples `port`'s connections every `everyMs` until stop(), which returns the samples (at most `maxSamples`). */
export function startQueueSampler (port: number, everyMs = 20, maxSamples = 30_000): { stop: () => QueueSample[] } {
  const samples: QueueSample[] = []
  const timer = setInterval(() => {
    if (samples.length >= maxSamples) return
    samples.push({ t: Date.now(), conns: readQueues(port) })
  }, everyMs)
  return { stop: () => { clearInterval(timer); return samples } }
}

export const QUEUES = ['pubSendQ', 'pubRecvQ', 'subSendQ', 'subRecvQ'] as const
export type QueueName = typeof QUEUES[number]
export interface QueueStats { p50: number, p99: number, max: number, meanInSlowSlices: number }
export type QueueSummary = Record<QueueName, QueueStats> & { samples: number }

const pct = (sorted: number[], p: number): number => sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]!

/** Each queue as ms at the offered rate, sample by sample, over [t0, t1). */
export function queueSeries (samples: QueueSample[], t0: number, t1: number, msgsPerSecond: number, bytesPerMsg: number, publishers: number): Array<{ t: number } & Record<QueueName, number>> {
  const win = samples.filter((s) => s.t >= t0 && s.t < t1)
  const score = new Map<number, number>()
  for (const s of win) for (const [client, sTx, sRx, cTx, cRx] of s.conns) score.set(client, (score.get(client) ?? 0) + sTx + cRx - sRx - cTx)
  // None when no connection carried more toward the client than from it.
  const top = [...score].sort((a, b) => b[1] - a[1])[0]
  const sub = top !== undefined && top[1] > 0 ? top[0] : undefined
  const bytesPerMs = msgsPerSecond / 1000 * bytesPerMsg
  const perPub = bytesPerMs / Math.max(1, publishers)
  return win.map((s) => {
    let pubSend = 0; let pubRecv = 0; let subSend = 0; let subRecv = 0
    for (const [client, sTx, sRx, cTx, cRx] of s.conns) {
      if (client === sub) { subSend = sTx; subRecv = cRx } else { pubSend = Math.max(pubSend, cTx); pubRecv = Math.max(pubRecv, sRx) }
    }
    return { t: s.t, pubSendQ: pubSend / perPub, pubRecvQ: pubRecv / perPub, subSendQ: subSend / bytesPerMs, subRecvQ: subRecv / bytesPerMs }
  })
}

/**
 * p50 / p99 / max of each queue (ms at the offered rate) over the window starting at t0, and its
 * mean in the 100 ms slices whose latency peak (the generator's latencyPeakPer100ms) reached
 * `slowMs` (the run's p99): where the tail's messages were waiting.
 */
export function summariseQueues (samples: QueueSample[], t0: number, peaks: number[], slowMs: number, msgsPerSecond: number, bytesPerMsg: number, publishers: number): QueueSummary {
  const series = queueSeries(samples, t0, t0 + peaks.length * 100, msgsPerSecond, bytesPerMsg, publishers)
  const slow = new Set(peaks.map((p, i) => ({ p, i })).filter((x) => x.p >= slowMs).map((x) => x.i))
  const out = { samples: series.length } as QueueSummary
  for (const q of QUEUES) {
    const xs = series.map((s) => s[q]).sort((a, b) => a - b)
    const inSlow = series.filter((s) => slow.has(Math.floor((s.t - t0) / 100))).map((s) => s[q])
    out[q] = { p50: pct(xs, 50), p99: pct(xs, 99), max: xs.length === 0 ? NaN : xs[xs.length - 1]!, meanInSlowSlices: inSlow.length === 0 ? NaN : inSlow.reduce((a, b) => a + b, 0) / inSlow.length }
  }
  return out
}
