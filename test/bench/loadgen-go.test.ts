import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import type { RunningBroker } from '../../bench/brokers.js'
import { GO_LOADGEN, generatorFor, generatorLimit, generatorLimited, mergedPercentile, runGenerators } from '../../bench/generators.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { pollUntil } from '../helpers/mqtt.js'

const execFileAsync = promisify(execFile)
const BIN = join(process.cwd(), GO_LOADGEN)

type Events = Array<Record<string, unknown>>
interface Run { code: number | null, events: Events, result: Record<string, unknown>, stderr: string }

/**
 * Runs one mode of the Go generator with `job`; `onEvent` may answer on stdin ("release").
 * Bounded by the job's own time limit (the generator exits 2 at it) plus a kill 10 s later.
 */
function runMode (mode: string, job: object, onEvent: (e: Record<string, unknown>, write: (line: string) => void) => void = () => {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(BIN, [mode, JSON.stringify(job)], { stdio: ['pipe', 'pipe', 'pipe'] })
    const events: Events = []
    let out = ''
    let stderr = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), 40000)
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString()
      let nl: number
      while ((nl = out.indexOf('\n')) >= 0) {
        const e = JSON.parse(out.slice(0, nl)) as Record<string, unknown>
        out = out.slice(nl + 1)
        events.push(e)
        onEvent(e, (line) => child.stdin.write(line + '\n'))
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, events, result: events.find((e) => e.event === 'result') ?? {}, stderr })
    })
  })
}

const FLOW = { warmupMs: 300, windowMs: 1000, drainMs: 5000, payloadBytes: 100, timeLimitMs: 30000 }

/** What every flow result must satisfy: every message sent arrived, once, and the counters agree. */
function assertSelfConsistent (r: Record<string, unknown>, receiversPerMessage: number): void {
  const sent = r.sentTotal as number
  assert.ok(sent > 0, 'nothing was sent')
  assert.equal(r.expectedTotal, sent * receiversPerMessage)
  assert.equal(r.deliveredTotal, r.expectedTotal, 'delivered = sent x receivers')
  assert.equal(r.missing, 0)
  assert.equal(r.lost, 0)
  assert.equal(r.drainComplete, true)
  assert.equal(r.windowResets, 0)
  assert.equal(r.transport, 'tcp')
  const timeline = r.timelinePerSecond as number[]
  assert.equal(timeline.length, 1)
  assert.ok(timeline[0]! > 0 && timeline[0]! <= (r.deliveredTotal as number))
  assert.ok((r.deliveredPerSecond as number) > 0)
  const cpu = r.loadgenCpuPercent as number
  assert.ok(cpu > 0 && cpu < 400, `loadgenCpuPercent ${cpu}`)
  // 100-byte payload + topic + fixed header: a delivery is more than the payload and well under 200 bytes.
  const wire = r.wireBytesPerDelivery as number
  assert.ok(wire > 100 && wire < 200, `wireBytesPerDelivery ${wire}`)
}

function assertLatency (r: Record<string, unknown>): void {
  const l = r.latencyMs as { samples: number, p50: number, p99: number, max: number, mean: number }
  assert.ok(l.samples > 0)
  assert.ok(l.p50 > 0 && l.p50 <= l.p99 && l.p99 <= l.max, JSON.stringify({ ...l, quantiles: undefined }))
}

