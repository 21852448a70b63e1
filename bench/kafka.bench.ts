/**
 * Kafka bridge (issue: Kafka bridge): end-to-end QoS 1 msgs/s and latency for pattern 2
 * (client → Kafka → subscriber) against a direct topic on the same gateway process, side by
 * side. Starts its own Kafka (scripts/kafka/kafka.sh); load generator in its own process.
 * Prints the gateway's and Kafka's CPU per message, how busy the gateway's event loop and the
 * whole machine were (all cores: the gateway, Kafka and the generator share them), and pattern 2's time per stage
 * (mqgw_kafka_stage_seconds). Options: --count=N (messages per closed-loop run, default 50,000), --no-jvm-warmup, --commit-interval=MS, --nagle (the
 * gateway's MQTT listener with tcpNoDelay: false, Nagle on; the default was that until 2026-12), --rounds=N
 * (default 3): direct and pattern 2 alternate N times on the same gateway and Kafka; one row per
 * run (with the 1-minute load average, the machine being shared), then the medians. A direct
 * run is about one second, so one pair alone gave ratios from 0.4 to 1.1 on a busy machine.
 * The closed-loop rows measure at saturation (100 in flight: latency there is mostly queueing, mean
 * ≈ 100 / msgs/s). Then, per round, direct and pattern 2 PACED (open loop, latency from each
 * message's due time) at 50 % and 90 % of pattern 2's median closed-loop msgs/s (--paced=50,90 to
 * choose; --paced=none to skip): the latency a user sees at a stated load, with pattern 2's stages
 * per load (--rate-base=N: of N msgs/s instead, to compare builds at equal rates). --linger=MS: the
 * bridge's produceLingerMs; --fetch-pause=MS: its fetchPauseMs. --gen-nodelay: TCP_NODELAY on the generator's sockets too (mqtt.js leaves Nagle on).
 * --kafka-props=k=v,k=v: extra server.properties for the bench's broker (e.g. num.io.threads=1). The
 * broker's JVM settings come from scripts/kafka/kafka.sh (KAFKA_HEAP_OPTS, KAFKA_JVM_OPTS to compare
 * others); its stop-the-world pauses per run (DIR/gc.log) are the `Kafka STW` columns.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestKafka } from '../test/helpers/kafka.js'
import { coreSeconds, cpuSeconds as processCpuSeconds } from './brokers.js'
import { loadgen, report, spawnGateway, stopGateway } from './lib.js'

interface PubSubResult { seconds: number, messagesPerSecond: number, p50ms: number, p90ms: number, p99ms: number, maxms: number, received: number, lateSends: number, generatorBusy: number }

/** CPU seconds (user + system) a process (or its thread `tid`) has used so far; NaN when it is unknown or gone. */
function cpuSeconds (pid: number | undefined, tid?: number): number {
  if (pid === undefined) return NaN
  try { return processCpuSeconds(pid, tid) } catch { return NaN }
}

/**
 * Time a process's threads spent runnable but waiting for a core (ns; /proc/PID/task/TID/schedstat,
 * second field): the main thread alone (`mainOnly`, the gateway's event loop) or all threads (Kafka).
 */
function runqueueWaitNs (pid: number | undefined, mainOnly: boolean): number {
  if (pid === undefined) return NaN
  try {
    const tids = mainOnly ? [String(pid)] : readdirSync(`/proc/${pid}/task`)
    let ns = 0
    for (const tid of tids) {
      try { ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]) } catch { /* thread gone */ }
    }
    return ns
  } catch { return NaN }
}
/** Read and write system calls a process made so far (/proc/PID/io syscr, syscw): [reads, writes]. */
function syscalls (pid: number | undefined): [number, number] {
  try {
    const io = readFileSync(`/proc/${pid ?? 'none'}/io`, 'utf8')
    return [Number(/^syscr: (\d+)/m.exec(io)?.[1] ?? NaN), Number(/^syscw: (\d+)/m.exec(io)?.[1] ?? NaN)]
  } catch { return [NaN, NaN] }
}
/**
 * Kafka's stop-the-world pauses logged since `from` (a byte offset of DIR/gc.log, which
 * scripts/kafka/kafka.sh has the JVM write: one `safepoint` line per pause, GC or not, with its
 * `Total` including the time to reach it), in ms; and the log's size now, for the next run.
 */
function kafkaPauses (file: string, from: number): { pauses: number[], size: number } {
  let text: Buffer
  try { text = readFileSync(file) } catch { return { pauses: [], size: from } }
  const pauses: number[] = []
  // The JVM's async logger may have rotated the file meanwhile (10 MB): then from its start.
  const start = text.length >= from ? from : 0
  for (const m of text.subarray(start).toString('utf8').matchAll(/\[safepoint\s*\].*Total: (\d+) ns/g)) pauses.push(Number(m[1]) / 1e6)
  return { pauses, size: text.length }
}
function fileSize (file: string): number {
  try { return statSync(file).size } catch { return 0 }
}
/** A counter's value summed over its label sets, from /metrics text. */
function counterSum (text: string, name: string): number {
  let n = 0
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) n += Number(m[1])
  return n
}

