import { Consumer, ProduceAcks, Producer, type Message, type MessagesStream, type MessageToProduce } from '@platformatic/kafka'
import type { Logger } from '../../src/log.js'
import { noop } from '../../src/noop.js'

/**
 * The narrow interface the bridge needs from a Kafka client, so that the client library
 * (@platformatic/kafka; kafkajs 2.2.4 before, unmaintained) can be replaced by another
 * (Confluent's) without touching the bridge.
 */
export interface BridgeRecord {
  key: string | null
  value: Buffer
  /** Values as strings, or as Buffers when the caller has them already (constants made once). */
  headers: Record<string, string | Buffer>
}

export interface ConsumedRecord {
  topic: string
  partition: number
  offset: bigint
  value: Buffer | null
  /** As fetched: names and values as bytes (a later header of the same name wins). */
  headers: ReadonlyMap<Buffer, Buffer | undefined>
  /** The record's Kafka timestamp (ms since the epoch; the producer's clock when it was sent). */
  timestamp: number
  /** When this process received the record from a fetch (ms since the epoch, fractional). */
  fetchedAt: number
}

/** Where a produced record's time went, per record, in seconds (see mqgw_kafka_stage_seconds). */
export type ProduceStage = 'queued' | 'request'

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

type Msg = Message<Buffer, Buffer, Buffer, Buffer>

/**
 * Header names as Buffers, made once: a record carries the same few names (plugin.ts), and
 * Buffer.from per name and record was a third of the record's allocations. Bounded, in case
 * a caller ever makes names up per record.
 */
const headerNames = new Map<string, Buffer>()
function headerName (name: string): Buffer {
  let b = headerNames.get(name)
  if (!b) {
    b = Buffer.from(name)
    if (headerNames.size < 64) headerNames.set(name, b)
  }
  return b
}

/** Records in one produce request at most. */
const MAX_PRODUCE_BATCH = 500

/** Consumed records waiting for delivery beyond which fetching pauses (memory bound). */
const MAX_BATCHED = 2000

/**
 * BridgeKafkaClient on @platformatic/kafka (maintained; bench/kafka-client.bench.ts: 3-4x
 * kafkajs' acks = all produce throughput at a quarter of its latency).
 */
