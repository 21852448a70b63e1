/**
 * Side-by-side: the gateway (CLI, memory mode, log level warn) vs plain Aedes 1.2.0 (default
 * options) vs Mosquitto 2.0, the same scenarios one broker after another in one run.
 *
 *   node dist/bench/compare.bench.js                       every scenario, every broker
 *   node dist/bench/compare.bench.js fanin qos1            chosen scenarios
 *   node dist/bench/compare.bench.js idle --brokers=gateway,mosquitto
 *   node dist/bench/compare.bench.js idle --brokers=gateway,node-floor,mosquitto   with the Node floor (bench/node-floor.ts)
 *   node dist/bench/compare.bench.js --rounds=3                each broker run 3 times (interleaved), median reported
 *   node dist/bench/compare.bench.js --retries=0               keep runs disturbed by other processes (default: retry twice)
 *   node dist/bench/compare.bench.js --loadgen=node            the Node load generator instead of the Go one (default go)
 *   node dist/bench/compare.bench.js --generators=2            the Go generator as 2 processes sharing each job
 *
 * Each broker is a separate process pinned to core 1 (taskset), started fresh for every scenario
 * run; the load generator is a separate process (or several) pinned to core 0, as is this process:
 * by default the Go generator (bench/loadgen-go, modes compare-fanin, compare-qos1, compare-fanout,
 * compare-connect, built by scripts/loadgen.sh; bench/generators.ts runs and merges it), which
 * costs a fraction of the Node one (bench/loadgen-scenarios.ts: raw MQTT over net sockets,
 * pre-encoded PUBLISH batches, closed-loop windows) per message; both have the same job semantics
 * and result fields. frozen and the WebSocket scenarios always run on the Node generator.
 * A row is flagged "generator-limited: ratio not valid" (table, ratio rows, notes, JSON) when the
 * generator (all its processes together, or any one) was at >= 90% of its core while the broker
 * was under 90% of its own (cpu), or when the broker was under 90% and the generator spent at least
 * 90% of the broker's CPU per operation (cost: on equal cores the generator would be the limit;
 * see bench/generators.ts generatorLimit): the broker was not driven to its limit.
 * Everything is on 127.0.0.1 with free ports. Prints one table per scenario with absolute numbers
 * and the gateway/aedes and gateway/mosquitto ratios, and writes bench/results/compare.json.
 *
 * Scenarios:
 *  fanin   10 publishers -> 1 subscriber of bench/fanin/#, QoS 0, 100-byte payloads: delivered msgs/s
 *  qos1    10 publisher/subscriber pairs on distinct topics, QoS 1 both ways, 32 in flight per
 *          publisher: msgs/s, end-to-end p50/p99 latency (timestamp in the payload)
 *  fanout  1 publisher -> 1,000 subscribers of one topic, QoS 0: deliveries/s
 *  idle    10,000 connected clients (keepalive 60): broker RSS per connection, connects/s
 *  frozen  50 healthy QoS 1 subscribers + 1 that stops reading its socket, one QoS 1 publisher:
 *          healthy deliveries/s with the frozen client vs the same run without it
 *  fanin-90 the fan-in paced at 90 % of the broker's measured maximum: latency p50/p99/max, longest
 *          time a publisher went without a delivery, where the tail waited in the kernel (bench/compare-fair.ts)
 *  fanin-80 the same at 80 % (only when named: not part of the default run)
 *  fanin-ws, qos1-ws, fanout-ws  the same three over WebSocket: gateway ws vs gateway tcp vs plain
 *          Aedes ws, with p99 latency, wire bytes and frames per message (bench/compare-ws.ts)
 *
 * Load generation is closed-loop: a publisher runs at most `window` messages ahead of its slowest
 * (healthy) subscriber, and at QoS 1 also at most `inflight` without PUBACK ("in flight" = not yet
 * both acknowledged and received). Windows are large enough (fan-in 2,000 per publisher, fan-out
 * 500 per subscriber) that brokers which keep Nagle on (all three by default here) are not
 * stalled by delayed ACKs. Each flow scenario has a warm-up
 * (1.5 s, not counted), a fixed window, then a bounded drain that checks every message arrived.
 * "missing" counts messages that never arrived (gaps in per-publisher sequence numbers, and after
 * the drain whatever is still absent); "1 s stalls" counts the times a publisher, blocked on its
 * window, saw none of its messages delivered for a whole second (the generator then reopens the
 * window in case they were dropped; with "missing" 0 they were only late).
 * Per row: the broker's CPU over the window (from /proc/PID/stat), the load generator's own CPU
 * (a value near 100% means the generator may be the limit) and "other CPU % b/l": CPU that other
 * processes on the machine took on the broker / load generator core during the window (from
 * /proc/stat). Before each run the harness waits (briefly, bounded) for both cores to be idle; a
 * run where others took >= 10% of the broker's core (or of a saturated generator core) is
 * repeated up to --retries times within a time budget, and flagged in a note if still disturbed.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { BROKERS, BROKER_CORE, KNOWN_BROKERS, FD_LIMIT, MOSQUITTO, coreSeconds, cpuSeconds, cpusAllowed, fdLimitOf, mosquittoConfig, pinSelf, rssKiB, startBroker, type BrokerName, type LoadgenRun, type RunningBroker } from './brokers.js'
import { COST_LIMIT, GO_MODES, generatorLimit, runGenerators, type LimitedBy, type GeneratorChoice, type GeneratorFacts } from './generators.js'
import { fairScenarios } from './compare-fair.js'
import { wsScenarios, type WsPeer, type WsScenario } from './compare-ws.js'
import type { FaninJob, FanoutJob, FrozenJob, IdleJob, Qos1Job } from './loadgen-scenarios.js'

type Row = Record<string, string | number>
interface FlowResult {
  seconds: number, deliveredPerSecond: number, publishedPerSecond: number, ackedPerSecond: number
  sentTotal: number, deliveredTotal: number, expectedTotal: number, missing: number, lost: number, drainComplete: boolean, drainSeconds: number, windowResets: number
  loadgenCpuPercent: number, timelinePerSecond: number[]
  latencyMs?: { samples: number, p50: number, p99: number, max: number, mean: number }
  /** Longest time in the window a publisher went without a delivery at a counted subscriber. */
  maxDeliveryGapMs?: number, deliveryGapsOver1s?: number, offeredPerSecond?: number
  /** Longest time in the window without any delivery (a pause of the whole broker or machine). */
  maxPauseMs?: number
  frozenClosedByBrokerAfterMs?: number | null, setupSeconds?: number
  wireBytesPerDelivery?: number, framesPerDelivery?: number | null
}
/**
 * CPU microseconds per operation (delivery; connect in idle) of the broker and of the load
 * generator. Unlike CPU %, barely moved by other processes taking the cores: where the
 * generator's cost is well under the broker's, the generator can drive the broker to its limit
 * on an equal core.
 */
