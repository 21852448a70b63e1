import { Packr } from 'msgpackr'

/**
 * The Redis bus's wire format, mqemitter-redis' own: MessagePack of `{ id, msg }`, `msg` being
 * an Aedes packet. msgpackr (3-4x cheaper than mqemitter-redis' msgpack-lite) is the codec;
 * in front of it, a fixed reader and writer for the one layout nearly every bus message has:
 * a PUBLISH as Aedes emits it (aedes-packet: cmd, brokerId, brokerCounter, topic, payload,
 * qos, retain, dup, then messageId for QoS > 0 and the publisher's clientId), no MQTT 5 fields.
 *
 * Why: msgpackr's general reader was the largest single item of a subscriber's node in
 * bench/redis (unpack ~12 % of node A's CPU in `throughput`, ~7 % in `aggregate`, plus the
 * garbage of its key and string handling); its writer ~4 % of the publisher's node. The fixed
 * layout's field names are compared as bytes rather than read as strings, the packet is one
 * object literal (one shape), and short strings that repeat (cmd, broker id, topics) come
 * from a cache after a byte check.
 *
 * The bytes are msgpackr's own with the options below (tested byte for byte); the reader
 * takes any encoding of the layout (msgpack-lite's too) and hands everything else — other
 * commands' layouts, MQTT 5 properties, a different key order — to msgpackr, so what this node
 * reads and what a stock mqemitter-redis node reads of it are unchanged.
 */
export const codec = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true, mapsAsObjects: true })

/**
 * The layout's field names in aedes-packet's order, then the optional ones: `messageId` (QoS
 * > 0, undefined at this point) and `clientId` (the publisher's, which Aedes' publish adds).
 */
const FIELDS = ['cmd', 'brokerId', 'brokerCounter', 'topic', 'payload', 'qos', 'retain', 'dup', 'messageId', 'clientId'] as const
const MESSAGE_ID = 8
const CLIENT_ID = 9
const fixstr = (s: string): number[] => [0xa0 | s.length, ...Buffer.from(s)]
/** The encoded field names, each followed by its value; index i is FIELDS[i]. */
const KEY_BYTES = FIELDS.map((f) => Buffer.from(fixstr(f)))
const ID_KEY = Buffer.from([0x82, ...fixstr('id')])
const MSG_KEY = Buffer.from(fixstr('msg'))

interface FlatPacket {
  cmd: string
  brokerId: string
  brokerCounter: number
  topic: string
  payload: Buffer
  qos: number
  retain: boolean
  dup: boolean
  messageId?: number | null
  clientId?: string
}

// --- writer ---------------------------------------------------------------------------------

/**
 * Which optional fields `msg` has (bit 1 messageId, bit 2 clientId) when it is the fixed
 * layout, field for field and in order, with plain values; -1 when it is not.
 */
export function flatLayout (msg: object): number {
  // for-in, not Object.keys: no array per message (~15 ns less in a micro-bench). It also walks
  // inherited enumerable keys, which then fail the layout: msgpackr encodes such a message.
  let i = 0
  let extra = 0
  let next = MESSAGE_ID
  for (const k in msg) {
    if (i < 8) {
      if (k !== FIELDS[i]) return -1
    } else if (next === MESSAGE_ID && k === 'messageId') { extra |= 1; next = CLIENT_ID } else if (next !== -1 && k === 'clientId') { extra |= 2; next = -1 } else return -1
    i++
  }
  if (i < 8) return -1
  const p = msg as FlatPacket
  const ok = typeof p.cmd === 'string' && typeof p.brokerId === 'string' && typeof p.brokerCounter === 'number' &&
    typeof p.topic === 'string' && Buffer.isBuffer(p.payload) && typeof p.qos === 'number' &&
    typeof p.retain === 'boolean' && typeof p.dup === 'boolean' &&
    ((extra & 1) === 0 || p.messageId === undefined || p.messageId === null || typeof p.messageId === 'number') &&
    ((extra & 2) === 0 || typeof p.clientId === 'string')
  return ok ? extra : -1
}

