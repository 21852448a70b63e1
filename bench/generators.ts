/**
 * Load generators of bench/compare.bench.ts: the Go generator (bench/loadgen-go, modes
 * compare-fanin, compare-qos1, compare-fanout, compare-connect; built by scripts/loadgen.sh into
 * .cache/go/bin/mqgw-loadgen) as one or several processes, or the Node generator
 * (bench/loadgen-scenarios.ts, one process, through brokers.ts' runLoadgen).
 *
 * Several Go processes share one job (`--generators=N`): each gets `part`/`parts` and takes its
 * share of the clients (see each mode's file for the split), they all report "ready", then all
 * get "start" on stdin at once (a barrier, so they measure the same seconds); the broker's CPU is
 * sampled at part 0's window events, and the results are merged into one result with the Node
 * generator's fields. Every process is pinned to the load generator core, tracked by pid and
 * killed on failure, on timeout and at exit (brokers.ts' spawnPinned).
 *
 * WebSocket jobs (`ws`) and the frozen scenario have no Go mode: they always run on Node.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { BROKER_CORE, LOADGEN_CORE, coreSeconds, cpuSeconds, onLines, runLoadgen, spawnPinned, type LoadgenRun, type RunningBroker } from './brokers.js'

export type LoadgenKind = 'go' | 'node'
export interface GeneratorChoice { kind: LoadgenKind, processes: number }

export const GO_LOADGEN = '.cache/go/bin/mqgw-loadgen'
/** bench/compare scenario -> Go mode. */
export const GO_MODES: Readonly<Record<string, string>> = { fanin: 'compare-fanin', qos1: 'compare-qos1', fanout: 'compare-fanout', idle: 'compare-connect' }

/** What a run adds to the generator's own result: which generator, and each process's CPU. */
export interface GeneratorFacts { loadgen: LoadgenKind, generators: number, loadgenCpuPercentByProcess: number[] }

interface Job { scenario: string, timeLimitMs: number, ws?: string, rate?: number }
type Result = Record<string, unknown> & { loadgenCpuPercent: number }

/**
 * The generator a job runs on: Node when the Go generator has no mode for it (WebSocket, frozen),
 * or no pacing (`rate`: only compare-fanin paces, fanin-90's paced run).
 */
export function generatorFor (job: Job, choice: GeneratorChoice): GeneratorChoice {
  if (choice.kind === 'node' || job.ws !== undefined || (job.rate !== undefined && job.scenario !== 'fanin') || GO_MODES[job.scenario] === undefined) return { kind: 'node', processes: 1 }
  return choice
}

/**
 * Runs `job` on the chosen generator (see generatorFor) against `broker`, like runLoadgen: CPU
 * sampled at the window events, `onConnected` called once every process holds its idle
 * connections. The result carries GeneratorFacts.
 */
