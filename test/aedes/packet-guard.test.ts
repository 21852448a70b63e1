import assert from 'node:assert/strict'
import { after, afterEach, before, describe, it } from 'node:test'
import mqttPacket from 'mqtt-packet'
import type { MqttClient } from 'mqtt'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { closesWithin, collect, connectClient, endClient, pollUntil, rawSocket, waitFor } from '../helpers/mqtt.js'
import { seededInt } from '../helpers/seeded-random.js'

const connectPacket = (clientId: string, extra: Partial<mqttPacket.IConnectPacket> = {}): Buffer =>
  mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 30, ...extra })

/** A CONNACK is 4 bytes: 0x20 0x02 flags returnCode. */
function connackCode (data: Buffer): number | undefined {
  return data.length >= 4 && data[0] === 0x20 ? data[3] : undefined
}

describe('bad input is refused per MQTT 3.1.1 and hurts no other client', () => {
  let gw: TestGateway
  let healthy: MqttClient
  let healthyReceived: ReturnType<typeof collect>
  let seq = 0

  before(async () => {
    gw = await startTestGateway(`
limits: { maxPacketSize: 4096, maxClientIdLength: 32, maxTopicLength: 64, maxTopicLevels: 8, keepaliveMaxS: 120, connectTimeoutMs: 500 }
`)
    healthy = await connectClient(gw.mqttUrl, { clientId: 'healthy' })
    healthyReceived = collect(healthy)
    await healthy.subscribeAsync('health/#', { qos: 1 })
  })
  after(async () => {
    await endClient(healthy)
    await gw.stop()
  })
  // After every bad client: the healthy client still gets a round trip through the broker.
  afterEach(async () => {
    const payload = `ping-${++seq}`
    await healthy.publishAsync('health/check', payload, { qos: 1 })
    await waitFor(() => healthyReceived.some((m) => m.payload === payload), `healthy client round trip ${payload}`)
    assert.equal(healthy.connected, true)
  })

  async function connectedRaw (clientId: string): Promise<Awaited<ReturnType<typeof rawSocket>>> {
    const raw = await rawSocket(gw.gateway.ports.mqtt!)
    raw.socket.write(connectPacket(clientId))
    await waitFor(() => connackCode(raw.data()) === 0, 'CONNACK 0')
    return raw
  }

  it('oversized packet: disconnected as soon as its header arrives, counted, logged once at warn', async () => {
    const raw = await connectedRaw('big-sender')
    const big = mqttPacket.generate({ cmd: 'publish', topic: 'health/big', payload: Buffer.alloc(5000, 1), qos: 0, dup: false, retain: false })
    // Only the header and a few bytes: the guard must not wait for the body.
    raw.socket.write(big.subarray(0, 16))
    assert.equal(await closesWithin(raw.closed, 2000), true, 'connection closed')
    const warns = gw.logs.lines.filter((l) => l.level === 40 && l.clientId === 'big-sender')
    assert.equal(warns.length, 1)
    assert.match(String(warns[0]!.err), /exceeds maxPacketSize 4096/)
    assert.equal(warns[0]!.remoteAddress, '127.0.0.1')
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /mqgw_disconnects_total\{reason="packet_too_large"\} 1/)
    assert.ok(!healthyReceived.some((m) => m.topic === 'health/big'))
  })

  it('garbage bytes before CONNECT: connection closed, counted as a refused connection', async () => {
    const raw = await rawSocket(gw.gateway.ports.mqtt!)
    raw.socket.write(Buffer.from([0x00, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xde, 0xad, 0xbe, 0xef]))
    assert.equal(await closesWithin(raw.closed, 2000), true)
    assert.equal(raw.data().length, 0, 'nothing is answered to garbage')
  })

  it('random garbage streams never crash the broker', async () => {
    const byte = seededInt(0xbad)
    for (let i = 0; i < 20; i++) {
      const raw = await rawSocket(gw.gateway.ports.mqtt!)
      const junk = Buffer.alloc(256)
      for (let j = 0; j < junk.length; j++) junk[j] = byte(256)
      if (i % 2 === 0) raw.socket.write(connectPacket(`junk-${i}`))
      raw.socket.write(junk)
      raw.socket.end()
      assert.equal(await closesWithin(raw.closed, 2000), true, `junk stream ${i} (seed 0xbad) was closed`)
    }
  })

  it('CONNECT with an unsupported protocol level gets CONNACK 0x01 and is closed [MQTT-3.1.2-2]', async () => {
    const raw = await rawSocket(gw.gateway.ports.mqtt!)
    const packet = connectPacket('bad-level')
    packet[8] = 7 // protocol level byte: fixed header (2) + "MQTT" length-prefixed (6)
    raw.socket.write(packet)
    assert.equal(await closesWithin(raw.closed, 2000), true)
    assert.equal(connackCode(raw.data()), 1)
  })

  it('PUBLISH topic with ill-formed UTF-8 closes the connection [MQTT-1.5.3-1]', async () => {
    const raw = await connectedRaw('bad-utf8')
    const topic = Buffer.from([0x68, 0x65, 0x61, 0x6c, 0x74, 0x68, 0x2f, 0xf0, 0x9f, 0x98]) // "health/" + truncated 4-byte sequence
    const body = Buffer.concat([Buffer.from([0, topic.length]), topic, Buffer.from('payload')])
    raw.socket.write(Buffer.concat([Buffer.from([0x30, body.length]), body]))
    assert.equal(await closesWithin(raw.closed, 2000), true)
    const warn = gw.logs.lines.find((l) => l.clientId === 'bad-utf8' && l.level === 40)
    assert.match(String(warn?.err), /UTF-8/)
    assert.ok(!healthyReceived.some((m) => m.topic.startsWith('health/\ufffd')))
  })

  it('PUBLISH topic containing U+0000 closes the connection [MQTT-1.5.3-2]', async () => {
    const raw = await connectedRaw('nul-topic')
    raw.socket.write(mqttPacket.generate({ cmd: 'publish', topic: 'health/a\u0000b', payload: Buffer.from('x'), qos: 0, dup: false, retain: false }))
    assert.equal(await closesWithin(raw.closed, 2000), true)
  })

  for (const topic of ['health/+', 'health/#']) {
    it(`PUBLISH to wildcard topic "${topic}" closes the connection [MQTT-3.3.2-2]`, async () => {
      const raw = await connectedRaw(`wild-${topic.length}-${topic.at(-1) === '#' ? 'h' : 'p'}`)
      raw.socket.write(mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, messageId: 1, dup: false, retain: false }))
      assert.equal(await closesWithin(raw.closed, 2000), true)
      assert.ok(!healthyReceived.some((m) => m.payload === 'x'))
    })
  }

  it('SUBSCRIBE with an invalid filter closes the connection (protocol violation, MQTT 3.1.1 §4.7.1, §4.8)', async () => {
    for (const filter of ['a/#/b', 'x+y', 'a+', 'a/b#', '#/a']) {
      const raw = await connectedRaw(`bad-filter-${filter.length}-${filter.charCodeAt(1)}`)
      raw.socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 42, subscriptions: [{ topic: 'ok/+', qos: 1 }, { topic: filter, qos: 1 }] }))
      assert.equal(await closesWithin(raw.closed, 2000), true, `filter ${filter}`)
      // No SUBACK was sent for the packet (only the 4-byte CONNACK is in the data).
      assert.equal(raw.data().length, 4, `filter ${filter}`)
    }
  })

  it('maxClientIdLength: longer client id gets CONNACK 0x02', async () => {
    const raw = await rawSocket(gw.gateway.ports.mqtt!)
    raw.socket.write(connectPacket('x'.repeat(33)))
    assert.equal(await closesWithin(raw.closed, 2000), true)
    assert.equal(connackCode(raw.data()), 2)
  })

  it('keepaliveMaxS: keepalive 0 or above the limit gets CONNACK 0x02, within it is accepted', async () => {
    for (const [keepalive, code] of [[0, 2], [121, 2], [60, 0]] as const) {
      const raw = await rawSocket(gw.gateway.ports.mqtt!)
      raw.socket.write(connectPacket(`ka-${keepalive}`, { keepalive }))
      await waitFor(() => connackCode(raw.data()) !== undefined, 'CONNACK')
      assert.equal(connackCode(raw.data()), code, `keepalive ${keepalive}`)
      raw.socket.destroy()
    }
  })

  it('maxTopicLength and maxTopicLevels: SUBSCRIBE gets 0x80 per filter, PUBLISH disconnects', async () => {
    const raw = await connectedRaw('long-sub')
    raw.socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'health/' + 'x'.repeat(80), qos: 1 }, { topic: 'a/b/c/d/e/f/g/h/i', qos: 1 }, { topic: 'short/ok', qos: 1 }] }))
    // CONNACK (4 bytes) then SUBACK: 0x90, length 5, message id 7, three return codes.
    await waitFor(() => raw.data().length >= 4 + 7, 'SUBACK')
    assert.deepEqual([...raw.data().subarray(4)], [0x90, 5, 0, 7, 0x80, 0x80, 1])
    raw.socket.write(mqttPacket.generate({ cmd: 'publish', topic: 'health/' + 'y'.repeat(80), payload: Buffer.from('too long'), qos: 0, dup: false, retain: false }))
    assert.equal(await closesWithin(raw.closed, 2000), true)
    const deep = await connectedRaw('deep-pub')
    deep.socket.write(mqttPacket.generate({ cmd: 'publish', topic: 'health/b/c/d/e/f/g/h/i', payload: Buffer.from('too deep'), qos: 0, dup: false, retain: false }))
    assert.equal(await closesWithin(deep.closed, 2000), true)
    assert.ok(!healthyReceived.some((m) => m.payload.startsWith('too')))
  })

  it('connectTimeoutMs: a socket that never sends CONNECT is closed', async () => {
    const raw = await rawSocket(gw.gateway.ports.mqtt!)
    assert.equal(await closesWithin(raw.closed, 2000), true)
  })

  it('clients exiting abruptly with ~20k QoS 0 messages in flight do not crash the gateway (aedes#193)', async () => {
    // 20 subscribers stop reading, so deliveries hold every bus slot; 100 publishers
    // then have 200 messages each in flight, queued on the bus; then everybody dies.
    const subscribers = await Promise.all(Array.from({ length: 20 }, (_, i) => connectedRaw(`flood-sub-${i}`)))
    for (const raw of subscribers) raw.socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos: 0 }] }))
    await waitFor(() => subscribers.every((raw) => raw.data().length >= 9), 'SUBACKs')
    for (const raw of subscribers) raw.socket.pause()
    const one = mqttPacket.generate({ cmd: 'publish', topic: 'flood/t', payload: Buffer.alloc(300, 7), qos: 0, dup: false, retain: false })
    const burst = Buffer.concat(Array.from({ length: 200 }, () => one))
    const publishers = await Promise.all(Array.from({ length: 100 }, (_, i) => connectedRaw(`flood-pub-${i}`)))
    const inCount = async (): Promise<number> => Number(/mqgw_messages_in_total\{qos="0"\} (\d+)/.exec(await (await fetch(`${gw.adminUrl}/metrics`)).text())?.[1] ?? 0)
    const before = await inCount()
    for (const raw of publishers) raw.socket.write(burst)
    // Every publish has reached the broker before everybody dies (20,000 in flight).
    const now = await pollUntil(inCount, (n) => n - before >= 20000, 60000, 50)
    assert.ok(now - before >= 20000, `only ${now - before} of 20000 publishes reached the broker`)
    for (const raw of [...subscribers, ...publishers]) raw.socket.destroy()
    // The broker has handled every one of those closes (where aedes#193 threw) once its count
    // of connected clients is back to the healthy client alone. An uncaught RangeError would
    // fail this test; afterEach's round trip proves the broker still serves.
    await waitFor(() => gw.gateway.broker.connectedClients === 1, 'every flood client closed', 10000)
  })
})

