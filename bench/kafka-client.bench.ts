/**
 * Issue #15 item 3: kafkajs 2.2.4 (what plugins/kafka/kafka-client.ts uses) side by side with
 * @platformatic/kafka 1.x (the last line that runs on Node 20; 2.x needs Node >= 22.22), raw
 * clients on the real single-node Kafka 3.9 of scripts/kafka/kafka.sh:
 *   - produce acks = all, one record per send: 1 in flight (latency) and 100 in flight (the
 *     bridge's shape: one produce per QoS 1 PUBLISH);
 *   - produce acks = all, 100 records per send, one send in flight (the bridge's per-topic lane);
 *   - consume: a fresh group reads N pre-produced records from the earliest offset;
 *   - rebalance: a second consumer joins a group of one on a 2-partition topic; time until it
 *     has its assignment.
 * Every loop is bounded in count and time. Run: node dist/bench/kafka-client.bench.js
 */
import { performance } from 'node:perf_hooks'
import { Consumer as PConsumer, Producer as PProducer, ProduceAcks, type Message as PMessage } from '@platformatic/kafka'
import { logLevel, type Kafka } from 'kafkajs'
import { TestKafka } from '../test/helpers/kafka.js'
import { report } from './lib.js'

const SEND_COUNT = Number(process.env.BENCH_SEND_COUNT ?? 20000)
const LATENCY_COUNT = Number(process.env.BENCH_LATENCY_COUNT ?? 2000)
const CONSUME_COUNT = Number(process.env.BENCH_CONSUME_COUNT ?? 50000)
const PHASE_LIMIT_MS = 30000
const payload = Buffer.alloc(100, 'x')
const mqttTopic = Buffer.from('chat/room')
// @platformatic/kafka's default serializers take Buffers only, header keys included.
const mqttTopicKey = Buffer.from('mqtt-topic')

interface Produced { records: number, seconds: number, perSecond: number, p50ms: number, p99ms: number }
interface Client {
  name: string
  /** Sends `records` records in one request; resolves on acks = all. */
  send: (topic: string, records: number) => Promise<void>
  /** Reads `count` records of `topic` from the earliest offset in a fresh group; resolves with the seconds it took. */
  consumeAll: (topic: string, groupId: string, count: number) => Promise<number>
  /** A member of `groupId` on `topic`; resolves when it has an assignment, with its close(). */
  join: (topic: string, groupId: string) => Promise<() => Promise<void>>
  close: () => Promise<void>
}

function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
}

/** `inflight` workers each send `perSend` records per request until `total` records or the time limit. */
async function produce (c: Client, topic: string, total: number, inflight: number, perSend: number): Promise<Produced> {
  const lat: number[] = []
  let started = 0
  const t0 = performance.now()
  const end = t0 + PHASE_LIMIT_MS
  const worker = async (): Promise<void> => {
    while (started < total && performance.now() < end) {
      started += perSend
      const s = performance.now()
      await c.send(topic, perSend)
      lat.push(performance.now() - s)
    }
  }
  await Promise.all(Array.from({ length: inflight }, worker))
  const seconds = (performance.now() - t0) / 1000
  lat.sort((a, b) => a - b)
  const records = lat.length * perSend
  return { records, seconds, perSecond: records / seconds, p50ms: percentile(lat, 0.5), p99ms: percentile(lat, 0.99) }
}