export async function runGenerators<T extends { loadgenCpuPercent: number }> (job: Job, broker: RunningBroker, choice: GeneratorChoice, onConnected?: () => Promise<Record<string, number>>): Promise<LoadgenRun<T & GeneratorFacts>> {
  const g = generatorFor(job, choice)
  if (g.kind === 'node') {
    const run = await runLoadgen<T>(job, broker, onConnected)
    return { ...run, result: { ...run.result, loadgen: 'node', generators: 1, loadgenCpuPercentByProcess: [run.result.loadgenCpuPercent] } }
  }
  if (!existsSync(GO_LOADGEN)) throw new Error(`${GO_LOADGEN} is missing: run sh scripts/loadgen.sh (scripts/bench.sh does)`)
  const parts = g.processes
  const mode = GO_MODES[job.scenario]!
  const run: Partial<LoadgenRun<T>> = {}
  const results: Result[] = new Array(parts)
  let ready = 0
  let connected = 0
  let cpu0 = 0
  let t0 = 0
  let c0 = { b: coreSeconds(BROKER_CORE), l: coreSeconds(LOADGEN_CORE), self: process.cpuUsage() }
  const children = Array.from({ length: parts }, (_, part) =>
    spawnPinned(LOADGEN_CORE, join(process.cwd(), GO_LOADGEN), [mode, JSON.stringify({ ...job, part, parts, barrier: parts > 1 })]))
  const killAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) try { process.kill(c.pid, 'SIGKILL') } catch { /* gone */ }
  }
  const timer = setTimeout(killAll, job.timeLimitMs + 5000)
  const broadcast = (line: string): void => { for (const c of children) c.stdin!.write(`${line}\n`) }
  const onEvent = (part: number, msg: Record<string, unknown>): void => {
    if (msg.event === 'ready' && ++ready === parts && parts > 1) broadcast('start')
    // The window events of part 0 bound the broker's CPU sample (the parts start together).
    if (part === 0 && msg.event === 'window-start') {
      cpu0 = cpuSeconds(broker.pid)
      t0 = performance.now()
      c0 = { b: coreSeconds(BROKER_CORE), l: coreSeconds(LOADGEN_CORE), self: process.cpuUsage() }
    }
    if (part === 0 && msg.event === 'window-end') {
      run.brokerCpuSeconds = cpuSeconds(broker.pid) - cpu0
      run.windowSeconds = (performance.now() - t0) / 1000
      const b = coreSeconds(BROKER_CORE)
      const l = coreSeconds(LOADGEN_CORE)
      const self = process.cpuUsage(c0.self)
      run.cores = { brokerCoreBusy: b.busy - c0.b.busy, loadgenCoreBusy: l.busy - c0.l.busy, orchestrator: (self.user + self.system) / 1e6, steal: b.steal - c0.b.steal + l.steal - c0.l.steal }
    }
    // Fan-out split: what part 0's publisher sent, for the other parts' drain.
    if (part === 0 && msg.event === 'sent') for (const c of children.slice(1)) c.stdin!.write(`sent ${String(msg.sentTotal)}\n`)
    if (msg.event === 'connected' && ++connected === parts) {
      if (onConnected === undefined) broadcast('release')
      else onConnected().then((v) => { run.atConnected = v; broadcast('release') }, () => broadcast('release'))
    }
    if (msg.event === 'result') { const { event: _e, ...rest } = msg; results[part] = rest as Result }
  }
  const exits = children.map((child, part) => new Promise<void>((resolve, reject) => {
    let err = ''
    child.stderr!.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-20000) })
    onLines(child.stdout!, (line) => {
      try { onEvent(part, JSON.parse(line) as Record<string, unknown>) } catch (e) { err += `\nbad line ${line.slice(0, 200)}: ${String(e)}` }
    })
    // 'close', not 'exit': 'exit' may come before the last stdout data was read, which lost the
    // result line (seen in CI: "exited 0" with no result).
    child.once('close', (code, signal) => {
      if (code !== 0 || results[part] === undefined) reject(new Error(`Go loadgen ${mode} part ${part}/${parts} ${JSON.stringify(job)} exited ${code ?? signal}: ${err}`))
      else resolve()
    })
  }))
  try {
    await Promise.all(exits)
  } catch (err) {
    killAll()
    await Promise.allSettled(exits)
    throw err
  } finally {
    clearTimeout(timer)
  }
  const merged = job.scenario === 'idle' ? mergeConnect(results) : mergeFlow(job.scenario, results)
  return { ...run, result: { ...merged, loadgen: 'go', generators: parts, loadgenCpuPercentByProcess: results.map((r) => r.loadgenCpuPercent) } as unknown as T & GeneratorFacts }
}

const num = (v: unknown): number => typeof v === 'number' ? v : 0
const sum = (rs: Result[], k: string): number => rs.reduce((a, r) => a + num(r[k]), 0)
const maxOf = (rs: Result[], k: string): number => Math.max(...rs.map((r) => num(r[k])))

/**
 * Percentile p of several processes' latencies, each given as evenly spaced quantiles and a
 * sample count: every quantile stands for samples/(quantiles) samples (accurate to about 0.1
 * percentile; exact for one process, whose p50/p99 are used as they are).
 */
export function mergedPercentile (parts: Array<{ samples: number, quantiles: number[] }>, p: number): number {
  const points: Array<[number, number]> = []
  for (const x of parts) for (const q of x.quantiles) points.push([q, x.samples / x.quantiles.length])
  if (points.length === 0) return 0
  points.sort((a, b) => a[0] - b[0])
  const total = points.reduce((a, [, w]) => a + w, 0)
  let acc = 0
  for (const [v, w] of points) { acc += w; if (acc >= p / 100 * total) return v }
  return points[points.length - 1]![0]
}

interface Latency { samples: number, p50: number, p99: number, max: number, mean: number, quantiles: number[] }

