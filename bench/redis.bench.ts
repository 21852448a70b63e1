/**
 * Redis mode (issue: Redis sessions and cluster):
 *  1. QoS 1 end to end, publisher on node B and subscriber on node A (Redis sessions +
 *     Redis bus), side by side with one node in memory mode: msgs/s, p50/p99 latency.
 *  2. Time to ready for a node starting with 100k persistent sessions in Redis.
 *  3. CONNECT cost (`connect`): gateway CPU per clean-session CONNECT, Redis mode vs memory.
 *  4. Aggregate (`aggregate [pairs]`, default 100 pairs): many QoS 1 pairs on one memory node vs
 *     spread by client id over two Redis-mode nodes (bench/redis-aggregate.ts; Go generator).
 *  5. Subscribe storm (`subscribe`): clients connecting to one node of three, each subscribing to
 *     a filter of its own (as `user/${username}/inbox`), route table on vs off, beside one memory
 *     node: CPU per client of every node and Redis, SUBACK p50/p99.
 * Part 1 also prints each process's CPU µs per message over the run (node A = subscriber's,
 * node B = publisher's, redis-server), which the machine's other load changes less than msgs/s.
 * Needs redis-server (Debian package); starts its own on a free 127.0.0.1 port.
 */
import { createRequire } from 'node:module'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestRedis } from '../test/helpers/redis.js'
import { cpuSeconds } from './brokers.js'
import { aggregate, commandsPerMessage, redisCommandCalls, redisPid } from './redis-aggregate.js'
import { loadgen, report, spawnGateway, stopGateway, type GatewayProcess } from './lib.js'

const require = createRequire(import.meta.url)
// The store's own encoder, so the sessions written here are exactly what it would write.
const msgpack = createRequire(require.resolve('aedes-persistence-redis'))('msgpack-lite') as { encode: (v: unknown) => Buffer }

const dir = mkdtempSync(join(tmpdir(), 'mqgw-bench-redis-'))
const configFile = (name: string, body: string): string => {
  const file = join(dir, `${name}.yaml`)
  writeFileSync(file, `log: { level: warn }\n${body}`)
  return file
}

interface PubSubResult { messagesPerSecond: number, p50ms: number, p99ms: number, received: number, generatorBusy: number }

/**
 * Each setup runs twice after a 2,000-message warm-up: `cold`, the first 20,000 messages (~1 s,
 * much of it code V8 has not optimised yet, so a node's CPU per message is 2-4x its steady
 * value; this was the only run before), then `steady`, 100,000 more. The generator's own CPU
 * is printed beside: at ~100 % it, not the node, set the msgs/s (the one-pair memory node's
 * steady run usually), so that row's ratio says how much of the generator's offered load two
 * nodes carry, not a ratio against a node at its limit (`aggregate 1` with AGG_PLACEMENT=cross
 * gives that, Go generator).
 */
