/**
 * src/persistence/bus-codec.ts against the real codecs of the format: the fixed writer gives
 * msgpackr's bytes exactly (what the bus wrote before), the fixed reader gives what msgpackr
 * reads, for msgpackr's bytes and for msgpack-lite's (a stock mqemitter-redis node), and
 * everything outside the fixed layout goes through msgpackr both ways. Bad input throws as
 * msgpackr throws, and so does MessagePack that is not `{ id, msg }` (redis-bus.ts logs and
 * drops both); a forged `__proto__` key sets nothing.
 */
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import { codec, decodeBusMessage, encodeBusMessage, encodeCounterIdMessageInto, fixedBound, flatLayout } from '../../src/persistence/bus-codec.js'

const require = createRequire(import.meta.url)
// mqemitter-redis' own encoder: the bytes a node of the previous version (or plain mqemitter-redis) writes.
const msgpackLite = createRequire(require.resolve('mqemitter-redis'))('msgpack-lite') as { encode: (v: unknown) => Buffer, decode: (b: Buffer) => unknown }

/** A PUBLISH as Aedes emits it (field order matters: it is the layout); `clientId` appended by Aedes' publish. */
function packet (over: Partial<Record<string, unknown>> = {}, qos = 1, clientId: string | undefined = 'sensor-17'): Record<string, unknown> {
  const p: Record<string, unknown> = {
    cmd: 'publish',
    brokerId: 'c0ffee00-1234-4abc-8def-0123456789ab',
    brokerCounter: 1765090000000000 + 123,
    topic: 'bench/qos1',
    payload: Buffer.from('hello'),
    qos,
    retain: false,
    dup: false
  }
  if (qos > 0) p.messageId = undefined
  if (clientId !== undefined) p.clientId = clientId
  return Object.assign(p, over)
}

const cases: Array<[string, Record<string, unknown>]> = [
  ['QoS 1, messageId undefined (as Aedes emits it)', packet()],
  ['QoS 0: no messageId field', packet({}, 0)],
  ['QoS 1 without clientId (packets not from a client)', packet({}, 1, undefined)],
  ['QoS 0 without clientId', packet({}, 0, undefined)],
  ['a clientId of 40 characters', packet({}, 1, 'c'.repeat(40))],
  ['a non-ASCII clientId', packet({}, 1, 'capteur-é')],
  ['messageId a number', packet({ messageId: 65535 })],
  ['retain and dup true', packet({ retain: true, dup: true })],
  ['empty payload', packet({ payload: Buffer.alloc(0) })],
  ['payload of 255 bytes', packet({ payload: Buffer.alloc(255, 1) })],
  ['payload of 256 bytes', packet({ payload: Buffer.alloc(256, 2) })],
  ['payload of 70,000 bytes', packet({ payload: Buffer.alloc(70000, 3) })],
  ['topic of 31 and 32 characters', packet({ topic: 'a'.repeat(31) })],
  ['topic of 32 characters', packet({ topic: 'b'.repeat(32) })],
  ['topic of 65 characters', packet({ topic: 'c'.repeat(65) })],
  ['topic of 300 characters', packet({ topic: 'd/'.repeat(150) })],
  ['non-ASCII topic and broker id', packet({ topic: 'capteur/température/é€😀', brokerId: 'nœud-ü' })],
  ['counter 0', packet({ brokerCounter: 0 })],
  ['counter 127', packet({ brokerCounter: 127 })],
  ['counter 128', packet({ brokerCounter: 128 })],
  ['counter 70,000', packet({ brokerCounter: 70000 })],
  ['counter 2^32', packet({ brokerCounter: 2 ** 32 })],
  ['counter -1', packet({ brokerCounter: -1 })],
  ['counter -200', packet({ brokerCounter: -200 })],
  ['counter -40,000', packet({ brokerCounter: -40000 })],
  ['counter 1.5', packet({ brokerCounter: 1.5 })]
]

