import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { flowPlugin } from '../../plugins/flow/plugin.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { pollUntil, rawSocket, sleep } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'
import { seededInt } from '../helpers/seeded-random.js'

/**
 * patches/aedes+1.2.0.patch lib/wire.js: Aedes' PUBLISH and acknowledgements encoded into one
 * buffer (one write() per packet instead of mqtt-packet's three to six). The bytes must be
 * mqtt-packet's own: compared on random packets, and on the wire of a real gateway.
 */
type EncodePacket = (packet: Record<string, unknown>) => Buffer | null
// The module is not in Aedes' package exports; imported by its file, as the broker loads it.
const wire = await import(pathToFileURL(join(process.cwd(), 'node_modules/aedes/lib/wire.js')).href) as { encodePacket: EncodePacket }

const reference = (packet: Record<string, unknown>): Buffer => mqttPacket.generate(packet as unknown as Packet)

describe('Aedes wire encoding (patch lib/wire.js)', () => {
  it('PUBLISH of every QoS, flag and remaining-length width matches mqtt-packet byte for byte (seeded)', () => {
    const int = seededInt(0xa3de5)
    const alphabet = ['a', 'b', '/', 'é', '中', '😀', ' ', '$', 'Z', '0']
    const sizes = [0, 1, 100, 121, 122, 123, 124, 125, 126, 127, 128, 16380, 16383, 16384, 70000, 2097148, 2097152]
    for (let i = 0; i < 800; i++) {
      let topic = ''
      const topicLength = 1 + int(i % 7 === 0 ? 200 : 40)
      for (let c = 0; c < topicLength; c++) topic += alphabet[i % 3 === 0 ? int(2) : int(alphabet.length)]
      const size = i < sizes.length ? sizes[i]! : int(3000)
      const bytes = Buffer.alloc(size)
      for (let b = 0; b < Math.min(size, 64); b++) bytes[b] = int(256)
      const qos = int(3)
      const payload = int(5) === 0 ? bytes.toString('latin1') : bytes
      const packet = { cmd: 'publish', topic, payload, qos, retain: int(2) === 1, dup: int(2) === 1, ...(qos > 0 ? { messageId: int(65536) } : {}) }
      assert.deepEqual(wire.encodePacket(packet), reference(packet), `topic ${JSON.stringify(topic)} payload ${size} qos ${qos}`)
    }
  })

  it('PUBACK, PUBREC, PUBREL and PUBCOMP match mqtt-packet for every id width', () => {
    for (const cmd of ['puback', 'pubrec', 'pubrel', 'pubcomp']) {
      for (const messageId of [0, 1, 255, 256, 4660, 65535]) {
        for (const dup of [false, true]) {
          const packet = { cmd, messageId, dup }
          if (cmd === 'pubrel' && dup) {
            // mqtt-packet throws on it (no header for it); left to mqtt-packet, which still does.
            assert.equal(wire.encodePacket(packet), null)
            assert.throws(() => reference(packet))
            continue
          }
          assert.deepEqual(wire.encodePacket(packet), reference(packet), `${cmd} ${messageId} dup ${dup}`)
        }
      }
    }
  })

  it('PINGRESP is mqtt-packet\'s two bytes, one shared buffer (keepalive CPU, issue #14)', () => {
    const first = wire.encodePacket({ cmd: 'pingresp' })
    assert.deepEqual(first, reference({ cmd: 'pingresp' }))
    assert.deepEqual(first, Buffer.from([0xd0, 0x00]))
    assert.equal(wire.encodePacket({ cmd: 'pingresp' }), first, 'no buffer per PINGRESP')
  })

  it('CONNACK of every return code and Session Present is mqtt-packet\'s four bytes, one shared buffer each (connect rate, issue #14)', () => {
    for (let returnCode = 0; returnCode <= 5; returnCode++) {
      for (const sessionPresent of [false, true]) {
        const packet = { cmd: 'connack', returnCode, sessionPresent }
        const encoded = wire.encodePacket(packet)
        assert.deepEqual(encoded, reference(packet), `returnCode ${returnCode} sessionPresent ${sessionPresent}`)
        assert.equal(wire.encodePacket({ ...packet }), encoded, 'no buffer per CONNACK')
      }
    }
  })

  it('leaves to mqtt-packet what it does not encode or what mqtt-packet would refuse', () => {
    const leftOver: Array<Record<string, unknown>> = [
      { cmd: 'publish', topic: Buffer.from('t'), payload: Buffer.alloc(1), qos: 0 },
      { cmd: 'publish', topic: 't', payload: Buffer.alloc(1), qos: 1 },
      { cmd: 'publish', topic: 't', payload: Buffer.alloc(1), qos: 1, messageId: 65536 },
      { cmd: 'publish', topic: 't', payload: Buffer.alloc(1), qos: 1, messageId: 1.5 },
      { cmd: 'publish', topic: 't', payload: 42, qos: 0 },
      { cmd: 'publish', topic: 'x'.repeat(65536), payload: Buffer.alloc(0), qos: 0 },
      { cmd: 'publish', topic: 't', payload: Buffer.alloc(0), qos: 0, properties: { contentType: 'x' } },
      { cmd: 'puback' },
      { cmd: 'suback', messageId: 1, granted: [0] },
      { cmd: 'connack', returnCode: 6, sessionPresent: false },
      { cmd: 'connack', returnCode: 1.5, sessionPresent: false },
      { cmd: 'connack', sessionPresent: false },
      { cmd: 'connack', reasonCode: 0, sessionPresent: false },
      { cmd: 'connack', returnCode: 0, sessionPresent: false, properties: { sessionExpiryInterval: 1 } }
    ]
    for (const packet of leftOver) assert.equal(wire.encodePacket(packet), null, JSON.stringify(packet).slice(0, 80))
  })

  for (const withFlow of [true, false]) {
    describe(`on a real gateway, ${withFlow ? 'with' : 'without'} the flow window`, () => {
      let gw: TestGateway
      before(async () => {
        gw = withFlow
          ? await startTestGateway('flow: { inflightWindow: 8 }', { plugins: [flowPlugin] })
          : await startTestGateway()
      })
      after(async () => { await gw.stop() })

      it('every byte a publisher and a subscriber receive is mqtt-packet framing of the packets they parse, in order', async () => {
        const port = gw.gateway.ports.mqtt!
        const sub = await RawClient.connect(port, `wire-sub-${String(withFlow)}`)
        const pub = await RawClient.connect(port, `wire-pub-${String(withFlow)}`)
        try {
          await sub.subscribe('wire/#', 2)
          const received = { sub: [] as Buffer[], pub: [] as Buffer[] }
          sub.socket.on('data', (chunk: Buffer) => received.sub.push(chunk))
          pub.socket.on('data', (chunk: Buffer) => received.pub.push(chunk))
          const subBefore = sub.packets.length
          const pubBefore = pub.packets.length
          const payloads = [Buffer.alloc(0), Buffer.from('é中'), Buffer.alloc(200, 7), Buffer.alloc(20000, 9)]
          let id = 1
          for (const qos of [1, 2, 1] as const) {
            for (const payload of payloads) {
              pub.send({ cmd: 'publish', topic: `wire/${qos}/é/${payload.length}`, payload, qos, messageId: id++, retain: false })
            }
          }
          const total = id - 1
          // The subscriber acknowledges what it gets (QoS 1 PUBACK; QoS 2 PUBREC then PUBCOMP on PUBREL),
          // the publisher completes its QoS 2 flows (PUBREL on PUBREC).
          const answered = new Set<string>()
          const answer = (): number => {
            for (const p of sub.packets.slice(subBefore)) {
              const key = `${p.cmd}:${String((p as { messageId?: number }).messageId)}`
              if (answered.has(key)) continue
              answered.add(key)
              if (p.cmd === 'publish' && p.qos === 1) sub.send({ cmd: 'puback', messageId: p.messageId })
              if (p.cmd === 'publish' && p.qos === 2) sub.send({ cmd: 'pubrec', messageId: p.messageId })
              if (p.cmd === 'pubrel') sub.send({ cmd: 'pubcomp', messageId: p.messageId })
            }
            for (const p of pub.packets.slice(pubBefore)) {
              if (p.cmd === 'pubrec' && !answered.has(`pub-pubrec:${String(p.messageId)}`)) {
                answered.add(`pub-pubrec:${String(p.messageId)}`)
                pub.send({ cmd: 'pubrel', messageId: p.messageId })
              }
            }
            return sub.publishes().length
          }
          await pollUntil(async () => {
            answer()
            const acks = pub.packets.slice(pubBefore).filter((p) => p.cmd === 'puback' || p.cmd === 'pubcomp').length
            const pubrels = sub.packets.slice(subBefore).filter((p) => p.cmd === 'pubrel').length
            return sub.publishes().length === total && acks === total && pubrels === payloads.length
          }, (done) => done, 10_000, 5)
          const subPackets = sub.packets.slice(subBefore)
          const pubPackets = pub.packets.slice(pubBefore)
          assert.equal(sub.publishes().length, total, 'every message delivered')
          assert.equal(pubPackets.filter((p) => p.cmd === 'puback').length, 2 * payloads.length, 'every QoS 1 PUBLISH acknowledged')
          assert.equal(pubPackets.filter((p) => p.cmd === 'pubcomp').length, payloads.length, 'every QoS 2 flow completed')
          // Order and content as sent.
          assert.deepEqual(sub.publishes().map((p) => [p.topic, Buffer.from(p.payload).length]),
            [1, 2, 1].flatMap((qos) => payloads.map((b) => [`wire/${qos}/é/${b.length}`, b.length])))
          // The exact bytes: what was received is mqtt-packet's encoding of what was parsed, packet after packet.
          assert.deepEqual(Buffer.concat(received.sub), Buffer.concat(subPackets.map((p) => reference(p as unknown as Record<string, unknown>))))
          assert.deepEqual(Buffer.concat(received.pub), Buffer.concat(pubPackets.map((p) => reference(p as unknown as Record<string, unknown>))))
        } finally {
          sub.destroy()
          pub.destroy()
        }
      })
    })
  }
})

