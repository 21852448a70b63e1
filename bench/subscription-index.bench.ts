/**
 * Subscription matching for the local bus, side by side in one process:
 * qlobber 8 configured as mqemitter/Aedes do (one trie of Maps) vs SubscriptionIndex
 * (exact filters in 256 hash-sharded Maps, wildcards in a trie), at several numbers of
 * exact subscriptions. For each size and structure:
 *
 *  1. build: add every exact subscription plus the same 103 wildcard filters (Aedes' own
 *     `$SYS/+/...` three and 100 per-service ones); time, and the longest single add
 *     (a V8 Map rehashes all its entries in one go when it grows).
 *  2. memory per exact subscription: heapUsed after gc minus before, divided by the count.
 *     Topic strings are allocated before the baseline, so they count for neither; qlobber's
 *     figure includes the per-level word strings it splits off, SubscriptionIndex keeps a
 *     reference to the caller's string (Aedes keeps that string in the client's
 *     subscriptions anyway).
 *  3. match per publish: p50/p99 of single timed matches over fresh topic strings (as the
 *     MQTT parser makes them: no cached string hash): 85% subscribed device topics,
 *     10% unsubscribed, 5% matching a wildcard filter. Both structures must agree on the
 *     first 2,000.
 *  4. churn at 100k ops/s (half unsubscribe of a random live subscription, half subscribe of
 *     a new topic, so the size stays put) for a fixed time: the longest single op, p99.9,
 *     and the event-loop delay seen by a 1 ms-resolution monitor. Every phase also reports
 *     its longest GC pause, so a long op can be told apart from a collection.
 *
 * Run (after `npx tsc -p tsconfig.json`):
 *   node --expose-gc dist/bench/subscription-index.bench.js                    # 10k,100k,1m (~1-2 min)
 *   node --expose-gc --max-old-space-size=16384 dist/bench/subscription-index.bench.js 10m
 *   options: sizes as `10k 100k 1m 10m` (or comma-separated), --matches=100000, --churn-ms=2000,
 *            --structures=index (or qlobber) to run one structure only
 * --expose-gc is required (memory is measured after explicit collections).
 * Writes bench/results/subscription-index.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Qlobber } from 'qlobber'
import { SubscriptionIndex } from '../src/bus/subscription-index.js'
import { seededRandom } from '../test/helpers/seeded-random.js'

interface Matcher {
  add: (filter: string, value: number) => void
  remove: (filter: string, value: number) => void
  match: (topic: string) => number[]
}

interface Contender { name: string, create: () => Matcher }

const contenders: Contender[] = [
  {
    name: 'qlobber (mqemitter)',
    create: () => {
      const q = new Qlobber<number>({ match_empty_levels: true, separator: '/', wildcard_one: '+', wildcard_some: '#' })
      return { add: (f, v) => { q.add(f, v) }, remove: (f, v) => { q.remove(f, v) }, match: (t) => q.match(t) }
    }
  },
  {
    name: 'SubscriptionIndex',
    create: () => {
      const index = new SubscriptionIndex<number>()
      return { add: (f, v) => { index.add(f, v) }, remove: (f, v) => { index.remove(f, v) }, match: (t) => index.match(t) }
    }
  }
]

// ---- arguments --------------------------------------------------------------------------

function parseSize (text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text)
  if (m === null) throw new Error(`bad size ${text}: use e.g. 10k, 1m, 250000`)
  return Math.round(Number(m[1]) * (m[2]!.toLowerCase() === 'k' ? 1e3 : m[2]!.toLowerCase() === 'm' ? 1e6 : 1))
}

const args = process.argv.slice(2)
const option = (name: string, fallback: number): number => {
  const arg = args.find((a) => a.startsWith(`--${name}=`))
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3))
}
const sizeArgs = args.filter((a) => !a.startsWith('--')).flatMap((a) => a.split(',')).filter((a) => a !== '')
const SIZES = sizeArgs.length > 0 ? sizeArgs.map(parseSize) : [10_000, 100_000, 1_000_000]
const MATCHES = option('matches', 100_000)
const CHURN_MS = option('churn-ms', 2000)
const CHURN_RATE = 100_000 // ops per second
/** --structures=index (or qlobber): run only the structures whose name contains one of these (case-insensitive). */
const structuresArg = args.find((a) => a.startsWith('--structures='))?.slice('--structures='.length).toLowerCase().split(',')
const selected = structuresArg === undefined ? contenders : contenders.filter((c) => structuresArg.some((name) => c.name.toLowerCase().includes(name)))
if (selected.length === 0) throw new Error(`--structures matches none of: ${contenders.map((c) => c.name).join(', ')}`)
const WARMUP_MATCHES = 20_000

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) {
  process.stderr.write('run with --expose-gc: node --expose-gc [--max-old-space-size=16384] dist/bench/subscription-index.bench.js [sizes]\n')
  process.exit(1)
}
const collect = (): void => { gc(); gc() }

