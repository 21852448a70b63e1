import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { flowPlugin } from '../../plugins/flow/plugin.js'
import { connectedClients, outboundFlowOf } from '../../src/aedes/internals.js'
import type { GatewayPlugin } from '../../src/plugin.js'
import { startTestGateway, testCertificate, type TestGateway } from '../helpers/gateway.js'
import { collect, connectClient, endClient, pollUntil, waitFor } from '../helpers/mqtt.js'
import { run } from '../helpers/process.js'
import { RawClient } from '../helpers/raw-client.js'
import { clientFrame, connectRawWs, WsFrameReader } from '../helpers/raw-ws.js'

const PYTHON = process.env.MQGW_TEST_PYTHON ?? join(process.cwd(), '.cache/venv/bin/python')

interface Frame { opcode: number, payload: Buffer, headerBytes: number }

/**
 * An MQTT client over a raw WebSocket: every frame the gateway sends is kept as it was framed
 * (payload, header bytes), and the MQTT packets are parsed from the binary frames' bytes.
 */
class FrameCountingClient {
  readonly frames: Frame[] = []
  readonly packets: Packet[] = []
  readonly #parser = mqttPacket.parser()
  socket!: Socket

  static async connect (port: number, clientId: string): Promise<FrameCountingClient> {
    const client = new FrameCountingClient()
    client.#parser.on('packet', (p: Packet) => client.packets.push(p))
    const reader = new WsFrameReader((f) => {
      client.frames.push({ opcode: f.opcode, payload: Buffer.from(f.payload), headerBytes: f.headerBytes })
      if (f.opcode === 2 || f.opcode === 0) client.#parser.parse(Buffer.from(f.payload))
    })
    const { socket, protocol } = await connectRawWs(port, '/mqtt', (chunk) => reader.push(chunk), { protocol: 'mqtt' })
    assert.equal(protocol, 'mqtt')
    socket.on('error', () => {})
    client.socket = socket
    client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 60 })
    await client.waitFor((p) => p.cmd === 'connack', 'CONNACK')
    return client
  }

  send (packet: Record<string, unknown>): void {
    this.socket.write(clientFrame(mqttPacket.generate(packet as unknown as Packet)))
  }

  async subscribe (topic: string, qos: 0 | 1): Promise<void> {
    this.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] })
    await this.waitFor((p) => p.cmd === 'suback', 'SUBACK')
  }

  async waitFor (predicate: (p: Packet) => boolean, what: string, timeoutMs = 5000): Promise<Packet> {
    const found = await pollUntil(async () => this.packets.find(predicate), (p) => p !== undefined, timeoutMs, 5)
    if (found === undefined) throw new Error(`timed out waiting for ${what}`)
    return found
  }

  publishes (): mqttPacket.IPublishPacket[] {
    return this.packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish')
  }
}

const encode = (packet: Record<string, unknown>): Buffer => mqttPacket.generate(packet as unknown as Packet)

/** The same frame checks against the gateway as configured by default (flow window: one buffer per QoS 0 PUBLISH) and without plugins (Aedes' mqtt-packet writes, five per PUBLISH). */
const variants: Array<{ name: string, yaml: string, plugins: GatewayPlugin[] }> = [
  { name: 'with the flow plugin', yaml: 'flow: {}', plugins: [flowPlugin as GatewayPlugin] },
  { name: 'without plugins', yaml: '', plugins: [] }
]

