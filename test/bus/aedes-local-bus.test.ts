import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Aedes } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import { LocalBus } from '../../src/bus/local-bus.js'
import { waitFor } from '../helpers/mqtt.js'

interface Received { topic: string, payload: string, qos: number, retain: boolean }

async function connect (url: string, clientId: string): Promise<MqttClient> {
  return await mqtt.connectAsync(url, { clientId, reconnectPeriod: 0, connectTimeout: 5000 })
}

function collect (client: MqttClient): Received[] {
  const received: Received[] = []
  client.on('message', (topic, payload, packet) => {
    received.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain })
  })
  return received
}

describe('Aedes with LocalBus as mq, real MQTT.js clients', () => {
  let bus: LocalBus
  let broker: Aedes
  let server: Server
  let url: string
  const clients: MqttClient[] = []

  before(async () => {
    bus = new LocalBus()
    broker = await Aedes.createBroker({ mq: bus })
    server = createServer(broker.handle)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  after(async () => {
    await Promise.all(clients.map(async (c) => await c.endAsync(true)))
    await new Promise<void>((resolve) => broker.close(() => resolve()))
    await new Promise<void>((resolve, reject) => server.close((err) => err ? reject(err) : resolve()))
    assert.equal(bus.isClosed, true)
  })

  it('QoS 0 and QoS 1 publish/subscribe between two clients', async () => {
    const sub = await connect(url, 'sub-qos')
    const pub = await connect(url, 'pub-qos')
    clients.push(sub, pub)
    const received = collect(sub)
    await sub.subscribeAsync('dev/1/cmd', { qos: 1 })
    await pub.publishAsync('dev/1/cmd', 'q0', { qos: 0 })
    await pub.publishAsync('dev/1/cmd', 'q1', { qos: 1 }) // resolves on PUBACK: the bus called back
    await pub.publishAsync('dev/2/cmd', 'other', { qos: 1 })
    await waitFor(() => received.length >= 2, '2 messages')
    assert.deepEqual(received.map((m) => [m.topic, m.payload, m.qos]).sort(), [['dev/1/cmd', 'q0', 0], ['dev/1/cmd', 'q1', 1]])
  })

  it('wildcard subscriptions (+ and #, including the parent level) and unsubscribe', async () => {
    const sub = await connect(url, 'sub-wild')
    const pub = await connect(url, 'pub-wild')
    clients.push(sub, pub)
    const received = collect(sub)
    await sub.subscribeAsync({ 'room/+/temp': { qos: 1 }, 'alarm/#': { qos: 0 } })
    await pub.publishAsync('room/kitchen/temp', '21', { qos: 1 })
    await pub.publishAsync('room/kitchen/humidity', '40', { qos: 1 }) // matches neither
    await pub.publishAsync('alarm', 'parent', { qos: 1 }) // `alarm/#` matches `alarm`
    await pub.publishAsync('alarm/fire/floor2', 'deep', { qos: 1 })
    await waitFor(() => received.length >= 3, '3 messages')
    assert.deepEqual(received.map((m) => [m.topic, m.payload]).sort(), [['alarm', 'parent'], ['alarm/fire/floor2', 'deep'], ['room/kitchen/temp', '21']])

    await sub.unsubscribeAsync('room/+/temp')
    await pub.publishAsync('room/hall/temp', 'after-unsub', { qos: 1 })
    await pub.publishAsync('alarm/smoke', 'still-subscribed', { qos: 1 })
    await waitFor(() => received.length >= 4, 'the message on the remaining subscription')
    // A QoS 1 round trip through the broker after the last publish: anything on the removed
    // subscription would have arrived by then.
    await sub.publishAsync('alarm/sync', 'sync', { qos: 1 })
    await waitFor(() => received.some((m) => m.topic === 'alarm/sync'), 'sync message')
    assert.equal(received.some((m) => m.payload === 'after-unsub'), false)
  })

  it('retained messages reach later subscribers, exact and wildcard', async () => {
    const pub = await connect(url, 'pub-retain')
    clients.push(pub)
    await pub.publishAsync('status/gw-1', 'online', { qos: 1, retain: true })
    const sub = await connect(url, 'sub-retain')
    clients.push(sub)
    const received = collect(sub)
    await sub.subscribeAsync('status/gw-1', { qos: 1 })
    await sub.subscribeAsync('status/+', { qos: 0 })
    await waitFor(() => received.length >= 2, 'two retained deliveries')
    assert.deepEqual(received.map((m) => [m.topic, m.payload, m.retain]), [['status/gw-1', 'online', true], ['status/gw-1', 'online', true]])
    // A live publish reaches both listeners on the bus, but Aedes delivers it once per client
    // (its per-client dedupe by brokerCounter), exactly as with its default bus.
    await pub.publishAsync('status/gw-1', 'live', { qos: 1 })
    await waitFor(() => received.length >= 3, 'live delivery')
    await sub.publishAsync('status/sync', 'sync', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'sync'), 'sync message')
    assert.deepEqual(received.filter((m) => m.payload === 'live').map((m) => [m.topic, m.retain]), [['status/gw-1', false]])
  })

  it('the bus holds the subscriptions of connected clients and Aedes’ own', async () => {
    const count = bus.subscriptionCount
    const c = await connect(url, 'counted')
    clients.push(c)
    await c.subscribeAsync('counted/a', { qos: 0 })
    assert.ok(bus.subscriptionCount > count)
    await c.unsubscribeAsync('counted/a')
    await waitFor(() => bus.subscriptionCount === count, 'subscription removed from the bus')
  })
})