// ---- workload ---------------------------------------------------------------------------


/** A flat copy with no cached hash, like a topic the MQTT parser has just decoded. */
const fresh = (s: string): string => Buffer.from(s, 'latin1').toString('latin1')

/** Per-device topic, as a gateway's device command channel: `dev/<12 hex>/cmd`. */
const deviceTopic = (i: number): string => fresh(`dev/${(Math.imul(i, 0x9e3779b1) >>> 0).toString(16).padStart(8, '0')}${(i >>> 0).toString(16).padStart(4, '0').slice(-4)}/cmd`)

const WILDCARD_GROUPS = 50
const wildcardFilters = (): string[] => [
  '$SYS/+/heartbeat', '$SYS/+/birth', '$SYS/+/new/clients', // what Aedes subscribes itself
  ...Array.from({ length: WILDCARD_GROUPS }, (_, k) => `svc${k}/+/status`),
  ...Array.from({ length: WILDCARD_GROUPS }, (_, k) => `alerts/svc${k}/#`)
]

function publishTopics (count: number, deviceTopics: string[], random: () => number): string[] {
  const out = new Array<string>(count)
  for (let i = 0; i < count; i++) {
    const r = random()
    if (r < 0.85) out[i] = fresh(deviceTopics[Math.floor(random() * deviceTopics.length)]!)
    else if (r < 0.95) out[i] = deviceTopic(deviceTopics.length + Math.floor(random() * 1e9))
    else out[i] = fresh(`svc${Math.floor(random() * WILDCARD_GROUPS)}/dev${Math.floor(random() * 1000)}/status`)
  }
  return out
}

// ---- measurement helpers ----------------------------------------------------------------

const nowNs = (): bigint => process.hrtime.bigint()