interface CpuPerOp { broker: number, loadgen: number }
const cpuPerOp = (brokerCpuPercent: number, loadgenCpuPercent: number, opsPerSecond: number): CpuPerOp =>
  ({ broker: brokerCpuPercent / 100 / opsPerSecond * 1e6, loadgen: loadgenCpuPercent / 100 / opsPerSecond * 1e6 })

/** The load generator of this run (--loadgen, --generators). */
let generator: GeneratorChoice = { kind: 'go', processes: 1 }

interface IdleResult { connected: number, failed: number, errors: Record<string, number>, seconds: number, connectsPerSecond: number, connectP50ms: number, connectP99ms: number, loadgenCpuPercent: number, stillOpenAtRelease: number }
/** A flow run with what was measured around it. */
type FlowRun = FlowResult & GeneratorFacts & { generatorLimited: boolean, generatorLimitedBy: LimitedBy, cpuMicrosPerOp: CpuPerOp, brokerCpuPercent: number, otherCpuBrokerCore: number, otherCpuLoadgenCore: number, stealPercent: number, brokerCpus: string, brokerFdLimit: string }
/** One broker's run of a scenario: its table row, raw data and notes; `primary` picks the median round. */
interface Measured { row: Row, raw: unknown, notes: string[], primary: number, disturbed: boolean }
interface Scenario { title: string, ratioColumns: string[], runOnce: (name: BrokerName) => Promise<Measured> }

const PAYLOAD = 100
const FROZEN_NONE_MS = 10000
const FROZEN_MS = 20000
const FLOW = { warmupMs: 1500, windowMs: 6000, drainMs: 3000, payloadBytes: PAYLOAD, timeLimitMs: 90000 }
/** Above this, a note says the number may be bounded by the load generator or disturbed by other processes. */
const SATURATED = 85
/** Retries of disturbed runs stop once the whole run is this old, to stay near 10 minutes. */
const RETRY_BUDGET_MS = 7 * 60 * 1000
const DISTURBED = 10

/**
 * Lost messages: gaps in the per-publisher sequences (certain), plus, when the drain after the
 * window completed, whatever never arrived. "(drain cut)": the drain cap passed with deliveries
 * still outstanding, so only the gaps are certain.
 */
const missing = (r: FlowResult): string | number => r.drainComplete ? r.missing : `${r.lost} (drain cut, ${r.missing} pending)`