function writeKey (buf: Buffer, pos: number, i: number): number {
  // A loop, not Buffer#copy: its argument handling costs more than 4-14 bytes do.
  const k = KEY_BYTES[i]!
  for (let j = 0; j < k.length; j++) buf[pos++] = k[j]!
  return pos
}

/**
 * `s` as UTF-8 at `pos` (no header); returns the end. ASCII byte by byte (no native call:
 * Buffer#write's argument handling costs more than a topic's bytes), anything else by write.
 */
export function writeUtf8 (buf: Buffer, pos: number, s: string): number {
  const n = s.length
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80) return pos + buf.write(s, pos)
    buf[pos + i] = c
  }
  return pos + n
}

/** Copies `b` into `buf` at `pos`: TypedArray#set, without Buffer#copy's argument handling in JS. */
function put (buf: Buffer, pos: number, b: Uint8Array): number {
  buf.set(b, pos)
  return pos + b.length
}

function writeString (buf: Buffer, pos: number, s: string): number {
  const n = s.length
  // ASCII up to 64 characters (ids, topics, broker ids) byte by byte: no native call.
  // One pass; a non-ASCII character abandons it for the measured path below.
  if (n <= 64) {
    const head = n < 32 ? 1 : 2
    let i = 0
    for (; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) break
      buf[pos + head + i] = c
    }
    if (i === n) {
      if (head === 1) buf[pos] = 0xa0 | n
      else { buf[pos] = 0xd9; buf[pos + 1] = n }
      return pos + head + n
    }
  }
  const len = Buffer.byteLength(s)
  if (len < 32) buf[pos++] = 0xa0 | len
  else if (len < 0x100) { buf[pos++] = 0xd9; buf[pos++] = len } else if (len < 0x10000) { buf[pos++] = 0xda; buf.writeUInt16BE(len, pos); pos += 2 } else { buf[pos++] = 0xdb; buf.writeUInt32BE(len, pos); pos += 4 }
  return pos + buf.write(s, pos)
}

/** msgpackr's choices with useRecords: false (pack.js): fixint below 0x80, the smallest uint/int, float64 for the rest. */
function writeNumber (buf: Buffer, pos: number, v: number): number {
  if (v >>> 0 === v) {
    if (v < 0x80) buf[pos++] = v
    else if (v < 0x100) { buf[pos++] = 0xcc; buf[pos++] = v } else if (v < 0x10000) { buf[pos++] = 0xcd; buf.writeUInt16BE(v, pos); pos += 2 } else { buf[pos++] = 0xce; buf.writeUInt32BE(v, pos); pos += 4 }
  } else if (v >> 0 === v) {
    if (v >= -0x20) buf[pos++] = 0x100 + v
    else if (v >= -0x80) { buf[pos++] = 0xd0; buf[pos++] = v + 0x100 } else if (v >= -0x8000) { buf[pos++] = 0xd1; buf.writeInt16BE(v, pos); pos += 2 } else { buf[pos++] = 0xd2; buf.writeInt32BE(v, pos); pos += 4 }
  } else { buf[pos++] = 0xcb; buf.writeDoubleBE(v, pos); pos += 8 }
  return pos
}

/** At most how many bytes `msg` (flatLayout not -1) takes: strings at 3 bytes a character plus header, fields at most 9 bytes, names. */
export function fixedBound (idLength: number, msg: object): number {
  const p = msg as FlatPacket
  return 160 + 3 * (idLength + p.cmd.length + p.brokerId.length + p.topic.length + (p.clientId?.length ?? 0)) + p.payload.length
}

/**
 * Writes MessagePack of `{ id, msg }` (the same bytes as `codec.pack({ id, msg })`) into `buf`
 * at `start` and returns where it ends, for the bus's ids: `prefix` (its bytes) + `counter` in
 * base 36, fewer than 32 ASCII characters in all, written without building the id string.
 * `layout` is flatLayout(msg) (not -1); `buf` has fixedBound(prefix.length + 11, msg) bytes
 * from `start`. The Redis bus writes each message straight into its turn's packed script
 * argument this way (redis-bus.ts), not into a buffer of its own that the batch then copied.
 */