function quantile (sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** Longest GC pause (ms) seen between start() and stop(). */
class GcWatch {
  private maxMs = 0
  private readonly observer = new PerformanceObserver((list) => { for (const e of list.getEntries()) this.maxMs = Math.max(this.maxMs, e.duration) })
  start (): void { this.maxMs = 0; this.observer.observe({ entryTypes: ['gc'] }) }
  async stop (): Promise<number> {
    await sleep(5) // GC entries are queued; let them arrive
    for (const e of this.observer.takeRecords()) this.maxMs = Math.max(this.maxMs, e.duration)
    this.observer.disconnect()
    return this.maxMs
  }
}

interface Result {
  subscriptions: number
  structure: string
  buildSeconds: number
  bytesPerSubscription: number
  buildMaxOpMs: number
  buildMaxGcMs: number
  matchP50Ns: number
  matchP99Ns: number
  matchMeanNs: number
  churnOps: number
  churnMaxOpMs: number
  churnP999Us: number
  churnEventLoopMaxMs: number
  churnMaxGcMs: number
}

async function runOne (contender: Contender, deviceTopics: string[], probe: string[], checkTopics: string[], expected: string[] | undefined): Promise<{ result: Omit<Result, 'subscriptions'>, answers: string[] }> {
  const n = deviceTopics.length
  const wildcards = wildcardFilters()
  const gcWatch = new GcWatch()
  collect()
  const heapBefore = process.memoryUsage().heapUsed

  // 1. build
  let matcher: Matcher | undefined = contender.create()
  gcWatch.start()
  let buildMaxNs = 0n
  const buildStart = nowNs()
  for (let i = 0; i < n; i++) {
    const t0 = nowNs()
    matcher.add(deviceTopics[i]!, i)
    const dt = nowNs() - t0
    if (dt > buildMaxNs) buildMaxNs = dt
  }
  for (const [k, filter] of wildcards.entries()) matcher.add(filter, n + k)
  const buildSeconds = Number(nowNs() - buildStart) / 1e9
  const buildMaxGcMs = await gcWatch.stop()

  // 2. memory
  collect()
  const bytesPerSubscription = (process.memoryUsage().heapUsed - heapBefore) / n

  // Both structures must give the same answers (as multisets).
  const answers = checkTopics.map((t) => matcher!.match(t).sort((a, b) => a - b).join(','))
  if (expected !== undefined) {
    const bad = answers.findIndex((a, i) => a !== expected[i])
    if (bad >= 0) throw new Error(`${contender.name} disagrees on ${checkTopics[bad]}: ${answers[bad]} vs ${expected[bad]}`)
  }

  // 3. match per publish
  for (let i = 0; i < WARMUP_MATCHES; i++) matcher.match(probe[i % probe.length]!)
  const timed = probe.slice(0, MATCHES).map(fresh)
  const samples = new Float64Array(timed.length)
  let matched = 0
  for (let i = 0; i < timed.length; i++) {
    const t0 = nowNs()
    matched += matcher.match(timed[i]!).length
    samples[i] = Number(nowNs() - t0)
  }
  samples.sort()
  // Mean without the timer in the loop (the timer itself costs tens of ns).
  const untimed = probe.slice(0, MATCHES).map(fresh)
  const loopStart = nowNs()
  for (const t of untimed) matched += matcher.match(t).length
  const matchMeanNs = Number(nowNs() - loopStart) / untimed.length
  if (matched === 0) throw new Error('nothing matched: the workload is wrong')

  // 4. churn: remove a random live subscription, subscribe a new topic in its place.
  const random = seededRandom(99)
  const liveTopics = deviceTopics.slice()
  const liveValues = Int32Array.from({ length: n }, (_, i) => i)
  const pairs = Math.ceil(CHURN_RATE * CHURN_MS / 1000 / 2)
  const newTopics = Array.from({ length: pairs }, (_, i) => deviceTopic(2e9 + i))
  const opSamples = new Float64Array(pairs * 2)
  let ops = 0
  let pairIndex = 0
  const loopDelay = monitorEventLoopDelay({ resolution: 1 })
  collect()
  gcWatch.start()
  loopDelay.enable()
  const churnStart = performance.now()
  while (pairIndex < pairs && performance.now() - churnStart < CHURN_MS * 3) {
    // Catch up to the target rate, then yield to the event loop for a millisecond.
    const due = Math.min(pairs, Math.floor((performance.now() - churnStart) / 1000 * CHURN_RATE / 2))
    while (pairIndex < due) {
      const slot = Math.floor(random() * n)
      const removeTopic = fresh(liveTopics[slot]!) // an UNSUBSCRIBE brings its own string
      const addTopic = newTopics[pairIndex]!
      const value = n + WILDCARD_GROUPS * 2 + 3 + pairIndex
      let t0 = nowNs()
      matcher.remove(removeTopic, liveValues[slot]!)
      opSamples[ops++] = Number(nowNs() - t0)
      t0 = nowNs()
      matcher.add(addTopic, value)
      opSamples[ops++] = Number(nowNs() - t0)
      liveTopics[slot] = addTopic
      liveValues[slot] = value
      pairIndex++
    }
    await sleep(1)
  }
  loopDelay.disable()
  const churnMaxGcMs = await gcWatch.stop()
  const churnSamples = opSamples.subarray(0, ops).sort()

  matcher = undefined // drop it before the next structure is measured
  collect()
  return {
    answers,
    result: {
      structure: contender.name,
      buildSeconds,
      bytesPerSubscription,
      buildMaxOpMs: Number(buildMaxNs) / 1e6,
      buildMaxGcMs,
      matchP50Ns: quantile(samples, 0.5),
      matchP99Ns: quantile(samples, 0.99),
      matchMeanNs,
      churnOps: ops,
      churnMaxOpMs: (churnSamples[churnSamples.length - 1] ?? 0) / 1e6,
      churnP999Us: quantile(churnSamples, 0.999) / 1e3,
      churnEventLoopMaxMs: loopDelay.max / 1e6,
      churnMaxGcMs
    }
  }
}

/**
 * What a correct matcher answers for `checkTopics` (values sorted, as runOne formats them),
 * from a qlobber holding only the subscriptions that can match them: every wildcard filter and
 * the exact filters equal to a checked topic. Independent of the size under test, so the
 * answers are checked even where qlobber itself cannot hold all subscriptions.
 */
function referenceAnswers (deviceTopics: string[], checkTopics: string[]): string[] {
  const reference = new Qlobber<number>({ match_empty_levels: true, separator: '/', wildcard_one: '+', wildcard_some: '#' })
  const checked = new Set(checkTopics)
  for (let i = 0; i < deviceTopics.length; i++) {
    if (checked.has(deviceTopics[i]!)) reference.add(deviceTopics[i]!, i)
  }
  for (const [k, filter] of wildcardFilters().entries()) reference.add(filter, deviceTopics.length + k)
  return checkTopics.map((t) => reference.match(t).sort((a, b) => a - b).join(','))
}

// ---- report -----------------------------------------------------------------------------

function printTable (title: string, rows: Array<Record<string, string | number>>): void {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))]
  const cell = (v: string | number | undefined): string => typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)) : (v ?? '')
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)))
  const line = (values: string[]): string => values.map((v, i) => v.padStart(widths[i]!)).join('  ')
  process.stdout.write(`\n${title}\n${line(columns)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`)
  for (const r of rows) process.stdout.write(line(columns.map((c) => cell(r[c]))) + '\n')
}

