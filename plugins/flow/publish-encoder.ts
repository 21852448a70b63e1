/**
 * Encodes the QoS 0 PUBLISH packets the window writes itself (MQTT 3.1 / 3.1.1 wire format,
 * identical bytes to mqtt-packet's `generate`; test/plugins/flow/publish-encoder.test.ts
 * compares both on random packets).
 *
 * Why not mqtt-packet here: its writer issues about five `write()` calls per packet (one
 * buffered stream entry each) and allocates a fresh copy for every subscriber. A QoS 0
 * PUBLISH is the same bytes for every subscriber it reaches, so one buffer is encoded per
 * message and written to all of them: a fan-out to 1,000 subscribers encodes once.
 */

export interface PublishFields {
  topic: string
  payload?: Buffer | Uint8Array | string | null
  retain?: boolean
}

/** Remaining length is a variable byte integer of at most four bytes (MQTT 3.1.1 §2.2.3). */
const MAX_REMAINING_LENGTH = 268_435_455

// One-entry cache: a fan-out delivers the same packet object to each subscriber in a row.
let lastPacket: PublishFields | undefined
let lastRetain = false
let lastEncoded: Buffer = Buffer.alloc(0)

/** The QoS 0 PUBLISH for `packet` (DUP 0, RETAIN as the packet says). Cached per packet object. */
export function encodeQos0Publish (packet: PublishFields): Buffer {
  const retain = packet.retain === true
  if (packet === lastPacket && retain === lastRetain) return lastEncoded
  const encoded = encode(packet.topic, packet.payload, retain)
  lastPacket = packet
  lastRetain = retain
  lastEncoded = encoded
  return encoded
}

function encode (topic: string, payload: PublishFields['payload'], retain: boolean): Buffer {
  const topicBytes = Buffer.byteLength(topic)
  const payloadBytes = payload == null ? 0 : (typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength)
  const remaining = 2 + topicBytes + payloadBytes
  if (topicBytes > 0xffff) throw new RangeError(`topic of ${topicBytes} bytes exceeds 65535`)
  if (remaining > MAX_REMAINING_LENGTH) throw new RangeError(`PUBLISH of ${remaining} bytes exceeds the MQTT maximum`)
  const lengthBytes = remaining < 0x80 ? 1 : remaining < 0x4000 ? 2 : remaining < 0x200000 ? 3 : 4
  const out = Buffer.allocUnsafe(1 + lengthBytes + remaining)
  out[0] = retain ? 0x31 : 0x30
  let pos = 1
  let rest = remaining
  do {
    let digit = rest % 128
    rest = Math.floor(rest / 128)
    if (rest > 0) digit |= 0x80
    out[pos++] = digit
  } while (rest > 0)
  out[pos++] = topicBytes >> 8
  out[pos++] = topicBytes & 0xff
  pos += out.write(topic, pos, 'utf8')
  if (payload != null) {
    if (typeof payload === 'string') out.write(payload, pos, 'utf8')
    else out.set(payload, pos)
  }
  return out
}