/** One flow result from the parts' results (sums of rates and totals; fan-out's expected from part 0's publisher). */
export function mergeFlow (scenario: string, rs: Result[]): Record<string, unknown> {
  if (rs.length === 1) return rs[0]!
  const delivered = sum(rs, 'deliveredTotal')
  // Fan-out: only part 0 publishes, to every part's subscribers.
  const expected = scenario === 'fanout' ? sum(rs, 'sentTotal') * sum(rs, 'countedSubscribers') : sum(rs, 'expectedTotal')
  const timelines = rs.map((r) => (r.timelinePerSecond as number[] | undefined) ?? [])
  const deliveredPerSecond = sum(rs, 'deliveredPerSecond')
  const out: Record<string, unknown> = {
    ...rs[0],
    seconds: maxOf(rs, 'seconds'),
    deliveredPerSecond,
    publishedPerSecond: sum(rs, 'publishedPerSecond'),
    ackedPerSecond: sum(rs, 'ackedPerSecond'),
    sentTotal: sum(rs, 'sentTotal'),
    ackedTotal: sum(rs, 'ackedTotal'),
    deliveredTotal: delivered,
    expectedTotal: expected,
    missing: expected - delivered,
    lost: sum(rs, 'lost'),
    drainComplete: delivered >= expected,
    drainSeconds: maxOf(rs, 'drainSeconds'),
    windowResets: sum(rs, 'windowResets'),
    // Paced fan-in: each part offers its publishers' share. Gaps and pauses: the worst part
    // (latencyPerSecond, latencyPeakPer100ms and sendLagMs stay part 0's).
    ...(rs[0]!.offeredPerSecond === undefined ? {} : { offeredPerSecond: sum(rs, 'offeredPerSecond') }),
    ...(rs[0]!.maxDeliveryGapMs === undefined ? {} : { maxDeliveryGapMs: maxOf(rs, 'maxDeliveryGapMs'), deliveryGapsOver1s: sum(rs, 'deliveryGapsOver1s'), maxPauseMs: maxOf(rs, 'maxPauseMs') }),
    // The processes share one core: their sum is how busy the generator core was.
    loadgenCpuPercent: sum(rs, 'loadgenCpuPercent'),
    timelinePerSecond: Array.from({ length: Math.max(...timelines.map((t) => t.length)) }, (_, i) => timelines.reduce((a, t) => a + (t[i] ?? 0), 0)),
    wireBytesPerDelivery: rs.reduce((a, r) => a + num(r.wireBytesPerDelivery) * num(r.deliveredPerSecond), 0) / Math.max(1, deliveredPerSecond),
    countedSubscribers: sum(rs, 'countedSubscribers'),
    part: undefined,
    parts: rs.length
  }
  if (rs[0]!.subscribers !== undefined) { out.subscribers = sum(rs, 'subscribers'); out.setupSeconds = maxOf(rs, 'setupSeconds') }
  const lats = rs.map((r) => r.latencyMs as Latency | undefined).filter((l): l is Latency => l !== undefined)
  if (lats.length > 0) {
    const samples = lats.reduce((a, l) => a + l.samples, 0)
    out.latencyMs = {
      samples,
      p50: mergedPercentile(lats, 50),
      p99: mergedPercentile(lats, 99),
      max: Math.max(...lats.map((l) => l.max)),
      mean: lats.reduce((a, l) => a + l.mean * l.samples, 0) / Math.max(1, samples)
    }
  }
  return out
}

/** One idle/connect result from the parts' results (they started together at the barrier). */
export function mergeConnect (rs: Result[]): Record<string, unknown> {
  if (rs.length === 1) return rs[0]!
  const errors: Record<string, number> = {}
  for (const r of rs) for (const [k, v] of Object.entries((r.errors as Record<string, number> | undefined) ?? {})) errors[k] = (errors[k] ?? 0) + v
  const seconds = maxOf(rs, 'seconds')
  const connected = sum(rs, 'connected')
  const lats = rs.map((r) => ({ samples: num(r.connected), quantiles: (r.connectQuantiles as number[] | undefined) ?? [] }))
  return {
    connected,
    failed: sum(rs, 'failed'),
    errors,
    stillOpenAtRelease: sum(rs, 'stillOpenAtRelease'),
    seconds,
    connectsPerSecond: connected / seconds,
    connectP50ms: mergedPercentile(lats, 50),
    connectP99ms: mergedPercentile(lats, 99),
    // CPU seconds of all parts over the longest part's connect phase: how busy the generator core was.
    loadgenCpuPercent: rs.reduce((a, r) => a + num(r.loadgenCpuPercent) * num(r.seconds), 0) / seconds,
    parts: rs.length
  }
}

/**
 * Generator-limited: the generator (all its processes together, as they share one core, or any
 * one of them) was at >= 90% of its core while the broker was under 90% of its own; the broker
 * was not driven to its limit, so a ratio against this row is not valid.
 */
export const GENERATOR_LIMIT = 90
export function generatorLimited (r: { loadgenCpuPercent: number, loadgenCpuPercentByProcess?: number[], brokerCpuPercent: number }): boolean {
  const gen = Math.max(r.loadgenCpuPercent, ...(r.loadgenCpuPercentByProcess ?? []))
  return gen >= GENERATOR_LIMIT && !(r.brokerCpuPercent >= GENERATOR_LIMIT)
}

/**
 * Why a row is generator-limited, or null:
 *  - 'cpu':  generatorLimited above;
 *  - 'cost': the broker was under 90% of its core and the generator spent at least 90% of the
 *    broker's CPU on the same operations over the same window, so on equal cores it would be
 *    saturated first (or together). On a shared machine
 *    other processes take both cores and neither gets near 90%, but CPU per operation barely moves:
 *    this catches what the first rule cannot see there.
 */
export type LimitedBy = 'cpu' | 'cost' | null
export const COST_LIMIT = 0.9
export function generatorLimit (r: { loadgenCpuPercent: number, loadgenCpuPercentByProcess?: number[], brokerCpuPercent: number }): LimitedBy {
  if (generatorLimited(r)) return 'cpu'
  // A broker at >= 90% of its core was at its limit, whatever the generator cost.
  if (r.brokerCpuPercent > 0 && r.brokerCpuPercent < GENERATOR_LIMIT && r.loadgenCpuPercent >= COST_LIMIT * r.brokerCpuPercent) return 'cost'
  return null
}
