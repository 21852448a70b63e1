import { Kafka, logLevel, type Consumer, type LogEntry, type Producer } from 'kafkajs'
import type { Logger } from '../../src/log.js'
import { noop } from '../../src/noop.js'

/**
 * The narrow interface the bridge needs from a Kafka client, so that kafkajs (in
 * maintenance mode) can be replaced by @platformatic/kafka or Confluent's client
 * without touching the bridge.
 */
export interface BridgeRecord {
  key: string | null
  value: Buffer
  headers: Record<string, string>
}

export interface ConsumedRecord {
  topic: string
  partition: number
  offset: string
  value: Buffer | null
  headers: Record<string, Buffer | undefined>
}

export interface BridgeKafkaClient {
  /** Resolves when Kafka acknowledged the record (acks = all). */
  produce: (topic: string, record: BridgeRecord) => Promise<void>
  /**
   * Consumes `topics` in `groupId`; `deliver` gets each batch in partition order and
   * resolves once the records were handed on; only then are their offsets committed.
   */
  consume: (topics: string[], groupId: string, deliver: (records: ConsumedRecord[]) => Promise<void>, onLag: (topic: string, partition: number, lag: number) => void) => Promise<void>
  producerConnected: () => boolean
  consumerRunning: () => boolean
  close: () => Promise<void>
}

