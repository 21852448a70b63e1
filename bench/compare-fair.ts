/**
 * Fan-in at 90 % load for bench/compare.bench.ts (issue #14, "no starved publisher"): the
 * closed-loop fan-in finds the broker's maximum (each broker its own), then the same 10
 * publishers -> 1 subscriber run paced at 90 % of it (open loop: the load generator offers the
 * rate whatever the broker does, the window only caps a publisher the broker stops serving), and
 * the row reports what a user sees at a load the broker can carry: delivered rate, publisher to
 * subscriber latency p50/p99/max (from each message's DUE time on the pacing schedule, carried in
 * the payload, so a send held back by the broker or the generator is counted: no coordinated
 * omission), the longest time one publisher went without a delivery, and 1 s stalls (windows
 * reopened by the watchdog). Both runs use the Go generator by default (compare-fanin paces,
 * bench/loadgen-go/compare_pace.go); its result also has latency per second and the peak per
 * 100 ms with the window's wall-clock start (to lay beside the broker's GC trace) and the send
 * lag ("gen lag p99 ms": due time to write call; a starved generator or a broker that stopped
 * reading makes it grow).
 *
 * The paced run goes to the process whose maximum was just measured, over new connections: the
 * broker is measured warm, as one that has been serving. A fresh Node process runs its first
 * second or so on code that is not optimised yet; offered 90 % of its warm maximum, the gateway
 * fell behind in the warm-up and the window opened on a backlog (latency peak per 100 ms 600 ms
 * at the start, draining to 5-40 ms after ~1 s), which set the p99. FANIN90_COLD=1 runs the paced
 * run on a fresh process instead (what a restarted broker meets when offered full load at once).
 *
 * fanin-80 is the same at 80 % (how the tail grows with the load). During the paced run the
 * harness samples the kernel's TCP queues of the broker's connections every FANIN90_SAMPLE_MS ms
 * (off by default, 20 is a good value; bench/kernel-queues.ts, which says what a sample costs) and the row says where the tail's messages waited: the mean of each
 * queue, as ms at the offered rate, over the 100 ms slices whose latency peak reached the run's
 * p99 ("tail in kernel ms": publisher Send-Q at the generator / Recv-Q at the broker, subscriber
 * Send-Q at the broker / Recv-Q at the generator; the rest is in the broker's process or not yet
 * written by the generator, see "gen lag"). raw.paced.kernelQueues has p50/p99/max of each;
 * FANIN90_SAMPLES=1 also keeps every sample (raw.paced.kernelSamples, for bench/fanin-breakdown.ts).
 *
 *   node dist/bench/compare.bench.js fanin-90 --brokers=gateway,aedes --rounds=3
 *   FANIN90_RATE=120000 node dist/bench/compare.bench.js fanin-90     a fixed offered rate (fanin-80 too; the maximum is
 *                                                                    still measured first, warming the process; with
 *                                                                    FANIN90_COLD=1 it is skipped)
 */
import type { BrokerName, RunningBroker } from './brokers.js'
import { startQueueSampler, summariseQueues, type QueueSample, type QueueSummary } from './kernel-queues.js'
import type { FaninJob } from './loadgen-scenarios.js'

type Row = Record<string, string | number>

/** What this scenario reads of a flow run (compare.bench.ts' FlowRun). */
export interface FairFlowRun {
  deliveredPerSecond: number
  offeredPerSecond?: number
  latencyMs?: { p50: number, p99: number, max: number }
  maxDeliveryGapMs?: number
  maxPauseMs?: number
  deliveryGapsOver1s?: number
  /** Go generator, paced: how late batches left the generator (due time to write). */
  sendLagMs?: { p99: number, max: number }
  windowResets: number
  loadgenCpuPercent: number
  /** Go generator, latency runs: the window's start (Unix ms), its length and the latency peak per 100 ms. */
  windowStartUnixMs?: number
  latencyPeakPer100ms?: number[]
  wireBytesPerDelivery?: number
}

export interface FairMeasured { row: Row, raw: unknown, notes: string[], primary: number, disturbed: boolean }

/** The harness functions of compare.bench.ts the scenario runs on. */
export interface FairHarness<R extends FairFlowRun> {
  flowRun: (name: BrokerName, job: (port: number, broker: RunningBroker) => object & { timeLimitMs: number }) => Promise<R>
  /** Runs `body`'s generator runs one after the other on one broker process. */
  flowRunsOnOneBroker: <T>(name: BrokerName, body: (run: (job: (port: number, broker: RunningBroker) => object & { timeLimitMs: number }) => Promise<R>) => Promise<T>) => Promise<T>
  checks: (name: string, r: R) => string[]
  disturbed: (r: R) => boolean
  diag: (r: R) => Row
  missing: (r: R) => string | number
}

export interface FairScenario { title: string, ratioColumns: string[], runOnce: (name: BrokerName) => Promise<FairMeasured> }

export const LOAD_FRACTION = 0.9
const PUBLISHERS = 10

const f1 = (x: number): string => Number.isNaN(x) ? '-' : x.toFixed(1)

