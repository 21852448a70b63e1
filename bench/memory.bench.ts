/**
 * Memory per idle connection (issue #14 item 2): the gateway as bench/compare.bench.ts starts
 * it (CLI, config/gateway.yaml, memory mode, pinned to core 1), N idle MQTT connections
 * (keepalive 60) from bench/loadgen-scenarios.ts' idle scenario on core 0, then
 *
 *  - RSS per connection: (VmRSS with N open - VmRSS before) / N, read 1 s after the last
 *    CONNACK, as compare's idle scenario reads it (no forced GC);
 *  - heapUsed and external per connection, from the gateway's own /metrics
 *    (prom-client's process.memoryUsage() gauges), at the same two moments;
 *  - with --heap: a heap snapshot of the idle gateway and one with N connections
 *    (--heapsnapshot-signal), summed by constructor (bench/heap-snapshot.ts): the table of what
 *    each connection costs in the JS heap, bytes and objects per connection. Snapshot runs are
 *    separate runs (a snapshot forces a GC and grows RSS), so their RSS is not reported.
 *
 *   npm run bench -- memory                                       10k and 15k, 2 rounds
 *   node dist/bench/memory.bench.js --clients=10000,15000 --rounds=3 --heap --top=25
 *   node dist/bench/memory.bench.js --brokers=gateway,aedes       plain Aedes too (RSS only)
 *   node dist/bench/memory.bench.js --settle=15000                  read memory 15 s after the last CONNACK
 *   node dist/bench/memory.bench.js --clients=2000 --rounds=0 --heap --keep   snapshots kept for DevTools
 *
 * One broker process holds at most 20,000 descriptors here (`ulimit -Hn`), so N stays below
 * that. Results: bench/results/memory-per-idle-connection.json.
 */
import { closeSync, mkdtempSync, openSync, readSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pinSelf, rssKiB, runLoadgen, startBroker, type BrokerName, type RunningBroker } from './brokers.js'
import { perConnection, summarizeHeapSnapshot, totalBytes, type HeapGroup } from './heap-snapshot.js'
import { report } from './lib.js'
import type { IdleJob } from './loadgen-scenarios.js'

const arg = (name: string, fallback: string): string => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const CLIENTS = arg('clients', '10000,15000').split(',').map(Number)
const ROUNDS = Number(arg('rounds', '2'))
const TOP = Number(arg('top', '20'))
const BROKER_NAMES = arg('brokers', 'gateway').split(',') as BrokerName[]
const HEAP = process.argv.includes('--heap')
/** Wait this long (ms) after the last CONNACK before reading memory (default 1000, as compare's idle scenario); a longer wait lets V8's memory reducer collect the connect burst's garbage. */
const SETTLE_MS = Number(arg('settle', '1000'))
/** Keep the .heapsnapshot files (for Chrome DevTools' Memory tab); their directory is printed. */
const KEEP = process.argv.includes('--keep')
const MAX_CLIENTS = 19000

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Mem { rssKiB: number, heapUsed: number, heapTotal: number, newSpace: number, external: number }

