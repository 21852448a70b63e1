/**
 * The QoS 0 PUBLISH packets the window writes itself, encoded once per message: a QoS 0
 * PUBLISH is the same bytes for every subscriber it reaches, so a fan-out to 1,000 subscribers
 * encodes once and writes that buffer to each. The bytes come from the Aedes patch's encoder
 * (lib/wire.js, the one Aedes' own writes use; identical to mqtt-packet's `generate`,
 * test/plugins/flow/publish-encoder.test.ts compares both on random packets).
 */
import { encodePacket } from '../../src/aedes/internals.js'

export interface PublishFields {
  topic: string
  payload?: Buffer | Uint8Array | string | null
  retain?: boolean
}

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
  const body = payload == null || typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  const encoded = encodePacket({ cmd: 'publish', topic, payload: body, qos: 0, dup: false, retain })
  // The encoder declines only what MQTT cannot carry (a topic over 65535 bytes, a packet
  // over the 268,435,455-byte remaining length): never write a wrong length.
  if (encoded === null) throw new RangeError(`PUBLISH on a topic of ${Buffer.byteLength(topic)} bytes cannot be encoded (topic over 65535 bytes or packet over the MQTT maximum)`)
  return encoded
}