describe('maxConnections', () => {
  it('sockets beyond the cap are closed at once and counted; capacity returns when sockets close', async () => {
    const gw = await startTestGateway('limits: { maxConnections: 5 }')
    try {
      const open: Array<Awaited<ReturnType<typeof rawSocket>>> = []
      for (let i = 0; i < 5; i++) {
        const raw = await rawSocket(gw.gateway.ports.mqtt!)
        raw.socket.write(connectPacket(`fill-${i}`))
        await waitFor(() => connackCode(raw.data()) === 0, 'CONNACK 0')
        open.push(raw)
      }
      const extra = await rawSocket(gw.gateway.ports.mqtt!)
      assert.equal(await closesWithin(extra.closed, 1000), true)
      assert.equal(extra.data().length, 0)
      const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
      assert.match(metrics, /mqgw_connections_refused_total\{reason="max_connections"\} 1\n/)
      for (const raw of open) raw.socket.destroy()
      const openSockets = async (): Promise<number> => Number(/mqgw_sockets_current\{listener="mqtt"\} (\d+)/.exec(await (await fetch(`${gw.adminUrl}/metrics`)).text())?.[1] ?? NaN)
      assert.equal(await pollUntil(openSockets, (n) => n === 0, 5000), 0, 'the gateway saw the sockets close')
      const again = await rawSocket(gw.gateway.ports.mqtt!)
      again.socket.write(connectPacket('after-cap'))
      await waitFor(() => connackCode(again.data()) === 0, 'CONNACK 0 after sockets closed')
      again.socket.destroy()
    } finally {
      await gw.stop()
    }
  })
})
