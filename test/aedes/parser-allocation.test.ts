/**
 * The parser patch of issue #14's fan-in work (patches/mqtt-packet+9.0.2.patch): mqtt-packet's
 * parser calls debug() only when its namespace is enabled (debug's ...args made an array per call
 * even when disabled). (Its companion, bl reading numbers in place, went when the Aedes patch's
 * lib/lean-list.js replaced bl as the parser's input list; test/aedes/wire checks it against bl.)
 * Here: the same bytes parse to the same packets however they are split, and DEBUG still logs.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { seededInt } from '../helpers/seeded-random.js'

const execFileAsync = promisify(execFile)

describe('parser allocation patch (mqtt-packet debug guard)', () => {
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