/** mqgw_kafka_stage_seconds from /metrics: per stage, cumulative bucket counts by upper bound, sum and count. */
type Stages = Map<string, { buckets: Map<number, number>, sum: number, count: number }>
async function readStages (admin: string): Promise<Stages & { flowDropped?: number }> {
  const text = await (await fetch(`${admin}/metrics`)).text()
  const stages: Stages & { flowDropped?: number } = new Map()
  stages.flowDropped = counterSum(text, 'mqgw_flow_dropped_total')
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
/** after minus before, per stage and bucket. */
function diffStages (before: Stages, after: Stages): Stages {
  const d: Stages = new Map()
  for (const [name, a] of after) {
    const b = before.get(name)
    d.set(name, { buckets: new Map([...a.buckets].map(([le, n]) => [le, n - (b?.buckets.get(le) ?? 0)])), sum: a.sum - (b?.sum ?? 0), count: a.count - (b?.count ?? 0) })
  }
  return d
}
function addStages (acc: Stages | undefined, d: Stages): Stages {
  if (!acc) return d
  for (const [name, x] of d) {
    const a = acc.get(name)
    if (!a) { acc.set(name, x); continue }
    for (const [le, n] of x.buckets) a.buckets.set(le, (a.buckets.get(le) ?? 0) + n)
    a.sum += x.sum
    a.count += x.count
  }
  return acc
}
/** Per stage: mean, and the bucket upper bounds p50, p90 and p99 fall in. */
function stageRows (stages: Stages): Array<Record<string, string | number>> {
  const rows: Array<Record<string, string | number>> = []
  for (const name of ['queued', 'request', 'to_consumer', 'consumer_wait', 'publish', 'end_to_end']) {
    const a = stages.get(name)
    if (!a || a.count <= 0) continue
    const bounds = [...a.buckets.keys()].sort((x, y) => x - y)
    const at = (q: number): string => {
      const le = bounds.find((le) => a.buckets.get(le)! >= q * a.count)
      return le === undefined || le === Infinity ? '> 5000' : `<= ${+(le * 1000).toFixed(2)}`
    }
    rows.push({ stage: name, 'mean ms': a.sum / a.count * 1000, 'p50 ms': at(0.5), 'p90 ms': at(0.9), 'p99 ms': at(0.99), records: a.count })
  }
  return rows
}

// --commit-interval=N: the bridge's commitIntervalMs (default: the plugin's), to compare commit rates.
const commitInterval = process.argv.find((a) => a.startsWith('--commit-interval='))?.split('=')[1]
// --linger=N: the bridge's produceLingerMs (default: the plugin's).
const linger = process.argv.find((a) => a.startsWith('--linger='))?.split('=')[1]
if (linger !== undefined && !/^\d+$/.test(linger)) throw new Error(`--linger=${linger}: not a whole number of ms`)
// --fetch-pause=N: the bridge's fetchPauseMs (default: the plugin's).
const fetchPause = process.argv.find((a) => a.startsWith('--fetch-pause='))?.split('=')[1]
if (fetchPause !== undefined && !/^\d+$/.test(fetchPause)) throw new Error(`--fetch-pause=${fetchPause}: not a whole number of ms`)
if (commitInterval !== undefined && !/^\d+$/.test(commitInterval)) throw new Error(`--commit-interval=${commitInterval}: not a whole number of ms`)
const roundsArg = process.argv.find((a) => a.startsWith('--rounds='))?.split('=')[1] ?? '3'
if (!/^[1-9]\d?$/.test(roundsArg)) throw new Error(`--rounds=${roundsArg}: a whole number from 1 to 99`)
const rounds = Number(roundsArg)
// Messages per closed-loop run. 10,000 was ~0.4 s on the direct topic, where the gateway's CPU
// per message was still ~1.5x its value later in the same process; 50,000 is ~1 s there.
const countArg = process.argv.find((a) => a.startsWith('--count='))?.split('=')[1] ?? '50000'
if (!/^[1-9]\d{3,6}$/.test(countArg)) throw new Error(`--count=${countArg}: a whole number from 1,000 to 9,999,999`)
const closedCount = Number(countArg)
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2 }
/** One row of medians of the rows' numeric columns (same path and load). */
function medianRow (own: Array<Record<string, string | number>>): Record<string, string | number> {
  const out: Record<string, string | number> = { ...own[0], round: 'median' }
  for (const [k, v] of Object.entries(own[0] ?? {})) if (typeof v === 'number') out[k] = median(own.map((r) => r[k] as number))
  return out
}
function medians (rows: Array<Record<string, string | number>>, paths: string[]): Array<Record<string, string | number>> {
  return paths.map((p) => medianRow(rows.filter((r) => r.path === p)))
}
const kafkaProps = process.argv.find((a) => a.startsWith('--kafka-props='))?.slice('--kafka-props='.length)
const serverProperties: Record<string, string> = {}
for (const kv of kafkaProps?.split(',') ?? []) {
  const m = /^([a-z0-9.]+)=([^=]+)$/.exec(kv)
  if (!m) throw new Error(`--kafka-props: ${kv} is not key=value`)
  serverProperties[m[1]!] = m[2]!
}
const kafka = new TestKafka({ serverProperties })
await kafka.start()
try {
  await kafka.createTopics(['chat'], 1)
  const dir = mkdtempSync(join(tmpdir(), 'mqgw-bench-kafka-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `log: { level: warn }
flow: {}
${process.argv.includes('--nagle') ? 'listeners: { mqtt: { tcpNoDelay: false } }\n' : ''}kafka:
  brokers: ["${kafka.brokers[0]}"]
  groupId: bench-bridge
  routes: [ { mqtt: "chat/#", kafkaTopic: chat } ]
  consume: [ { kafkaTopic: chat } ]
${commitInterval !== undefined ? `  commitIntervalMs: ${commitInterval}\n` : ''}${linger !== undefined ? `  produceLingerMs: ${linger}\n` : ''}${fetchPause !== undefined ? `  fetchPauseMs: ${fetchPause}\n` : ''}`)
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
    const noDelay = process.argv.includes('--gen-nodelay')
    /** Pattern 2's stages summed over the runs of each load ('closed' or the paced percentage). */
    const stageSums = new Map<string, Stages>()
    const kafkaPid = Number(readFileSync(join(kafka.dir, 'kafka.pid'), 'utf8'))
    const run = async (name: string, topic: string, round: number, load: string, extra: { count: number, rate?: number }): Promise<Record<string, string | number>> => {
      const cpu0 = [cpuSeconds(gw.child.pid), cpuSeconds(kafkaPid), cpuSeconds(gw.child.pid, gw.child.pid), coreSeconds().busy]
      const startedAt = performance.now()
      const before = await readStages(admin)
      const wait0 = [runqueueWaitNs(gw.child.pid, true), runqueueWaitNs(kafkaPid, false)]
      const io0 = syscalls(gw.child.pid)
      const gcLog = join(kafka.dir, 'gc.log')
      const gc0 = fileSize(gcLog)
      const load1 = loadavg()[0]!
      // Paced: bounded at the run's own length + 10 s (a message the flow plugin dropped never arrives).
      const r = await loadgen<PubSubResult>({ mode: 'pubsub', url, publishUrl: url, topic, qos: 1, inflight: extra.rate === undefined ? 100 : 2000, payloadBytes: 100, noDelay, ...extra, timeLimitMs: extra.rate === undefined ? 60000 : extra.count / extra.rate * 1000 + 10000 })
      raw[`${name} ${load} #${round}`] = r
      // How busy the gateway's event loop and the whole machine were over the generator's run (its
      // connects included): a closed-loop row whose loop is well below 100 % is bound by latency, and
      // a machine near 100 % (all cores) by the cores the gateway, Kafka and the generator share.
      const elapsed = (performance.now() - startedAt) / 1000
      const loopBusy = 100 * (cpuSeconds(gw.child.pid, gw.child.pid) - cpu0[2]!) / elapsed
      const machineBusy = 100 * (coreSeconds().busy - cpu0[3]!) / elapsed / cpus().length
      // CPU per delivered message: the gateway's and Kafka's (the JVM), µs; 10 ms clock ticks.
      const perMessage = (i: number, now: number): number => (now - cpu0[i]!) / Math.max(1, r.received) * 1e6
      // Waiting for a core, ms per second of the run: the event loop's (all of it is latency), Kafka's threads'.
      const waited = (i: number, now: number): number => (now - wait0[i]!) / 1e6 / r.seconds
      const waits = [waited(0, runqueueWaitNs(gw.child.pid, true)), waited(1, runqueueWaitNs(kafkaPid, false))]
      const io1 = syscalls(gw.child.pid)
      const after = await readStages(admin)
      const { pauses } = kafkaPauses(gcLog, gc0)
      const row = { path: name, load, round: String(round), 'msgs/s': r.messagesPerSecond, 'p50 ms': r.p50ms, 'p90 ms': r.p90ms, 'p99 ms': r.p99ms, 'max ms': r.maxms, received: r.received, 'gateway CPU µs/msg': perMessage(0, cpuSeconds(gw.child.pid)), 'Kafka CPU µs/msg': perMessage(1, cpuSeconds(kafkaPid)), 'gw reads/msg': (io1[0] - io0[0]) / Math.max(1, r.received), 'gw writes/msg': (io1[1] - io0[1]) / Math.max(1, r.received), 'late sends': r.lateSends, 'gen busy %': 100 * r.generatorBusy, 'gw loop busy %': loopBusy, 'machine busy %': machineBusy, 'flow dropped': (after.flowDropped ?? 0) - (before.flowDropped ?? 0), 'gw loop runq ms/s': waits[0]!, 'Kafka runq ms/s': waits[1]!, 'Kafka STW ms/s': pauses.reduce((a, b) => a + b, 0) / r.seconds, 'Kafka max STW ms': Math.max(0, ...pauses), 'load 1 min': load1 }
      if (topic === 'chat/room') stageSums.set(load, addStages(stageSums.get(load), diffStages(before, after)))
      return row
    }
    const closed: Array<Record<string, string | number>> = []
    for (let round = 1; round <= rounds; round++) {
      let direct = NaN
      for (const [name, topic] of paths) {
        const row = await run(name, topic, round, 'closed 100', { count: closedCount })
        if (topic === 'direct/room') direct = row['msgs/s'] as number
        row['ratio to direct'] = (row['msgs/s'] as number) / direct
        closed.push(row)
      }
    }
    rows.push(...closed, ...medians(closed, paths.map(([n]) => n)))
    report(`Kafka bridge: QoS 1 end to end, ${closedCount.toLocaleString('en')} messages, 100 in flight (saturation), same gateway, ${rounds} alternating rounds${noDelay ? ', generator TCP_NODELAY' : ''}`, rows, raw)
    // Paced: at stated fractions of pattern 2's closed-loop maximum, each run about 4 s.
    const pacedArg = process.argv.find((a) => a.startsWith('--paced='))?.split('=')[1] ?? '50,90'
    const percents = pacedArg === 'none' ? [] : pacedArg.split(',').map(Number)
    if (percents.some((p) => !Number.isInteger(p) || p < 1 || p > 150)) throw new Error(`--paced=${pacedArg}: whole percentages from 1 to 150, comma-separated, or none`)
    // --rate-base=N: percentages of N msgs/s instead (the same rates across builds being compared).
    const rateBase = process.argv.find((a) => a.startsWith('--rate-base='))?.split('=')[1]
    if (rateBase !== undefined && !/^[1-9]\d*$/.test(rateBase)) throw new Error(`--rate-base=${rateBase}: a whole number of msgs/s`)
    const max2 = rateBase !== undefined ? Number(rateBase) : median(closed.filter((r) => r.path === paths[1][0]).map((r) => r['msgs/s'] as number))
    if (percents.length > 0) {
      const paced: Array<Record<string, string | number>> = []
      for (let round = 1; round <= rounds; round++) {
        for (const pct of percents) {
          const rate = Math.round(max2 * pct / 100)
          for (const [name, topic] of paths) paced.push(await run(name, topic, round, `${pct} % = ${rate}/s`, { count: Math.round(rate * 4), rate }))
        }
      }
      const groups = [...new Set(paced.map((r) => `${r.path as string}\u0000${r.load as string}`))].map((k) => k.split('\u0000') as [string, string])
      const med = groups.map(([path, load]) => medianRow(paced.filter((r) => r.path === path && r.load === load)))
      report(`Kafka bridge: paced (open loop) at ${percents.join(' and ')} % of ${rateBase !== undefined ? '--rate-base' : "pattern 2's closed-loop median"} (${Math.round(max2)} msgs/s), ${rounds} rounds${noDelay ? ', generator TCP_NODELAY' : ''}`, [...paced, ...med], raw)
    }
    // Where pattern 2's time went, per load, from the gateway's mqgw_kafka_stage_seconds (see plugins/kafka/plugin.ts).
    const breakdown = [...stageSums].flatMap(([load, sums]) => stageRows(sums).map((r) => ({ load, ...r })))
    if (breakdown.length > 0) report('Kafka bridge: pattern 2 per stage and load (gateway histogram, percentiles as bucket upper bounds)', breakdown, { breakdown })
  } finally {
    await stopGateway(gw)
    // BENCH_GATEWAY_STDOUT=FILE: the gateway's stdout there (e.g. with BENCH_GATEWAY_NODE_ARGS=--trace-gc).
    if (process.env.BENCH_GATEWAY_STDOUT) writeFileSync(process.env.BENCH_GATEWAY_STDOUT, gw.stdout())
  }
} finally {
  await kafka.destroy()
}
process.exit(0)
