import assert from 'node:assert/strict'
import { once } from 'node:events'
import { PassThrough, Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { Aedes } from 'aedes'
import mqttPacket from 'mqtt-packet'
import { connectedClients } from '../../src/aedes/internals.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { pollUntil, rawSocket, waitFor } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'

/**
 * The lean idle client of patches/aedes+1.2.0.patch (issue #14, memory per idle connection;
 * table in src/aedes/internals.ts): an idle connection holds no stream inside its parser, no
 * timer, no delivery closures and no tables of its own; they appear when traffic needs them,
 * and everything still works once they do. bench/memory.bench.ts measures the bytes.
 */
interface LeanInternals {
  _parser: { _list: object, _events: unknown, settings: { protocolVersion?: number } }
  _deliver0: unknown
  _deliverQoS: unknown
  subscriptions: Record<string, unknown>
  _inboundInflight: Set<number> | null
  _pendingDrains: unknown[] | null
  _keepaliveTimer?: unknown
  _keepaliveInterval: number
  _keepaliveSlot: number
  closed: boolean
}

describe('lean idle Aedes client (patch)', () => {
  let gw: TestGateway
  before(async () => { gw = await startTestGateway() })
  after(async () => { await gw.stop() })

  const internalsOf = (clientId: string): LeanInternals | undefined =>
    connectedClients(gw.gateway.broker)[clientId] as unknown as LeanInternals | undefined

  it('an idle client has no parser stream, timer, delivery closures or tables of its own; a subscription makes them and messages arrive', async () => {
    const idle = await RawClient.connect(gw.gateway.ports.mqtt!, 'lean-idle')
    const other = await RawClient.connect(gw.gateway.ports.mqtt!, 'lean-other')
    try {
      const c = internalsOf('lean-idle')
      assert.ok(c, 'the client is registered')
      assert.equal(c._parser._list instanceof Readable, false, 'the parser buffers in a plain BufferList, not a stream')
      assert.equal(c._parser._events, undefined, 'the parser has no events table')
      assert.equal(c._parser.settings.protocolVersion, 4, 'the parser still knows the protocol level')
      assert.equal(c._deliver0, null)
      assert.equal(c._deliverQoS, null)
      assert.ok(Object.isFrozen(c.subscriptions), 'the shared empty subscription table')
      assert.deepEqual(Object.keys(c.subscriptions), [])
      assert.equal(c._inboundInflight, null)
      assert.equal(c._pendingDrains, null)
      assert.equal(c._keepaliveTimer, undefined, 'no Timeout per client')
      assert.equal(c._keepaliveInterval, 60 * 1500 + 1)
      assert.ok(c._keepaliveSlot > 0, 'watched by the keepalive wheel')

      await idle.subscribe('lean/t', 1)
      assert.equal(typeof c._deliverQoS, 'function', 'made by the first subscription')
      assert.equal(Object.isFrozen(c.subscriptions), false)
      assert.deepEqual(Object.keys(c.subscriptions), ['lean/t'])

      other.send({ cmd: 'publish', topic: 'lean/t', payload: Buffer.from('q1'), qos: 1, messageId: 7, dup: false, retain: false })
      other.send({ cmd: 'publish', topic: 'lean/t', payload: Buffer.from('q0'), qos: 0, dup: false, retain: false })
      other.send({ cmd: 'publish', topic: 'lean/t', payload: Buffer.from('q2'), qos: 2, messageId: 8, dup: false, retain: false })
      await other.waitFor((p) => p.cmd === 'pubrec' && p.messageId === 8, 'PUBREC')
      assert.equal(internalsOf('lean-other')!._inboundInflight?.size, 1, 'the QoS 2 id set is made by the first QoS 2 PUBLISH')
      other.send({ cmd: 'pubrel', messageId: 8 })
      await other.waitFor((p) => p.cmd === 'pubcomp' && p.messageId === 8, 'PUBCOMP')
      const got = await pollUntil(async () => idle.publishes().map((p) => p.payload.toString()), (v) => v.length >= 3, 5000, 5)
      assert.deepEqual(got.sort(), ['q0', 'q1', 'q2'])
    } finally {
      other.destroy()
    }
  })

  it('a closed client leaves the keepalive wheel at once', async () => {
    const raw = await RawClient.connect(gw.gateway.ports.mqtt!, 'lean-gone')
    const c = internalsOf('lean-gone')!
    assert.ok(c._keepaliveSlot > 0)
    raw.destroy()
    await pollUntil(async () => c.closed, (closed) => closed, 5000, 5)
    assert.equal(c._keepaliveSlot, -1)
    assert.equal(c._keepaliveInterval, -1)
  })

  it('packets sent in the same write as the CONNECT are handled once it succeeds, in order (no once(\'connected\') listener per client)', async () => {
    const raw = await rawSocket(gw.gateway.ports.mqtt!)
    try {
      // One write: the parser reads all three while the CONNECT is being authenticated, so the
      // SUBSCRIBE and PUBLISH wait in the parser's queue until the CONNECT succeeded.
      raw.socket.write(Buffer.concat([
        mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'lean-pipelined', keepalive: 30 }),
        mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'lean/pipelined', qos: 1 }] }),
        mqttPacket.generate({ cmd: 'publish', messageId: 2, topic: 'lean/pipelined', payload: Buffer.from('queued'), qos: 1, dup: false, retain: false })
      ]))
      const cmds = (): string[] => {
        const out: string[] = []
        const parser = mqttPacket.parser({ protocolVersion: 4 })
        parser.on('packet', (p: mqttPacket.Packet) => out.push(p.cmd === 'publish' ? `publish:${(p as mqttPacket.IPublishPacket).payload.toString()}` : p.cmd))
        parser.parse(raw.data())
        return out
      }
      await waitFor(() => cmds().length >= 4, 'CONNACK, SUBACK, PUBACK and the message')
      const got = cmds()
      assert.deepEqual(got.slice(0, 2), ['connack', 'suback'])
      assert.deepEqual([...got.slice(2)].sort(), ['puback', 'publish:queued'])
    } finally {
      raw.socket.destroy()
    }
  })

  it('a stream already destroyed when Aedes takes it closes its client (no stream.finished() to report it)', async () => {
    const broker = await Aedes.createBroker()
    try {
      const stream = new PassThrough()
      stream.destroy()
      await once(stream, 'close') // its 'close' event is over before Aedes listens
      const client = broker.handle(stream) as unknown as LeanInternals
      await pollUntil(async () => { await nextTurn(); return client.closed }, (closed) => closed, 2000, 1)
      assert.equal(client.closed, true)
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
    }
  })
})
