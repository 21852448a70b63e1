import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { flowPlugin } from '../../plugins/flow/plugin.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { pollUntil } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'

/**
 * The QoS 1 publish path of patches/aedes+1.2.0.patch (aedes.js enqueueOffline) and
 * patches/aedes-persistence+11.0.0.patch (holdsNoOfflineSubscriptions): with no offline
 * subscription in the memory store, a QoS 1 message goes to delivery in the same turn, as a
 * QoS 0 message does; with one, it is queued for that session first, as before.
 */
describe('QoS 1 publish path (memory store)', () => {
  let gw: TestGateway
  before(async () => { gw = await startTestGateway('flow: { inflightWindow: 32 }', { plugins: [flowPlugin] }) })
  after(async () => { await gw.stop() })

  it('QoS 0 and QoS 1 messages of one publisher, read in one socket read, arrive in the order sent', async () => {
    const port = gw.gateway.ports.mqtt!
    const sub = await RawClient.connect(port, 'order-sub')
    const pub = await RawClient.connect(port, 'order-pub')
    try {
      await sub.subscribe('order/t', 1)
      // One write, so the gateway parses them in one read. Before the patch each QoS 1 message
      // waited for the store's promise, and the QoS 0 messages after it overtook it.
      const packets: Buffer[] = []
      for (let i = 0; i < 20; i++) {
        const qos = i % 2 === 0 ? 1 : 0
        packets.push(mqttPacket.generate({ cmd: 'publish', topic: 'order/t', payload: Buffer.from(String(i)), qos, retain: false, dup: false, ...(qos === 1 ? { messageId: i + 1 } : {}) } as unknown as Packet))
      }
      pub.socket.write(Buffer.concat(packets))
      const got = await pollUntil(async () => sub.publishes(), (p) => p.length >= 20, 5000, 5)
      assert.deepEqual(got.map((p) => Buffer.from(p.payload).toString()), Array.from({ length: 20 }, (_, i) => String(i)))
      const acks = await pollUntil(async () => pub.packets.filter((p) => p.cmd === 'puback').length, (n) => n >= 10, 5000, 5)
      assert.equal(acks, 10)
    } finally {
      sub.destroy()
      pub.destroy()
    }
  })

  it('with an offline persistent session subscribed, QoS 1 messages are still queued for it and delivered on its return', async () => {
    const port = gw.gateway.ports.mqtt!
    const persistent = await RawClient.connect(port, 'offline-sub', { clean: false })
    await persistent.subscribe('offline/t', 1)
    persistent.send({ cmd: 'disconnect' })
    await persistent.closed
    const online = await RawClient.connect(port, 'online-sub')
    const pub = await RawClient.connect(port, 'offline-pub')
    try {
      await online.subscribe('offline/t', 1)
      for (let i = 1; i <= 5; i++) pub.send({ cmd: 'publish', topic: 'offline/t', payload: Buffer.from(`m${i}`), qos: 1, messageId: i, retain: false, dup: false })
      await online.ackUntil(5, 5000)
      assert.deepEqual(online.publishes().map((p) => Buffer.from(p.payload).toString()), ['m1', 'm2', 'm3', 'm4', 'm5'])
      const back = await RawClient.connect(port, 'offline-sub', { clean: false })
      try {
        await back.ackUntil(5, 5000)
        assert.deepEqual(back.publishes().map((p) => Buffer.from(p.payload).toString()), ['m1', 'm2', 'm3', 'm4', 'm5'])
      } finally {
        back.destroy()
      }
    } finally {
      online.destroy()
      pub.destroy()
    }
  })
  it('a clean session\'s PUBACK makes no store call; a persistent session\'s still clears its stored message', async () => {
    const port = gw.gateway.ports.mqtt!
    // The store's method, counted per client id (the patch skips it for clean sessions only).
    const store = (gw.gateway.broker as unknown as { persistence: unknown }).persistence as { outgoingClearMessageId: (client: { id: string }, packet: unknown) => Promise<unknown> }
    const original = store.outgoingClearMessageId
    const calls = new Map<string, number>()
    store.outgoingClearMessageId = function (client, packet) {
      calls.set(client.id, (calls.get(client.id) ?? 0) + 1)
      return original.call(this, client, packet)
    }
    const clean = await RawClient.connect(port, 'ack-clean')
    const persistent = await RawClient.connect(port, 'ack-persistent', { clean: false })
    const pub = await RawClient.connect(port, 'ack-pub')
    try {
      await clean.subscribe('ack/t', 1)
      await persistent.subscribe('ack/t', 1)
      for (let i = 1; i <= 5; i++) pub.send({ cmd: 'publish', topic: 'ack/t', payload: Buffer.from(`a${i}`), qos: 1, messageId: i, retain: false, dup: false })
      await Promise.all([clean.ackUntil(5, 5000), persistent.ackUntil(5, 5000)])
      // Both sent 5 PUBACKs; the persistent session's 5 clears are the marker that they were handled.
      assert.equal(await pollUntil(async () => calls.get('ack-persistent') ?? 0, (n) => n >= 5, 5000, 5), 5)
      assert.equal(calls.get('ack-clean') ?? 0, 0)
      assert.deepEqual(clean.publishes().map((p) => Buffer.from(p.payload).toString()), ['a1', 'a2', 'a3', 'a4', 'a5'])
    } finally {
      store.outgoingClearMessageId = original
      clean.destroy()
      persistent.destroy()
      pub.destroy()
    }
  })
})
