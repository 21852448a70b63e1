import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { flowPlugin } from '../../../plugins/flow/plugin.js'
import { startTestGateway } from '../../helpers/gateway.js'
import { collect, connectClient, endClient, sleep, waitFor } from '../../helpers/mqtt.js'
import { RawClient } from '../../helpers/raw-client.js'

const payloads = (c: RawClient): string[] => c.publishes().map((p) => p.payload.toString())

async function publishMany (pub: MqttClient, topic: string, count: number, qos: 0 | 1, size = 0): Promise<void> {
  for (let i = 0; i < count; i++) {
    const payload = size > 0 ? `${i}:`.padEnd(size, 'x') : String(i)
    if (qos === 1) await pub.publishAsync(topic, payload, { qos })
    else pub.publish(topic, payload, { qos })
  }
}

describe('flow plugin: per-client in-flight window and bounded queue (real clients)', () => {
  it('a client that never acknowledges has exactly inflightWindow QoS 1 messages; each PUBACK lets the next one go, in order', async () => {
    const gw = await startTestGateway('flow: { inflightWindow: 8, maxQueued: 1000 }', { plugins: [flowPlugin] })
    try {
      const sub = await RawClient.connect(gw.gateway.ports.mqtt!, 'never-acks')
      await sub.subscribe('w/t', 1)
      const pub = await connectClient(gw.mqttUrl)
      // All 50 are routed when publishMany returns (the gateway routes a QoS 1 PUBLISH before its PUBACK).
      await publishMany(pub, 'w/t', 50, 1)
      await waitFor(() => sub.publishes().length >= 8, '8 messages')
      // Marker: the window holds every later message back, so none can be one; the PINGRESP
      // is written to this socket after anything the broker had already sent it.
      await sub.ping()
      assert.equal(sub.publishes().length, 8)
      assert.deepEqual(payloads(sub), ['0', '1', '2', '3', '4', '5', '6', '7'])
      for (const p of sub.publishes().slice(0, 3)) sub.ack(p.messageId!)
      await waitFor(() => sub.publishes().length >= 11, '3 more after 3 PUBACKs')
      await sub.ping()
      assert.equal(sub.publishes().length, 11)
      // acknowledge everything as it comes: all 50 arrive, in order, none twice
      await sub.ackUntil(50, 10000)
      assert.deepEqual(payloads(sub), Array.from({ length: 50 }, (_, i) => String(i)))
      const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
      assert.match(metrics, /mqgw_flow_inflight_messages \d+/)
      sub.destroy()
      await endClient(pub)
    } finally {
      await gw.stop()
    }
  })

  for (const [policy, expected] of [
    ['drop-oldest', ['0', '1', ...Array.from({ length: 5 }, (_, i) => String(15 + i))]],
    ['drop-new', ['0', '1', '2', '3', '4', '5', '6']]
  ] as const) {
    it(`overflow ${policy}: the queue keeps maxQueued messages, drops are counted and logged once`, async () => {
      const gw = await startTestGateway(`flow: { inflightWindow: 2, maxQueued: 5, overflow: ${policy} }`, { plugins: [flowPlugin] })
      try {
        const sub = await RawClient.connect(gw.gateway.ports.mqtt!, `overflow-${policy}`)
        await sub.subscribe('o/t', 1)
        const pub = await connectClient(gw.mqttUrl)
        await publishMany(pub, 'o/t', 20, 1)
        await waitFor(() => sub.publishes().length >= 2, 'window')
        await sub.ackUntil(expected.length, 3000)
        // Marker: one more message on the same path once the queue has room again; the queue
        // is first in, first out, so anything it still held would be sent before it.
        await pub.publishAsync('o/t', 'marker', { qos: 1 })
        await sub.ackUntil(expected.length + 1, 3000)
        assert.deepEqual(payloads(sub), [...expected, 'marker'])
        const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
        assert.match(metrics, /mqgw_flow_dropped_total\{reason="queue_full",qos="1"\} 13/)
        assert.equal(gw.logs.lines.filter((l) => l.msg === 'client queue full; dropping messages (logged once per connection)').length, 1)
        sub.destroy()
        await endClient(pub)
      } finally {
        await gw.stop()
      }
    })
  }

  it('overflow disconnect closes the client whose queue is full', async () => {
    const gw = await startTestGateway('flow: { inflightWindow: 2, maxQueued: 5, overflow: disconnect }', { plugins: [flowPlugin] })
    try {
      const sub = await RawClient.connect(gw.gateway.ports.mqtt!, 'overflow-disconnect')
      await sub.subscribe('d/t', 1)
      const pub = await connectClient(gw.mqttUrl)
      await publishMany(pub, 'd/t', 20, 1)
      await Promise.race([sub.closed, sleep(3000)])
      assert.equal(sub.socket.destroyed || sub.socket.readableEnded, true)
      assert.equal(pub.connected, true)
      await endClient(pub)
    } finally {
      await gw.stop()
    }
  })

  // Found in review: batching the WebSocket stream's writes per turn (as TCP's are) let a WS
  // subscriber take one frame per event-loop turn; its queue overflowed and it got 1,154 of
  // 20,000 messages. The default window must not drop anything for a WS client that reads.
  it('a WebSocket subscriber gets every one of 5,000 QoS 0 messages published back to back (default queue, nothing dropped)', async () => {
    const gw = await startTestGateway('flow: { inflightWindow: 32, maxQueued: 1000 }', { plugins: [flowPlugin] })
    try {
      const sub = await connectClient(gw.wsUrl, { clientId: 'ws-burst' })
      const received = collect(sub)
      await sub.subscribeAsync('burst/#', { qos: 0 })
      const pub = await connectClient(gw.mqttUrl)
      await publishMany(pub, 'burst/t', 5000, 0, 100)
      await waitFor(() => received.length >= 5000, '5,000 messages over WebSocket', 20000).catch(() => {})
      assert.equal(received.length, 5000)
      assert.ok(received.every((m, i) => m.payload.startsWith(`${i}:`)), 'in order')
      const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
      assert.doesNotMatch(metrics, /mqgw_flow_dropped_total\{[^}]*\} [1-9]/)
      await Promise.all([endClient(sub), endClient(pub)])
    } finally {
      await gw.stop()
    }
  })

  it('QoS 0 messages are dropped first under drop-oldest', async () => {
    const gw = await startTestGateway('flow: { inflightWindow: 1, maxQueued: 3, overflow: drop-oldest }', { plugins: [flowPlugin] })
    try {
      const sub = await RawClient.connect(gw.gateway.ports.mqtt!, 'mixed')
      await sub.subscribe('mix/#', 1)
      const pub = await connectClient(gw.mqttUrl)
      await pub.publishAsync('mix/q1', 'a', { qos: 1 }) // in flight
      await pub.publishAsync('mix/q1', 'b', { qos: 1 }) // queued
      pub.publish('mix/q0', 'c', { qos: 0 }) // would be sent at once (QoS 0 needs no slot) unless queued behind b
      await pub.publishAsync('mix/q1', 'd', { qos: 1 })
      await pub.publishAsync('mix/q1', 'e', { qos: 1 }) // queue full: b c d + e → c (QoS 0) goes first
      await sub.ackUntil(4, 3000)
      // Marker: one more message on the same path once the queue is empty; anything the queue
      // still held (c, had it not been dropped) would be sent before it.
      await pub.publishAsync('mix/q1', 'marker', { qos: 1 })
      await sub.ackUntil(5, 3000)
      assert.deepEqual(payloads(sub), ['a', 'b', 'd', 'e', 'marker'])
      sub.destroy()
      await endClient(pub)
    } finally {
      await gw.stop()
    }
  })

  it('a persistent session\'s stored queue flows through the window after reconnect, in order', async () => {
    const gw = await startTestGateway('flow: { inflightWindow: 5 }', { plugins: [flowPlugin] })
    try {
      const first = await RawClient.connect(gw.gateway.ports.mqtt!, 'stored', { clean: false })
      await first.subscribe('s/t', 1)
      first.destroy()
      await first.closed
      const pub = await connectClient(gw.mqttUrl)
      await publishMany(pub, 's/t', 30, 1)
      const back = await RawClient.connect(gw.gateway.ports.mqtt!, 'stored', { clean: false })
      await waitFor(() => back.publishes().length >= 5, 'first 5 stored messages')
      // The full window holds every later message back, so none can be a marker; the PINGRESP
      // is written to this socket after anything the broker had already sent it.
      await back.ping()
      assert.deepEqual(payloads(back), ['0', '1', '2', '3', '4'])
      await back.ackUntil(30, 5000)
      assert.deepEqual(payloads(back), Array.from({ length: 30 }, (_, i) => String(i)))
      back.destroy()
      await endClient(pub)
    } finally {
      await gw.stop()
    }
  })

  for (const withFlow of [true, false]) {
    it(`a frozen subscriber ${withFlow ? 'does not delay' : 'stalls (without the flow plugin)'} delivery to 50 others on the same topic`, async () => {
      const gw = await startTestGateway(`broker: { drainTimeoutMs: 30000 }\n${withFlow ? 'flow: { inflightWindow: 32, maxQueued: 100 }' : ''}`, { plugins: withFlow ? [flowPlugin] : [] })
      try {
        const frozen = await RawClient.connect(gw.gateway.ports.mqtt!, 'frozen')
        await frozen.subscribe('f/t', 1)
        frozen.socket.pause() // stops reading: its socket buffers fill up
        const healthy = await Promise.all(Array.from({ length: 50 }, (_, i) => connectClient(gw.mqttUrl, { clientId: `healthy-${i}` })))
        const received = healthy.map((c) => collect(c))
        await Promise.all(healthy.map((c) => c.subscribeAsync('f/t', { qos: 1 })))
        const pub = await connectClient(gw.mqttUrl)
        const total = 400
        const started = Date.now()
        void publishMany(pub, 'f/t', total, 1, 16384).catch(() => {})
        const allDelivered = (): boolean => received.every((r) => r.length >= total)
        await waitFor(allDelivered, 'all healthy deliveries', 10000).catch(() => {})
        const delivered = received.reduce((n, r) => n + r.length, 0)
        if (withFlow) {
          assert.equal(delivered, total * 50, `healthy subscribers got ${delivered} of ${total * 50} in ${Date.now() - started} ms`)
        } else {
          // The defect the window fixes: one frozen socket holds the broker's delivery slots.
          assert.ok(delivered < total * 50, `without flow control the healthy subscribers got everything (${delivered}); the stall did not reproduce`)
        }
        frozen.destroy()
        await Promise.all([...healthy.map((c) => endClient(c, true)), endClient(pub, true)])
      } finally {
        await gw.stop()
      }
    })
  }
})