const fallbacks: Array<[string, object]> = [
  ['MQTT 5 properties (first field)', { properties: { userProperties: { a: 'b' } }, ...packet() }],
  ['clientId first', { clientId: 'x', ...packet({}, 1, undefined) }],
  ['clientId before messageId', (() => { const p = packet({}, 0, 'c'); p.messageId = 7; return p })()],
  ['a numeric clientId', packet({ clientId: 5 }, 1, undefined)],
  ['fields in another order', { topic: 't', cmd: 'publish', brokerId: 'b', brokerCounter: 1, payload: Buffer.from('p'), qos: 0, retain: false, dup: false }],
  ['a Uint8Array payload', packet({ payload: new Uint8Array([1, 2, 3]) })],
  ['a string payload', packet({ payload: 'text' })],
  ['another command', { cmd: 'subscribe', topic: 'x' }],
  ['a nested object value', packet({ dup: { nested: true } })]
]

describe('bus codec: the fixed bus layout, byte for byte msgpackr, everything else msgpackr', () => {
  it('writes exactly the bytes msgpackr writes, for the layout and for everything else', () => {
    for (const [name, msg] of [...cases, ...fallbacks]) {
      const id = `mqABCDEFGHIJKLMNOP-${name.length.toString(36)}`
      assert.deepEqual(encodeBusMessage(id, msg), codec.pack({ id, msg }), name)
    }
  })

  it('the bus\'s counter ids written in place are msgpackr\'s bytes of prefix + counter in base 36, for each layout and alternating broker ids', () => {
    const prefix = 'mqABCDEFGHIJKLMNOP-'
    const fixed = cases.filter(([, msg]) => flatLayout(msg) >= 0)
    assert.ok(fixed.length >= 10, 'most cases are the fixed layout')
    let k = 0
    for (const counter of [0, 35, 36, 1295, 1296, 46655, 2 ** 31, Date.now() * 1000, Number.MAX_SAFE_INTEGER]) {
      for (const [name, msg] of fixed) {
        // A new broker id every few messages: the cached (cmd, brokerId) bytes must follow it.
        const m = { ...msg, brokerId: `node-${k++ % 3}` }
        const buf = Buffer.alloc(fixedBound(prefix.length + 11, m) + 8, 0xee)
        const end = encodeCounterIdMessageInto(buf, 4, Buffer.from(prefix), counter, m, flatLayout(m))
        assert.deepEqual(buf.subarray(4, end), codec.pack({ id: prefix + counter.toString(36), msg: m }), `${name}, counter ${counter}`)
        assert.equal(buf[3], 0xee, 'nothing written before the start')
      }
    }
    assert.throws(() => encodeCounterIdMessageInto(Buffer.alloc(512), 0, Buffer.from('x'.repeat(25)), 36 ** 7, fixed[0]![1], flatLayout(fixed[0]![1])), RangeError)
  })

  it('reads what msgpackr reads, from msgpackr\'s bytes and from msgpack-lite\'s', () => {
    for (const [name, msg] of [...cases, ...fallbacks]) {
      const encoders = [['msgpackr', codec.pack({ id: 'i', msg })], ['msgpack-lite', msgpackLite.encode({ id: 'i', msg })]] as const
      // msgpack-lite writes a Uint8Array as its own extension type 18, which msgpackr (the
      // bus's reader before this codec too) does not know: only msgpackr's bytes for that one.
      for (const [by, bytes] of name === 'a Uint8Array payload' ? encoders.slice(0, 1) : encoders) {
        const expected = codec.unpack(bytes) as { msg: Record<string, unknown> }
        const got = decodeBusMessage(Buffer.from(bytes)) as { msg: Record<string, unknown> }
        assert.deepEqual(got, expected, `${name} (${by})`)
        // Same fields in the same order (Aedes and hooks see the same object).
        assert.deepEqual(Object.keys(got.msg), Object.keys(expected.msg), `${name} (${by}): field order`)
        if (Buffer.isBuffer(expected.msg.payload)) assert.ok(Buffer.isBuffer(got.msg.payload), `${name} (${by}): payload is a Buffer`)
      }
    }
  })

  it('the layout is read by the fixed reader, msgpackr never called, with the id read or skipped (the bus skips ids it compares as bytes)', () => {
    const unpack = codec.unpack
    let calls = 0
    codec.unpack = ((...args: Parameters<typeof unpack>) => { calls++; return unpack.apply(codec, args) }) as typeof unpack
    try {
      for (const [name, msg] of cases) {
        const bytes = codec.pack({ id: 'mqxIWJYcoqybHKJ-CP-1', msg })
        const read = decodeBusMessage(Buffer.from(bytes), true)
        assert.equal(read.id, 'mqxIWJYcoqybHKJ-CP-1', name)
        const skipped = decodeBusMessage(Buffer.from(bytes), false)
        // '' is the fixed reader's answer for a skipped id (msgpackr's would be the id).
        assert.equal(skipped.id, '', `${name}: id skipped`)
        assert.deepEqual(skipped.msg, read.msg, name)
        assert.equal(calls, 0, `${name}: read by msgpackr`)
      }
      // The spy sees msgpackr's calls: a message outside the layout goes there.
      decodeBusMessage(Buffer.from(codec.pack({ id: 'i', msg: fallbacks[0]![1] })), false)
      assert.equal(calls, 1)
    } finally {
      codec.unpack = unpack
    }
  })

  it('repeated strings are compared, not trusted: a changed broker id, topic or client id of the same length reads as itself', () => {
    const one = decodeBusMessage(encodeBusMessage('a', packet({ brokerId: 'node-aaaa' }))) as { msg: Record<string, unknown> }
    const two = decodeBusMessage(encodeBusMessage('b', packet({ brokerId: 'node-bbbb', topic: 'bench/qos2' }, 1, 'sensor-18'))) as { msg: Record<string, unknown> }
    assert.equal(one.msg.clientId, 'sensor-17')
    assert.equal(two.msg.clientId, 'sensor-18')
    assert.equal(one.msg.brokerId, 'node-aaaa')
    assert.equal(two.msg.brokerId, 'node-bbbb')
    assert.equal(two.msg.topic, 'bench/qos2')
    // A non-ASCII id after an ASCII one of the same byte length.
    const three = decodeBusMessage(encodeBusMessage('c', packet({ brokerId: 'node-bbé' }))) as { msg: Record<string, unknown> }
    assert.equal(three.msg.brokerId, 'node-bbé')
  })

  it('many interleaved topics and client ids of one length (more than the string cache holds, colliding in it) each read as themselves', () => {
    let seed = 7
    const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
    for (let i = 0; i < 3000; i++) {
      const k = rand(700)
      const topic = `t/${String(k).padStart(4, '0')}/x`
      const clientId = `c-${String(rand(700)).padStart(4, '0')}`
      const got = decodeBusMessage(encodeBusMessage(`id${i}`, packet({ topic }, 1, clientId))) as { msg: Record<string, unknown> }
      assert.equal(got.msg.topic, topic)
      assert.equal(got.msg.clientId, clientId)
    }
  })

  it('a message\'s payload is its own: later messages do not overwrite earlier ones\' bytes', () => {
    const first = encodeBusMessage('x1', packet({ payload: Buffer.from('first') }))
    const copy = Buffer.from(first)
    for (let i = 0; i < 2000; i++) encodeBusMessage(`x${i}`, packet({ payload: Buffer.alloc(100, i & 0xff) }))
    assert.deepEqual(first, copy)
  })

  it('bad input throws as msgpackr does, truncated input never reads as a message, and __proto__ sets no prototype', () => {
    const good = encodeBusMessage('id-1', packet())
    for (let cut = 1; cut < good.length; cut++) {
      const part = good.subarray(0, cut)
      let fast: unknown
      let slow: unknown
      try { fast = decodeBusMessage(part) } catch (err) { fast = err instanceof Error ? 'threw' : err }
      try { slow = codec.unpack(part) } catch (err) { slow = err instanceof Error ? 'threw' : err }
      assert.deepEqual(fast, slow, `cut at ${cut}`)
    }
    // MessagePack, but not a bus message: msgpackr reads these without complaint.
    for (const bytes of [[0xc0], [0x01], [0xa1, 0x61], [0x90], [0x81, 0xa2, 0x69, 0x64, 0x01], [0x82, 0xa2, 0x69, 0x64, 0x01, 0xa3, 0x6d, 0x73, 0x67, 0x80]]) {
      assert.throws(() => decodeBusMessage(Buffer.from(bytes)), /not a bus message/, Buffer.from(bytes).toString('hex'))
    }
    // An own "__proto__" key (JSON.parse makes one), as a forged bus message could carry.
    const forged = msgpackLite.encode(JSON.parse('{"id":"f","msg":{"__proto__":{"polluted":true},"cmd":"publish","topic":"t"}}'))
    const got = decodeBusMessage(forged) as { msg: Record<string, unknown> }
    assert.equal(Object.getPrototypeOf(got.msg), Object.prototype)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
  })
})