async function throughput (redis: TestRedis): Promise<void> {
  const job = { mode: 'pubsub', count: 20000, inflight: 100, topic: 'bench/qos1', qos: 1, payloadBytes: 100, timeLimitMs: 60000 }
  const runs = [['cold', 20000], ['steady', 100000]] as const
  const rows: Array<Record<string, string | number>> = []
  const raw: Record<string, unknown> = {}

  const memory = await spawnGateway(['--config', configFile('memory', 'node: { id: bench-mem }')])
  try {
    const url = `mqtt://127.0.0.1:${memory.ports.mqtt}`
    await loadgen({ ...job, count: 2000, url, publishUrl: url })
    for (const [run, count] of runs) {
      const cpu0 = cpuSeconds(memory.child.pid!)
      const r = await loadgen<PubSubResult>({ ...job, count, url, publishUrl: url })
      const cpu = cpuSeconds(memory.child.pid!) - cpu0
      raw[`memory-${run}`] = { ...r, cpuSeconds: cpu }
      rows.push({ setup: 'one node, memory', run, 'msgs/s': r.messagesPerSecond, 'p50 ms': r.p50ms, 'p99 ms': r.p99ms, 'A µs/msg': 1e6 * cpu / r.received, 'generator busy %': 100 * r.generatorBusy })
    }
  } finally {
    await stopGateway(memory)
  }

  const redisConfig = (id: string): string => configFile(id, `node: { id: ${id} }\npersistence: { type: redis, redis: { url: "${redis.url}" } }`)
  const a = await spawnGateway(['--config', redisConfig('bench-a')])
  const b = await spawnGateway(['--config', redisConfig('bench-b')])
  try {
    const url = `mqtt://127.0.0.1:${a.ports.mqtt}`
    const publishUrl = `mqtt://127.0.0.1:${b.ports.mqtt}`
    await loadgen({ ...job, count: 2000, url, publishUrl })
    const rpid = await redisPid(redis)
    // CPU seconds of node A (subscriber's), node B (publisher's) and redis-server over one run.
    const sample = (): number[] => [cpuSeconds(a.child.pid!), cpuSeconds(b.child.pid!), cpuSeconds(rpid)]
    const perMessage = (c0: number[], n: number): Record<string, number> => {
      const [ca, cb, cr] = sample().map((v, i) => 1e6 * (v - c0[i]!) / n) as [number, number, number]
      return { 'A µs/msg': ca, 'B µs/msg': cb, 'redis µs/msg': cr }
    }
    for (const [run, count] of runs) {
      const c0 = sample()
      const calls0 = await redisCommandCalls(redis)
      const r = await loadgen<PubSubResult>({ ...job, count, url, publishUrl })
      const cpuR = perMessage(c0, r.received)
      const callsR = commandsPerMessage(calls0, await redisCommandCalls(redis), r.received)
      raw[`redis-${run}`] = { ...r, cpuMicrosPerMessage: cpuR, redisCallsPerMessage: callsR }
      rows.push({ setup: 'two nodes, Redis (pub B → sub A)', run, 'msgs/s': r.messagesPerSecond, 'p50 ms': r.p50ms, 'p99 ms': r.p99ms, ...cpuR, 'generator busy %': 100 * r.generatorBusy })
      // Which Redis commands a message costs (INFO commandstats; a script's inner calls counted).
      if (run === 'steady') console.log(`Redis commands per message, clean subscriber: ${callsR}`)
    }
    // The same with a persistent (clean:false) subscriber: each message is also written to its
    // session queue in Redis before the PUBACK, and cleared again by the subscriber's PUBACK.
    // `--clean-only` leaves it out (20,000 messages at ~12 commands each take 6-20 s).
    if (!process.argv.includes('--clean-only')) {
      const c0 = sample()
      const calls0 = await redisCommandCalls(redis)
      const p = await loadgen<PubSubResult>({ ...job, url, publishUrl, persistentSubscriber: true })
      const cpuP = perMessage(c0, p.received)
      const callsP = commandsPerMessage(calls0, await redisCommandCalls(redis), p.received)
      raw.redisPersistent = { ...p, cpuMicrosPerMessage: cpuP, redisCallsPerMessage: callsP }
      console.log(`Redis commands per message, persistent subscriber: ${callsP}`)
      rows.push({ setup: 'two nodes, Redis, persistent sub', run: 'cold', 'msgs/s': p.messagesPerSecond, 'p50 ms': p.p50ms, 'p99 ms': p.p99ms, ...cpuP, 'generator busy %': 100 * p.generatorBusy })
    }
  } finally {
    await stopGateway(a)
    await stopGateway(b)
  }
  const base = (run: string | number | undefined): number => rows.find((r) => r.setup === 'one node, memory' && r.run === run)!['msgs/s'] as number
  for (const row of rows) row['ratio to memory'] = (row['msgs/s'] as number) / base(row.run)
  report('QoS 1 end to end, one pair, 100 in flight: first 20,000 messages (cold) and 100,000 more (steady)', rows, raw)
}