/** Notes when the load generator is near saturation or other processes took CPU during the window. */
function checks (name: string, r: { loadgenCpuPercent: number, otherCpuBrokerCore?: number, otherCpuLoadgenCore?: number, generatorLimitedBy?: LimitedBy, brokerCpuPercent?: number }, what = ''): string[] {
  const notes: string[] = []
  const cpu = `load generator at ${r.loadgenCpuPercent.toFixed(0)}% of its core, broker at ${(r.brokerCpuPercent ?? NaN).toFixed(0)}% of its own`
  if (r.generatorLimitedBy === 'cpu') notes.push(`${name}${what}: generator-limited: ratio not valid (${cpu})`)
  if (r.generatorLimitedBy === 'cost') notes.push(`${name}${what}: generator-limited (cost): ratio not valid (${cpu}: the generator spent at least ${COST_LIMIT * 100}% of the broker's CPU on the same operations, so on equal cores it would be the limit)`)
  if (r.loadgenCpuPercent >= SATURATED) notes.push(`${name}${what}: load generator at ${r.loadgenCpuPercent.toFixed(0)}% of its core: the number may be bounded by the generator`)
  if ((r.otherCpuBrokerCore ?? 0) >= DISTURBED) notes.push(`${name}${what}: other processes used ${r.otherCpuBrokerCore!.toFixed(0)}% of the broker's core during the window: the number is disturbed`)
  if ((r.otherCpuLoadgenCore ?? 0) >= DISTURBED && (r.otherCpuLoadgenCore ?? 0) + r.loadgenCpuPercent >= 90) notes.push(`${name}${what}: other processes used ${r.otherCpuLoadgenCore!.toFixed(0)}% of the load generator's core, which was saturated: the generator may have been slowed`)
  return notes
}

/**
 * Disturbed: other processes took >= 10% of the broker's core, or of the load generator's core
 * while that core was saturated (other work on a core the generator left idle costs it nothing:
 * the scheduler moves unpinned processes to whichever core has room).
 */
const disturbed = (r: { otherCpuBrokerCore?: number, otherCpuLoadgenCore?: number, loadgenCpuPercent: number }): boolean =>
  (r.otherCpuBrokerCore ?? 0) >= DISTURBED ||
  ((r.otherCpuLoadgenCore ?? 0) >= DISTURBED && (r.otherCpuLoadgenCore ?? 0) + r.loadgenCpuPercent >= 90)

/**
 * Waits (at most maxMs) until both cores were under DISTURBED % busy for one second: other work
 * on the machine (tests, builds) would otherwise share the broker's or the generator's core.
 * Returns the last busy percentages seen.
 */