export function createKafkaJsClient (opts: { brokers: string[], clientId: string, connectionTimeoutMs: number, produceTimeoutMs: number }, log: Logger): BridgeKafkaClient {
  const kafka = new Kafka({
    clientId: opts.clientId,
    brokers: opts.brokers,
    connectionTimeout: opts.connectionTimeoutMs,
    requestTimeout: opts.produceTimeoutMs,
    // Keep retrying in the background; a single produce is bounded separately.
    retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 8 },
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...extra } = entry.log
      const line = { kafka: entry.namespace, ...pick(extra, ['error', 'groupId', 'topic', 'broker']) }
      if (entry.level <= logLevel.ERROR) log.warn(line, `kafkajs: ${message}`)
      else log.debug(line, `kafkajs: ${message}`)
    }
  })
  let producerConnected = false
  let consumerRunning = false
  // One request in flight: records of a client leave in the order they were sent.
  const producer: Producer = kafka.producer({ maxInFlightRequests: 1, allowAutoTopicCreation: true, retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 1000 } })
  producer.on(producer.events.CONNECT, () => { producerConnected = true })
  producer.on(producer.events.DISCONNECT, () => { producerConnected = false })
  let connecting: Promise<void> | undefined
  const ensureConnected = (): Promise<void> => {
    if (producerConnected) return Promise.resolve()
    connecting ??= producer.connect().finally(() => { connecting = undefined })
    return connecting
  }
  void ensureConnected().catch((err: Error) => log.warn({ err: err.message }, 'Kafka producer not connected yet; will retry on demand'))
  let consumer: Consumer | undefined
  let closed = false

  /** `deadline`: when the PUBLISH waiting for this record is refused (enqueued + produceTimeoutMs). */
  interface Pending { record: BridgeRecord, deadline: number, resolve: () => void, reject: (err: Error) => void }
  const lanes = new Map<string, { queue: Pending[], sending: boolean }>()
  const sendLane = async (topic: string, lane: { queue: Pending[], sending: boolean }): Promise<void> => {
    lane.sending = true
    while (lane.queue.length > 0) {
      // One bound per record, from when it was handed over, whatever it waited behind:
      // the client's PUBLISH is answered within produceTimeoutMs (below hooks.timeoutMs,
      // see check() in plugin.ts). A record whose time ran out while it queued is refused
      // without being sent, so the client's resend cannot duplicate it.
      const now = Date.now()
      const batch: Pending[] = []
      for (const p of lane.queue.splice(0, 500)) {
        if (p.deadline > now) batch.push(p)
        else p.reject(new Error(`Kafka produce: not sent within ${opts.produceTimeoutMs} ms (waited behind earlier records)`))
      }
      if (batch.length === 0) continue
      // The oldest record's remaining time bounds connect and send together.
      const budget = batch[0]!.deadline - now
      try {
        await withTimeout((async () => {
          await ensureConnected()
          await producer.send({ topic, acks: -1, timeout: budget, messages: batch.map((p) => ({ key: p.record.key, value: p.record.value, headers: p.record.headers })) })
        })(), budget, 'Kafka produce')
        for (const p of batch) p.resolve()
      } catch (err) {
        for (const p of batch) p.reject(err as Error)
      }
    }
    lane.sending = false
  }

  return {
    produce: (topic, record) => {
      // kafkajs does not keep the order of separate send() calls (each has its own
      // async prelude), so each topic has one send in flight and records that arrive
      // meanwhile go out together in the next one, in arrival order.
      let lane = lanes.get(topic)
      if (!lane) lanes.set(topic, lane = { queue: [], sending: false })
      const entry: Pending = { record, deadline: Date.now() + opts.produceTimeoutMs, resolve: noop, reject: noop }
      const promise = new Promise<void>((resolve, reject) => { entry.resolve = resolve; entry.reject = reject })
      lane.queue.push(entry)
      if (!lane.sending) void sendLane(topic, lane)
      return promise
    },
    consume: async (topics, groupId, deliver, onLag) => {
      const start = async (): Promise<void> => {
        if (closed) return
        const c = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 500, allowAutoTopicCreation: true, retry: { retries: 5 } })
        consumer = c
        c.on(c.events.GROUP_JOIN, () => { consumerRunning = true })
        c.on(c.events.STOP, () => { consumerRunning = false })
        c.on(c.events.CRASH, (event) => {
          consumerRunning = false
          log.warn({ err: event.payload.error.message, restart: event.payload.restart }, 'Kafka consumer crashed')
          // kafkajs restarts retriable crashes itself; otherwise start over after a pause.
          if (!event.payload.restart && !closed) setTimeout(() => { void c.disconnect().catch(() => {}).then(start) }, 2000)
        })
        try {
          await c.connect()
          for (const topic of topics) await c.subscribe({ topic, fromBeginning: false })
          await c.run({
            autoCommit: true,
            eachBatchAutoResolve: false,
            eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
              if (!isRunning() || isStale()) return
              await deliver(batch.messages.map((m) => ({ topic: batch.topic, partition: batch.partition, offset: m.offset, value: m.value, headers: flattenHeaders(m.headers) })))
              // Committed only after delivery: at least once.
              const last = batch.messages.at(-1)
              if (last) resolveOffset(last.offset)
              await heartbeat()
              onLag(batch.topic, batch.partition, Number(batch.offsetLag()))
            }
          })
        } catch (err) {
          consumerRunning = false
          log.warn({ err: (err as Error).message }, 'Kafka consumer could not start; retrying')
          await c.disconnect().catch(() => {})
          if (!closed) setTimeout(() => { void start() }, 2000)
        }
      }
      await start()
    },
    producerConnected: () => producerConnected,
    consumerRunning: () => consumerRunning,
    close: async () => {
      closed = true
      await consumer?.disconnect().catch(() => {})
      await producer.disconnect().catch(() => {})
    }
  }
}

function flattenHeaders (headers: Record<string, Buffer | string | Array<Buffer | string> | undefined> | undefined): Record<string, Buffer | undefined> {
  const out: Record<string, Buffer | undefined> = {}
  for (const [k, v] of Object.entries(headers ?? {})) {
    const first = Array.isArray(v) ? v[0] : v
    out[k] = first === undefined ? undefined : (typeof first === 'string' ? Buffer.from(first) : first)
  }
  return out
}

function pick (o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k]
  return out
}


function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
    p.then((v) => { clearTimeout(timer); resolve(v) }, (e: unknown) => { clearTimeout(timer); reject(e instanceof Error ? e : new Error(String(e))) })
  })
}