export function encodeCounterIdMessageInto (buf: Buffer, start: number, prefix: Uint8Array, counter: number, msg: object, layout: number): number {
  let pos = put(buf, start, ID_KEY)
  const header = pos++
  pos = put(buf, pos, prefix)
  // Digits most significant first: counted, then written from the end.
  let digits = 1
  for (let v = counter; v >= 36; v = Math.floor(v / 36)) digits++
  if (prefix.length + digits > 31 || !Number.isSafeInteger(counter) || counter < 0) throw new RangeError('bus id: prefix and counter must fit a fixstr')
  for (let i = digits - 1, v = counter; i >= 0; i--, v = Math.floor(v / 36)) buf[pos + i] = BASE36[v % 36]!
  pos += digits
  buf[header] = 0xa0 | (prefix.length + digits)
  return encodeRest(buf, pos, msg, layout)
}
const BASE36 = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz')

/** The last (cmd, brokerId) with their keys as bytes: a node's are almost always the same pair, copied in one set(). */
let headCmd = ''
let headBroker = ''
let headBytes: Uint8Array = new Uint8Array(0)

function writeCmdBroker (buf: Buffer, pos: number, cmd: string, brokerId: string): number {
  if (cmd !== headCmd || brokerId !== headBroker) {
    const tmp = Buffer.allocUnsafe(KEY_BYTES[0]!.length + KEY_BYTES[1]!.length + 10 + 3 * (cmd.length + brokerId.length))
    const end = writeString(tmp, writeKey(tmp, writeString(tmp, writeKey(tmp, 0, 0), cmd), 1), brokerId)
    headBytes = tmp.subarray(0, end)
    headCmd = cmd
    headBroker = brokerId
  }
  return put(buf, pos, headBytes)
}

/** Everything after the id: `msg` and its fields. */
function encodeRest (buf: Buffer, start: number, msg: object, layout: number): number {
  const extra = layout
  const p = msg as FlatPacket
  let pos = put(buf, start, MSG_KEY)
  buf[pos++] = 0x80 | (8 + (extra & 1) + (extra >> 1))
  pos = writeCmdBroker(buf, pos, p.cmd, p.brokerId)
  pos = writeNumber(buf, writeKey(buf, pos, 2), p.brokerCounter)
  pos = writeString(buf, writeKey(buf, pos, 3), p.topic)
  pos = writeKey(buf, pos, 4)
  const n = p.payload.length
  if (n < 0x100) { buf[pos++] = 0xc4; buf[pos++] = n } else if (n < 0x10000) { buf[pos++] = 0xc5; buf.writeUInt16BE(n, pos); pos += 2 } else { buf[pos++] = 0xc6; buf.writeUInt32BE(n, pos); pos += 4 }
  pos = writeNumber(buf, writeKey(buf, put(buf, pos, p.payload), 5), p.qos)
  buf[writeKey(buf, pos, 6)] = p.retain ? 0xc3 : 0xc2
  pos += KEY_BYTES[6]!.length + 1
  buf[writeKey(buf, pos, 7)] = p.dup ? 0xc3 : 0xc2
  pos += KEY_BYTES[7]!.length + 1
  if ((extra & 1) !== 0) {
    pos = writeKey(buf, pos, MESSAGE_ID)
    if (typeof p.messageId === 'number') pos = writeNumber(buf, pos, p.messageId)
    else buf[pos++] = 0xc0
  }
  if ((extra & 2) !== 0) pos = writeString(buf, writeKey(buf, pos, CLIENT_ID), p.clientId!)
  return pos
}

/**
 * MessagePack of `{ id, msg }`, the same bytes as `codec.pack({ id, msg })`, in a buffer of its
 * own. The bus writes its messages into its turn's batch (encodeCounterIdMessageInto) and
 * comes here only for other layouts; any id, as other encoders write them.
 */
