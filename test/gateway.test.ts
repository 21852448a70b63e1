import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { IClientOptions } from 'mqtt'
import { startTestGateway, testCertificate, type TestGateway } from './helpers/gateway.js'
import { collect, connectClient, endClient, waitFor } from './helpers/mqtt.js'

describe('publish/subscribe with real MQTT.js clients on every transport', () => {
  let gw: TestGateway
  const urls: Record<string, string> = {}
  const tls = testCertificate()
  const clientOpts: Record<string, IClientOptions> = {}

  before(async () => {
    gw = await startTestGateway(`
listeners:
  mqtts: { enabled: true, host: 127.0.0.1, port: 0, cert: ${tls.cert}, key: ${tls.key} }
  wss: { enabled: true, host: 127.0.0.1, port: 0, cert: ${tls.cert}, key: ${tls.key} }
`)
    urls.mqtt = gw.mqttUrl
    urls.ws = gw.wsUrl
    urls.mqtts = `mqtts://localhost:${gw.gateway.ports.mqtts}`
    urls.wss = `wss://localhost:${gw.gateway.ports.wss}/mqtt`
    const { readFileSync } = await import('node:fs')
    const ca = readFileSync(tls.cert)
    clientOpts.mqtts = { ca, rejectUnauthorized: true }
    clientOpts.wss = { ca, rejectUnauthorized: true }
  })
  after(async () => { await gw.stop() })

  for (const transport of ['mqtt', 'ws', 'mqtts', 'wss'] as const) {
    it(`QoS 0/1/2 round trip over ${transport}, subscriber on another transport`, async () => {
      const sub = await connectClient(urls.mqtt!, { clientId: `sub-${transport}` })
      const pub = await connectClient(urls[transport]!, { clientId: `pub-${transport}`, ...clientOpts[transport] })
      const received = collect(sub)
      await sub.subscribeAsync(`t/${transport}/#`, { qos: 2 })
      for (const qos of [0, 1, 2] as const) await pub.publishAsync(`t/${transport}/q${qos}`, `m${qos}`, { qos })
      await waitFor(() => received.length === 3, '3 messages')
      assert.deepEqual(received.map((m) => [m.topic, m.payload, m.qos]).sort(), [
        [`t/${transport}/q0`, 'm0', 0], [`t/${transport}/q1`, 'm1', 1], [`t/${transport}/q2`, 'm2', 2]
      ])
      // and the other direction: the subscriber on this transport
      const sub2 = await connectClient(urls[transport]!, { clientId: `sub2-${transport}`, ...clientOpts[transport] })
      const received2 = collect(sub2)
      await sub2.subscribeAsync(`back/${transport}`, { qos: 1 })
      await pub.publishAsync(`back/${transport}`, 'back', { qos: 1 })
      await waitFor(() => received2.length === 1, 'message back')
      assert.equal(received2[0]!.payload, 'back')
      await Promise.all([endClient(sub), endClient(pub), endClient(sub2)])
    })
  }

  it('WebSocket upgrade negotiates the mqtt subprotocol and rejects other paths', async () => {
    const { WebSocket } = await import('ws')
    const ws = new WebSocket(gw.wsUrl, ['mqtt'])
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    assert.equal(ws.protocol, 'mqtt')
    ws.close()
    const wrong = new WebSocket(`ws://127.0.0.1:${gw.gateway.ports.ws}/other`, ['mqtt'])
    const err = await new Promise<Error>((resolve) => wrong.once('error', resolve))
    assert.match(err.message, /404/)
  })

  it('retained message is delivered to a later subscriber and cleared by an empty payload', async () => {
    const pub = await connectClient(urls.mqtt!)
    await pub.publishAsync('ret/a', 'kept', { qos: 1, retain: true })
    const sub = await connectClient(urls.ws!)
    const received = collect(sub)
    await sub.subscribeAsync('ret/#', { qos: 1 })
    await waitFor(() => received.length === 1, 'retained message')
    assert.deepEqual(received[0], { topic: 'ret/a', payload: 'kept', qos: 1, retain: true })
    await pub.publishAsync('ret/a', '', { qos: 1, retain: true })
    // Marker: a retained message stored after the clear. The memory store hands a new
    // subscription its retained messages in the order they were first stored, one at a
    // time, so a ret/a still stored would reach the late subscriber before the marker.
    await pub.publishAsync('ret/z-marker', 'marker', { qos: 1, retain: true })
    const late = await connectClient(urls.mqtt!)
    const lateReceived = collect(late)
    await late.subscribeAsync('ret/#', { qos: 1 })
    await waitFor(() => lateReceived.some((m) => m.topic === 'ret/z-marker'), 'the retained marker')
    assert.deepEqual(lateReceived.map((m) => m.topic), ['ret/z-marker'], 'retained message cleared')
    await pub.publishAsync('ret/z-marker', '', { qos: 1, retain: true })
    await Promise.all([endClient(pub), endClient(sub), endClient(late)])
  })

  it('will is published when a client disconnects abruptly, not after DISCONNECT', async () => {
    const watcher = await connectClient(urls.mqtt!)
    const received = collect(watcher)
    await watcher.subscribeAsync('wills/#', { qos: 1 })
    const dying = await connectClient(urls.mqtt!, { clientId: 'dying', will: { topic: 'wills/dying', payload: Buffer.from('gone'), qos: 1, retain: false } })
    const polite = await connectClient(urls.mqtt!, { clientId: 'polite', will: { topic: 'wills/polite', payload: Buffer.from('gone'), qos: 1, retain: false } })
    await endClient(polite)
    // The broker has handled polite's close (where a will would be published) before dying's
    // connection is cut; dying's will then goes the same way to the watcher, so it is the
    // marker: a will of polite would have arrived before it.
    const brokerClients = (gw.gateway.broker as unknown as { clients: Record<string, unknown> }).clients
    await waitFor(() => brokerClients.polite === undefined, 'the broker to handle polite\'s close')
    dying.stream.destroy()
    await waitFor(() => received.some((m) => m.topic === 'wills/dying'), 'will message')
    assert.deepEqual(received.map((m) => m.topic), ['wills/dying'])
    await endClient(watcher)
  })

  it('persistent session keeps subscriptions and queues QoS 1 while offline; clean session forgets', async () => {
    const sub = await connectClient(urls.mqtt!, { clientId: 'persist-1', clean: false })
    await sub.subscribeAsync('persist/#', { qos: 1 })
    await endClient(sub)
    const pub = await connectClient(urls.mqtt!)
    for (let i = 0; i < 5; i++) await pub.publishAsync('persist/x', `p${i}`, { qos: 1 })
    const back = await connectClient(urls.mqtt!, { clientId: 'persist-1', clean: false })
    assert.equal(back.connected, true)
    const received = collect(back)
    await waitFor(() => received.length === 5, '5 queued messages')
    assert.deepEqual(received.map((m) => m.payload), ['p0', 'p1', 'p2', 'p3', 'p4'])
    await endClient(back)

    const clean = await connectClient(urls.mqtt!, { clientId: 'clean-1', clean: true })
    await clean.subscribeAsync('clean/#', { qos: 1 })
    await endClient(clean)
    await pub.publishAsync('clean/x', 'lost', { qos: 1 })
    const cleanBack = await connectClient(urls.mqtt!, { clientId: 'clean-1', clean: true })
    const cleanReceived = collect(cleanBack)
    // Marker: a stored queue is sent while CONNECT is handled, before the broker reads the
    // SUBSCRIBE that follows; the marker is published after that SUBACK by the same publisher.
    await cleanBack.subscribeAsync('clean-marker/1', { qos: 1 })
    await pub.publishAsync('clean/x', 'lost-live', { qos: 1 })
    await pub.publishAsync('clean-marker/1', 'marker', { qos: 1 })
    await waitFor(() => cleanReceived.some((m) => m.payload === 'marker'), 'the marker')
    assert.deepEqual(cleanReceived.map((m) => m.payload), ['marker'], 'neither the queue nor the subscription of the clean session survived')
    await Promise.all([endClient(cleanBack), endClient(pub)])
  })

  it('unsubscribe stops delivery', async () => {
    const sub = await connectClient(urls.mqtt!)
    const pub = await connectClient(urls.mqtt!)
    const received = collect(sub)
    await sub.subscribeAsync(['u/t', 'u-marker/t'], { qos: 1 })
    await pub.publishAsync('u/t', 'one', { qos: 1 })
    await waitFor(() => received.length === 1, 'first message')
    await sub.unsubscribeAsync('u/t')
    await pub.publishAsync('u/t', 'two', { qos: 1 })
    // Marker: same publisher, same QoS, to a subscription the client keeps, published after 'two'.
    await pub.publishAsync('u-marker/t', 'marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'the marker')
    assert.deepEqual(received.map((m) => m.payload), ['one', 'marker'])
    await Promise.all([endClient(sub), endClient(pub)])
  })

  it('keepalive timeout closes a silent client and publishes its will', async () => {
    const watcher = await connectClient(urls.mqtt!)
    const received = collect(watcher)
    await watcher.subscribeAsync('ka/will')
    const { rawSocket } = await import('./helpers/mqtt.js')
    const mqttPacket = (await import('mqtt-packet')).default
    const raw = await rawSocket(gw.gateway.ports.mqtt!)
    raw.socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'silent', keepalive: 1, will: { topic: 'ka/will', payload: Buffer.from('timeout'), qos: 0, retain: false } }))
    // keepalive 1 s: Aedes closes after 1.5 x keepalive without a packet
    await raw.closed
    await waitFor(() => received.length === 1, 'will after keepalive timeout', 4000)
    assert.equal(received[0]!.payload, 'timeout')
    await endClient(watcher)
  })

  it('a second CONNECT with the same client id takes the session over', async () => {
    const first = await connectClient(urls.mqtt!, { clientId: 'twin' })
    const closed = new Promise<void>((resolve) => first.once('close', () => resolve()))
    const second = await connectClient(urls.ws!, { clientId: 'twin' })
    await closed
    assert.equal(second.connected, true)
    const received = collect(second)
    await second.subscribeAsync('twin/t')
    await second.publishAsync('twin/t', 'still here')
    await waitFor(() => received.length === 1, 'message on the new connection')
    await endClient(second)
    await endClient(first, true)
  })

  for (const protocolVersion of [3, 4] as const) {
    it(`MQTT ${protocolVersion === 3 ? '3.1 (MQIsdp)' : '3.1.1'} clients work`, async () => {
      const opts: IClientOptions = protocolVersion === 3 ? { protocolVersion: 3, protocolId: 'MQIsdp', clientId: 'v31-client' } : { protocolVersion: 4 }
      const client = await connectClient(urls.mqtt!, opts)
      const received = collect(client)
      await client.subscribeAsync(`v/${protocolVersion}`, { qos: 1 })
      await client.publishAsync(`v/${protocolVersion}`, 'hi', { qos: 1 })
      await waitFor(() => received.length === 1, 'own message')
      await endClient(client)
    })
  }
})
