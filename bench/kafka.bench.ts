/**
 * Kafka bridge (issue: Kafka bridge): end-to-end QoS 1 msgs/s and latency for pattern 2
 * (client → Kafka → subscriber) against a direct topic on the same gateway process, side by
 * side. Starts its own Kafka (scripts/kafka/kafka.sh); load generator in its own process.
 * Prints the gateway's and Kafka's CPU per message and pattern 2's time per stage
 * (mqgw_kafka_stage_seconds). Options: --no-jvm-warmup, --commit-interval=MS, --tcp-nodelay (the
 * gateway's MQTT listener with TCP_NODELAY; default off, as the gateway's own default), --rounds=N
 * (default 3): direct and pattern 2 alternate N times on the same gateway and Kafka; one row per
 * run (with the 1-minute load average, the machine being shared), then the medians. A direct
 * run is about one second, so one pair alone gave ratios from 0.4 to 1.1 on a busy machine.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestKafka } from '../test/helpers/kafka.js'
import { loadgen, report, spawnGateway, stopGateway } from './lib.js'

interface PubSubResult { messagesPerSecond: number, p50ms: number, p99ms: number, received: number }

/** CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 10 ms). */
function cpuSeconds (pid: number | undefined): number {
  if (pid === undefined) return NaN
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch { return NaN }
}

