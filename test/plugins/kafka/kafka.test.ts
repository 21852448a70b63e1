import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Partitioners, type Consumer, type Producer } from 'kafkajs'
import { aclPlugin } from '../../../plugins/acl/plugin.js'
import { kafkaPlugin } from '../../../plugins/kafka/plugin.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { awaitBridgeConsuming, TEST_CONSUMER, TestKafka } from '../../helpers/kafka.js'
import { closesWithin, collect, connectClient, endClient, pollUntil, waitFor, type Received } from '../../helpers/mqtt.js'

interface Record { topic: string, key: string, value: Buffer, headers: { [k: string]: string } }

/** A "business service": reads Kafka topics into arrays, from the beginning. */
async function recordSink (kafka: TestKafka, topics: string[], groupId: string): Promise<{ records: Record[], consumer: Consumer }> {
  const records: Record[] = []
  const consumer = kafka.client(groupId).consumer({ groupId, ...TEST_CONSUMER })
  await consumer.connect()
  await consumer.subscribe({ topics, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      const headers: { [k: string]: string } = {}
      for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v)
      records.push({ topic, key: message.key?.toString() ?? '', value: message.value ?? Buffer.alloc(0), headers })
    }
  })
  return { records, consumer }
}

describe('Kafka bridge: the four routing patterns against a real Apache Kafka', () => {
  const kafka = new TestKafka()
  let gw: TestGateway
  let producer: Producer
  let sink: Awaited<ReturnType<typeof recordSink>>
  let moderator: Consumer

  before(async () => {
    await kafka.start()
    await kafka.createTopics(['telemetry', 'chat', 'push', 'comments-raw', 'comments-approved', 'order'], 1)
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-kafka-acl-'))
    writeFileSync(join(dir, 'acl.yaml'), `rules:
  - { permission: deny, action: publish, topics: ["device/forbidden/telemetry"] }
  - { permission: allow, action: all, topics: ["#"] }
`)
    gw = await startTestGateway(`
acl: { file: ${join(dir, 'acl.yaml')} }
kafka:
  brokers: ["${kafka.brokers[0]}"]
  groupId: bridge-test
  produceTimeoutMs: 4000
  maxBufferedQos0: 5
  routes:
    - { mqtt: "device/+/telemetry", kafkaTopic: telemetry, key: clientid }
    - { mqtt: "chat/#", kafkaTopic: chat }
    - { mqtt: "comments/#", kafkaTopic: comments-raw }
    - { mqtt: "order/#", kafkaTopic: order }
  consume:
    - { kafkaTopic: chat }
    - { kafkaTopic: push, qos: 1 }
    - { kafkaTopic: comments-approved }
`, { plugins: [aclPlugin, kafkaPlugin] })
    producer = kafka.client('business').producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    sink = await recordSink(kafka, ['telemetry', 'comments-raw', 'order'], 'business-sink')
    // Pattern 4's business service: drops spam, upper-cases the rest, publishes to comments-approved.
    moderator = kafka.client('moderator').consumer({ groupId: 'moderator', ...TEST_CONSUMER })
    await moderator.connect()
    await moderator.subscribe({ topics: ['comments-raw'], fromBeginning: true })
    await moderator.run({
      eachMessage: async ({ message }) => {
        const text = message.value?.toString() ?? ''
        if (text.includes('spam')) return
        await producer.send({ topic: 'comments-approved', acks: -1, messages: [{ value: text.toUpperCase(), headers: { 'mqtt-topic': String(message.headers?.['mqtt-topic']) } }] })
      }
    })
    // The gateway's consumer starts at the end of each topic once it joined: wait until a probe arrives.
    await awaitBridgeConsuming(gw.mqttUrl, producer, 'push', 'probe')
  })
  after(async () => {
    await moderator?.disconnect().catch(() => {})
    await sink?.consumer.disconnect().catch(() => {})
    await producer?.disconnect().catch(() => {})
    await gw?.stop()
    await kafka.destroy()
  })

  it('pattern 1, upstream only: QoS 1 telemetry lands in Kafka unchanged with headers and the client id as key, and nowhere in MQTT', async () => {
    const watcher = await connectClient(gw.mqttUrl)
    const seen = collect(watcher)
    await watcher.subscribeAsync('device/#', { qos: 1 })
    const device = await connectClient(gw.mqttUrl, { clientId: 'dev-42', username: 'fleet' })
    const payload = Buffer.from([0, 1, 2, 250, 255, 10])
    await device.publishAsync('device/dev-42/telemetry', payload, { qos: 1, retain: false })
    // Marker: a topic no route takes, from the same device with the same QoS after the
    // routed message: it is delivered locally, so a local copy of the routed one would come first.
    await device.publishAsync('device/dev-42/status', 'marker', { qos: 1 })
    await waitFor(() => sink.records.some((r) => r.topic === 'telemetry'), 'telemetry record', 15000)
    const record = sink.records.find((r) => r.topic === 'telemetry')!
    assert.deepEqual(record.value, payload)
    assert.equal(record.key, 'dev-42')
    assert.equal(record.headers['mqtt-topic'], 'device/dev-42/telemetry')
    assert.equal(record.headers['mqtt-qos'], '1')
    assert.equal(record.headers['mqtt-retain'], 'false')
    assert.equal(record.headers['client-id'], 'dev-42')
    assert.equal(record.headers.username, 'fleet')
    assert.equal(record.headers['node-id'], gw.gateway.config.node.id)
    assert.ok(Math.abs(Number(record.headers.timestamp) - Date.now()) < 60000)
    await waitFor(() => seen.some((m) => m.payload === 'marker'), 'the unrouted marker')
    assert.deepEqual(seen.map((m) => m.topic), ['device/dev-42/status'], 'a routed message reaches MQTT only through a consume rule')
    await Promise.all([endClient(watcher), endClient(device)])
  })

  it('pattern 2, IM through Kafka: each subscriber gets a chat message exactly once', async () => {
    const subs = await Promise.all([0, 1, 2].map((i) => connectClient(gw.mqttUrl, { clientId: `chatter-${i}` })))
    const received = subs.map((s) => collect(s))
    await Promise.all(subs.map((s) => s.subscribeAsync('chat/room1', { qos: 1 })))
    await subs[0]!.publishAsync('chat/room1', 'hello room', { qos: 1 })
    // Marker through the same route (MQTT -> Kafka -> consume rule -> MQTT). Kafka gives no
    // order across partitions, but chat has one partition and the bridge delivers a partition
    // in offset order: once the marker is here, 'hello room' went through the consumer before
    // it; a local copy (the route not taking the message over) would have come earlier still.
    await subs[0]!.publishAsync('chat/room1', 'chat-marker', { qos: 1 })
    await waitFor(() => received.every((r) => r.some((m) => m.payload === 'chat-marker')), 'chat delivered to all three', 15000)
    for (const r of received) assert.deepEqual(r.map((m) => [m.topic, m.payload]), [['chat/room1', 'hello room'], ['chat/room1', 'chat-marker']])
    await Promise.all(subs.map((s) => endClient(s)))
  })

  it('pattern 3, pure downstream: a business push reaches the subscriber with the consume rule\'s QoS', async () => {
    const app = await connectClient(gw.mqttUrl, { clientId: 'alice-phone' })
    const received = collect(app)
    await app.subscribeAsync('user/alice/push', { qos: 1 })
    await producer.send({ topic: 'push', acks: -1, messages: [{ value: 'you have mail', headers: { 'mqtt-topic': 'user/alice/push' } }] })
    await waitFor(() => received.length === 1, 'push', 15000)
    assert.deepEqual(received[0], { topic: 'user/alice/push', payload: 'you have mail', qos: 1, retain: false })
    await endClient(app)
  })

  it('pattern 4, preprocessing: the business filter drops some comments and transforms the others', async () => {
    const reader = await connectClient(gw.mqttUrl)
    const received = collect(reader)
    await reader.subscribeAsync('comments/#', { qos: 1 })
    const writer = await connectClient(gw.mqttUrl)
    for (const text of ['nice post', 'buy spam now', 'thanks']) await writer.publishAsync('comments/post-1', text, { qos: 1 })
    // 'thanks' is the marker: one partition each for comments-raw and comments-approved, the
    // moderator handles one record at a time, the bridge delivers in offset order; an approved
    // spam record would come before THANKS.
    await waitFor(() => received.some((m) => m.payload === 'THANKS'), 'approved comments', 20000)
    assert.deepEqual(received.map((m: Received) => [m.topic, m.payload]), [['comments/post-1', 'NICE POST'], ['comments/post-1', 'THANKS']])
    await Promise.all([endClient(reader), endClient(writer)])
  })

  it('one client\'s messages enter Kafka in the order it published them', async () => {
    const client = await connectClient(gw.mqttUrl, { clientId: 'orderly' })
    const count = 300
    await Promise.all(Array.from({ length: count }, (_, i) => client.publishAsync('order/x', String(i), { qos: 1 })))
    await waitFor(() => sink.records.filter((r) => r.topic === 'order').length >= count, 'ordered records', 20000)
    const got = sink.records.filter((r) => r.topic === 'order').map((r) => r.value.toString())
    assert.deepEqual(got, Array.from({ length: count }, (_, i) => String(i)), `order: ${got.join(',')}`)
    await endClient(client)
  })

  it('malformed consumed records are skipped and counted; the next good record is delivered', async () => {
    const app = await connectClient(gw.mqttUrl)
    const received = collect(app)
    await app.subscribeAsync('#', { qos: 1 })
    await producer.send({
      topic: 'push',
      acks: -1,
      messages: [
        { value: 'no header' },
        { value: 'wildcard', headers: { 'mqtt-topic': 'a/+/b' } },
        { value: 'bad utf8', headers: { 'mqtt-topic': Buffer.from([0x61, 0xff]) } },
        { value: 'empty', headers: { 'mqtt-topic': '' } },
        { value: 'sys', headers: { 'mqtt-topic': '$SYS/fake' } },
        { value: 'good', headers: { 'mqtt-topic': 'after/bad' } }
      ]
    })
    await waitFor(() => received.some((m) => m.topic === 'after/bad'), 'the good record', 15000)
    assert.deepEqual(received.filter((m) => m.topic !== 'probe').map((m) => m.payload), ['good'])
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /mqgw_kafka_skipped_total\{reason="no_topic"\} 2/)
    assert.match(metrics, /mqgw_kafka_skipped_total\{reason="invalid_topic"\} 3/)
    assert.match(metrics, /mqgw_kafka_consumer_lag\{topic="push",partition="0"\} \d+/)
    assert.match(metrics, /mqgw_kafka_consumed_total\{topic="push"\} [1-9]/)
    await endClient(app)
  })

  it('the ACL applies before routing: a denied PUBLISH is never produced', async () => {
    const device = await connectClient(gw.mqttUrl, { clientId: 'forbidden' })
    await device.publishAsync('device/forbidden/telemetry', 'must not leave', { qos: 1 })
    await device.publishAsync('device/allowed/telemetry', 'may leave', { qos: 1 })
    await waitFor(() => sink.records.some((r) => r.value.toString() === 'may leave'), 'allowed record', 15000)
    assert.ok(!sink.records.some((r) => r.value.toString() === 'must not leave'))
    await endClient(device)
  })

  it('Kafka stopped and restarted: QoS 1 is not acknowledged while it is down, /readyz reports it, nothing acknowledged is lost', async () => {
    const client = await connectClient(gw.mqttUrl, { clientId: 'outage-dev' })
    await client.publishAsync('device/outage-dev/telemetry', 'before', { qos: 1 })
    await kafka.stop()
    const readyzStatus = async (): Promise<number> => (await fetch(`${gw.adminUrl}/readyz`)).status
    const down = await pollUntil(readyzStatus, (s) => s === 503, 20000, 100) === 503
    // QoS 0 while Kafka is down: at most maxBufferedQos0 (5) wait for it, the rest are dropped and counted.
    const q0 = await connectClient(gw.mqttUrl, { clientId: 'outage-q0' })
    const q0Received = collect(q0)
    await q0.subscribeAsync('outage-q0/marker', { qos: 0 })
    for (let i = 0; i < 20; i++) q0.publish('device/outage-q0/telemetry', `q0-${i}`, { qos: 0 })
    // Marker: an unrouted QoS 0 message from the same client. The gateway decides one client's
    // publishes in order and the bridge takes a QoS 0 one over at once (buffered or dropped),
    // so when the marker is delivered all 20 were counted.
    q0.publish('outage-q0/marker', 'marker', { qos: 0 })
    await waitFor(() => q0Received.length === 1, 'the QoS 0 marker')
    const duringMetrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(duringMetrics, /mqgw_kafka_dropped_total\{reason="qos0_buffer_full"\} 15\n/)
    assert.match(duringMetrics, /mqgw_kafka_qos0_buffered 5\n/)
    await endClient(q0)
    // A QoS 1 publish now: no PUBACK; the gateway closes the connection after produceTimeoutMs.
    // The close is the marker: nothing more can come on this connection after it.
    let acked = false
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
    client.publishAsync('device/outage-dev/telemetry', 'during', { qos: 1 }).then(() => { acked = true }, () => {})
    assert.equal(await closesWithin(closed, 15000), true, 'the connection is closed after produceTimeoutMs')
    assert.equal(acked, false, 'no PUBACK while Kafka is down')
    assert.equal(down, true, '/readyz 503 while Kafka is down')
    await kafka.start()
    const up = await pollUntil(readyzStatus, (s) => s === 200, 30000, 100) === 200
    const again = await connectClient(gw.mqttUrl, { clientId: 'outage-dev-2' })
    // The client that got no PUBACK sends it again (MQTT.js would on reconnect); do it explicitly.
    await again.publishAsync('device/outage-dev/telemetry', 'during', { qos: 1 })
    await again.publishAsync('device/outage-dev/telemetry', 'after', { qos: 1 })
    const values = (): string[] => sink.records.filter((r) => r.headers['mqtt-topic'] === 'device/outage-dev/telemetry').map((r) => r.value.toString())
    await waitFor(() => ['before', 'during', 'after'].every((v) => values().includes(v)), 'every acknowledged record', 60000)
    assert.equal(up, true)
    await endClient(client, true)
    await endClient(again)
  })
})
