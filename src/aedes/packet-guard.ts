import { isUtf8 } from 'node:buffer'
import type { Client } from 'aedes'

/**
 * Input checks that Aedes 1.2.0 / mqtt-packet 9 do not make, applied inside the
 * client's own mqtt-packet parser so that a bad packet is rejected before its body is
 * buffered or handed to Aedes:
 *
 * - Maximum packet size: checked as soon as the fixed header's remaining length is
 *   known, so a 200 MB PUBLISH is refused after its first 5 bytes, not after buffering.
 *   Before CONNACK the smaller maxConnectPacketSize applies.
 * - Well-formed UTF-8 without U+0000 in every string field (MQTT 3.1.1 §1.5.3,
 *   [MQTT-1.5.3-1], [MQTT-1.5.3-2]: the server MUST close the connection).
 *   mqtt-packet decodes with Buffer#toString, which silently turns bad bytes into
 *   U+FFFD, so the bytes are checked before decoding.
 *
 * The guarded methods go once on the prototype of the Aedes patch's parser class (LeanParser,
 * used by Aedes clients only; a plain mqtt-packet parser elsewhere in the process is not
 * touched): no closures or own methods per connection. The parser is created in Aedes' Client
 * constructor; `handle()` returns that client before any byte is read, which is when
 * this runs and sets the connection's limits.
 */

/** The internals of mqtt-packet's Parser that this guard relies on (mqtt-packet 9.x). */
interface ParserInternals {
  packet: { length: number, cmd?: string }
  /** Set by Aedes' Client constructor (`this._parser.client = this`). */
  client?: { conn?: { write: (b: Buffer) => unknown }, connackSent?: boolean }
  _list: { length: number, readUInt16BE: (offset: number) => number, slice: (start: number, end: number) => Buffer }
  _pos: number
  _parseLength: () => boolean
  _parseString: () => string | null
  _emitError: (err: Error) => void
}

const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01])

export class PacketTooLargeError extends Error {
  readonly code = 'PACKET_TOO_LARGE'
  constructor (size: number, max: number, limit = 'maxPacketSize', when = '') {
    super(`packet of ${size} bytes exceeds ${limit} ${max}${when}`)
  }
}

export class MalformedStringError extends Error {
  readonly code = 'MALFORMED_STRING'
}

type GuardedParser = ParserInternals & { _guardMaxPacketSize: number, _guardMaxConnectPacketSize: number, _guardError: Error | null }

type GuardedMethods = Pick<ParserInternals, '_parseLength' | '_parseString' | '_emitError'>
/** Parser prototypes that carry the guarded methods. */
const guardedPrototypes = new WeakSet<object>()

/**
 * Puts the guarded methods on a parser prototype, once (a second pass would wrap the guarded
 * methods again): the originals are read from its chain before they are shadowed.
 */
function installGuards (base: ParserInternals): void {
  if (guardedPrototypes.has(base)) return
  const baseParseLength = base._parseLength
  const baseParseString = base._parseString
  const baseEmitError = base._emitError
  const methods: GuardedMethods = {
    _parseLength: function (this: GuardedParser): boolean {
        const ok = baseParseLength.call(this)
        if (!ok) return ok
        // Before CONNACK the client has proved nothing: a small limit, so that a socket
        // cannot make the gateway buffer a whole maxPacketSize CONNECT (or a pipelined
        // PUBLISH) while it is authenticated or until the connect timeout. Aedes sets
        // connackSent once the CONNACK is written (handlers/connect.js doConnack).
        if (this.client?.connackSent !== true) {
          if (this.packet.length > this._guardMaxConnectPacketSize) {
            this._emitError(new PacketTooLargeError(this.packet.length, this._guardMaxConnectPacketSize, 'maxConnectPacketSize', ' before CONNACK'))
            return false
          }
        } else if (this.packet.length > this._guardMaxPacketSize) {
          this._emitError(new PacketTooLargeError(this.packet.length, this._guardMaxPacketSize))
          return false
        }
        return ok
    },
    _parseString: function (this: GuardedParser): string | null {
        const pos = this._pos
        // Same bounds as mqtt-packet's own check; let it report truncation itself.
        if (pos + 2 <= this._list.length) {
          const length = this._list.readUInt16BE(pos)
          const end = pos + 2 + length
          if (end <= this._list.length && end <= this.packet.length) {
            const bytes = this._list.slice(pos + 2, end)
            if (!isUtf8(bytes)) {
              this._guardError = new MalformedStringError('string field is not well-formed UTF-8 [MQTT-1.5.3-1]')
              return null
            }
            if (bytes.includes(0)) {
              this._guardError = new MalformedStringError('string field contains U+0000 [MQTT-1.5.3-2]')
              return null
            }
          }
        }
        return baseParseString.call(this)
    },
    _emitError: function (this: GuardedParser, err: Error): void {
        // Report the guard's precise reason instead of mqtt-packet's generic "Cannot parse topic".
        const reason = this._guardError ?? err
        this._guardError = null
        // mqtt-packet rejects an unknown protocol level itself, before Aedes could answer;
        // the spec wants CONNACK 0x01 first [MQTT-3.1.2-2]. The socket's destroy() hands
        // what was written to the kernel first (src/listeners/write-batching.ts).
        if (this.packet.cmd === 'connect' && reason.message === 'Invalid protocol version') {
          this.client?.conn?.write(CONNACK_UNACCEPTABLE_PROTOCOL)
        }
        baseEmitError.call(this, reason)
    }
  }
  Object.assign(base, methods)
  guardedPrototypes.add(base)
}

/** `maxConnectPacketSize` applies to every packet before CONNACK (capped by `maxPacketSize`). */
export function guardParser (client: Client, maxPacketSize: number, maxConnectPacketSize = maxPacketSize): void {
  const parser = (client as unknown as { _parser?: ParserInternals })._parser
  if (!parser || typeof parser._parseLength !== 'function' || typeof parser._parseString !== 'function') {
    throw new Error('Aedes client has no mqtt-packet parser where expected; packet guards cannot be installed')
  }
  // The Aedes patch's parser class (lib/client.js LeanParser) declares the guard's fields in its
  // constructor, and only Aedes clients use it: the guarded methods go on its prototype once,
  // and each connection only sets its limits. Own properties per parser (methods and fields
  // added after construction) cost a property store and six map transitions per CONNECT.
  if (!Object.hasOwn(parser, '_guardMaxPacketSize')) {
    throw new Error('Aedes parser without the packet guard fields (patches/aedes+1.2.0.patch not applied?); packet guards cannot be installed')
  }
  installGuards(Object.getPrototypeOf(parser) as ParserInternals)
  const guarded = parser as GuardedParser
  guarded._guardMaxPacketSize = maxPacketSize
  guarded._guardMaxConnectPacketSize = Math.min(maxConnectPacketSize, maxPacketSize)
  guarded._guardError = null
}