function row (r: Result): Record<string, string | number> {
  return {
    subs: r.subscriptions.toLocaleString('en'),
    structure: r.structure,
    'build s': r.buildSeconds,
    'B/sub': r.bytesPerSubscription,
    'build max op ms': r.buildMaxOpMs,
    'build max GC ms': r.buildMaxGcMs,
    'match p50 ns': r.matchP50Ns,
    'match p99 ns': r.matchP99Ns,
    'match mean ns': r.matchMeanNs,
    'churn max op ms': r.churnMaxOpMs,
    'churn p99.9 µs': r.churnP999Us,
    'churn loop delay max ms': r.churnEventLoopMaxMs,
    'churn max GC ms': r.churnMaxGcMs
  }
}

function ratioRow (q: Result, s: Result): Record<string, string | number> {
  const ratio = (a: number, b: number): string => b === 0 ? '-' : `${(a / b).toFixed(2)}x`
  return {
    subs: s.subscriptions.toLocaleString('en'),
    structure: 'index / qlobber',
    'build s': ratio(s.buildSeconds, q.buildSeconds),
    'B/sub': ratio(s.bytesPerSubscription, q.bytesPerSubscription),
    'build max op ms': ratio(s.buildMaxOpMs, q.buildMaxOpMs),
    'build max GC ms': ratio(s.buildMaxGcMs, q.buildMaxGcMs),
    'match p50 ns': ratio(s.matchP50Ns, q.matchP50Ns),
    'match p99 ns': ratio(s.matchP99Ns, q.matchP99Ns),
    'match mean ns': ratio(s.matchMeanNs, q.matchMeanNs),
    'churn max op ms': ratio(s.churnMaxOpMs, q.churnMaxOpMs),
    'churn p99.9 µs': ratio(s.churnP999Us, q.churnP999Us),
    'churn loop delay max ms': ratio(s.churnEventLoopMaxMs, q.churnEventLoopMaxMs),
    'churn max GC ms': ratio(s.churnMaxGcMs, q.churnMaxGcMs)
  }
}

async function main (): Promise<void> {
  process.stdout.write(`subscription index bench: sizes ${SIZES.join(', ')}; ${MATCHES} timed matches; churn ${CHURN_RATE} ops/s for ${CHURN_MS} ms; node ${process.version}\n`)
  const results: Result[] = []
  const failures: Array<{ subscriptions: number, structure: string, error: string }> = []
  const rows: Array<Record<string, string | number>> = []
  for (const n of SIZES) {
    const deviceTopics = Array.from({ length: n }, (_, i) => deviceTopic(i))
    const random = seededRandom(n)
    const probe = publishTopics(Math.max(MATCHES, WARMUP_MATCHES), deviceTopics, random)
    const checkTopics = probe.slice(0, 2000)
    const expected = referenceAnswers(deviceTopics, checkTopics)
    const pair: Array<Result | undefined> = []
    for (const contender of selected) {
      const started = Date.now()
      try {
        const { result } = await runOne(contender, deviceTopics, probe, checkTopics, expected)
        const full: Result = { subscriptions: n, ...result }
        pair.push(full)
        results.push(full)
        rows.push(row(full))
        process.stderr.write(`  ${n.toLocaleString('en')} ${contender.name}: ${((Date.now() - started) / 1000).toFixed(1)} s, heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB after release\n`)
      } catch (err) {
        // A structure that cannot hold this many subscriptions is a result, not the end of the run
        // (qlobber keeps all children of one level in one Map: beyond 2^24 it throws).
        const message = (err as Error).message
        pair.push(undefined)
        failures.push({ subscriptions: n, structure: contender.name, error: message })
        rows.push({ subs: n.toLocaleString('en'), structure: contender.name, error: message })
        process.stderr.write(`  ${n.toLocaleString('en')} ${contender.name}: FAILED after ${((Date.now() - started) / 1000).toFixed(1)} s: ${message}\n`)
        // Gigabytes of garbage: let the collector finish sweeping before the next structure's
        // memory baseline (measured here: without the pause the baseline still counted it).
        collect()
        await sleep(3000)
        collect()
      }
    }
    if (pair[0] !== undefined && pair[1] !== undefined) rows.push(ratioRow(pair[0], pair[1]))
  }
  printTable('subscription index: qlobber (mqemitter) vs SubscriptionIndex (256 shards), exact subscriptions + 103 wildcard filters', rows)
  mkdirSync('bench/results', { recursive: true })
  const file = join('bench/results', 'subscription-index.json')
  writeFileSync(file, JSON.stringify({
    name: 'subscription-index',
    when: new Date().toISOString(),
    node: process.version,
    settings: { sizes: SIZES, matches: MATCHES, churnMs: CHURN_MS, churnRate: CHURN_RATE, shards: 256, wildcardFilters: wildcardFilters().length },
    results,
    failures
  }, null, 2))
  process.stdout.write(`\nwritten ${file}\n`)
}

await main()