export function encodeBusMessage (id: string, msg: object): Buffer {
  const layout = flatLayout(msg)
  if (layout < 0) return codec.pack({ id, msg })
  const buf = Buffer.allocUnsafe(fixedBound(id.length, msg))
  return buf.subarray(0, encodeRest(buf, writeString(buf, put(buf, 0, ID_KEY), id), msg, layout))
}

// --- reader ---------------------------------------------------------------------------------

/** Anything outside the fixed layout: the caller hands the payload to msgpackr. */
class NotFixed extends Error {}
const NOT_FIXED = new NotFixed('not the fixed bus layout')

let src: Buffer = Buffer.alloc(0)
let at = 0

/** Whether `bytes` come next; consumes them if so. */
function matches (bytes: Buffer): boolean {
  const n = bytes.length
  if (at + n > src.length) return false
  for (let i = 0; i < n; i++) if (src[at + i] !== bytes[i]) return false
  at += n
  return true
}

function expect (bytes: Buffer): void {
  if (!matches(bytes)) throw NOT_FIXED
}

function byte (): number {
  if (at >= src.length) throw NOT_FIXED
  return src[at++]!
}

/**
 * Recent strings per field (cmd, broker id, topic, client id repeat across messages), direct-
 * mapped by length and three bytes, compared byte for byte (never trusted), decoded only on a
 * miss: one entry per field missed nearly always once many publishers' messages interleave
 * (bench/redis aggregate). Short ASCII strings only (the comparison is a character per byte).
 */
const CACHED_SLOTS = 256
const CACHED_MAX_LENGTH = 128
const seen: string[] = new Array<string>(4 * CACHED_SLOTS).fill('')

/** A string's header (fixstr, str8, str16): its length, checked against what is left. */
function stringLength (): number {
  const t = byte()
  const n = t >= 0xa0 && t < 0xc0 ? t & 0x1f : t === 0xd9 ? byte() : t === 0xda ? (byte() << 8) | byte() : -1
  if (n < 0 || at + n > src.length) throw NOT_FIXED
  return n
}

function readString (slot: number): string {
  const n = stringLength()
  const end = at + n
  let k = -1
  if (slot >= 0 && n > 0 && n <= CACHED_MAX_LENGTH) {
    k = slot * CACHED_SLOTS + ((n * 31 + src[end - 1]! * 7 + src[at + (n >> 1)]! * 131 + src[at]!) & (CACHED_SLOTS - 1))
    const prev = seen[k]!
    if (prev.length === n) {
      let same = true
      for (let i = n - 1; i >= 0; i--) if (prev.charCodeAt(i) !== src[at + i]) { same = false; break }
      if (same) { at = end; return prev }
    }
  }
  const s = src.toString('utf8', at, end)
  if (k >= 0 && s.length === n) seen[k] = s
  at = end
  return s
}

/** Steps over a string field; '' in its place. */
function skipString (): string {
  // Not `at += stringLength()`: that reads `at` before the call moves it past the header.
  const n = stringLength()
  at += n
  return ''
}

function readNumber (): number {
  const t = byte()
  if (t < 0x80) return t
  if (t >= 0xe0) return t - 0x100
  let v: number
  // Buffer's fixed-width readers throw a RangeError past the end: msgpackr decides then.
  switch (t) {
    case 0xcc: return byte()
    case 0xcd: v = src.readUInt16BE(at); at += 2; return v
    case 0xce: v = src.readUInt32BE(at); at += 4; return v
    case 0xd0: v = src.readInt8(at); at += 1; return v
    case 0xd1: v = src.readInt16BE(at); at += 2; return v
    case 0xd2: v = src.readInt32BE(at); at += 4; return v
    case 0xca: v = src.readFloatBE(at); at += 4; return v
    case 0xcb: v = src.readDoubleBE(at); at += 8; return v
    default: throw NOT_FIXED
  }
}

