import { isUtf8 } from 'node:buffer'
import type { PublishPacket } from 'aedes'
import { Counter, Gauge } from 'prom-client'
import { HANDLED, PASS, type MessageVerdict } from '../../src/hooks/types.js'
import { definePlugin } from '../../src/plugin.js'
import { covers, exceedsTopicLimits } from '../../src/topic.js'
import type { BridgeKafkaClient, ConsumedRecord } from './kafka-client.js'
import { LightHistogram, type HistogramSeries } from './light-histogram.js'
import { kafkaConfigSchema } from './schema.js'

/**
 * The Kafka bridge: routes (MQTT → Kafka) and consume rules (Kafka → MQTT) give Zhihu's
 * four patterns. A routed PUBLISH is taken over in the messagePublish hook (after the
 * ACL): QoS 1/2 are acknowledged only once Kafka acknowledged the record (acks = all);
 * the message reaches MQTT subscribers only through the consume path, so exactly once.
 */
export const kafkaPlugin = definePlugin({
  name: 'kafka',
  configKey: 'kafka',
  schema: kafkaConfigSchema,
  envOverrides: [{ env: 'MQGW_KAFKA_BROKERS', path: ['kafka', 'brokers'], parse: 'csv' }],
  // The messagePublish hook gives up at hooks.timeoutMs and refuses the PUBLISH; a produce
  // still running then may land in Kafka after all and be produced again when the client
  // resends it. The produce bound must therefore end first.
  check: (section, config) => section.produceTimeoutMs < config.hooks.timeoutMs
    ? []
    : [`produceTimeoutMs: ${section.produceTimeoutMs} ms must be below hooks.timeoutMs (${config.hooks.timeoutMs} ms), or the hook gives up while the record may still be produced`],
  setup: async (ctx) => {
    const config = ctx.config
    const log = ctx.log
    const nodeId = ctx.gatewayConfig.node.id
    const nodeIdBytes = Buffer.from(nodeId)
    const registers = [ctx.metrics.registry]
    // Per-record counts and times are plain numbers and LightHistogram series, looked up once
    // per topic: prom-client validates and hashes the labels at every inc()/observe(), which
    // pattern 2 paid about ten times per message. The counts move into the counters at collect.
    const producedCounts = new Map<string, number>()
    const consumedCounts = new Map<string, number>()
    const moveCounts = (counter: Counter<'topic'>, counts: Map<string, number>): void => {
      for (const [topic, n] of counts) if (n > 0) { counter.inc({ topic }, n); counts.set(topic, 0) }
    }
    new Counter({ name: 'mqgw_kafka_produced_total', help: 'Records produced to Kafka, by topic', labelNames: ['topic'], registers, collect () { moveCounts(this, producedCounts) } }) // eslint-disable-line no-new
    new Counter({ name: 'mqgw_kafka_consumed_total', help: 'Records consumed from Kafka and published to MQTT, by topic', labelNames: ['topic'], registers, collect () { moveCounts(this, consumedCounts) } }) // eslint-disable-line no-new
    // Produce requests: records per request is mqgw_kafka_produced_total over this (what
    // produceLingerMs and a publisher's read batching buy: each request costs the gateway a write
    // and Kafka a request). Counted at the client's 'request' observation, one per request.
    let produceRequests = 0
    new Counter({ name: 'mqgw_kafka_produce_requests_total', help: 'Produce requests Kafka acknowledged', registers, collect () { if (produceRequests > 0) { this.inc(produceRequests); produceRequests = 0 } } }) // eslint-disable-line no-new
    const skipped = new Counter({ name: 'mqgw_kafka_skipped_total', help: 'Consumed records without a usable MQTT topic, by reason', labelNames: ['reason'], registers })
    const dropped = new Counter({ name: 'mqgw_kafka_dropped_total', help: 'Routed messages not produced, by reason', labelNames: ['reason'], registers })
    const latency = new LightHistogram({ name: 'mqgw_kafka_produce_duration_seconds', help: 'Time until Kafka acknowledged a record', labelName: 'topic', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers })
    const lag = new Gauge({ name: 'mqgw_kafka_consumer_lag', help: 'Records behind the end of the partition after the last batch', labelNames: ['topic', 'partition'], registers })
    // Where a routed-and-consumed message's time goes (pattern 2), one observation per record:
    // queued (handed to the client → its produce request sent: waiting behind the request in
    // flight), request (sent → Kafka acknowledged, acks = all), to_consumer (the record's Kafka
    // timestamp, set when its request was built → out of a fetch of this node's consumer; ms
    // resolution), consumer_wait (→ handed to delivery: the turn's batching and the previous
    // batch's delivery), publish (→ published into the broker), end_to_end (the PUBLISH's
    // arrival on the producing node, its `timestamp` header → published; ms resolution).
    const stages = new LightHistogram({ name: 'mqgw_kafka_stage_seconds', help: 'Time per stage of the Kafka path, per record', labelName: 'stage', buckets: [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1, 5], registers })
    const stage = Object.fromEntries(['queued', 'request', 'to_consumer', 'consumer_wait', 'publish', 'end_to_end'].map((s) => [s, stages.series(s)])) as Record<'queued' | 'request' | 'to_consumer' | 'consumer_wait' | 'publish' | 'end_to_end', HistogramSeries>
    let buffered = 0
    new Gauge({ name: 'mqgw_kafka_qos0_buffered', help: 'Routed QoS 0 messages waiting for Kafka', registers, collect () { this.set(buffered) } }) // eslint-disable-line no-new

    // Loaded only when the bridge is configured: @platformatic/kafka adds ~35 MB of RSS to every
    // gateway process (measured: 73 -> 108 MB at import), which a node without Kafka should not pay.
    const { createPlatformaticClient } = await import('./kafka-client.js')
    const client: BridgeKafkaClient = createPlatformaticClient({ brokers: config.brokers, clientId: `${config.clientId}-${nodeId}`, connectionTimeoutMs: config.connectionTimeoutMs, produceTimeoutMs: config.produceTimeoutMs, commitIntervalMs: config.commitIntervalMs, produceLingerMs: config.produceLingerMs, fetchPauseMs: config.fetchPauseMs, observe: (s, seconds, n) => { if (s === 'request') produceRequests++; stages.observe(stage[s], seconds, n) } }, log)
    ctx.readiness.register('kafka', () => {
      if (!client.producerConnected()) return { ready: false, reason: 'Kafka producer not connected' }
      if (config.consume.length > 0 && !client.consumerRunning()) return { ready: false, reason: 'Kafka consumer not running' }
      return { ready: true }
    })

    let lastProduceError = ''
    interface Out { topic: string, latency: HistogramSeries }
    const acked = (out: Out, handedAt: number): void => {
      latency.observe(out.latency, (performance.now() - handedAt) / 1000)
      producedCounts.set(out.topic, (producedCounts.get(out.topic) ?? 0) + 1)
      lastProduceError = ''
    }
    const failed = (out: Out, err: Error): void => {
      if (err.message !== lastProduceError) {
        lastProduceError = err.message
        log.warn({ topic: out.topic, err: err.message }, 'Kafka produce failed')
      }
    }

    // Filters split once; a PUBLISH splits its topic once, and only when there are routes.
    const routes = config.routes.map((r) => ({ ...r, levels: r.mqtt.split('/'), out: { topic: r.kafkaTopic, latency: latency.series(r.kafkaTopic) } }))
    // Without routes the bridge takes nothing: no handler, so PUBLISHes keep the core's fast path.
    if (routes.length > 0) ctx.hook('messagePublish', ({ info, packet, clientId: publisherId }): MessageVerdict | Promise<MessageVerdict> => {
      const topicLevels = packet.topic.split('/')
      const route = routes.find((r) => covers(r.levels, topicLevels))
      if (!route) return PASS
      // The publisher's id: a will of a dead node carries its owner's.
      const clientId = publisherId ?? ''
      const username = info?.username ?? ''
      const key = route.key === 'clientid' ? clientId : route.key === 'username' ? username : packet.topic
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
      const record = {
        key,
        value: payload,
        headers: {
          'mqtt-topic': packet.topic,
          'mqtt-qos': QOS[packet.qos] ?? String(packet.qos),
          'mqtt-retain': packet.retain ? TRUE : FALSE,
          'client-id': clientId,
          username,
          'node-id': nodeIdBytes,
          timestamp: String(Date.now())
        }
      }
      if (packet.qos === 0) {
        // At most once: not waited for, but bounded.
        if (buffered >= config.maxBufferedQos0) {
          dropped.inc({ reason: 'qos0_buffer_full' })
          return HANDLED
        }
        buffered++
        const handedAt = performance.now()
        client.produce(route.kafkaTopic, record).then(() => {
          buffered--
          acked(route.out, handedAt)
        }, (err: Error) => {
          buffered--
          failed(route.out, err)
          dropped.inc({ reason: 'qos0_produce_failed' })
        })
        return HANDLED
      }
      // Started now, in the client's order; acknowledged only when Kafka has it.
      const handedAt = performance.now()
      return client.produce(route.kafkaTopic, record).then(() => {
        acked(route.out, handedAt)
        return HANDLED
      }, (err: Error) => {
        failed(route.out, err)
        return { result: 'deny' as const, reason: `Kafka: ${err.message}`, disconnect: true }
      })
    })

    const limits = ctx.gatewayConfig.limits
    const ruleQos = new Map(config.consume.map((c) => [c.kafkaTopic, c.qos]))
    let lastSkipLog = 0
    const skip = (reason: string, record: ConsumedRecord): void => {
      skipped.inc({ reason })
      if (Date.now() - lastSkipLog > 10000) {
        lastSkipLog = Date.now()
        log.warn({ topic: record.topic, partition: record.partition, offset: String(record.offset), reason }, 'Kafka record skipped: no usable MQTT topic (logged at most every 10 s)')
      }
    }
    const toPacket = (record: ConsumedRecord, { topic: raw, qos: qosHeader, retain: retainHeader }: BridgeHeaders): PublishPacket | undefined => {
      if (!raw || raw.length === 0) { skip('no_topic', record); return undefined }
      if (!isUtf8(raw) || raw.includes(0)) { skip('invalid_topic', record); return undefined }
      const topic = raw.toString('utf8')
      // As the core refuses a client's PUBLISH: no wildcard, no `$` topic, within the topic limits.
      if (topic.includes('+') || topic.includes('#') || topic.startsWith('$') || exceedsTopicLimits(topic, limits)) { skip('invalid_topic', record); return undefined }
      // '0', '1' or '2' (bytes 0x30-0x32); anything else: the rule's QoS.
      const qos = qosHeader?.length === 1 && qosHeader[0]! >= 0x30 && qosHeader[0]! <= 0x32 ? qosHeader[0]! - 0x30 as 0 | 1 | 2 : (ruleQos.get(record.topic) ?? 0)
      const retain = retainHeader !== undefined && sameBytes(retainHeader, TRUE)
      return { cmd: 'publish', topic, payload: record.value ?? Buffer.alloc(0), qos, retain, dup: false } as PublishPacket
    }
    const broker = ctx.broker

    if (config.consume.length > 0) {
      void client.consume(config.consume.map((c) => c.kafkaTopic), config.groupId, (records) => new Promise<void>((resolve, reject) => {
        // Published in partition order; offsets are committed after all were handed on. One
        // callback per record and one promise per batch (a promise per record was as much work
        // as the rest of the hand-over). Rejects, after all settled, with the first error.
        const start = performance.timeOrigin + performance.now()
        let pending = 1
        let error: Error | undefined
        const settled = (): void => {
          if (--pending > 0) return
          if (error) reject(error)
          else resolve()
        }
        for (const record of records) {
          const headers = readHeaders(record.headers)
          const packet = toPacket(record, headers)
          if (!packet) continue
          stages.observe(stage.to_consumer, Math.max(0, record.fetchedAt - record.timestamp) / 1000)
          stages.observe(stage.consumer_wait, (start - record.fetchedAt) / 1000)
          const sentAt = decimal(headers.timestamp)
          const topic = record.topic
          pending++
          broker.publish(packet, (err?: Error) => {
            if (err) error ??= err
            else {
              consumedCounts.set(topic, (consumedCounts.get(topic) ?? 0) + 1)
              const done = performance.timeOrigin + performance.now()
              stages.observe(stage.publish, (done - start) / 1000)
              if (Number.isFinite(sentAt)) stages.observe(stage.end_to_end, Math.max(0, done - sentAt) / 1000)
            }
            settled()
          })
        }
        settled()
      }), (topic, partition, value) => lag.set({ topic, partition: String(partition) }, value))
    }

    return { close: () => client.close() }
  }
})

