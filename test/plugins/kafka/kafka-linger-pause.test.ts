import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Partitioners, type Producer } from 'kafkajs'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { kafkaPlugin } from '../../../plugins/kafka/plugin.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { awaitBridgeConsuming, TestKafka } from '../../helpers/kafka.js'
import { collect, connectClient, endClient, sleep, waitFor } from '../../helpers/mqtt.js'
import { RawClient } from '../../helpers/raw-client.js'

/**
 * produceLingerMs beside fetchPauseMs (issue #15): both waits used to collapse bench/kafka's pattern
 * 2 closed loop (~2k msgs/s, ~4 records per produce request). A routed QoS 1 PUBLISH is done only
 * once Kafka acknowledged it, and the Aedes patch handled the socket reads that arrived meanwhile
 * one read per round: one TCP segment's PUBLISHes per linger and produce round trip. Now what
 * waited is parsed together (lib/read-turns.js), so the next request carries all of it. Real
 * Kafka, the real gateway with the bridge, a raw MQTT publisher writing each PUBLISH on its own.
 */
describe('Kafka bridge: produceLingerMs with the fetch pause (real Kafka)', () => {
  const kafka = new TestKafka()
  let gw: TestGateway
  let producer: Producer
  const LINGER = 40

  before(async () => {
    await kafka.start()
    await kafka.createTopics(['lp-chat', 'lp-probe'], 1)
    gw = await startTestGateway(`
kafka:
  brokers: ["${kafka.brokers[0]}"]
  groupId: linger-pause
  produceLingerMs: ${LINGER}
  fetchPauseMs: 2
  routes: [ { mqtt: "lp/#", kafkaTopic: lp-chat } ]
  consume: [ { kafkaTopic: lp-chat }, { kafkaTopic: lp-probe } ]
`, { plugins: [kafkaPlugin] })
    producer = kafka.client('lp-business').producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    // The bridge's consumer starts at the end of each topic once it joined: a probe until one arrives.
    await awaitBridgeConsuming(gw.mqttUrl, producer, 'lp-probe', 'lp-probe')
  })
  after(async () => {
    await producer?.disconnect().catch(() => {})
    await gw?.stop()
    await kafka.destroy()
  })

  const produceRequests = async (): Promise<number> => {
    const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    const m = /^mqgw_kafka_produce_requests_total (\d+)$/m.exec(text)
    assert.ok(m, 'mqgw_kafka_produce_requests_total is exported')
    return Number(m[1])
  }

  it('PUBLISHes written one by one while a request lingers leave together in the next requests; each delivered once, in order, PUBACKs in order', async () => {
    const sub = await connectClient(gw.mqttUrl, { clientId: 'lp-sub' })
    const received = collect(sub)
    await sub.subscribeAsync('lp/room', { qos: 1 })
    const port = Number(new URL(gw.mqttUrl).port)
    const pub = await RawClient.connect(port, 'lp-pub')
    pub.socket.setNoDelay(true)
    const requestsBefore = await produceRequests()
    // 60 QoS 1 PUBLISHes, each its own write about 1 ms apart: the gateway reads them as separate
    // segments while the first request lingers (40 ms) and is acknowledged.
    const N = 60
    const publish = (i: number): Buffer => mqttPacket.generate({ cmd: 'publish', topic: 'lp/room', payload: Buffer.from(`m${i}`), qos: 1, messageId: i + 1, retain: false, dup: false } as unknown as Packet)
    const started = performance.now()
    for (let i = 0; i < N; i++) {
      pub.socket.write(publish(i))
      await sleep(1)
    }
    const writing = performance.now() - started
    await waitFor(() => pub.packets.filter((p) => p.cmd === 'puback').length === N, 'every PUBACK', 30000)
    assert.deepEqual(pub.packets.filter((p) => p.cmd === 'puback').map((p) => (p as mqttPacket.IPubackPacket).messageId), Array.from({ length: N }, (_, i) => i + 1), 'PUBACKs in order')
    // A marker through the same route, after all of them: what came before it is all there is.
    pub.send({ cmd: 'publish', topic: 'lp/room', payload: Buffer.from('marker'), qos: 1, messageId: N + 1, retain: false, dup: false })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'the marker', 30000)
    assert.deepEqual(received.map((m) => m.payload), [...Array.from({ length: N }, (_, i) => `m${i}`), 'marker'], 'each delivered once, in order')
    const requests = await produceRequests() - requestsBefore
    // Handled one segment per round, the 60 took about 60 requests of one record (at least 40 ms
    // each). Batched, a request carries what arrived during the previous one's linger: the writes
    // took `writing` ms, so about writing / 40 + 2 requests; 15 leaves room for a slow machine.
    assert.ok(requests <= 15, `${N + 1} records took ${requests} produce requests (writes spread over ${writing.toFixed(0)} ms)`)
    await endClient(sub)
    pub.socket.destroy()
  })
})