for (const variant of variants) {
  describe(`MQTT over WebSocket on the wire (${variant.name}): one frame per packet sent alone, shared frames back to back`, () => {
    let gw: TestGateway
    let port: number
    before(async () => {
      gw = await startTestGateway(variant.yaml, { plugins: variant.plugins })
      port = gw.gateway.ports.ws!
    })
    after(async () => { await gw.stop() })

    it('CONNACK, SUBACK and a QoS 0 PUBLISH sent alone each arrive as one frame holding exactly that packet', async () => {
      const sub = await FrameCountingClient.connect(port, 'frames-q0')
      assert.deepEqual(sub.frames.map((f) => f.payload), [encode({ cmd: 'connack', returnCode: 0, sessionPresent: false })])
      await sub.subscribe('fr/t', 0)
      assert.equal(sub.frames.length, 2)
      assert.deepEqual(sub.frames[1]!.payload, encode({ cmd: 'suback', messageId: 1, granted: [0] }))
      const pub = await RawClient.connect(gw.gateway.ports.mqtt!, 'frames-q0-pub')
      pub.send({ cmd: 'publish', topic: 'fr/t', payload: Buffer.from('hello'), qos: 0, retain: false, dup: false })
      await sub.waitFor((p) => p.cmd === 'publish', 'the PUBLISH')
      // The issue measured five frames here (30 | 0b | 0004 | fr/t | hello): 13 bytes in 23 on the wire.
      assert.equal(sub.frames.length, 3)
      const frame = sub.frames[2]!
      assert.equal(frame.opcode, 2)
      assert.deepEqual(frame.payload, Buffer.from('300b00046672 2f74 68656c6c6f'.replace(/ /g, ''), 'hex'))
      assert.equal(frame.headerBytes + frame.payload.length, 15, 'wire bytes: 2 of frame header + 13 of PUBLISH')
      pub.socket.destroy()
      sub.socket.destroy()
    })

    it('QoS 1: the PUBLISH delivered and the PUBACK returned are whole packets, one frame each', async () => {
      const sub = await FrameCountingClient.connect(port, 'frames-q1-sub')
      await sub.subscribe('fr/q1', 1)
      const pub = await FrameCountingClient.connect(port, 'frames-q1-pub')
      const before = { sub: sub.frames.length, pub: pub.frames.length }
      pub.send({ cmd: 'publish', topic: 'fr/q1', payload: Buffer.from('qos one'), qos: 1, messageId: 7, retain: false, dup: false })
      await pub.waitFor((p) => p.cmd === 'puback', 'PUBACK')
      const delivered = await sub.waitFor((p) => p.cmd === 'publish', 'the QoS 1 PUBLISH') as mqttPacket.IPublishPacket
      assert.deepEqual(pub.frames.slice(before.pub).map((f) => f.payload), [Buffer.from([0x40, 0x02, 0x00, 0x07])])
      const frames = sub.frames.slice(before.sub)
      assert.equal(frames.length, 1)
      assert.deepEqual(frames[0]!.payload, encode({ cmd: 'publish', topic: 'fr/q1', payload: Buffer.from('qos one'), qos: 1, messageId: delivered.messageId, retain: false, dup: false }))
      sub.send({ cmd: 'puback', messageId: delivered.messageId })
      pub.socket.destroy()
      sub.socket.destroy()
    })

    it('back-to-back packets share frames: 200 PUBLISHes read in one turn reach a subscriber in a few frames, all whole and in order', async () => {
      const sub = await FrameCountingClient.connect(port, 'frames-burst')
      await sub.subscribe('fr/burst', 0)
      const pub = await RawClient.connect(gw.gateway.ports.mqtt!, 'frames-burst-pub')
      const before = sub.frames.length
      // One TCP write: the gateway reads them in one or a few reads, and delivers each read's in one turn.
      const packets = Array.from({ length: 200 }, (_, i) => encode({ cmd: 'publish', topic: 'fr/burst', payload: Buffer.from(`m${i}`), qos: 0, retain: false, dup: false }))
      pub.socket.write(Buffer.concat(packets))
      await waitFor(() => sub.publishes().length >= 200, '200 PUBLISHes')
      assert.deepEqual(sub.publishes().map((p) => p.payload.toString()), packets.map((_, i) => `m${i}`))
      const frames = sub.frames.slice(before)
      assert.ok(frames.length <= 10, `${frames.length} frames for 200 packets`)
      assert.deepEqual(Buffer.concat(frames.map((f) => f.payload)), Buffer.concat(packets))
      const header = frames.reduce((n, f) => n + f.headerBytes, 0)
      assert.ok(header / 200 < 0.5, `${header} frame header bytes for 200 packets`)
      pub.socket.destroy()
      sub.socket.destroy()
    })
  })
}