async function timeToReady (redis: TestRedis, sessions: number): Promise<void> {
  const db = redis.client()
  await db.flushall()
  const batch = 5000
  for (let i = 0; i < sessions; i += batch) {
    const pipeline = db.pipeline()
    for (let j = i; j < Math.min(sessions, i + batch); j++) {
      const id = `device-${j}`
      pipeline.sadd('clients', id)
      pipeline.hset(`client:${encodeURIComponent(id)}`, `device/${id}/cmd`, msgpack.encode({ topic: `device/${id}/cmd`, qos: 1 }))
    }
    await pipeline.exec()
  }
  db.disconnect()
  const started = Date.now()
  const gw = await spawnGateway(['--config', configFile('bench-ready', `node: { id: bench-ready }\npersistence: { type: redis, redis: { url: "${redis.url}" } }`)], {}, 'readyz', 600000)
  const seconds = (Date.now() - started) / 1000
  const rss = Number(/VmRSS:\s+(\d+)/.exec(await (await import('node:fs/promises')).readFile(`/proc/${gw.child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
  await stopGateway(gw)
  report(`Time to ready with ${sessions} persistent sessions in Redis`, [{ sessions, 'seconds to /readyz 200': seconds, 'RSS MB after load': rss, 'target s': 2 }], { sessions, seconds, rssMB: rss })
}

interface ConnectResult { connected: number, refused: number, connectsPerSecond: number, p50ms: number, p99ms: number }

/**
 * CONNECT cost, one Redis-mode node vs one memory node: 3,000 clean-session CONNECTs, 100 in
 * flight (bench/loadgen.ts connect mode), and the gateway process's CPU per CONNECT, which the
 * machine's other load does not change as it changes connects/s. A Redis-mode CONNECT waits
 * for its session owner, subscriptions, previous will and QoS 2 state in Redis.
 */
async function connectCost (redis: TestRedis): Promise<void> {
  const rows: Array<Record<string, string | number>> = []
  const raw: Record<string, unknown> = {}
  const setups: Array<[string, string]> = [
    ['one node, memory', 'node: { id: bench-conn-mem }'],
    ['one node, Redis', `node: { id: bench-conn-redis }\npersistence: { type: redis, redis: { url: "${redis.url}" } }`]
  ]
  for (const [setup, body] of setups) {
    const gw = await spawnGateway(['--config', configFile(setup.replace(/\W+/g, '-'), `${body}\nlimits: { maxUnauthenticatedPerAddress: 0 }`)])
    try {
      const job = { mode: 'connect', url: `mqtt://127.0.0.1:${gw.ports.mqtt}`, count: 3000, concurrency: 100, clientPrefix: 'bench-conn', timeLimitMs: 60000 }
      await loadgen({ ...job, count: 300 }) // warm-up
      const cpu0 = cpuSeconds(gw.child.pid!)
      const r = await loadgen<ConnectResult>(job)
      const cpu = cpuSeconds(gw.child.pid!) - cpu0
      raw[setup] = { ...r, gatewayCpuSeconds: cpu }
      rows.push({ setup, 'connects/s': r.connectsPerSecond, 'p99 ms': r.p99ms, 'gateway CPU µs/connect': 1e6 * cpu / r.connected, refused: r.refused })
    } finally {
      await stopGateway(gw)
    }
  }
  report('CONNECT cost: 3,000 clean-session CONNECTs, 100 in flight (CPU includes the clients\' disconnects)', rows, raw)
}

interface SubscribeResult extends ConnectResult { subackP50ms: number, subackP99ms: number }

/**
 * A reconnect storm's cost in a cluster: 3,000 clients (100 in flight) connect to node A of three
 * Redis-mode nodes and each subscribes to a filter no other client has (each filter is new to the
 * node, so with the route table every SUBSCRIBE is announced to, and acknowledged by, the other
 * nodes before its SUBACK). Route table on vs off (`routeTable: false`: nothing announced, every
 * message published to Redis), beside one memory node; CPU per client of each process.
 */
async function subscribeStorm (redis: TestRedis): Promise<void> {
  const rows: Array<Record<string, string | number>> = []
  const raw: Record<string, unknown> = {}
  const job = (port: number, prefix: string) => ({ mode: 'connect', url: `mqtt://127.0.0.1:${port}`, count: 3000, concurrency: 100, clientPrefix: prefix, subscribe: `bench/storm/${prefix}/%i/inbox`, timeLimitMs: 60000 })
  const memory = await spawnGateway(['--config', configFile('storm-mem', 'node: { id: storm-mem }\nlimits: { maxUnauthenticatedPerAddress: 0 }')])
  try {
    await loadgen({ ...job(memory.ports.mqtt, 'warm'), count: 300 })
    const cpu0 = cpuSeconds(memory.child.pid!)
    const r = await loadgen<SubscribeResult>(job(memory.ports.mqtt, 'mem'))
    const cpu = cpuSeconds(memory.child.pid!) - cpu0
    raw.memory = { ...r, cpuSeconds: cpu }
    rows.push({ setup: 'one node, memory', 'clients/s': r.connectsPerSecond, 'SUBACK p50 ms': r.subackP50ms, 'SUBACK p99 ms': r.subackP99ms, 'A µs/client': 1e6 * cpu / r.connected, refused: r.refused })
  } finally {
    await stopGateway(memory)
  }
  for (const routeTable of [true, false]) {
    const db = redis.client()
    await db.flushall()
    db.disconnect()
    const nodes: GatewayProcess[] = []
    try {
      for (const id of ['storm-a', 'storm-b', 'storm-c']) {
        nodes.push(await spawnGateway(['--config', configFile(`${id}-${routeTable}`, `node: { id: ${id} }\nlimits: { maxUnauthenticatedPerAddress: 0 }\npersistence: { type: redis, redis: { url: "${redis.url}" }, routeTable: ${routeTable} }`)]))
      }
      const port = nodes[0]!.ports.mqtt
      await loadgen({ ...job(port, 'warm'), count: 300 })
      const pids = [...nodes.map((n) => n.child.pid!), await redisPid(redis)]
      const c0 = pids.map((pid) => cpuSeconds(pid))
      const r = await loadgen<SubscribeResult>(job(port, `rt-${routeTable}`))
      const us = pids.map((pid, i) => 1e6 * (cpuSeconds(pid) - c0[i]!) / r.connected)
      raw[`routeTable ${routeTable}`] = { ...r, cpuMicrosPerClient: us }
      rows.push({ setup: `three nodes, Redis, routeTable ${routeTable ? 'on' : 'off'}`, 'clients/s': r.connectsPerSecond, 'SUBACK p50 ms': r.subackP50ms, 'SUBACK p99 ms': r.subackP99ms, 'A µs/client': us[0]!, 'B µs/client': us[1]!, 'C µs/client': us[2]!, 'redis µs/client': us[3]!, refused: r.refused })
    } finally {
      for (const n of nodes) await stopGateway(n)
    }
  }
  report('Subscribe storm: 3,000 clients connect to node A and each subscribes to a filter of its own, 100 in flight (CPU includes the clients\' disconnects)', rows, raw)
}

// `node dist/bench/redis.bench.js [throughput|ready|connect|aggregate|subscribe] [sessions|pairs] [--clean-only]`: every part by default.
const args = process.argv.slice(2)
const parts = args.filter((a) => a === 'throughput' || a === 'ready' || a === 'connect' || a === 'aggregate' || a === 'subscribe')
const sessionsArg = args.find((a) => /^\d+$/.test(a))
const redis = new TestRedis()
await redis.start()
try {
  if (parts.length === 0 || parts.includes('throughput')) await throughput(redis)
  if (parts.length === 0 || parts.includes('connect')) await connectCost(redis)
  if (parts.length === 0 || parts.includes('aggregate')) await aggregate(redis, configFile, Number(sessionsArg ?? 100))
  if (parts.length === 0 || parts.includes('subscribe')) await subscribeStorm(redis)
  if (parts.length === 0 || parts.includes('ready')) await timeToReady(redis, Number(sessionsArg ?? 100000))
} finally {
  await redis.stop()
}
process.exit(0)