describe('PINGREQ on a real gateway (keepalive, issue #14)', () => {
  let gw: TestGateway
  before(async () => { gw = await startTestGateway() })
  after(async () => { await gw.stop() })

  /** A raw connection after its CONNACK 0; `sentAt`: just before its CONNECT was written. */
  const connect = async (clientId: string, keepalive: number, will?: string): Promise<Awaited<ReturnType<typeof rawSocket>> & { sentAt: number }> => {
    const raw = await rawSocket(gw.gateway.ports.mqtt!)
    const sentAt = performance.now()
    raw.socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive, ...(will !== undefined ? { will: { topic: will, payload: Buffer.from('gone'), qos: 0, retain: false } } : {}) }))
    await pollUntil(async () => raw.data().length, (n) => n >= 4, 5000, 5)
    assert.deepEqual(raw.data(), Buffer.from([0x20, 0x02, 0x00, 0x00]), 'CONNACK 0')
    return { ...raw, sentAt }
  }

  it('answers each PINGREQ with exactly d0 00, several in one read each their own, in order after a PUBACK', async () => {
    const raw = await connect('ping-bytes', 60)
    // One read: PINGREQ, a QoS 1 PUBLISH, two PINGREQs: PINGRESP, PUBACK, PINGRESP, PINGRESP.
    raw.socket.write(Buffer.concat([
      mqttPacket.generate({ cmd: 'pingreq' }),
      mqttPacket.generate({ cmd: 'publish', topic: 'ping/t', payload: Buffer.from('x'), qos: 1, messageId: 7, retain: false, dup: false }),
      mqttPacket.generate({ cmd: 'pingreq' }),
      mqttPacket.generate({ cmd: 'pingreq' })
    ]))
    const expected = Buffer.from([0x20, 0x02, 0x00, 0x00, 0xd0, 0x00, 0x40, 0x02, 0x00, 0x07, 0xd0, 0x00, 0xd0, 0x00])
    await pollUntil(async () => raw.data().length, (n) => n >= expected.length, 5000, 5)
    // The marker: one more PINGREQ, answered after everything above, so nothing extra came before it.
    raw.socket.write(mqttPacket.generate({ cmd: 'pingreq' }))
    await pollUntil(async () => raw.data().length, (n) => n >= expected.length + 2, 5000, 5)
    assert.deepEqual(raw.data(), Buffer.concat([expected, Buffer.from([0xd0, 0x00])]))
    raw.socket.destroy()
  })

  it('a client pinging within its keepalive stays past 1.5 x keepalive; a silent one is closed after 1.5 x, not before, and its will goes out', async () => {
    const watcher = await RawClient.connect(gw.gateway.ports.mqtt!, 'ping-watcher')
    await watcher.subscribe('ping/will/#', 0)
    const pinging = await connect('ping-alive', 1, 'ping/will/alive')
    const silent = await connect('ping-silent', 1, 'ping/will/silent')
    // Its last (and only) packet, CONNECT, was read after this.
    const silentSince = silent.sentAt
    let silentClosedAt = 0
    void silent.closed.then(() => { silentClosedAt = performance.now() })
    // keepalive 1 s: PINGREQ every 0.5 s for 3 s (twice 1.5 x keepalive).
    for (let i = 0; i < 6; i++) {
      await sleep(500)
      const before = pinging.data().length
      pinging.socket.write(mqttPacket.generate({ cmd: 'pingreq' }))
      await pollUntil(async () => pinging.data().length, (n) => n >= before + 2, 5000, 5)
      assert.deepEqual(pinging.data().subarray(before, before + 2), Buffer.from([0xd0, 0x00]), `PINGRESP ${i + 1}`)
    }
    await watcher.waitFor((p) => p.cmd === 'publish' && p.topic === 'ping/will/silent', 'the silent client\'s will')
    assert.ok(silentClosedAt > 0, 'the silent client was closed')
    // [MQTT-3.1.2-24]: not before 1.5 x keepalive (1,500 ms after the CONNECT was read, which is
    // after it was written; 2 ms for clock rounding), and it is enforced: the will came within the
    // pinging client's 3 s (the wheel's 100 ms tick and a busy machine may add a little).
    const after = silentClosedAt - silentSince
    assert.ok(after >= 1500 - 2, `closed ${after.toFixed(0)} ms after its CONNECT: before 1.5 x keepalive`)
    assert.equal(pinging.socket.destroyed, false, 'the pinging client is still connected after 3 s')
    // Marker for the absence of the pinging client's will so far: it stops pinging now, and its
    // will comes after the silent client's, not before.
    const wills = (): string[] => watcher.publishes().map((p) => p.topic)
    await watcher.waitFor((p) => p.cmd === 'publish' && p.topic === 'ping/will/alive', 'the pinging client\'s will once it fell silent')
    assert.deepEqual(wills(), ['ping/will/silent', 'ping/will/alive'])
    watcher.destroy()
  })
})