function withLimit<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<T>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: over ${ms} ms`)), ms) })]).finally(() => clearTimeout(timer))
}

function kafkajsClient (kafka: TestKafka): Client {
  const k: Kafka = kafka.client('bench-kafkajs', { level: logLevel.NOTHING })
  // As in plugins/kafka/kafka-client.ts.
  const producer = k.producer({ maxInFlightRequests: 1, allowAutoTopicCreation: true })
  let connected: Promise<void> | undefined
  return {
    name: 'kafkajs 2.2.4',
    send: async (topic, records) => {
      await (connected ??= producer.connect())
      await producer.send({ topic, acks: -1, messages: Array.from({ length: records }, () => ({ key: null, value: payload, headers: { 'mqtt-topic': 'chat/room' } })) })
    },
    consumeAll: async (topic, groupId, count) => {
      const c = k.consumer({ groupId, maxWaitTimeInMs: 500, sessionTimeout: 10000, heartbeatInterval: 1000 })
      await c.connect()
      await c.subscribe({ topic, fromBeginning: true })
      const t0 = performance.now()
      let got = 0
      try {
        await withLimit(new Promise<void>((resolve) => {
          void c.run({ eachBatch: async ({ batch }) => { got += batch.messages.length; if (got >= count) resolve() } })
        }), PHASE_LIMIT_MS * 2, `kafkajs consume (${got}/${count})`)
        return (performance.now() - t0) / 1000
      } finally { await c.disconnect() }
    },
    join: async (topic, groupId) => {
      const c = k.consumer({ groupId, maxWaitTimeInMs: 500, sessionTimeout: 10000, heartbeatInterval: 1000 })
      const joined = new Promise<void>((resolve) => { c.on(c.events.GROUP_JOIN, () => resolve()) })
      await c.connect()
      await c.subscribe({ topic, fromBeginning: false })
      await c.run({ eachBatch: async () => {} })
      await withLimit(joined, PHASE_LIMIT_MS, 'kafkajs join')
      return () => c.disconnect()
    },
    close: () => producer.disconnect()
  }
}

function platformaticClient (kafka: TestKafka): Client {
  const opts = { bootstrapBrokers: kafka.brokers, connectTimeout: 3000, timeout: 10000, retries: 5, retryDelay: 200 }
  const producer = new PProducer({ ...opts, clientId: 'bench-platformatic', acks: ProduceAcks.ALL, autocreateTopics: true })
  return {
    name: '@platformatic/kafka 1.35.0',
    send: async (topic, records) => {
      await producer.send({ messages: Array.from({ length: records }, () => ({ topic, value: payload, headers: new Map([[mqttTopicKey, mqttTopic]]) })) })
    },
    consumeAll: async (topic, groupId, count) => {
      const c = new PConsumer({ ...opts, clientId: 'bench-platformatic-c', groupId, maxWaitTime: 500, sessionTimeout: 10000, heartbeatInterval: 1000 })
      const t0 = performance.now()
      const stream = await c.consume({ topics: [topic], mode: 'earliest', autocommit: true })
      let got = 0
      try {
        await withLimit(new Promise<void>((resolve) => {
          stream.on('data', (_m: PMessage<Buffer, Buffer, Buffer, Buffer>) => { if (++got >= count) resolve() })
        }), PHASE_LIMIT_MS * 2, `platformatic consume (${got}/${count})`)
        return (performance.now() - t0) / 1000
      } finally { await stream.close(); await c.close() }
    },
    join: async (topic, groupId) => {
      const c = new PConsumer({ ...opts, clientId: 'bench-platformatic-j', groupId, maxWaitTime: 500, sessionTimeout: 10000, heartbeatInterval: 1000 })
      const joined = new Promise<void>((resolve) => { c.on('consumer:group:join', () => resolve()) })
      const stream = await c.consume({ topics: [topic], mode: 'latest', autocommit: true })
      stream.on('data', () => {})
      await withLimit(joined, PHASE_LIMIT_MS, 'platformatic join')
      return async () => { await stream.close(); await c.close() }
    },
    close: () => producer.close()
  }
}

const kafka = new TestKafka()
await kafka.start()
try {
  const rows: Array<Record<string, string | number>> = []
  const raw: Record<string, unknown> = {}
  const clients = [kafkajsClient(kafka), platformaticClient(kafka)]
  for (const [i, c] of clients.entries()) {
    const topic = `bench-produce-${i}`
    const consumeTopic = `bench-consume-${i}`
    const groupTopic = `bench-group-${i}`
    await kafka.createTopics([topic, consumeTopic])
    await kafka.createTopics([groupTopic], 2)
    await produce(c, topic, 200, 1, 1) // warm-up: connection, metadata
    const lat1 = await produce(c, topic, LATENCY_COUNT, 1, 1)
    const conc = await produce(c, topic, SEND_COUNT, 100, 1)
    const batched = await produce(c, topic, SEND_COUNT * 5, 1, 100)
    await produce(c, consumeTopic, CONSUME_COUNT, 4, 500)
    const consumeSeconds = await c.consumeAll(consumeTopic, `bench-consume-${i}`, CONSUME_COUNT)
    const leaveA = await c.join(groupTopic, `bench-group-${i}`)
    const t0 = performance.now()
    const leaveB = await c.join(groupTopic, `bench-group-${i}`)
    const rebalanceMs = performance.now() - t0
    await leaveB()
    await leaveA()
    await c.close()
    raw[c.name] = { lat1, conc, batched, consumeSeconds, rebalanceMs }
    rows.push({
      client: c.name,
      '1 in flight p50 ms': lat1.p50ms,
      '1 in flight p99 ms': lat1.p99ms,
      '100 in flight rec/s': conc.perSecond,
      '100 in flight p50 ms': conc.p50ms,
      '100 in flight p99 ms': conc.p99ms,
      '100/send rec/s': batched.perSecond,
      'consume rec/s': CONSUME_COUNT / consumeSeconds,
      'join+rebalance ms': rebalanceMs
    })
  }
  const base = rows[0]!
  const ratio: Record<string, string | number> = { client: 'ratio platformatic / kafkajs' }
  for (const key of Object.keys(base)) if (key !== 'client') ratio[key] = (rows[1]![key] as number) / (base[key] as number)
  rows.push(ratio)
  report('Kafka client: kafkajs vs @platformatic/kafka, acks = all, 100 B records, Kafka 3.9 single node', rows, raw)
} finally {
  await kafka.destroy()
}
process.exit(0)
