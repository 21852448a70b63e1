import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Partitioners, type Producer } from 'kafkajs'
import { startNode, type ClusterNode } from '../../helpers/cluster.js'
import { TestKafka } from '../../helpers/kafka.js'
import { collect, connectClient, endClient, pollUntil, sleep, waitFor } from '../../helpers/mqtt.js'
import { TestRedis } from '../../helpers/redis.js'

describe('Kafka bridge on a two-node cluster (Redis + Kafka + two gateway processes)', () => {
  const kafka = new TestKafka()
  const redis = new TestRedis()
  const nodes: ClusterNode[] = []
  let producer: Producer

  before(async () => {
    await Promise.all([kafka.start(), redis.start()])
    await kafka.createTopics(['chat', 'push'], 2)
    const yaml = `flow: {}
kafka:
  brokers: ["${kafka.brokers[0]}"]
  groupId: cluster-bridge
  routes: [ { mqtt: "chat/#", kafkaTopic: chat } ]
  consume: [ { kafkaTopic: chat }, { kafkaTopic: push, qos: 1 } ]
`
    nodes.push(await startNode(redis, 'gw-k1', { yaml }), await startNode(redis, 'gw-k2', { yaml }))
    producer = kafka.client('business').producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    // Wait until the shared group consumes both topics (its consumers start at the end of the topics).
    const probe = await connectClient(nodes[0]!.url)
    const got = collect(probe)
    await probe.subscribeAsync(['probe/push', 'chat/probe'], { qos: 0 })
    const probePublisher = await connectClient(nodes[1]!.url)
    const topicsSeen = await pollUntil(async () => {
      await producer.send({ topic: 'push', messages: [{ key: 'a', value: 'p', headers: { 'mqtt-topic': 'probe/push' } }, { key: 'b', value: 'p', headers: { 'mqtt-topic': 'probe/push' } }] })
      await probePublisher.publishAsync('chat/probe', 'p', { qos: 1 })
      return new Set(got.map((m) => m.topic)).size
    }, (n) => n >= 2, 90000, 1000)
    assert.equal(topicsSeen, 2, 'both consume rules are running')
    await endClient(probePublisher)
    await endClient(probe)
  })
  after(async () => {
    await producer?.disconnect().catch(() => {})
    for (const n of nodes) await n.crash()
    await kafka.destroy()
    await redis.stop()
  })

  it('every online subscriber on either node gets each message exactly once; an offline persistent subscriber gets one queued copy', async () => {
    const offline = await connectClient(nodes[1]!.url, { clientId: 'k-offline', clean: false })
    await offline.subscribeAsync(['chat/room', 'user/bob/push'], { qos: 1 })
    await endClient(offline)
    const online = await Promise.all([0, 1, 0, 1].map((n, i) => connectClient(nodes[n]!.url, { clientId: `k-online-${i}` })))
    const received = online.map((c) => collect(c))
    await Promise.all(online.map((c) => c.subscribeAsync(['chat/room', 'user/bob/push'], { qos: 1 })))
    await sleep(500)
    const pub = await connectClient(nodes[0]!.url, { clientId: 'k-pub' })
    for (let i = 0; i < 20; i++) await pub.publishAsync('chat/room', `chat-${i}`, { qos: 1 })
    await producer.send({ topic: 'push', acks: -1, messages: Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `push-${i}`, headers: { 'mqtt-topic': 'user/bob/push' } })) })
    // Markers through the same routes, one per partition the messages took: the chat route
    // keys by client id (one partition for k-pub), the pushes are spread over both 'push'
    // partitions. Kafka orders only within a partition, and the node that consumes one
    // publishes its records in offset order (to its own subscribers directly, to the other
    // node's through Redis, in order): a second copy from that path would precede its marker.
    const markers = ['chat-marker', 'push-marker-0', 'push-marker-1']
    await pub.publishAsync('chat/room', 'chat-marker', { qos: 1 })
    await producer.send({ topic: 'push', acks: -1, messages: [0, 1].map((partition) => ({ partition, value: `push-marker-${partition}`, headers: { 'mqtt-topic': 'user/bob/push' } })) })
    const withoutMarkers = (r: Array<{ payload: string }>): string[] => r.map((m) => m.payload).filter((p) => !markers.includes(p))
    await waitFor(() => received.every((r) => markers.every((m) => r.some((x) => x.payload === m))), 'every subscriber has the three markers', 30000)
    for (const [i, r] of received.entries()) {
      const payloads = withoutMarkers(r)
      assert.equal(payloads.length, 40, `subscriber ${i} got ${payloads.length} messages (duplicates?)`)
      assert.equal(new Set(payloads).size, 40)
    }
    const back = await connectClient(nodes[0]!.url, { clientId: 'k-offline', clean: false })
    const queued = collect(back)
    // The queue holds the markers after the messages of their partitions, in that order.
    await waitFor(() => markers.every((m) => queued.some((x) => x.payload === m)), 'queued copies up to the markers', 20000)
    const queuedPayloads = withoutMarkers(queued)
    assert.equal(queuedPayloads.length, 40, `offline subscriber got ${queuedPayloads.length} (expected one copy of each of 40)`)
    assert.equal(new Set(queuedPayloads).size, 40)
    await Promise.all([...online.map((c) => endClient(c)), endClient(pub), endClient(back)])
  })
})