async function waitQuiet (maxMs: number): Promise<{ quiet: boolean, busy: number[] }> {
  const deadline = Date.now() + maxMs
  let busy: number[] = []
  for (;;) {
    const a = [coreSeconds(0).busy, coreSeconds(1).busy]
    const t = performance.now()
    await sleep(1000)
    const secs = (performance.now() - t) / 1000
    busy = [coreSeconds(0).busy - a[0]!, coreSeconds(1).busy - a[1]!].map((b) => b / secs * 100)
    if (busy.every((b) => b < DISTURBED)) return { quiet: true, busy }
    if (Date.now() > deadline) return { quiet: false, busy }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const pct = (part: number | undefined, seconds: number | undefined): number => part !== undefined && seconds ? Math.max(0, part / seconds * 100) : NaN

/** Starts `name`, runs `body`, always stops the broker; fails if the broker died meanwhile. */
async function onBroker<T> (name: BrokerName, body: (b: RunningBroker) => Promise<T>): Promise<T> {
  const broker = await startBroker(name)
  try {
    const value = await body(broker)
    if (broker.child.exitCode !== null || broker.child.signalCode !== null) throw new Error(`broker died during the run: ${broker.output()}`)
    return value
  } finally {
    await broker.stop()
  }
}

/** onBroker, with the broker's pinning facts beside the body's value. */
async function withBroker<T> (name: BrokerName, body: (b: RunningBroker) => Promise<T>): Promise<T & { brokerCpus: string, brokerFdLimit: string }> {
  return onBroker(name, async (broker) => ({ ...await body(broker), brokerCpus: cpusAllowed(broker.pid), brokerFdLimit: fdLimitOf(broker.pid) }))
}

/** One generator run on a running broker, with the broker's CPU and the cores' other load over its window. */
async function measureFlow<J extends { timeLimitMs: number }> (broker: RunningBroker, job: (port: number, broker: RunningBroker) => J): Promise<FlowRun> {
  const run: LoadgenRun<FlowResult & GeneratorFacts> = await runGenerators<FlowResult>(job(broker.port, broker) as J & { scenario: string }, broker, generator)
  const w = run.windowSeconds
  const c = run.cores
  const loadgenSeconds = run.result.loadgenCpuPercent / 100 * run.result.seconds
  const brokerCpuPercent = pct(run.brokerCpuSeconds, w)
  return {
    ...run.result,
    ...limited(generatorLimit({ ...run.result, brokerCpuPercent })),
    cpuMicrosPerOp: cpuPerOp(brokerCpuPercent, run.result.loadgenCpuPercent, run.result.deliveredPerSecond),
    brokerCpuPercent,
    otherCpuBrokerCore: c === undefined || run.brokerCpuSeconds === undefined ? NaN : pct(c.brokerCoreBusy - run.brokerCpuSeconds, w),
    otherCpuLoadgenCore: c === undefined ? NaN : pct(c.loadgenCoreBusy - loadgenSeconds - c.orchestrator, w),
    stealPercent: pct(c?.steal, w),
    brokerCpus: cpusAllowed(broker.pid),
    brokerFdLimit: fdLimitOf(broker.pid)
  }
}

/** A fresh broker process for one generator run. */
async function flowRun<J extends { timeLimitMs: number }> (name: BrokerName, job: (port: number, broker: RunningBroker) => J): Promise<FlowRun> {
  return flowRunsOnOneBroker(name, (run) => run(job))
}

/**
 * Several generator runs, one after the other, on one broker process (fanin-90: the paced run on
 * the process whose maximum was just measured, so a JIT-compiled runtime is measured warm).
 */
async function flowRunsOnOneBroker<T> (name: BrokerName, body: (run: <J extends { timeLimitMs: number }>(job: (port: number, broker: RunningBroker) => J) => Promise<FlowRun>) => Promise<T>): Promise<T> {
  return onBroker(name, (broker) => body((job) => measureFlow(broker, job)))
}

/** Columns every flow row ends with. */
const diag = (r: FlowRun): Row => ({ 'max gap ms': r.maxDeliveryGapMs ?? NaN, 'max pause ms': r.maxPauseMs ?? NaN, 'broker CPU %': r.brokerCpuPercent, 'loadgen CPU %': r.loadgenCpuPercent, 'other CPU % b/l': `${r.otherCpuBrokerCore.toFixed(0)}/${r.otherCpuLoadgenCore.toFixed(0)}`, ...genColumns(r) })

/** Which generator ran the row, and the flag that voids its ratios. */
/** The JSON fields of the flag: generatorLimited (either rule) and which rule. */
const limited = (by: LimitedBy): { generatorLimited: boolean, generatorLimitedBy: LimitedBy } => ({ generatorLimited: by !== null, generatorLimitedBy: by })

const genColumns = (r: GeneratorFacts & { generatorLimitedBy: LimitedBy, cpuMicrosPerOp: CpuPerOp }): Row => ({
  'CPU µs/op b/l': `${r.cpuMicrosPerOp.broker.toFixed(2)}/${r.cpuMicrosPerOp.loadgen.toFixed(2)}`,
  loadgen: r.generators > 1 ? `${r.loadgen} x${r.generators}` : r.loadgen,
  'generator-limited': r.generatorLimitedBy === null ? 'no' : `YES (${r.generatorLimitedBy}): ratio not valid`
})

// The flow jobs, shared with their WebSocket variants (bench/compare-ws.ts).
const faninJob = (port: number): FaninJob => ({ scenario: 'fanin', port, publishers: 10, window: 2000, batch: 100, ...FLOW })
const qos1Job = (port: number): Qos1Job => ({ scenario: 'qos1', port, pairs: 10, inflight: 32, ...FLOW })
const fanoutJob = (port: number): FanoutJob => ({ scenario: 'fanout', port, subscribers: 1000, window: 500, batch: 20, connectConcurrency: 100, ...FLOW, drainMs: 10000 })

const scenarios: Record<string, Scenario> = {
  fanin: {
    title: `fan-in QoS 0: 10 publishers -> 1 subscriber of bench/fanin/#, ${PAYLOAD}-byte payloads, ${FLOW.windowMs / 1000} s window`,
    ratioColumns: ['delivered msgs/s'],
    runOnce: async (name) => {
      const r = await flowRun(name, faninJob)
      return { raw: r, notes: checks(name, r), primary: r.deliveredPerSecond, disturbed: disturbed(r), row: { broker: name, 'delivered msgs/s': r.deliveredPerSecond, 'published msgs/s': r.publishedPerSecond, missing: missing(r), '1 s stalls': r.windowResets, ...diag(r) } }
    }
  },
  qos1: {
    title: `QoS 1 one-to-one: 10 publisher/subscriber pairs, distinct topics, 32 in flight per publisher, ${PAYLOAD}-byte payloads, ${FLOW.windowMs / 1000} s window`,
    ratioColumns: ['msgs/s', 'p50 ms', 'p99 ms'],
    runOnce: async (name) => {
      const r = await flowRun(name, qos1Job)
      return { raw: r, notes: checks(name, r), primary: r.deliveredPerSecond, disturbed: disturbed(r), row: { broker: name, 'msgs/s': r.deliveredPerSecond, 'p50 ms': r.latencyMs?.p50 ?? NaN, 'p99 ms': r.latencyMs?.p99 ?? NaN, 'max ms': r.latencyMs?.max ?? NaN, missing: missing(r), '1 s stalls': r.windowResets, ...diag(r) } }
    }
  },
  fanout: {
    title: `fan-out QoS 0: 1 publisher -> 1,000 subscribers of one topic, ${PAYLOAD}-byte payloads, ${FLOW.windowMs / 1000} s window`,
    ratioColumns: ['deliveries/s'],
    runOnce: async (name) => {
      const r = await flowRun(name, fanoutJob)
      const notes = checks(name, r)
      notes.push(`${name}: deliveries per second of the window (k): ${r.timelinePerSecond.map((v) => (v / 1000).toFixed(0)).join(' ')}`)
      return { raw: r, notes, primary: r.deliveredPerSecond, disturbed: disturbed(r), row: { broker: name, 'deliveries/s': r.deliveredPerSecond, 'published msgs/s': r.publishedPerSecond, missing: missing(r), '1 s stalls': r.windowResets, ...diag(r) } }
    }
  },
  idle: {
    title: 'idle connections: 10,000 clients, keepalive 60, 100 CONNECTs in flight',
    ratioColumns: ['connects/s', 'RSS KiB/conn'],
    runOnce: async (name) => {
      const r = await withBroker(name, async (broker) => {
        await sleep(500)
        const rssBefore = rssKiB(broker.pid)
        const cpuBefore = cpuSeconds(broker.pid)
        const coreBefore = coreSeconds(BROKER_CORE).busy
        const job: IdleJob = { scenario: 'idle', port: broker.port, clients: 10000, concurrency: 100, keepalive: 60, holdMs: 30000, timeLimitMs: 120000 }
        const run = await runGenerators<IdleResult>(job, broker, generator, async () => {
          const cpuConnect = cpuSeconds(broker.pid) - cpuBefore
          const otherConnect = coreSeconds(BROKER_CORE).busy - coreBefore - cpuConnect
          await sleep(1000) // let the broker settle with every connection open
          return { rssAfter: rssKiB(broker.pid), cpuConnect, otherConnect }
        })
        const rssAfter = run.atConnected?.rssAfter ?? NaN
        const brokerCpuPercent = pct(run.atConnected?.cpuConnect, run.result.seconds)
        return {
          ...run.result,
          rssBeforeKiB: rssBefore,
          rssAfterKiB: rssAfter,
          rssPerConnKiB: (rssAfter - rssBefore) / run.result.connected,
          ...limited(generatorLimit({ ...run.result, brokerCpuPercent })),
          cpuMicrosPerOp: cpuPerOp(brokerCpuPercent, run.result.loadgenCpuPercent, run.result.connectsPerSecond),
          brokerCpuPercent,
          otherCpuBrokerCore: pct(run.atConnected?.otherConnect, run.result.seconds)
        }
      })
      const notes = checks(name, r)
      if (r.failed > 0) notes.push(`${name}: ${r.failed} CONNECTs failed: ${JSON.stringify(r.errors)}`)
      if (r.stillOpenAtRelease !== r.connected) notes.push(`${name}: only ${r.stillOpenAtRelease} of ${r.connected} connections still open when RSS was read`)
      return {
        raw: r,
        notes,
        primary: r.connectsPerSecond,
        disturbed: disturbed(r),
        row: { broker: name, connected: r.connected, failed: r.failed, 'connects/s': r.connectsPerSecond, 'connect p99 ms': r.connectP99ms, 'RSS before MiB': r.rssBeforeKiB / 1024, 'RSS after MiB': r.rssAfterKiB / 1024, 'RSS KiB/conn': r.rssPerConnKiB, 'broker CPU %': r.brokerCpuPercent, 'loadgen CPU %': r.loadgenCpuPercent, 'other CPU % b': r.otherCpuBrokerCore, ...genColumns(r) }
      }
    }
  },
  frozen: {
    title: `frozen subscriber: 50 healthy QoS 1 subscribers (+1 that stops reading its socket), 1 QoS 1 publisher, 32 in flight, ${PAYLOAD}-byte payloads; ${FROZEN_NONE_MS / 1000} s window without the frozen client, ${FROZEN_MS / 1000} s with it; times count from the start of publishing (1 s warm-up)`,
    ratioColumns: ['healthy deliv/s, none', 'healthy deliv/s, frozen', 'frozen/none'],
    runOnce: async (name) => {
      const job = (frozen: boolean) => (port: number): FrozenJob => ({ scenario: 'frozen', port, healthy: 50, frozen, inflight: 32, connectConcurrency: 50, ...FLOW, warmupMs: 1000, windowMs: frozen ? FROZEN_MS : FROZEN_NONE_MS })
      const none = await flowRun(name, job(false))
      const frozen = await flowRun(name, job(true))
      const notes = [...checks(name, none, ' (no frozen client)'), ...checks(name, frozen, ' (frozen client)')]
      const closed = frozen.frozenClosedByBrokerAfterMs
      // A second of the window is "stalled" when it delivered under 10% of the rate without the frozen client.
      const stalled = frozen.timelinePerSecond.filter((v) => v < 0.1 * none.deliveredPerSecond).length
      const firstStall = frozen.timelinePerSecond.findIndex((v) => v < 0.1 * none.deliveredPerSecond)
      notes.push(`${name}: healthy deliveries per second of the window with the frozen client (k): ${frozen.timelinePerSecond.map((v) => (v / 1000).toFixed(0)).join(' ')}`)
      return {
        raw: { none, frozen },
        notes,
        primary: frozen.deliveredPerSecond / none.deliveredPerSecond,
        disturbed: disturbed(none) || disturbed(frozen),
        row: {
          broker: name,
          'healthy deliv/s, none': none.deliveredPerSecond,
          'healthy deliv/s, frozen': frozen.deliveredPerSecond,
          'frozen/none': frozen.deliveredPerSecond / none.deliveredPerSecond,
          'stalled s': stalled,
          '1 s stalls': frozen.windowResets,
          'max gap ms': frozen.maxDeliveryGapMs ?? NaN,
          'max pause ms': frozen.maxPauseMs ?? NaN,
          'first stall at s': firstStall < 0 ? '-' : String(firstStall + 2), // +1 warm-up second, +1 end of the bucket
          'frozen closed at s': closed === null || closed === undefined ? 'open' : (closed / 1000).toFixed(1),
          'p99 ms, none': none.latencyMs?.p99 ?? NaN,
          'p99 ms, frozen': frozen.latencyMs?.p99 ?? NaN,
          'broker CPU %, frozen': frozen.brokerCpuPercent,
          'loadgen CPU %, frozen': frozen.loadgenCpuPercent,
          'other CPU % b/l, none': `${none.otherCpuBrokerCore.toFixed(0)}/${none.otherCpuLoadgenCore.toFixed(0)}`,
          'other CPU % b/l, frozen': `${frozen.otherCpuBrokerCore.toFixed(0)}/${frozen.otherCpuLoadgenCore.toFixed(0)}`
        }
      }
    }
  }
}

const allScenarios: Record<string, Scenario | WsScenario> = {
  ...scenarios,
  ...fairScenarios({ flowRun, flowRunsOnOneBroker, checks, disturbed, diag, missing }, faninJob, scenarios.fanin!.title),
  ...wsScenarios({ flowRun, checks, disturbed, diag, missing }, { fanin: faninJob, qos1: qos1Job, fanout: fanoutJob },
    { fanin: scenarios.fanin!.title, qos1: scenarios.qos1!.title, fanout: scenarios.fanout!.title })
}

/** Scenarios the node-floor peer (bench/node-floor.ts: CONNACK and PINGRESP, nothing else) can serve. */
const FLOOR_SCENARIOS = new Set(['idle'])

/** gateway/node-floor: what the gateway adds to Node's own per-connection cost; node-floor/mosquitto: what Node costs beside C. */
const RATIO_PAIRS: ReadonlyArray<readonly [string, string]> = [['gateway', 'aedes'], ['gateway', 'mosquitto'], ['gateway', 'node-floor'], ['node-floor', 'mosquitto']]

function addRatios (rows: Row[], columns: string[], pairs: ReadonlyArray<readonly [string, string]> = RATIO_PAIRS): Row[] {
  const by = (name: string): Row | undefined => rows.find((r) => r.broker === name)
  const out = [...rows]
  for (const [mine, peer] of pairs) {
    const gw = by(mine)
    const p = by(peer)
    if (gw === undefined || p === undefined) continue
    const row: Row = { broker: `${mine}/${peer}` }
    for (const c of columns) {
      const a = gw[c]
      const b = p[c]
      if (typeof a === 'number' && typeof b === 'number' && b !== 0) row[c] = a / b
    }
    // A ratio against a row whose broker was not driven to its limit measures the generator.
    const limited = [gw, p].filter((r) => String(r['generator-limited'] ?? '').startsWith('YES')).map((r) => r.broker)
    if (limited.length > 0) row['generator-limited'] = `ratio not valid (${limited.join(', ')})`
    out.push(row)
  }
  return out
}

function cell (v: string | number | undefined): string {
  if (typeof v !== 'number') return v ?? ''
  if (!Number.isFinite(v)) return '-'
  if (Number.isInteger(v) || Math.abs(v) >= 100) return v.toFixed(0)
  return Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)
}

function printTable (title: string, rows: Row[]): void {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))]
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)))
  const line = (values: string[]): string => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()
  process.stdout.write(`\n${title}\n${line(columns)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`)
  for (const r of rows) process.stdout.write(line(columns.map((c) => cell(r[c]))) + '\n')
}