describe('Go load generator for bench/compare (bench/loadgen-go compare-* modes) against a real gateway', () => {
  let gw: TestGateway
  let port: number
  before(async () => {
    // Incremental (about a second) after scripts/test.sh's setup built it.
    await execFileAsync('sh', ['scripts/loadgen.sh'], { timeout: 100000 })
    gw = await startTestGateway('limits: { maxUnauthenticatedPerAddress: 0 }', { level: 'warn' })
    port = gw.gateway.ports.mqtt!
  })
  after(async () => { await gw.stop() })

  it('compare-fanin: every message of every publisher reaches the wildcard subscriber, events in order', async () => {
    const r = await runMode('compare-fanin', { scenario: 'fanin', port, publishers: 4, window: 200, batch: 20, latency: true, ...FLOW })
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(r.events.map((e) => e.event), ['ready', 'window-start', 'window-end', 'result'])
    assertSelfConsistent(r.result, 1)
    assertLatency(r.result)
    assert.equal(r.result.ackedTotal, 0)
  })

  it('compare-fanin paced (rate): every message delivered once, no more sent than the schedule allows, latency from the due time', async () => {
    const rate = 2000
    const publishers = 4
    const t0 = performance.now()
    const r = await runMode('compare-fanin', { scenario: 'fanin', port, publishers, window: 200, batch: 20, latency: true, rate, ...FLOW })
    const wallMs = performance.now() - t0
    assert.equal(r.code, 0, r.stderr)
    assertSelfConsistent(r.result, 1)
    assertLatency(r.result)
    assert.equal(r.result.offeredPerSecond, rate)
    // Open loop at `rate`: at most what fell due while the process ran (plus each publisher's
    // first message). A slow machine sends less, never more; a closed loop sends far more
    // (an idle gateway takes 2,000 msgs/s in a few ms).
    assert.ok((r.result.sentTotal as number) <= rate * wallMs / 1000 + publishers, `sent ${String(r.result.sentTotal)} in ${wallMs.toFixed(0)} ms at ${rate}/s`)
    const l = r.result.latencyMs as { from: string, samples: number }
    assert.equal(l.from, 'due')
    // Per second of the window and per 100 ms: every recorded delivery is in the timeline.
    const perSecond = r.result.latencyPerSecond as Array<{ n: number, p50: number, p99: number, max: number }>
    assert.equal(perSecond.length, 1)
    assert.equal(perSecond[0]!.n, l.samples)
    assert.ok(perSecond[0]!.p99 <= perSecond[0]!.max)
    assert.equal((r.result.latencyPeakPer100ms as number[]).length, 10)
    assert.ok(Math.max(...(r.result.latencyPeakPer100ms as number[])) === perSecond[0]!.max)
    assert.ok((r.result.windowStartUnixMs as number) > Date.now() - 60000 && (r.result.windowStartUnixMs as number) < Date.now())
    const lag = r.result.sendLagMs as { batches: number, p50: number, p99: number, max: number }
    assert.ok(lag.batches > 0 && lag.p50 >= 0 && lag.p50 <= lag.p99 && lag.p99 <= lag.max, JSON.stringify(lag))
    assert.equal(r.result.deliveryGapsOver1s, 0)
    assert.ok((r.result.maxDeliveryGapMs as number) > 0 && (r.result.maxPauseMs as number) <= (r.result.maxDeliveryGapMs as number))
  })

  it('paced jobs go to the Go generator only where it paces (fan-in over TCP)', () => {
    const go = { kind: 'go' as const, processes: 2 }
    assert.deepEqual(generatorFor({ scenario: 'fanin', timeLimitMs: 1, rate: 1000 }, go), go)
    assert.deepEqual(generatorFor({ scenario: 'qos1', timeLimitMs: 1, rate: 1000 }, go), { kind: 'node', processes: 1 })
    assert.deepEqual(generatorFor({ scenario: 'fanin', timeLimitMs: 1, rate: 1000, ws: '/mqtt' }, go), { kind: 'node', processes: 1 })
  })

  it('compare-qos1: every publish acknowledged and delivered, latency from the payload', async () => {
    const r = await runMode('compare-qos1', { scenario: 'qos1', port, pairs: 3, inflight: 8, ...FLOW })
    assert.equal(r.code, 0, r.stderr)
    assertSelfConsistent(r.result, 1)
    assert.equal(r.result.ackedTotal, r.result.sentTotal)
    assertLatency(r.result)
  })

  it('compare-fanout: every subscriber gets every message', async () => {
    const r = await runMode('compare-fanout', { scenario: 'fanout', port, subscribers: 25, window: 50, batch: 10, connectConcurrency: 5, ...FLOW })
    assert.equal(r.code, 0, r.stderr)
    assertSelfConsistent(r.result, 25)
    assert.equal(r.result.subscribers, 25)
  })

  it('compare-connect: holds its connections (the gateway sees them) until "release", then closes them', async () => {
    let seenByGateway = -1
    const r = await runMode('compare-connect', { scenario: 'idle', port, clients: 60, concurrency: 10, keepalive: 60, holdMs: 20000, timeLimitMs: 30000 }, (e, write) => {
      if (e.event === 'connected') { seenByGateway = gw.gateway.broker.connectedClients; write('release') }
    })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(seenByGateway, 60)
    assert.equal(r.result.connected, 60)
    assert.equal(r.result.failed, 0)
    assert.equal(r.result.stillOpenAtRelease, 60)
    assert.ok((r.result.connectP50ms as number) > 0 && (r.result.connectP50ms as number) <= (r.result.connectP99ms as number))
    assert.ok((r.result.connectsPerSecond as number) > 0)
    const left = await pollUntil(async () => gw.gateway.broker.connectedClients, (n) => n === 0, 5000)
    assert.equal(left, 0, 'the generator closed its connections')
  })

  it('compare-connect counts a refused CONNECT as failed, with the reason', async () => {
    // A client id the gateway refuses: none here, so refuse at the TCP level instead (a closed port).
    const closed = await startTestGateway('', { level: 'warn' })
    const deadPort = closed.gateway.ports.mqtt!
    await closed.stop()
    const r = await runMode('compare-connect', { scenario: 'idle', port: deadPort, clients: 5, concurrency: 2, keepalive: 60, holdMs: 1000, timeLimitMs: 20000 }, (e, write) => {
      if (e.event === 'connected') write('release')
    })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.result.connected, 0)
    assert.equal(r.result.failed, 5)
    const reasons = Object.keys(r.result.errors as Record<string, number>)
    assert.equal(reasons.length, 1, JSON.stringify(r.result.errors))
    assert.match(reasons[0]!, /CONNECT idle-N: .*refused/)
  })

  it('bad input: an unknown mode or a malformed job ends with one clear line on stderr and a non-zero exit', async () => {
    const unknown = await runMode('compare-nope', {})
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /unknown mode "compare-nope"/)
    const bad = await runMode('compare-fanin', { scenario: 'fanin', port, publishers: 'ten' })
    assert.equal(bad.code, 1)
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr)
    assert.match(bad.stderr, /job: .*publishers/)
    assert.deepEqual(bad.events, [])
    // Only fan-in paces; a rate elsewhere (or a negative one) is refused before connecting.
    for (const job of [{ scenario: 'qos1', port, pairs: 1, inflight: 1, rate: 100, ...FLOW }, { scenario: 'fanin', port, publishers: 1, window: 10, batch: 1, ...FLOW, rate: -5 }]) {
      const refused = await runMode(job.scenario === 'qos1' ? 'compare-qos1' : 'compare-fanin', job)
      assert.equal(refused.code, 1)
      assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr)
      assert.match(refused.stderr, /rate -?\d+: only compare-fanin paces/)
      assert.deepEqual(refused.events, [])
    }
  })

  describe('split among generator processes (bench/generators.ts runGenerators, --generators=N)', () => {
    // The broker's CPU is sampled from its pid: the gateway runs in this test process.
    const broker = (): RunningBroker => ({ name: 'gateway', pid: process.pid, port, child: undefined as never, output: () => '', stop: async () => {} })

    it('qos1 over 2 processes: pairs split, results merged, still every message delivered once', async () => {
      const run = await runGenerators<{ loadgenCpuPercent: number } & Record<string, unknown>>({ scenario: 'qos1', port, pairs: 4, inflight: 8, ...FLOW } as never, broker(), { kind: 'go', processes: 2 })
      const r = run.result
      assert.equal(r.loadgen, 'go')
      assert.equal(r.generators, 2)
      assert.equal(r.loadgenCpuPercentByProcess.length, 2)
      assert.equal(r.countedSubscribers, 4)
      assertSelfConsistent(r, 1)
      assert.equal(r.ackedTotal, r.sentTotal)
      assertLatency(r)
      assert.ok(run.windowSeconds !== undefined && run.brokerCpuSeconds !== undefined, 'broker CPU sampled at part 0\'s window')
    })

    it('paced fanin over 2 processes: each part offers its publishers\' share, every message delivered once', async () => {
      const run = await runGenerators<{ loadgenCpuPercent: number } & Record<string, unknown>>({ scenario: 'fanin', port, publishers: 4, window: 200, batch: 20, latency: true, rate: 2000, ...FLOW } as never, broker(), { kind: 'go', processes: 2 })
      assert.equal(run.result.loadgen, 'go')
      assert.equal(run.result.generators, 2)
      assert.equal(run.result.offeredPerSecond, 2000)
      assert.equal(run.result.countedSubscribers, 2)
      assertSelfConsistent(run.result, 1)
      assertLatency(run.result)
      assert.equal(run.result.deliveryGapsOver1s, 0)
    })

    it('fanout over 2 processes: part 0 publishes to both parts\' subscribers', async () => {
      const run = await runGenerators<{ loadgenCpuPercent: number } & Record<string, unknown>>({ scenario: 'fanout', port, subscribers: 20, window: 50, batch: 10, connectConcurrency: 5, ...FLOW } as never, broker(), { kind: 'go', processes: 2 })
      assert.equal(run.result.subscribers, 20)
      assertSelfConsistent(run.result, 20)
    })

    it('idle over 3 processes: distinct client ids, onConnected runs once all hold their connections', async () => {
      let held = -1
      const run = await runGenerators<{ loadgenCpuPercent: number } & Record<string, unknown>>({ scenario: 'idle', port, clients: 90, concurrency: 10, keepalive: 60, holdMs: 20000, timeLimitMs: 30000 } as never, broker(), { kind: 'go', processes: 3 }, async () => {
        held = gw.gateway.broker.connectedClients
        return {}
      })
      assert.equal(held, 90)
      assert.equal(run.result.connected, 90)
      assert.equal(run.result.failed, 0)
      assert.equal(run.result.stillOpenAtRelease, 90)
    })
  })

  it('generator-limited: only when the generator is at >= 90% of its core and the broker is not', () => {
    assert.equal(generatorLimited({ loadgenCpuPercent: 95, brokerCpuPercent: 60 }), true)
    assert.equal(generatorLimited({ loadgenCpuPercent: 95, brokerCpuPercent: 97 }), false)
    assert.equal(generatorLimited({ loadgenCpuPercent: 50, loadgenCpuPercentByProcess: [20, 91], brokerCpuPercent: 60 }), true)
    assert.equal(generatorLimited({ loadgenCpuPercent: 89, brokerCpuPercent: 20 }), false)
    assert.equal(generatorLimited({ loadgenCpuPercent: 95, brokerCpuPercent: NaN }), true)
  })

  it('generator-limited by cost: the generator spent >= 90% of the broker\'s CPU over the same window', () => {
    assert.equal(generatorLimit({ loadgenCpuPercent: 95, brokerCpuPercent: 60 }), 'cpu')
    // Both cores shared with other processes: neither near 90%, but the generator costs as much as the broker.
    assert.equal(generatorLimit({ loadgenCpuPercent: 30, brokerCpuPercent: 32 }), 'cost')
    assert.equal(generatorLimit({ loadgenCpuPercent: 10, brokerCpuPercent: 32 }), null)
    // A saturated broker was at its limit.
    assert.equal(generatorLimit({ loadgenCpuPercent: 95, brokerCpuPercent: 97 }), null)
    assert.equal(generatorLimit({ loadgenCpuPercent: 50, brokerCpuPercent: 97 }), null)
  })

  it('merged percentiles of split latencies weigh each process by its samples', () => {
    const even = Array.from({ length: 101 }, (_, i) => i)
    assert.equal(mergedPercentile([{ samples: 1000, quantiles: even }], 50), 50)
    // 9x the samples at 100..200: the median lies in the second process's range.
    const p50 = mergedPercentile([{ samples: 100, quantiles: even }, { samples: 900, quantiles: even.map((v) => v + 100) }], 50)
    assert.ok(p50 > 140 && p50 < 150, String(p50))
  })
})