export function fairScenarios<R extends FairFlowRun> (h: FairHarness<R>, fanin: (port: number) => FaninJob, faninTitle: string): Record<string, FairScenario> {
  const fixed = process.env.FANIN90_RATE === undefined ? undefined : Number(process.env.FANIN90_RATE)
  if (fixed !== undefined && !(fixed > 0 && fixed <= 10_000_000)) throw new Error('FANIN90_RATE takes a rate in msgs/s (1..10000000)')
  const keepSamples = process.env.FANIN90_SAMPLES === '1'
  const cold = process.env.FANIN90_COLD === '1'
  // Off unless asked for: the sampler runs in this process, on the load generator's core, and a
  // read of /proc/net/tcp costs ~2 µs per socket on the machine, TIME_WAIT ones included (10,000
  // after the idle scenario: ~20 ms per sample, the whole core at one sample per 20 ms).
  const sampleMs = process.env.FANIN90_SAMPLE_MS === undefined ? undefined : Number(process.env.FANIN90_SAMPLE_MS)
  if (sampleMs !== undefined && !(sampleMs >= 5 && sampleMs <= 1000)) throw new Error('FANIN90_SAMPLE_MS takes 5..1000 (ms between kernel queue samples)')
  const paced = (fraction: number): FairScenario => ({
    title: `${faninTitle}; paced at ${fraction * 100} % of the broker's closed-loop maximum (measured first, same broker)`,
    ratioColumns: ['max msgs/s', 'delivered msgs/s', 'p50 ms', 'p99 ms'],
    runOnce: async (name) => {
      const pacedJob = (rate: number) => (port: number) => {
        if (sampleMs !== undefined) sampler = startQueueSampler(port, sampleMs)
        return { ...fanin(port), rate, latency: true }
      }
      let sampler: { stop: () => QueueSample[] } | undefined
      let samples: QueueSample[] = []
      const stopSampler = (): void => { samples = sampler?.stop() ?? [] }
      type Run = (job: (port: number) => object & { timeLimitMs: number }) => Promise<R>
      // The maximum, then the paced run at its fraction (or FANIN90_RATE); warm: both on one
      // process; cold: each on a fresh one, and no maximum run when the rate is fixed.
      const maxThenPaced = async (runMax: Run, runPaced: Run): Promise<{ max: R | undefined, rate: number, r: R }> => {
        const max = cold && fixed !== undefined ? undefined : await runMax((port) => fanin(port))
        const rate = fixed ?? Math.round(fraction * max!.deliveredPerSecond)
        return { max, rate, r: await runPaced(pacedJob(rate)).finally(stopSampler) }
      }
      const { max, rate, r } = cold
        ? await maxThenPaced((job) => h.flowRun(name, job), (job) => h.flowRun(name, job))
        : await h.flowRunsOnOneBroker(name, (run) => maxThenPaced(run, run))
      let queues: QueueSummary | undefined
      if (r.windowStartUnixMs !== undefined && r.latencyPeakPer100ms !== undefined && r.latencyMs !== undefined) {
        queues = summariseQueues(samples, r.windowStartUnixMs, r.latencyPeakPer100ms, r.latencyMs.p99, rate, r.wireBytesPerDelivery ?? 117, PUBLISHERS)
      }
      const notes = [...(max === undefined ? [] : h.checks(name, max).map((n) => `${n} (maximum run)`)), ...h.checks(name, r)]
      // Latency counts from the due time, so messages written late carry that wait: either the
      // generator was short of CPU or the broker stopped reading (full socket buffers).
      const lag = r.sendLagMs?.p99 ?? 0
      if (lag > Math.max(5, 0.25 * (r.latencyMs?.p99 ?? 0))) notes.push(`${name}: messages were written late (send lag p99 ${lag.toFixed(1)} ms): a generator short of CPU (other CPU on its core) or a broker that stopped reading (full socket buffers)`)
      if (r.deliveredPerSecond < 0.97 * rate) notes.push(`${name}: delivered ${r.deliveredPerSecond.toFixed(0)} msgs/s of ${rate} offered: the broker (or the generator) did not keep up`)
      return {
        raw: { max, paced: { ...r, kernelQueues: queues, ...(keepSamples ? { kernelSamples: samples } : {}) } },
        notes,
        // The median round is the one with the median p99.
        primary: r.latencyMs?.p99 ?? NaN,
        disturbed: (max !== undefined && h.disturbed(max)) || h.disturbed(r),
        row: {
          broker: name,
          'max msgs/s': max?.deliveredPerSecond ?? '-',
          'offered msgs/s': rate,
          'delivered msgs/s': r.deliveredPerSecond,
          'p50 ms': r.latencyMs?.p50 ?? NaN,
          'p99 ms': r.latencyMs?.p99 ?? NaN,
          'max ms': r.latencyMs?.max ?? NaN,
          'max gap ms': r.maxDeliveryGapMs ?? NaN,
          'gen lag p99 ms': r.sendLagMs?.p99 ?? '-',
          'tail in kernel ms pubS/pubR/subS/subR': queues === undefined ? '-' : [queues.pubSendQ, queues.pubRecvQ, queues.subSendQ, queues.subRecvQ].map((q) => f1(q.meanInSlowSlices)).join('/'),
          '1 s stalls (max run / paced)': `${max?.windowResets ?? '-'} / ${r.windowResets}`,
          missing: h.missing(r),
          ...h.diag(r)
        }
      }
    }
  })
  return { 'fanin-90': paced(LOAD_FRACTION), 'fanin-80': paced(0.8) }
}
