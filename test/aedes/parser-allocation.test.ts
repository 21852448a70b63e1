/**
 * The two parser patches of issue #14's fan-in work (patches/mqtt-packet+9.0.2.patch,
 * patches/bl+6.1.6.patch): mqtt-packet's parser calls debug() only when its namespace is
 * enabled (debug's ...args made an array per call even when disabled), and bl's BufferList reads
 * numbers in place when they lie in its first buffer (a Buffer view per read before). Together
 * they cut the gateway's allocation per fan-in message by about 60 % (bench/alloc-prof.ts); here:
 * the same bytes parse to the same packets however they are split, numbers read across buffer
 * boundaries are right, the in-place path makes no slice, and DEBUG still logs.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { seededInt } from '../helpers/seeded-random.js'

const require = createRequire(import.meta.url)
// bl as mqtt-packet's parser loads it (CommonJS, the one copy in node_modules).
const BufferList = require('bl/BufferList.js') as {
  new (): { append: (b: Buffer) => void, slice: (s?: number, e?: number) => Buffer } & Record<string, (offset?: number, byteLength?: number) => number>
  prototype: { slice: (s?: number, e?: number) => Buffer }
}
const execFileAsync = promisify(execFile)

const READS: Array<[string, number]> = [['readUInt8', 1], ['readInt8', 1], ['readUInt16BE', 2], ['readUInt16LE', 2], ['readInt16BE', 2], ['readUInt32BE', 4], ['readInt32LE', 4], ['readFloatBE', 4], ['readDoubleLE', 8]]

describe('parser allocation patches (mqtt-packet debug guard, bl in-place reads)', () => {
  it('bl: every read at every offset of a list split at every point equals the read on one buffer', () => {
    const whole = Buffer.from(Array.from({ length: 24 }, (_, i) => (i * 37 + 11) & 0xff))
    for (let cut1 = 0; cut1 <= whole.length; cut1++) {
      for (const cut2 of [cut1, Math.min(whole.length, cut1 + 3)]) {
        const list = new BufferList()
        for (const part of [whole.subarray(0, cut1), whole.subarray(cut1, cut2), whole.subarray(cut2)]) if (part.length > 0) list.append(part)
        for (const [m, n] of READS) {
          for (let at = 0; at + n <= whole.length; at++) {
            assert.equal(list[m]!(at), (whole as unknown as Record<string, (o: number) => number>)[m]!(at), `${m}(${at}) split at ${cut1}/${cut2}`)
          }
        }
        for (let at = 0; at + 3 <= whole.length; at++) assert.equal(list.readUIntBE!(at, 3), whole.readUIntBE(at, 3))
        assert.throws(() => list.readUInt32BE!(whole.length - 2), RangeError)
      }
    }
  })

  it('bl: a read inside the first buffer makes no slice; one across buffers still does', () => {
    const list = new BufferList()
    list.append(Buffer.from([1, 2, 3]))
    list.append(Buffer.from([4, 5]))
    const slice = BufferList.prototype.slice
    let slices = 0
    BufferList.prototype.slice = function (this: unknown, s?: number, e?: number) { slices++; return slice.call(this, s, e) }
    try {
      assert.equal(list.readUInt16BE!(1), 0x0203)
      assert.equal(slices, 0)
      assert.equal(list.readUInt16BE!(2), 0x0304)
      assert.equal(slices, 1)
    } finally {
      BufferList.prototype.slice = slice
    }
  })

  it('mqtt-packet: a stream of packets parses the same whole and split into random pieces', () => {
    const int = seededInt(14)
    const packets: Packet[] = []
    for (let i = 0; i < 300; i++) {
      const kind = int(4)
      if (kind === 0) packets.push({ cmd: 'publish', topic: `t/${i}/${'x'.repeat(int(300))}`, payload: Buffer.alloc(int(20000), i), qos: 0, dup: false, retain: false })
      else if (kind === 1) packets.push({ cmd: 'publish', topic: `q/${i}`, payload: Buffer.alloc(int(200), 7), qos: 1, messageId: 1 + int(65535), dup: false, retain: int(2) === 1 })
      else if (kind === 2) packets.push({ cmd: 'puback', messageId: 1 + int(65535) })
      else packets.push({ cmd: 'pingreq' })
    }
    const stream = Buffer.concat(packets.map((p) => mqttPacket.generate(p)))
    const parse = (chunks: Buffer[]): Packet[] => {
      const parser = mqttPacket.parser({ protocolVersion: 4 })
      const out: Packet[] = []
      parser.on('packet', (p: Packet) => out.push(p))
      parser.on('error', (err: Error) => { throw err })
      for (const c of chunks) parser.parse(c)
      return out
    }
    const whole = parse([stream])
    assert.equal(whole.length, packets.length)
    for (const maxPiece of [1, 7, 1500, 65536]) {
      const chunks: Buffer[] = []
      for (let at = 0; at < stream.length;) { const n = 1 + int(maxPiece); chunks.push(stream.subarray(at, at + n)); at += n }
      const split = parse(chunks)
      assert.equal(split.length, packets.length)
      for (let i = 0; i < split.length; i++) assert.deepEqual(split[i], whole[i], `packet ${i}, pieces up to ${maxPiece} bytes`)
    }
  })

  it('mqtt-packet: with DEBUG=mqtt-packet:parser the parser still logs', async () => {
    const script = "const p = require('mqtt-packet').parser(); p.parse(Buffer.from([0xc0, 0]))"
    const { stderr } = await execFileAsync(process.execPath, ['-e', script], { env: { ...process.env, DEBUG: 'mqtt-packet:parser' }, timeout: 20000 })
    assert.match(stderr, /mqtt-packet:parser parse: current state/)
    const quiet = await execFileAsync(process.execPath, ['-e', script], { env: { ...process.env, DEBUG: '' }, timeout: 20000 })
    assert.doesNotMatch(quiet.stderr, /mqtt-packet:parser/)
  })

  it('mqtt-packet: debug.enable() at run time logs from the next parse() (enabled read once per parse call, keepalive CPU)', async () => {
    // A parse while disabled logs nothing; enabled afterwards, the next chunk logs; disabled again, nothing.
    const script = [
      "const debug = require('debug'); const p = require('mqtt-packet').parser()",
      "p.parse(Buffer.from([0xc0, 0])); process.stderr.write('MARK1\\n')",
      "debug.enable('mqtt-packet:parser'); p.parse(Buffer.from([0xc0, 0])); process.stderr.write('MARK2\\n')",
      "debug.disable(); p.parse(Buffer.from([0xc0, 0])); process.stderr.write('MARK3\\n')"
    ].join('\n')
    const { stderr } = await execFileAsync(process.execPath, ['-e', script], { env: { ...process.env, DEBUG: '' }, timeout: 20000 })
    const [before, during, after] = stderr.split(/MARK\d\n/)
    assert.doesNotMatch(before!, /mqtt-packet:parser/)
    assert.match(during!, /mqtt-packet:parser parse: current state/)
    assert.doesNotMatch(after!, /mqtt-packet:parser/)
  })
})