/** patches/aedes+1.2.0.patch lib/lean-list.js: the parser's input list must answer as bl's BufferList. */
interface ByteList {
  length: number
  append: (b: Buffer) => unknown
  consume: (n: number) => unknown
  readUInt8: (o?: number) => number
  readUInt16BE: (o?: number) => number
  readUInt32BE: (o?: number) => number
  slice: (s?: number, e?: number) => Buffer
  toString: (enc: BufferEncoding, s?: number, e?: number) => string
}
const { LeanList } = await import(pathToFileURL(join(process.cwd(), 'node_modules/aedes/lib/lean-list.js')).href) as { LeanList: new () => ByteList }
const { BufferList } = await import('bl') as unknown as { BufferList: new () => ByteList }

describe('LeanList (patch lib/lean-list.js)', () => {
  it('answers every read, slice and consume as bl BufferList does, over random chunkings (seeded)', () => {
    const int = seededInt(0x11571)
    for (let round = 0; round < 300; round++) {
      const lean = new LeanList()
      const reference = new BufferList()
      for (let step = 0; step < 60; step++) {
        const op = int(10)
        if (op < 3 || reference.length < 8) {
          const chunk = Buffer.alloc(int(4) === 0 ? 0 : 1 + int(40))
          for (let i = 0; i < chunk.length; i++) chunk[i] = int(256)
          lean.append(chunk)
          reference.append(chunk)
        } else if (op < 5) {
          const n = int(reference.length + 3)
          lean.consume(n)
          reference.consume(n)
        } else {
          const len = reference.length
          const at = int(len)
          const end = at + int(len - at + 1)
          const where = `round ${round} step ${step} at ${at} end ${end} length ${len}`
          assert.equal(lean.readUInt8(at), reference.readUInt8(at), where)
          if (at + 2 <= len) assert.equal(lean.readUInt16BE(at), reference.readUInt16BE(at), where)
          if (at + 4 <= len) assert.equal(lean.readUInt32BE(at), reference.readUInt32BE(at), where)
          assert.deepEqual(lean.slice(at, end), reference.slice(at, end), where)
          const fromEnd = -int(len + 1)
          assert.deepEqual(lean.slice(fromEnd), reference.slice(fromEnd), where)
          assert.equal(lean.toString('latin1', at, end), reference.toString('latin1', at, end), where)
          assert.deepEqual(lean.slice(), reference.slice(), where)
        }
        assert.equal(lean.length, reference.length)
      }
    }
  })

  it('a slice inside one chunk is a view of it (no copy), across chunks a copy', () => {
    const a = Buffer.from([1, 2, 3, 4])
    const b = Buffer.from([5, 6, 7, 8])
    const lean = new LeanList()
    lean.append(a)
    lean.append(b)
    lean.consume(1)
    const view = lean.slice(0, 2)
    assert.deepEqual(view, Buffer.from([2, 3]))
    assert.equal(view.buffer, a.buffer)
    assert.equal(view.byteOffset, a.byteOffset + 1)
    assert.deepEqual(lean.slice(2, 5), Buffer.from([4, 5, 6]))
    assert.equal(lean.readUInt16BE(2), 0x0405)
    assert.throws(() => lean.readUInt8(7), RangeError)
  })
})