function version (cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '?'
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const brokerArg = args.find((a) => a.startsWith('--brokers='))
  const brokers = brokerArg === undefined ? BROKERS : brokerArg.slice('--brokers='.length).split(',') as BrokerName[]
  for (const b of brokers) if (!KNOWN_BROKERS.includes(b)) throw new Error(`unknown broker ${b}; known: ${KNOWN_BROKERS.join(', ')}`)
  const retriesArg = args.find((a) => a.startsWith('--retries='))
  const retries = retriesArg === undefined ? 2 : Number(retriesArg.slice('--retries='.length))
  if (!Number.isInteger(retries) || retries < 0 || retries > 5) throw new Error('--retries=N takes 0..5')
  const roundsArg = args.find((a) => a.startsWith('--rounds='))
  const rounds = roundsArg === undefined ? 1 : Number(roundsArg.slice('--rounds='.length))
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9) throw new Error('--rounds=N takes 1..9')
  const loadgenArg = args.find((a) => a.startsWith('--loadgen='))?.slice('--loadgen='.length) ?? 'go'
  if (loadgenArg !== 'go' && loadgenArg !== 'node') throw new Error('--loadgen= takes go or node')
  const generatorsArg = args.find((a) => a.startsWith('--generators='))
  const processes = generatorsArg === undefined ? 1 : Number(generatorsArg.slice('--generators='.length))
  if (!Number.isInteger(processes) || processes < 1 || processes > 8) throw new Error('--generators=N takes 1..8')
  if (loadgenArg === 'node' && processes > 1) throw new Error('--generators=N needs --loadgen=go (the Node generator runs as one process)')
  generator = { kind: loadgenArg, processes }
  const chosen = args.filter((a) => !a.startsWith('--'))
  for (const s of chosen) if (allScenarios[s] === undefined) throw new Error(`unknown scenario ${s}; known: ${Object.keys(allScenarios).join(', ')}`)
  const names = chosen.length > 0 ? chosen : Object.keys(allScenarios).filter((n) => n !== 'fanin-80')

  pinSelf()
  const started = Date.now()
  const env = {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    mosquitto: version(MOSQUITTO, ['-h']),
    aedes: (JSON.parse(readFileSync('node_modules/aedes/package.json', 'utf8')) as { version: string }).version,
    fdLimit: FD_LIMIT,
    brokerCore: 1,
    loadgenCore: 0,
    rounds,
    retriesWhenDisturbed: retries,
    retryBudgetSeconds: RETRY_BUDGET_MS / 1000,
    loadgen: generator.kind === 'go'
      ? `bench/loadgen-go (${Object.entries(GO_MODES).map(([s, m]) => `${s}: ${m}`).join(', ')}), ${generator.processes} process(es) on the load generator core; frozen and the WebSocket scenarios on bench/loadgen-scenarios.ts (Node)`
      : 'bench/loadgen-scenarios.ts: raw MQTT framing over net sockets (onread into a shared buffer), pre-encoded PUBLISH templates written in batches, closed-loop windows',
    generators: generator.processes,
    // What was measured: the build in dist/ comes from this tree (the gateway changes while others work on it).
    gitHead: version('git', ['rev-parse', 'HEAD']),
    gitDirty: spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l !== ''),
    gatewayConfig: readFileSync('config/gateway.yaml', 'utf8'),
    mosquittoConfig: mosquittoConfig(0).replace('listener 0', 'listener PORT')
  }
  process.stdout.write(`compare: ${names.join(', ')} on ${brokers.join(', ')}${rounds > 1 ? ` (${rounds} rounds, median)` : ''} (broker on core 1, load generator on core 0, fd limit ${FD_LIMIT}; load generator ${generator.kind}${generator.processes > 1 ? ` x${generator.processes}` : ''}; ${env.mosquitto}; aedes ${env.aedes}; node ${env.node}; gateway at ${env.gitHead.slice(0, 7)}${env.gitDirty.length > 0 ? ` + ${env.gitDirty.length} modified files` : ''})\n`)
  const results: Record<string, unknown> = {}
  const save = (): void => {
    mkdirSync('bench/results', { recursive: true })
    writeFileSync(join('bench/results', 'compare.json'), JSON.stringify({ name: 'compare', when: new Date(started).toISOString(), env, brokers, scenarios: results, totalSeconds: (Date.now() - started) / 1000 }, null, 2))
  }
  for (const name of names) {
    const s = allScenarios[name]!
    const t0 = Date.now()
    process.stderr.write(`== ${name}\n`)
    // One row per peer: a broker (TCP scenarios), or a broker and transport (bench/compare-ws.ts).
    // node-floor answers CONNECT and PINGREQ only: it takes part in the connection scenario alone.
    const peers: readonly WsPeer[] = 'peers' in s ? s.peers.filter((p) => brokers.includes(p.broker)) : brokers.filter((b) => b !== 'node-floor' || FLOOR_SCENARIOS.has(name)).map((b) => ({ row: b, broker: b, ws: false }))
    const runOnce = (p: WsPeer): Promise<Measured> => 'peers' in s ? s.runPeer(p) : s.runOnce(p.broker)
    // Rounds are interleaved (g, a, m, g, a, m, ...) so that slow drifts hit every broker alike.
    const runs = new Map<string, Measured[]>(peers.map((p) => [p.row, []]))
    const errors: string[] = []
    for (let round = 0; round < rounds; round++) {
      for (const peer of peers) {
        const b = peer.row
        try {
          // A run disturbed by other processes is repeated (bounded by --retries and the budget);
          // the last attempt is kept, flagged, and every attempt is in the JSON.
          const attempts: Measured[] = []
          for (let attempt = 0; ; attempt++) {
            const q = await waitQuiet(attempt === 0 ? 5000 : 20000)
            const m = await runOnce(peer)
            attempts.push(m)
            if (!q.quiet) m.notes.push(`${b}: the machine was not quiet before the run (cores busy ${q.busy.map((x) => x.toFixed(0)).join('% / ')}%)`)
            if (!m.disturbed || attempt >= retries || Date.now() - started > RETRY_BUDGET_MS) break
            process.stderr.write(`   ${name} on ${b}: disturbed by other processes, retrying\n`)
          }
          const kept = attempts[attempts.length - 1]!
          if (attempts.length > 1) {
            kept.notes.unshift(`${b}: ${attempts.length} attempts (earlier ones disturbed by other processes)${kept.disturbed ? '; the kept one is disturbed too' : ''}`)
            kept.raw = { kept: kept.raw, disturbedAttempts: attempts.slice(0, -1).map((m) => m.raw) }
          }
          runs.get(b)!.push(kept)
        } catch (err) {
          errors.push(`${b}: ${(err as Error).message.slice(0, 500)}`)
          process.stderr.write(`   ${name} on ${b} failed: ${(err as Error).message.slice(0, 500)}\n`)
        }
      }
    }
    const rows: Row[] = []
    const notes: string[] = []
    const raw: Record<string, unknown> = {}
    for (const { row: b } of peers) {
      const list = runs.get(b)!
      if (list.length === 0) { rows.push({ broker: b, error: 'failed (see notes)' }); continue }
      const sorted = [...list].sort((x, y) => x.primary - y.primary)
      const median = sorted[Math.floor((sorted.length - 1) / 2)]!
      rows.push(rounds > 1 ? { ...median.row, rounds: list.map((m) => cell(m.primary)).join(' ') } : median.row)
      notes.push(...median.notes)
      raw[b] = rounds > 1 ? { median: median.raw, all: list.map((m) => m.raw) } : median.raw
    }
    notes.push(...errors)
    const table = addRatios(rows, s.ratioColumns, 'ratios' in s ? s.ratios : undefined)
    results[name] = { title: s.title, rows: table, notes, raw, seconds: (Date.now() - t0) / 1000 }
    printTable(s.title, table)
    for (const n of notes) process.stdout.write(`  note: ${n}\n`)
    save()
  }
  process.stdout.write('\nratios: gateway value / peer value (throughput: >1 gateway faster; latency and RSS: >1 gateway higher).\n' +
    '"other CPU % b/l": CPU used by other processes on the broker / load generator core during the window (from /proc/stat).\n' +
    '"CPU µs/op b/l": CPU microseconds of the broker / load generator per delivery (idle: per connect); robust to other processes on the cores.\n' +
    '"generator-limited": (cpu) the load generator was at >= 90% of its core while the broker was under 90% of its own, or (cost) it spent >= 90% of the broker\'s CPU per operation (on equal cores it would be the limit): the broker was not at its limit.\n' +
    `Total ${((Date.now() - started) / 1000).toFixed(0)} s; results in bench/results/compare.json\n`)
}

await main()
process.exit(0)
