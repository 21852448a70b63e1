/**
 * bench/workers: connect rate with 1 vs 2 gateway processes (workers.count, app/workers.ts),
 * the primary's CPU at that rate (with round-robin it accepts every connection and hands it to
 * a worker) and how evenly the connections spread; the same with the kernel's scheduling
 * (workers.scheduling: kernel) for the choice of round-robin.
 *
 *   npm run bench -- workers          BENCH_WORKERS_ROUNDS=3 BENCH_WORKERS_CONNECTS=6000
 *
 * Every run: a fresh gateway on one real redis-server (Redis mode for every row, so the rows
 * differ only in processes), bench/loadgen.ts's `connect` mode in its own process (clean
 * sessions, `concurrency` CONNECTs in flight, each connection held until the count is reached,
 * bounded by count and by time). On the 2-core machine the generator, Redis, the primary and
 * the workers share both cores: what 2 workers can add is bounded by that.
 */
import { spawn } from 'node:child_process'
import { loadavg } from 'node:os'
import { cpuSeconds } from './brokers.js'
import { percentiles, report } from './lib.js'
import { TestRedis } from '../test/helpers/redis.js'
import { alive, metricValue, spawnPrimary, type PrimaryProcess } from '../test/helpers/workers.js'

const ROUNDS = Number(process.env.BENCH_WORKERS_ROUNDS ?? 3)
const CONNECTS = Number(process.env.BENCH_WORKERS_CONNECTS ?? 6000)
const CONCURRENCY = Number(process.env.BENCH_WORKERS_CONCURRENCY ?? 100)
const TIME_LIMIT_MS = 60000

interface Variant { name: string, workers: number, scheduling?: 'round-robin' | 'kernel' }
const VARIANTS: Variant[] = [
  { name: '1 process', workers: 1 },
  { name: '2 workers, round-robin', workers: 2, scheduling: 'round-robin' },
  { name: '2 workers, kernel', workers: 2, scheduling: 'kernel' }
]

interface ConnectResult { connected: number, refused: number, seconds: number, connectsPerSecond: number, p50ms: number, p99ms: number }

/** bench/loadgen.ts in its own process; its CPU sampled while it runs (the process is gone at the end). */
function runLoadgen (job: object): Promise<{ result: ConnectResult, cpuS: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['dist/bench/loadgen.js', JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    let cpuS = 0
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    const sample = setInterval(() => { try { cpuS = cpuSeconds(child.pid!) } catch { /* exited */ } }, 100)
    const bound = setTimeout(() => child.kill('SIGKILL'), TIME_LIMIT_MS + 30000)
    child.once('exit', (code) => {
      clearInterval(sample)
      clearTimeout(bound)
      if (code !== 0) reject(new Error(`loadgen exited ${code}: ${out}`))
      else resolve({ result: JSON.parse(out) as ConnectResult, cpuS })
    })
  })
}

async function runOnce (redis: TestRedis, variant: Variant, round: number): Promise<Record<string, number>> {
  const primary: PrimaryProcess = await spawnPrimary(`node: { id: bench-${round} }
persistence: { type: redis, redis: ${redis.configYaml} }
limits: { maxUnauthenticatedPerAddress: 0 }
workers: { count: ${variant.workers}, scheduling: ${variant.scheduling ?? 'round-robin'} }
`, [], { workers: variant.workers, startTimeoutMs: 90000, logLevel: 'warn' })
  // "worker started" lines are at info; the config logs at warn, so find workers by their admin ports.
  const admins = variant.workers === 1 ? [`http://127.0.0.1:${primary.ports.admin}`] : [0, 1].map((i) => primary.workerAdmin(i))
  try {
    const primaryCpu0 = cpuSeconds(primary.child.pid!)
    const { result, cpuS } = await runLoadgen({ mode: 'connect', url: `mqtt://127.0.0.1:${primary.ports.mqtt}`, count: CONNECTS, concurrency: CONCURRENCY, clientPrefix: `b${round}`, timeLimitMs: TIME_LIMIT_MS })
    const primaryCpu = cpuSeconds(primary.child.pid!) - primaryCpu0
    const perWorker = await Promise.all(admins.map((a) => metricValue(a, 'mqgw_connections_total{listener="mqtt"}')))
    const row: Record<string, number> = {
      connected: result.connected,
      'connects/s': result.connectsPerSecond,
      'p99 ms': result.p99ms,
      'loadgen CPU %': 100 * cpuS / result.seconds,
      // The machine is shared with other sessions' work: the 1-minute load average says how much.
      'load avg': loadavg()[0] ?? NaN
    }
    if (variant.workers > 1) {
      row['primary CPU %'] = 100 * primaryCpu / result.seconds
      row['primary µs/connect'] = 1e6 * primaryCpu / Math.max(1, result.connected)
      row['worker 0'] = perWorker[0] ?? NaN
      row['worker 1'] = perWorker[1] ?? NaN
    }
    return row
  } finally {
    primary.child.kill('SIGTERM')
    const bound = setTimeout(() => primary.child.kill('SIGKILL'), 20000)
    await primary.exited
    clearTimeout(bound)
    for (const i of [0, 1]) for (const pid of primary.workerPids(i)) if (alive(pid)) process.kill(pid, 'SIGKILL')
  }
}

async function main (): Promise<void> {
  const redis = new TestRedis()
  await redis.start()
  const raw: Record<string, Array<Record<string, number>>> = {}
  try {
    // Variants alternate within a round, so a noisy minute on the shared machine hits all of them.
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of VARIANTS) {
        const row = await runOnce(redis, v, round)
        ;(raw[v.name] ??= []).push(row)
        process.stderr.write(`round ${round + 1} ${v.name}: ${JSON.stringify(row)}\n`)
      }
    }
  } finally {
    await redis.stop()
  }
  const rows = VARIANTS.map((v) => {
    const runs = raw[v.name] ?? []
    const col = (k: string): number[] => runs.map((r) => r[k]!).filter((x) => x !== undefined && !Number.isNaN(x))
    const median = (k: string): number => percentiles(col(k)).p50
    const out: Record<string, string | number> = {
      variant: v.name,
      'connects/s (median)': median('connects/s'),
      'connects/s (runs)': col('connects/s').map((x) => x.toFixed(0)).join(' / '),
      'p99 ms': median('p99 ms'),
      'loadgen CPU %': median('loadgen CPU %'),
      'load avg': median('load avg')
    }
    if (v.workers > 1) {
      out['primary CPU %'] = median('primary CPU %')
      out['primary µs/connect'] = median('primary µs/connect')
      out['split w0/w1 (runs)'] = runs.map((r) => `${r['worker 0']}/${r['worker 1']}`).join(' ')
    }
    return out
  })
  report(`workers: ${CONNECTS} connects, ${CONCURRENCY} in flight, ${ROUNDS} rounds`, rows, raw)
}

await main()