function readBoolean (): boolean {
  const t = byte()
  if (t === 0xc3) return true
  if (t === 0xc2) return false
  throw NOT_FIXED
}

function readPayload (): Buffer {
  const t = byte()
  const n = t === 0xc4 ? byte() : t === 0xc5 ? (byte() << 8) | byte() : t === 0xc6 ? src.readUInt32BE((at += 4) - 4) : -1
  if (n < 0 || at + n > src.length) throw NOT_FIXED
  // A view, as msgpackr returns bin (copyBuffers off): the payload shares the reply's memory.
  const b = src.subarray(at, at + n)
  at += n
  return b
}

function readFixed (withId: boolean): { id: string, msg: FlatPacket } {
  expect(ID_KEY)
  const id = withId ? readString(-1) : skipString()
  expect(MSG_KEY)
  const size = byte()
  if (size < 0x88 || size > 0x8a) throw NOT_FIXED
  expect(KEY_BYTES[0]!); const cmd = readString(0)
  expect(KEY_BYTES[1]!); const brokerId = readString(1)
  expect(KEY_BYTES[2]!); const brokerCounter = readNumber()
  expect(KEY_BYTES[3]!); const topic = readString(2)
  expect(KEY_BYTES[4]!); const payload = readPayload()
  expect(KEY_BYTES[5]!); const qos = readNumber()
  expect(KEY_BYTES[6]!); const retain = readBoolean()
  expect(KEY_BYTES[7]!); const dup = readBoolean()
  let messageId: number | null = null
  let clientId = ''
  let extra = 0
  for (let i = size - 0x88; i > 0; i--) {
    if (extra === 0 && matches(KEY_BYTES[MESSAGE_ID]!)) {
      extra |= 1
      if (src[at] === 0xc0) at++
      else messageId = readNumber()
    } else if ((extra & 2) === 0 && matches(KEY_BYTES[CLIENT_ID]!)) {
      extra |= 2
      clientId = readString(3)
    } else throw NOT_FIXED
  }
  if (at !== src.length) throw NOT_FIXED
  // One literal per layout: each is one shape, as msgpackr's reader would give the fields.
  switch (extra) {
    case 0: return { id, msg: { cmd, brokerId, brokerCounter, topic, payload, qos, retain, dup } }
    case 1: return { id, msg: { cmd, brokerId, brokerCounter, topic, payload, qos, retain, dup, messageId } }
    case 2: return { id, msg: { cmd, brokerId, brokerCounter, topic, payload, qos, retain, dup, clientId } }
    default: return { id, msg: { cmd, brokerId, brokerCounter, topic, payload, qos, retain, dup, messageId, clientId } }
  }
}

/**
 * `{ id, msg }` from a bus payload, as msgpackr reads it. Throws when it is not MessagePack
 * (msgpackr's error) or not a bus message: anything that can PUBLISH on this Redis can send
 * `nil`, a number or a map without `msg`, which msgpackr reads without complaint and which
 * the bus's handler would then dereference (a TypeError out of ioredis' event emit ends the
 * process); redis-bus.ts logs and drops what throws here. `withId` false: the fixed layout's
 * id comes back as '' (the bus compares it as bytes, redis-bus.ts); msgpackr's path reads it.
 */
export function decodeBusMessage (payload: Buffer, withId = true): { id: string, msg: { topic: string } } {
  src = payload
  at = 0
  try {
    return readFixed(withId)
  } catch {
    // NOT_FIXED or a fixed-width read past the end: msgpackr reads it, or throws its own error.
  } finally {
    src = EMPTY
  }
  const m = codec.unpack(payload) as { id?: unknown, msg?: { topic?: unknown } } | null
  if (typeof m !== 'object' || m === null || typeof m.msg !== 'object' || m.msg === null || typeof m.msg.topic !== 'string') {
    throw new Error('not a bus message: MessagePack { id, msg } with msg.topic expected')
  }
  return m as { id: string, msg: { topic: string } }
}
const EMPTY = Buffer.alloc(0)