const H_TOPIC = Buffer.from('mqtt-topic')
const H_QOS = Buffer.from('mqtt-qos')
const H_RETAIN = Buffer.from('mqtt-retain')
const H_TIMESTAMP = Buffer.from('timestamp')
const TRUE = Buffer.from('true')
const FALSE = Buffer.from('false')
/** Header values made once: the QoS and retain headers of every routed record are one of these. */
const QOS = [Buffer.from('0'), Buffer.from('1'), Buffer.from('2')]

function sameBytes (a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

interface BridgeHeaders { topic: Buffer | undefined, qos: Buffer | undefined, retain: Buffer | undefined, timestamp: Buffer | undefined }

/**
 * The headers the bridge reads, found by their bytes in one pass (a later header of the same
 * name wins, as when they were decoded into an object); no string per header and record.
 */
function readHeaders (headers: ReadonlyMap<Buffer, Buffer | undefined>): BridgeHeaders {
  const found: BridgeHeaders = { topic: undefined, qos: undefined, retain: undefined, timestamp: undefined }
  for (const [name, value] of headers) {
    if (sameBytes(name, H_TOPIC)) found.topic = value
    else if (sameBytes(name, H_QOS)) found.qos = value
    else if (sameBytes(name, H_RETAIN)) found.retain = value
    else if (sameBytes(name, H_TIMESTAMP)) found.timestamp = value
  }
  return found
}

/** A header of ASCII digits as a number (the `timestamp` header); NaN if it is anything else. */
function decimal (bytes: Buffer | undefined): number {
  if (bytes === undefined || bytes.length === 0 || bytes.length > 16) return NaN
  let n = 0
  for (let i = 0; i < bytes.length; i++) {
    const d = bytes[i]! - 0x30
    if (d < 0 || d > 9) return NaN
    n = n * 10 + d
  }
  return n
}