/** mqgw_kafka_stage_seconds from /metrics: per stage, cumulative bucket counts by upper bound, sum and count. */
type Stages = Map<string, { buckets: Map<number, number>, sum: number, count: number }>
async function readStages (admin: string): Promise<Stages> {
  const text = await (await fetch(`${admin}/metrics`)).text()
  const stages: Stages = new Map()
  for (const m of text.matchAll(/^mqgw_kafka_stage_seconds_(bucket|sum|count)\{(?:le="([^"]+)",)?stage="([^"]+)"(?:,le="([^"]+)")?\} (\S+)$/gm)) {
    const [, kind, le1, name, le2, value] = m
    let s = stages.get(name!)
    if (!s) stages.set(name!, s = { buckets: new Map(), sum: 0, count: 0 })
    if (kind === 'sum') s.sum = Number(value)
    else if (kind === 'count') s.count = Number(value)
    else s.buckets.set((le1 ?? le2) === '+Inf' ? Infinity : Number(le1 ?? le2), Number(value))
  }
  return stages
}
/** Per stage over the run (after minus before): mean, and the bucket bounds p50 and p99 fall in. */
function stageRows (before: Stages, after: Stages): Array<Record<string, string | number>> {
  const rows: Array<Record<string, string | number>> = []
  for (const name of ['queued', 'request', 'to_consumer', 'consumer_wait', 'publish', 'end_to_end']) {
    const a = after.get(name)
    if (!a) continue
    const b = before.get(name)
    const count = a.count - (b?.count ?? 0)
    if (count <= 0) continue
    const bounds = [...a.buckets.keys()].sort((x, y) => x - y)
    const at = (q: number): string => {
      const le = bounds.find((le) => a.buckets.get(le)! - (b?.buckets.get(le) ?? 0) >= q * count)
      return le === undefined || le === Infinity ? '> 5000' : `<= ${le * 1000}`
    }
    rows.push({ stage: name, 'mean ms': (a.sum - (b?.sum ?? 0)) / count * 1000, 'p50 ms': at(0.5), 'p99 ms': at(0.99), records: count })
  }
  return rows
}

// --commit-interval=N: the bridge's commitIntervalMs (default: the plugin's), to compare commit rates.
const commitInterval = process.argv.find((a) => a.startsWith('--commit-interval='))?.split('=')[1]
if (commitInterval !== undefined && !/^\d+$/.test(commitInterval)) throw new Error(`--commit-interval=${commitInterval}: not a whole number of ms`)
const roundsArg = process.argv.find((a) => a.startsWith('--rounds='))?.split('=')[1] ?? '3'
if (!/^[1-9]\d?$/.test(roundsArg)) throw new Error(`--rounds=${roundsArg}: a whole number from 1 to 99`)
const rounds = Number(roundsArg)
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2 }
const kafka = new TestKafka()
await kafka.start()
try {
  await kafka.createTopics(['chat'], 1)
  const dir = mkdtempSync(join(tmpdir(), 'mqgw-bench-kafka-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `log: { level: warn }
flow: {}
${process.argv.includes('--tcp-nodelay') ? 'listeners: { mqtt: { tcpNoDelay: true } }\n' : ''}kafka:
  brokers: ["${kafka.brokers[0]}"]
  groupId: bench-bridge
  routes: [ { mqtt: "chat/#", kafkaTopic: chat } ]
  consume: [ { kafkaTopic: chat } ]
${commitInterval !== undefined ? `  commitIntervalMs: ${commitInterval}\n` : ''}`)
  const gw = await spawnGateway(['--config', file], {}, 'readyz', 120000)
  try {
    const url = `mqtt://127.0.0.1:${gw.ports.mqtt}`
    // The bridge's consumer starts at the end of the topic: warm up until messages come back.
    for (let i = 0; i < 30; i++) {
      const warm = await loadgen<PubSubResult>({ mode: 'pubsub', url, publishUrl: url, topic: 'chat/warm', qos: 1, count: 200, inflight: 20, timeLimitMs: 3000 })
      if (warm.received >= 200) break
    }
    // A fresh Kafka JVM compiles its hot paths in its first seconds of load: without this run
    // (thrown away) the first measured one paid for it (Kafka's CPU per message halved after it).
    // --no-jvm-warmup measures the cold JVM, as this bench did before.
    if (!process.argv.includes('--no-jvm-warmup')) await loadgen<PubSubResult>({ mode: 'pubsub', url, publishUrl: url, topic: 'chat/warm', qos: 1, count: 20000, inflight: 100, payloadBytes: 100, timeLimitMs: 30000 })
    const rows: Array<Record<string, string | number>> = []
    const raw: Record<string, unknown> = {}
    const admin = `http://127.0.0.1:${gw.ports.admin}`
    const paths = [['direct topic (no Kafka)', 'direct/room'], ['pattern 2: client → Kafka → subscriber', 'chat/room']] as const
    const stagesBefore = await readStages(admin)
    for (let round = 1; round <= rounds; round++) {
      let direct = NaN
      for (const [name, topic] of paths) {
        const kafkaPid = Number(readFileSync(join(kafka.dir, 'kafka.pid'), 'utf8'))
        const cpu0 = [cpuSeconds(gw.child.pid), cpuSeconds(kafkaPid)]
        const load = loadavg()[0]!
        const r = await loadgen<PubSubResult>({ mode: 'pubsub', url, publishUrl: url, topic, qos: 1, count: 10000, inflight: 100, payloadBytes: 100, timeLimitMs: 60000 })
        raw[`${name} #${round}`] = r
        // CPU per delivered message: the gateway's and Kafka's (the JVM), µs; 10 ms clock ticks.
        const perMessage = (i: number, now: number): number => (now - cpu0[i]!) / Math.max(1, r.received) * 1e6
        if (topic === 'direct/room') direct = r.messagesPerSecond
        rows.push({ path: name, round: String(round), 'msgs/s': r.messagesPerSecond, 'p50 ms': r.p50ms, 'p99 ms': r.p99ms, received: r.received, 'gateway CPU µs/msg': perMessage(0, cpuSeconds(gw.child.pid)), 'Kafka CPU µs/msg': perMessage(1, cpuSeconds(kafkaPid)), 'ratio to direct': r.messagesPerSecond / direct, 'load 1 min': load })
      }
    }
    // Pattern 2's stages over all its rounds (direct runs add no observations).
    const breakdown = stageRows(stagesBefore, await readStages(admin))
    for (const [name] of paths) {
      const own = rows.filter((r) => r.path === name)
      const med = (k: string): number => median(own.map((r) => r[k] as number))
      rows.push({ path: name, round: 'median', 'msgs/s': med('msgs/s'), 'p50 ms': med('p50 ms'), 'p99 ms': med('p99 ms'), received: med('received'), 'gateway CPU µs/msg': med('gateway CPU µs/msg'), 'Kafka CPU µs/msg': med('Kafka CPU µs/msg'), 'ratio to direct': med('ratio to direct'), 'load 1 min': med('load 1 min') })
    }
    raw.breakdown = breakdown
    report(`Kafka bridge: QoS 1 end to end, 10,000 messages, 100 in flight, same gateway, ${rounds} alternating rounds`, rows, raw)
    // Where pattern 2's time went, from the gateway's mqgw_kafka_stage_seconds (see plugins/kafka/plugin.ts).
    if (breakdown.length > 0) report('Kafka bridge: pattern 2 per stage (gateway histogram, p50/p99 as bucket bounds)', breakdown, { breakdown })
  } finally {
    await stopGateway(gw)
  }
} finally {
  await kafka.destroy()
}
process.exit(0)
