import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { encodeQos0Publish } from '../../../plugins/flow/publish-encoder.js'
import { seededInt } from '../../helpers/seeded-random.js'

/** The bytes mqtt-packet generates for the same QoS 0 PUBLISH (the reference). */
function reference (topic: string, payload: Buffer | string, retain: boolean): Buffer {
  return mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 0, retain, dup: false })
}

describe('encodeQos0Publish', () => {
  it('matches mqtt-packet byte for byte on random topics, payloads and flags (seeded)', () => {
    const int = seededInt(0x5eed)
    const alphabet = ['a', 'b', '/', 'é', '中', '😀', ' ', '$', 'Z', '0']
    // Payload sizes straddle every remaining-length width (1 to 4 bytes).
    const sizes = [0, 1, 100, 125, 126, 127, 128, 16380, 16383, 16384, 70000, 2097148, 2097152]
    for (let i = 0; i < 600; i++) {
      let topic = ''
      const topicLength = 1 + int(40)
      for (let c = 0; c < topicLength; c++) topic += alphabet[int(alphabet.length)]
      const size = i < sizes.length ? sizes[i]! : int(3000)
      const payload = Buffer.alloc(size)
      for (let b = 0; b < Math.min(size, 64); b++) payload[b] = int(256)
      const retain = int(2) === 1
      const asString = int(5) === 0
      const body = asString ? payload.toString('latin1') : payload
      const packet = { topic, payload: body, retain }
      assert.deepEqual(encodeQos0Publish(packet), reference(topic, body, retain), `topic ${JSON.stringify(topic)} payload ${size} retain ${retain} string ${asString}`)
    }
  })

  it('encodes a packet object once and returns the same buffer to every subscriber', () => {
    const packet = { topic: 'fan/out', payload: Buffer.from('x'), retain: false }
    const first = encodeQos0Publish(packet)
    assert.equal(encodeQos0Publish(packet), first)
    // A different object with the same content is encoded again (identity, not content, is the key).
    const other = encodeQos0Publish({ ...packet })
    assert.notEqual(other, first)
    assert.deepEqual(other, first)
    // The retain flag is part of the key.
    const retained = encodeQos0Publish({ ...packet, retain: true })
    assert.equal(retained[0], 0x31)
  })

  it('encodes an empty payload and a missing one alike', () => {
    assert.deepEqual(encodeQos0Publish({ topic: 't' }), reference('t', Buffer.alloc(0), false))
    assert.deepEqual(encodeQos0Publish({ topic: 't', payload: null }), reference('t', Buffer.alloc(0), false))
  })

  it('refuses a topic longer than 65535 bytes instead of writing a wrong length', () => {
    assert.throws(() => encodeQos0Publish({ topic: 'x'.repeat(65536), payload: Buffer.alloc(0) }), RangeError)
  })
})