describe('MQTT over WebSocket: back-pressure reaches the flow window', () => {
  it('a subscriber that stops reading holds about one high-water mark in its stream; the rest waits in its window queue and overflows by policy, the publisher is not held', async () => {
    const gw = await startTestGateway('flow: { maxQueued: 200 }', { plugins: [flowPlugin as GatewayPlugin] })
    try {
      const sub = await FrameCountingClient.connect(gw.gateway.ports.ws!, 'bp-sub')
      await sub.subscribe('bp/t', 0)
      sub.socket.pause()
      const pub = await RawClient.connect(gw.gateway.ports.mqtt!, 'bp-pub')
      const burst = Buffer.concat(Array.from({ length: 100 }, () => encode({ cmd: 'publish', topic: 'bp/t', payload: Buffer.alloc(1000, 0x79), qos: 0, retain: false, dup: false })))
      const stream = (): { writableLength: number } => connectedClients(gw.gateway.broker)['bp-sub']!.conn as unknown as { writableLength: number }
      const dropped = async (): Promise<number> => {
        const text = await gw.gateway.metrics.registry.getSingleMetricAsString('mqgw_flow_dropped_total')
        return [...text.matchAll(/^mqgw_flow_dropped_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0)
      }
      let most = 0
      // Bounded: at most 20 MB published, 10 s.
      const deadline = Date.now() + 10000
      for (let i = 0; i < 200 && Date.now() < deadline && (await dropped()) === 0; i++) {
        pub.socket.write(burst)
        await new Promise((resolve) => setTimeout(resolve, 2))
        most = Math.max(most, stream().writableLength)
      }
      assert.ok((await dropped()) > 0, 'the window queue overflowed: the window saw the WebSocket back-pressure')
      assert.ok(most <= 40 * 1024, `the subscriber's stream held at most ${most} bytes`)
      const window = outboundFlowOf(connectedClients(gw.gateway.broker)['bp-sub']!) as unknown as { queued: number }
      assert.ok(window.queued > 0 && window.queued <= 200, `${window.queued} messages wait in the window queue`)
      await pub.ping()
      pub.socket.destroy()
      sub.socket.destroy()
    } finally {
      await gw.stop()
    }
  })
})

describe('MQTT over WebSocket: clients and closed connections', () => {
  const tls = testCertificate()
  let gw: TestGateway
  before(async () => {
    gw = await startTestGateway(`listeners: { wss: { enabled: true, host: 127.0.0.1, port: 0, cert: ${tls.cert}, key: ${tls.key} } }`)
  })
  after(async () => { await gw.stop() })

  for (const scheme of ['ws', 'wss'] as const) {
    it(`MQTT.js over ${scheme}: QoS 0, 1 and 2 to itself`, async () => {
      const url = `${scheme}://127.0.0.1:${gw.gateway.ports[scheme]}/mqtt`
      const client = await connectClient(url, { clientId: `mqttjs-${scheme}`, ...(scheme === 'wss' ? { ca: readFileSync(tls.cert) } : {}) })
      const received = collect(client)
      await client.subscribeAsync(`js/${scheme}/#`, { qos: 2 })
      for (const qos of [0, 1, 2] as const) await client.publishAsync(`js/${scheme}/q${qos}`, `payload-${qos}`, { qos })
      await waitFor(() => received.length >= 3, 'three messages')
      assert.deepEqual(received.map((m) => [m.topic, m.payload, m.qos]).sort(), [0, 1, 2].map((q) => [`js/${scheme}/q${q}`, `payload-${q}`, q]))
      await endClient(client)
    })
  }

  it('Python paho-mqtt over WebSocket: QoS 0, 1 and 2 to itself', async () => {
    const result = await run(PYTHON, [join(process.cwd(), 'test/interop/paho_client.py'), '127.0.0.1', String(gw.gateway.ports.ws), '311', 'websockets', '/mqtt'])
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.equal((JSON.parse(result.stdout) as { ok: boolean }).ok, true)
  })

  it('a WebSocket subscriber that stops reading and then goes away: its queued writes are dropped and counted, nothing else is affected', async () => {
    // Without the flow plugin Aedes writes every delivery into the stream and waits for 'drain'
    // only once write() says so: with the socket full, ~16 KiB of packets queue in the stream.
    const sub = await FrameCountingClient.connect(gw.gateway.ports.ws!, 'gone-sub')
    await sub.subscribe('gone/t', 0)
    sub.socket.pause()
    const pub = await RawClient.connect(gw.gateway.ports.mqtt!, 'gone-pub')
    const burst = Buffer.concat(Array.from({ length: 100 }, () => encode({ cmd: 'publish', topic: 'gone/t', payload: Buffer.alloc(1000, 0x78), qos: 0, retain: false, dup: false })))
    type Stream = { writableLength: number, writableNeedDrain: boolean }
    const conn = (): Stream | undefined => connectedClients(gw.gateway.broker)['gone-sub']?.conn as unknown as Stream | undefined
    const backlog = (): boolean => conn()?.writableNeedDrain === true && conn()!.writableLength >= 8 * 1024
    // Bounded: at most 100 MB published, 10 s (the drain timeout, 15 s, would close the subscriber).
    const deadline = Date.now() + 10000
    for (let i = 0; i < 1000 && Date.now() < deadline && !backlog(); i++) {
      if (!pub.socket.write(burst)) await new Promise((resolve) => pub.socket.once('drain', resolve))
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
    assert.ok(backlog(), `a backlog in the subscriber's stream (${conn()?.writableLength} bytes)`)
    sub.socket.destroy()
    const dropped = await pollUntil(async () => (await gw.gateway.metrics.wsWritesDropped.get()).values[0]?.value ?? 0, (n) => n > 0, 5000)
    assert.ok(dropped > 0, 'the queued writes are counted as dropped')
    await waitFor(() => connectedClients(gw.gateway.broker)['gone-sub'] === undefined, 'the subscriber to be gone')
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /^mqgw_ws_writes_dropped_total [1-9]\d*$/m)
    // Marker: the publisher and a new WebSocket subscriber still work.
    const next = await FrameCountingClient.connect(gw.gateway.ports.ws!, 'gone-next')
    await next.subscribe('gone/t', 0)
    pub.send({ cmd: 'publish', topic: 'gone/t', payload: Buffer.from('after'), qos: 0, retain: false, dup: false })
    await next.waitFor((p) => p.cmd === 'publish' && (p as mqttPacket.IPublishPacket).payload.toString() === 'after', 'a message after the drop')
    assert.deepEqual(gw.logs.lines.filter((l) => (l.level as number) >= 50), [], 'no error logged')
    next.socket.destroy()
    pub.socket.destroy()
  })
})