export function createPlatformaticClient (opts: { brokers: string[], clientId: string, connectionTimeoutMs: number, produceTimeoutMs: number, commitIntervalMs?: number, produceLingerMs?: number, fetchPauseMs?: number, observe?: (stage: ProduceStage, seconds: number, records: number) => void }, log: Logger): BridgeKafkaClient {
  const commitIntervalMs = opts.commitIntervalMs ?? 100
  const lingerMs = opts.produceLingerMs ?? 0
  const fetchPauseMs = opts.fetchPauseMs ?? 0
  const observe = opts.observe ?? noop
  const base = { bootstrapBrokers: opts.brokers, connectTimeout: opts.connectionTimeoutMs, timeout: opts.produceTimeoutMs, retries: 3, retryDelay: 200, autocreateTopics: true }
  const producer = new Producer<Buffer, Buffer, Buffer, Buffer>({ ...base, clientId: opts.clientId, acks: ProduceAcks.ALL })
  let producerConnected = false
  let consumerRunning = false
  let closed = false
  producer.on('client:broker:connect', () => { producerConnected = true })
  producer.on('client:broker:disconnect', () => { producerConnected = false; probe() })
  producer.on('client:broker:failed', () => { producerConnected = false; probe() })
  // The client connects lazily: a metadata request connects it now, and again (every second)
  // while it is down, so /readyz follows Kafka and not only the traffic.
  let probing: NodeJS.Timeout | undefined
  function probe (): void {
    if (closed || probing) return
    probing = setTimeout(() => {
      probing = undefined
      producer.metadata({ topics: [] }).then(() => { producerConnected = true }, () => { producerConnected = false; probe() })
    }, 1000)
    probing.unref()
  }
  producer.metadata({ topics: [] }).then(() => { producerConnected = true }, (err: Error) => {
    log.warn({ err: err.message }, 'Kafka producer not connected yet; will retry')
    probe()
  })

  interface Pending { record: BridgeRecord, handedAt: number, deadline: number, resolve: () => void, reject: (err: Error) => void }
  const lanes = new Map<string, { queue: Pending[], sending: boolean }>()
  const sendLane = async (topic: string, lane: { queue: Pending[], sending: boolean }): Promise<void> => {
    lane.sending = true
    while (lane.queue.length > 0) {
      // Linger (produceLingerMs, off by default): a request is sent once its oldest record has
      // waited lingerMs, unless a full batch is already waiting. Each produce request costs the
      // gateway a write and its request machinery, and Kafka a request and the consumer's fetch
      // it wakes: at a few thousand msgs/s a request carried a handful of records (bench/kafka, paced).
      if (lingerMs > 0 && lane.queue.length < MAX_PRODUCE_BATCH) {
        const wait = lane.queue[0]!.handedAt + lingerMs - performance.now()
        if (wait >= 1) await new Promise((resolve) => setTimeout(resolve, wait))
      }
      // One bound per record, from when it was handed over, whatever it waited behind:
      // the client's PUBLISH is answered within produceTimeoutMs (below hooks.timeoutMs,
      // see check() in plugin.ts). A record whose time ran out while it queued is refused
      // without being sent, so the client's resend cannot duplicate it.
      const now = Date.now()
      const batch: Pending[] = []
      for (const p of lane.queue.splice(0, MAX_PRODUCE_BATCH)) {
        if (p.deadline > now) batch.push(p)
        else p.reject(new Error(`Kafka produce: not sent within ${opts.produceTimeoutMs} ms (waited behind earlier records)`))
      }
      if (batch.length === 0) continue
      const budget = batch[0]!.deadline - now
      const sentAt = performance.now()
      const messages = new Array<MessageToProduce>(batch.length)
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i]!
        observe('queued', (sentAt - p.handedAt) / 1000, 1)
        const headers = new Map<Buffer, Buffer>()
        for (const k in p.record.headers) {
          const v = p.record.headers[k]!
          headers.set(headerName(k), typeof v === 'string' ? Buffer.from(v) : v)
        }
        messages[i] = { topic, key: p.record.key === null ? undefined : Buffer.from(p.record.key), value: p.record.value, headers }
      }
      const sending = producer.send({ messages })
      try {
        await withTimeout(sending, budget, 'Kafka produce')
        producerConnected = true
        const took = (performance.now() - sentAt) / 1000
        observe('request', took, batch.length)
        for (const p of batch) p.resolve()
      } catch (err) {
        for (const p of batch) p.reject(err as Error)
        // A send whose time ran out may still be retried by the client and land: the next
        // batch waits for it, so a later record never reaches Kafka before an earlier one.
        await sending.catch(noop)
      }
    }
    lane.sending = false
  }

  let consumer: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined
  let restartTimer: NodeJS.Timeout | undefined
  let stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined
  /** The consumer's commit in flight, if any: close() lets it land before leaving the group. */
  let pendingCommits: () => Promise<void> | undefined = () => undefined
  /** Sends the delivered offsets not yet committed now, without waiting for the commit interval (close()). */
  let commitNow: () => void = noop
  /** The delivery in progress, if any: close() lets it finish (bounded) so that its offsets are committed. */
  let pendingDelivery: () => Promise<void> | undefined = () => undefined
  return {
    produce: (topic, record) => {
      // One send in flight per topic, later records batched behind it: a client's order is kept.
      let lane = lanes.get(topic)
      if (!lane) lanes.set(topic, lane = { queue: [], sending: false })
      const entry: Pending = { record, handedAt: performance.now(), deadline: Date.now() + opts.produceTimeoutMs, resolve: noop, reject: noop }
      const promise = new Promise<void>((resolve, reject) => { entry.resolve = resolve; entry.reject = reject })
      lane.queue.push(entry)
      // An idle lane starts sending after this turn (setImmediate), so every record handed over
      // in the same turn (a burst of PUBLISHes read from one or more sockets) goes in one
      // produce request instead of the first alone and the rest in a second one.
      if (!lane.sending) {
        lane.sending = true
        const l = lane
        setImmediate(() => { void sendLane(topic, l) })
      }
      return promise
    },
    consume: async (topics, groupId, deliver, onLag) => {
      /** Restarts consumer `c` once: its stream, its own 'error' and a failed commit may all report one failure. */
      const restart = (c: Consumer<Buffer, Buffer, Buffer, Buffer>, why: string): void => {
        if (consumer !== c) return
        consumerRunning = false
        if (closed) return
        log.warn({ err: why }, 'Kafka consumer stopped; restarting')
        const old = stream
        const oldConsumer = consumer
        stream = undefined
        consumer = undefined
        void Promise.resolve(old?.close()).catch(() => {}).then(() => oldConsumer && closeConsumer(oldConsumer)).catch(() => {}).then(() => {
          if (!closed) {
            restartTimer = setTimeout(() => { void start() }, 2000)
            restartTimer.unref()
          }
        })
      }
      const start = async (): Promise<void> => {
        if (closed) return
        const c = new Consumer<Buffer, Buffer, Buffer, Buffer>({ ...base, timeout: 10000, clientId: `${opts.clientId}-consumer`, groupId, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTime: 500 })
        consumer = c
        c.on('consumer:group:join', () => { consumerRunning = true })
        c.on('consumer:group:leave', () => { consumerRunning = false })
        // Emitted when rejoining the group after a failed heartbeat fails; unhandled, it would end the process.
        c.on('error', (err: Error) => restart(c, err.message))
        try {
          // From the committed offsets; a group without any starts at the end, as with kafkajs' fromBeginning: false.
          const s = await c.consume({ topics, mode: 'committed', fallbackMode: 'latest', autocommit: false })
          stream = s
          consumerRunning = true
          // Lag after a delivered batch, asked of Kafka at most once a second (one ListOffsets round trip).
          let lagAt = 0
          const reportLag = async (): Promise<void> => {
            if (Date.now() - lagAt < 1000) return
            lagAt = Date.now()
            const lag = await c.getLag({ topics })
            for (const [topic, parts] of lag) parts.forEach((v, partition) => { if (v >= 0n) onLag(topic, partition, Number(v)) })
          }
          // Offsets are committed only after their records were delivered (at least once), but
          // off the delivery path: the next batch is not held back for an OffsetCommit round
          // trip. One commit is in flight; the newest delivered record of each partition waits
          // behind it and replaces any older one, so commits stay in order and never go back.
          // A commit starts at most every commitIntervalMs: an OffsetCommit is an append to
          // __consumer_offsets, and one per delivered batch made Kafka do about as many commits
          // as produce requests (bench/kafka: 304 commits beside 335 produces). The price: a
          // node that dies redelivers up to that interval's records (at least once anyway).
          const toCommit = new Map<string, Msg>()
          let committing: Promise<void> | undefined
          let commitTimer: NodeJS.Timeout | undefined
          let lastCommitAt = 0
          const commitDelivered = (): void => {
            if (committing || commitTimer || toCommit.size === 0) return
            const wait = lastCommitAt + commitIntervalMs - Date.now()
            if (wait > 0 && !closed) {
              commitTimer = setTimeout(() => { commitTimer = undefined; commitDelivered() }, wait)
              commitTimer.unref()
              return
            }
            lastCommitAt = Date.now()
            const records = [...toCommit.values()]
            toCommit.clear()
            committing = Promise.all(records.map((m) => m.commit())).then(() => {
              committing = undefined
              commitDelivered()
            }, (err: Error) => {
              committing = undefined
              restart(c, err.message)
            })
          }
          pendingCommits = () => committing
          commitNow = () => {
            if (commitTimer) clearTimeout(commitTimer)
            commitTimer = undefined
            commitDelivered()
          }
          let batch: Msg[] = []
          let batchAt: number[] = []
          let flushing: Promise<void> | undefined
          // The stream keeps fetching while a batch is delivered (a fetch is one round trip plus
          // Kafka's wait for new records; waiting for the delivery first added both to every
          // record's latency). Records fetched meanwhile are delivered next, in order; beyond
          // MAX_BATCHED waiting ones the stream is paused until a batch is taken.
          let heldBack = false
          // fetchPauseMs: after a fetch that brought records, the next fetch starts that much later.
          // Kafka answers a waiting fetch as soon as one record is there (minBytes 1), so at a few
          // thousand msgs/s every produce request woke a fetch of its own one or two records: a
          // request and a write each way per record in the gateway and in Kafka. A fetch that came
          // back empty (an idle topic) is followed at once, so idle costs one long poll per 500 ms.
          let pausedAfterFetch = false
          let fetchPauseTimer: NodeJS.Timeout | undefined
          const resumeIfFree = (): void => {
            if (!heldBack && !pausedAfterFetch && !s.destroyed) s.resume()
          }
          pendingDelivery = () => flushing
          const flush = async (): Promise<void> => {
            try {
              // Once close() began, no new batch is started: what is not delivered is not committed.
              while (batch.length > 0 && !closed) {
                const records = batch
                const at = batchAt
                batch = []
                batchAt = []
                if (heldBack) {
                  heldBack = false
                  resumeIfFree()
                }
                await deliver(records.map((m, i) => toConsumed(m, at[i] ?? 0)))
                // The newest record of each partition: a key is made where the partition changes,
                // not for every record (a batch is mostly runs of one partition).
                for (let i = 0; i < records.length; i++) {
                  const m = records[i]!
                  const next = records[i + 1]
                  if (next === undefined || next.partition !== m.partition || next.topic !== m.topic) toCommit.set(`${m.topic}:${m.partition}`, m)
                }
                commitDelivered()
                reportLag().catch(() => {})
              }
            } catch (err) {
              restart(c, (err as Error).message)
              return
            } finally {
              flushing = undefined
            }
          }
          s.on('data', (m: Msg) => {
            // When the record came out of the stream, for mqgw_kafka_stage_seconds.
            batchAt.push(performance.timeOrigin + performance.now())
            batch.push(m)
            if (batch.length >= MAX_BATCHED && !heldBack) {
              heldBack = true
              s.pause()
            }
            // Records of one turn are delivered together.
            if (!flushing && batch.length === 1) flushing = new Promise((resolve) => setImmediate(() => { void flush().then(resolve) }))
            // The fetch's records are all emitted in one synchronous loop, and the stream then queues
            // its next fetch with process.nextTick: a pause queued now, from the fetch's first record,
            // runs before it (pausing right here would hold back this fetch's later records instead).
            if (fetchPauseMs > 0 && !pausedAfterFetch && !closed) {
              pausedAfterFetch = true
              process.nextTick(() => {
                if (!s.destroyed) s.pause()
                fetchPauseTimer = setTimeout(() => {
                  fetchPauseTimer = undefined
                  pausedAfterFetch = false
                  resumeIfFree()
                }, fetchPauseMs)
              })
            }
          })
          s.on('error', (err: Error) => restart(c, err.message))
          s.once('close', () => { if (fetchPauseTimer) clearTimeout(fetchPauseTimer) })
        } catch (err) {
          restart(c, (err as Error).message)
        }
      }
      await start()
    },
    producerConnected: () => producerConnected,
    consumerRunning: () => consumerRunning,
    close: async () => {
      closed = true
      if (probing) clearTimeout(probing)
      if (restartTimer) clearTimeout(restartTimer)
      await stream?.close().catch(() => {})
      // A batch being delivered is let finish, so that its offsets are committed below and the
      // next consumer of the group does not deliver it again. Bounded: a delivery stuck on a
      // dead store is given up, and its records are then consumed again (at least once).
      const delivering = pendingDelivery()
      if (delivering) await withTimeout(delivering, opts.produceTimeoutMs, 'Kafka delivery at close').catch(() => {})
      // The stream is closed, so no delivery adds offsets: this ends after at most two commits.
      commitNow()
      for (let p = pendingCommits(); p; p = pendingCommits()) await p
      if (consumer) await closeConsumer(consumer)
      await producer.close().catch(() => {})
    }
  }
}

/** close(true): leaves the group without waiting for in-flight fetches; never rejects. */
function closeConsumer (c: Consumer<Buffer, Buffer, Buffer, Buffer>): Promise<void> {
  return new Promise((resolve) => { c.close(true, () => { resolve() }) })
}

function toConsumed (m: Msg, fetchedAt: number): ConsumedRecord {
  // The headers are passed on as fetched: decoding every name per record (seven strings and an
  // object) cost more than the bridge's reading of the four it needs by their bytes (plugin.ts).
  return { topic: m.topic, partition: m.partition, offset: m.offset, value: m.value, headers: m.headers, timestamp: Number(m.timestamp), fetchedAt }
}

function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
    p.then((v) => { clearTimeout(timer); resolve(v) }, (e: unknown) => { clearTimeout(timer); reject(e instanceof Error ? e : new Error(String(e))) })
  })
}