/** The gateway's process.memoryUsage() as prom-client exports it on /metrics (NaN for other brokers). */
async function memoryOf (broker: RunningBroker): Promise<Mem> {
  const rss = rssKiB(broker.pid)
  if (broker.adminPort === undefined) return { rssKiB: rss, heapUsed: NaN, heapTotal: NaN, newSpace: NaN, external: NaN }
  const text = await (await fetch(`http://127.0.0.1:${broker.adminPort}/metrics`, { signal: AbortSignal.timeout(30000) })).text()
  const gauge = (name: string): number => Number(new RegExp(`^mqgw_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  // heapTotal: what V8 has committed (live objects, garbage not yet collected, free space);
  // new space: the young generation, which grows during a connect burst.
  return { rssKiB: rss, heapUsed: gauge('nodejs_heap_size_used_bytes'), heapTotal: gauge('nodejs_heap_size_total_bytes'), newSpace: gauge('nodejs_heap_space_size_total_bytes\\{space="new"\\}'), external: gauge('nodejs_external_memory_bytes') }
}

/** Sends SIGUSR2 (--heapsnapshot-signal) and returns the snapshot file once it is complete (ends with "]}", size stable). */
async function snapshot (broker: RunningBroker, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir))
  process.kill(broker.pid, 'SIGUSR2')
  const deadline = Date.now() + 180000
  let lastSize = -1
  for (;;) {
    if (Date.now() > deadline) throw new Error('no complete heap snapshot within 180 s')
    await sleep(500)
    const added = readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'))
    if (added === undefined) continue
    const file = join(dir, added)
    const size = statSync(file).size
    if (size === lastSize && size > 2 && readTail(file, size).trimEnd().endsWith(']}')) return file
    lastSize = size
  }
}

function readTail (file: string, size: number): string {
  const fd = openSync(file, 'r')
  try {
    const buf = Buffer.alloc(Math.min(16, size))
    readSync(fd, buf, 0, buf.length, size - buf.length)
    return buf.toString('latin1')
  } finally { closeSync(fd) }
}

interface RunResult { connected: number, failed: number, connectsPerSecond: number, before: Mem, after: Mem, heap?: Array<{ key: string, bytesPerConn: number, countPerConn: number }>, heapTotalPerConn?: number }

async function run (name: BrokerName, clients: number, heap: boolean): Promise<RunResult> {
  const dir = heap ? mkdtempSync(join(tmpdir(), 'mqgw-heap-')) : undefined
  const savedArgs = process.env.BENCH_GATEWAY_NODE_ARGS
  if (dir !== undefined) process.env.BENCH_GATEWAY_NODE_ARGS = `${savedArgs ?? ''} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}`
  let broker: RunningBroker | undefined
  try {
    broker = await startBroker(name)
    const b = broker
    await sleep(500)
    const before = await memoryOf(b)
    const snap0 = dir !== undefined ? await snapshot(b, dir) : undefined
    const job: IdleJob = { scenario: 'idle', port: b.port, clients, concurrency: 100, keepalive: 60, holdMs: 240000, timeLimitMs: 300000 }
    let after: Mem | undefined
    let snap1: string | undefined
    const r = await runLoadgen<{ connected: number, failed: number, connectsPerSecond: number }>(job, b, async () => {
      await sleep(SETTLE_MS)
      after = await memoryOf(b)
      if (dir !== undefined) snap1 = await snapshot(b, dir).catch((e: unknown) => { process.stderr.write(`snapshot failed: ${String(e)}\n`); return undefined })
      return {}
    })
    if (after === undefined) throw new Error('the load generator never reported its connections')
    const result: RunResult = { connected: r.result.connected, failed: r.result.failed, connectsPerSecond: r.result.connectsPerSecond, before, after }
    await b.stop()
    broker = undefined
    if (snap0 !== undefined && snap1 !== undefined) {
      const s0: Map<string, HeapGroup> = summarizeHeapSnapshot(snap0)
      const s1 = summarizeHeapSnapshot(snap1)
      result.heap = perConnection(s0, s1, r.result.connected)
      result.heapTotalPerConn = (totalBytes(s1) - totalBytes(s0)) / r.result.connected
    }
    return result
  } finally {
    await broker?.stop()
    process.env.BENCH_GATEWAY_NODE_ARGS = savedArgs
    if (savedArgs === undefined) delete process.env.BENCH_GATEWAY_NODE_ARGS
    if (dir !== undefined && KEEP) process.stderr.write(`heap snapshots kept in ${dir}\n`)
    else if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  }
}

pinSelf()
if (CLIENTS.some((n) => !(n > 0 && n <= MAX_CLIENTS))) throw new Error(`--clients: each between 1 and ${MAX_CLIENTS} (one process holds at most 20,000 descriptors)`)
const rows: Array<Record<string, string | number>> = []
const raw: Record<string, unknown> = {}
for (const name of BROKER_NAMES) {
  for (const clients of CLIENTS) {
    for (let round = 1; round <= ROUNDS; round++) {
      const r = await run(name, clients, false)
      raw[`${name}/${clients}/${round}`] = r
      const per = (a: number, b: number): number => (b - a) / r.connected
      rows.push({
        broker: name,
        clients,
        round,
        connected: r.connected,
        failed: r.failed,
        'connects/s': r.connectsPerSecond,
        'RSS before MiB': r.before.rssKiB / 1024,
        'RSS after MiB': r.after.rssKiB / 1024,
        'RSS KiB/conn': per(r.before.rssKiB, r.after.rssKiB),
        'heapUsed KiB/conn': per(r.before.heapUsed, r.after.heapUsed) / 1024,
        'heapTotal KiB/conn': per(r.before.heapTotal, r.after.heapTotal) / 1024,
        'new space MiB before/after': `${(r.before.newSpace / 1048576).toFixed(1)}/${(r.after.newSpace / 1048576).toFixed(1)}`,
        'external KiB/conn': per(r.before.external, r.after.external) / 1024
      })
    }
  }
}
report('memory per idle connection', rows, raw)

// The marginal cost between the smallest and largest N (medians of the rounds): fixed costs of
// a connect burst (the young generation growing, code) cancel out; per-connection costs remain.
const median = (v: number[]): number => { const s = [...v].sort((a, b) => a - b); return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]! }
if (CLIENTS.length >= 2 && ROUNDS > 0) {
  const lo = Math.min(...CLIENTS)
  const hi = Math.max(...CLIENTS)
  const marginal: Array<Record<string, string | number>> = []
  for (const name of BROKER_NAMES) {
    const at = (n: number, f: (r: RunResult) => number): number => median(Object.entries(raw).filter(([k]) => k.startsWith(`${name}/${n}/`)).map(([, r]) => f(r as RunResult)))
    marginal.push({
      broker: name,
      between: `${lo} and ${hi}`,
      'RSS KiB/conn': (at(hi, (r) => r.after.rssKiB) - at(lo, (r) => r.after.rssKiB)) / (hi - lo),
      'heapUsed KiB/conn': (at(hi, (r) => r.after.heapUsed) - at(lo, (r) => r.after.heapUsed)) / (hi - lo) / 1024
    })
  }
  report('memory per idle connection, marginal', marginal, {})
}

if (HEAP) {
  for (const clients of CLIENTS) {
    const r = await run('gateway', clients, true)
    raw[`heap/${clients}`] = r
    const top = (r.heap ?? []).slice(0, TOP)
    report(`gateway heap per idle connection at ${clients} (snapshot by constructor, total ${(r.heapTotalPerConn ?? NaN).toFixed(0)} B/conn)`,
      top.map((h) => ({ constructor: h.key, 'bytes/conn': h.bytesPerConn, 'objects/conn': h.countPerConn })), r)
  }
}
process.exit(0)
