import { randomBytes } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { noop } from '../noop.js'
import { decodeBusMessage, encodeBusMessage, encodeCounterIdMessageInto, fixedBound, flatLayout, writeUtf8 } from './bus-codec.js'
import { ROUTE_CHANNEL_PREFIX } from './route-table.js'

/**
 * The per-message path of the Redis bus, taken over from mqemitter-redis 7 (which keeps
 * subscribe/unsubscribe, connection state and close; the local matcher is the subscription
 * index, see redis.ts). mqemitter-redis sent every message through Redis and delivered it to
 * this node's own subscribers only when Redis echoed it back: a message between two clients of
 * one node cost a PUBLISH, the read of the echo, a msgpack decode and an LRU lookup, and waited
 * for the round trip (profiled in bench/redis aggregate: decode and the echo's handling were
 * ~20 % of a node's CPU).
 *
 * Here emit() delivers to this node's subscribers at once, synchronously as the memory bus
 * does, then PUBLISHes for the other nodes, all PUBLISHes of one turn in one script call
 * (PUBLISH_PACKED below); `done` (the publisher's PUBACK) still waits for Redis' reply, so
 * "acknowledged" still means "handed to Redis". The echo is recognised by this process's id
 * prefix in the payload's first bytes and dropped before decoding.
 *
 * Order: one publisher's messages reach a subscriber of its own node always locally and a
 * subscriber elsewhere always through Redis, in order on each path, so per-publisher order and
 * Aedes' per-broker duplicate filter hold. If the PUBLISH fails, local subscribers already have
 * the message and the publisher gets no PUBACK: it sends again, and they may see it twice
 * (QoS 1 is at least once).
 *
 * The wire format is mqemitter-redis' own ({ id, msg } in msgpack), so a node running plain
 * mqemitter-redis still reads these messages and this one reads its. The codec is msgpackr
 * instead of msgpack-lite (3-4x less CPU per encode and decode of a bus message in a
 * micro-bench; msgpack-lite was ~20 % of a node's CPU under QoS 1 load), with a fixed reader
 * and writer for the usual PUBLISH layout in front of it (bus-codec.ts), limited to plain
 * MessagePack: no records extension, fixmaps, `undefined` as nil (what msgpack-lite writes and
 * reads; a decoded absent messageId is null either way).
 */
/** What Aedes subscribes on the bus: called with each matching packet and a `done`. */
type Listener = (msg: unknown, done: () => void) => void

interface RedisBus {
  pubConn: Redis | Cluster
  subConn: Redis | Cluster
  closed?: boolean
  /** mqemitter's local matcher (the subscription index, replaced in redis.ts): on() adds to it. */
  _matcher: { match: (topic: string) => Listener[] }
  _onError: (err?: Error) => void
  emit: (msg: { topic: string }, done?: (err?: Error) => void) => void
}

// msgpack of { id, msg }: fixmap(2), fixstr "id", then the id as a fixstr (< 32 bytes).
const HEAD = Buffer.from([0x82, 0xa2, 0x69, 0x64])
/**
 * One script call PUBLISHes a turn's messages in order: ioredis' cost is per command (a Command
 * object, a promise, its own encoding; ~18 % of a node's CPU with one PUBLISH each, profiled),
 * and Redis' dispatch too. Replicas and Cluster peers get each PUBLISH as before. The batch's
 * callbacks (the PUBACKs) wait for the script's reply, so one PUBACK waits at most for the
 * rest of its turn; MAX_BATCH bounds how long one call holds Redis.
 */
const MAX_BATCH = 500
/** Bytes of the buffer that a turn's packed batches are written into (a larger batch gets its own). */
const BATCH_SLAB = 512 * 1024
/**
 * Used slabs kept for reuse once every batch written into them is settled. Why: a slab is
 * memory outside V8's heap, and V8 answers that much new outside memory with full collections:
 * one QoS 1 pair across two nodes (bench/redis aggregate, cross placement) allocated a slab
 * every ~2,000 messages, and the publisher's node ran ~4 mark-compacts a second, its GC threads
 * ~a third of its CPU on top of the main thread (perf), with a flat old space.
 */
const SPARE_SLABS = 4

/** A slab and how many of the batches written into it still wait for Redis. */
interface Slab { buf: Buffer, pending: number }
/**
 * The batch travels as one argument, `[u16 channel length][channel][u32 payload length]
 * [payload]` per message, unpacked by the script (Redis' Lua `struct`, `c0` = a string of the
 * length read just before): ioredis formats a command argument by argument (a length, a
 * string-to-Buffer conversion for each channel, then one concatenation), which with two
 * arguments per message was ~9 % of a node's CPU in bench/redis aggregate (profiled); one
 * argument costs it the same whatever the batch's size. Redis does the splitting instead.
 */
const PUBLISH_PACKED = `local b = ARGV[1]
local n, pos, len = 0, 1, #b
while pos <= len do
  local channel, payload
  channel, payload, pos = struct.unpack('>I2c0>I4c0', b, pos)
  redis.call('PUBLISH', channel, payload)
  n = n + 1
end
return n`

/** Whether `a` from `start` holds the first `n` bytes of `b`. */
function sameBytes (a: Buffer, start: number, b: Buffer, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[start + i] !== b[i]) return false
  return true
}

/** Sentinels' announcements, which a pattern subscription (`#` becomes `*`) also receives. */
const SENTINEL_HELLO = Buffer.from('__sentinel__:hello')

const ROUTE_CHANNELS = Buffer.from(ROUTE_CHANNEL_PREFIX)

/**
 * `onUndecodable`: a message on a subscribed channel that is not this wire format (dropped).
 * `wantsRemote`: whether another node may have a subscriber for a topic (the route table,
 * route-table.ts); a message no other node wants is delivered here and not PUBLISHed.
 */
export function localFirstBus (mq: object, onUndecodable: (channel: string, err: Error) => void, wantsRemote: (topic: string) => boolean = () => true): void {
  const bus = mq as RedisBus
  // 16 random base64url characters per process: another node's prefix never matches.
  const prefix = `mq${randomBytes(12).toString('base64url')}-`
  const prefixBytes = Buffer.from(prefix)
  const idStart = HEAD.length + 1
  let counter = 0
  // Byte by byte, not Buffer#compare (a native call per message): another node's id differs
  // from this prefix within its first random characters.
  const isEcho = (payload: Buffer): boolean =>
    payload.length > idStart + prefixBytes.length && sameBytes(payload, idStart, prefixBytes, prefixBytes.length)

  const pub = bus.pubConn as (Redis | Cluster) & { mqgwPublishPacked: (batch: Buffer) => Promise<number> }
  pub.defineCommand('mqgwPublishPacked', { numberOfKeys: 0, lua: PUBLISH_PACKED })

  /**
   * This node's listeners of `msg.topic`, each called with the message and one shared no-op
   * `done`: what mqemitter's own emit (`_emit`) did with no callback, without its per-message
   * bookkeeping (a fastparallel holder and a release function per listener, for a callback
   * nobody waits for: ~2-3 % of a node's CPU in bench/redis aggregate, profiled). Listeners
   * are called as mqemitter called them (`this` the bus, in match order, a throw not caught).
   */
  const deliverLocal = (msg: { topic: string }): void => {
    if (bus.closed === true) return
    const listeners = bus._matcher.match(msg.topic)
    for (let i = 0; i < listeners.length; i++) listeners[i]!.call(bus, msg, noop)
  }

  /**
   * This turn's PUBLISHes, written as they come straight in PUBLISH_PACKED's layout: each
   * message is encoded in place after its channel (no buffer of its own that packBatch then
   * copied). The batch is a view into `slab`, not overwritten while it waits for Redis; a batch
   * that outgrows the slab moves to a new one.
   */
  const spare: Slab[] = []
  const newSlab = (size: number): Slab => size === BATCH_SLAB && spare.length > 0 ? spare.pop()! : { buf: Buffer.allocUnsafe(size), pending: 0 }
  // A slab is reused only once it is no longer the one being written (`slab`) and no batch in
  // it can still be read: ioredis has written a command's arguments before Redis can answer
  // it, and a command it holds in its offline queue or resends after a reconnect is not
  // settled yet.
  const release = (s: Slab): void => {
    if (s.pending === 0 && s.buf.length === BATCH_SLAB && spare.length < SPARE_SLABS) spare.push(s)
  }
  let slab = newSlab(BATCH_SLAB)
  let batchStart = 0
  let pos = 0
  let count = 0
  const reserve = (n: number): void => {
    if (pos + n <= slab.buf.length) return
    const next = newSlab(Math.max(BATCH_SLAB, 2 * (pos - batchStart + n)))
    next.buf.set(slab.buf.subarray(batchStart, pos))
    pos -= batchStart
    batchStart = 0
    const old = slab
    slab = next
    release(old)
  }
  // The message's id is this process's prefix and a counter (base 36).
  const append = (topic: string, msg: { topic: string }): void => {
    const n0 = counter++
    const layout = flatLayout(msg)
    const encoded = layout < 0 ? encodeBusMessage(prefix + n0.toString(36), msg) : undefined
    reserve(6 + 3 * topic.length + (encoded === undefined ? fixedBound(prefixBytes.length + 11, msg) : encoded.length))
    const buf = slab.buf
    const channelEnd = writeUtf8(buf, pos + 2, topic)
    buf.writeUInt16BE(channelEnd - pos - 2, pos)
    const at = channelEnd + 4
    let end: number
    if (encoded === undefined) end = encodeCounterIdMessageInto(buf, at, prefixBytes, n0, msg, layout)
    else {
      buf.set(encoded, at)
      end = at + encoded.length
    }
    buf.writeUInt32BE(end - at, channelEnd)
    pos = end
    count++
  }
  let callbacks: Array<(err?: Error) => void> = []
  // The last batch sent, settled either way; batches waiting on Redis, so that a message that
  // skips Redis is acknowledged after the ones before it (PUBACKs in PUBLISH order).
  let tail: Promise<unknown> = Promise.resolve()
  let inFlight = 0
  const settled = (): void => { inFlight-- }
  const flush = (): void => {
    if (callbacks.length === 0) return
    const cbs = callbacks
    const n = count
    const owner = slab
    const batch = owner.buf.subarray(batchStart, pos)
    if (n > 0) owner.pending++
    batchStart = pos
    count = 0
    // Less than half a slab left: the next batch starts in another one rather than being
    // copied there when it outgrows the rest (a turn's batch is at most MAX_BATCH messages).
    if (owner.buf.length - pos < BATCH_SLAB / 2) {
      slab = newSlab(BATCH_SLAB)
      batchStart = pos = 0
      release(owner)
    }
    callbacks = []
    // A batch of skipped messages only (n 0) waits for the batches before it; their
    // subscribers here already have them, so a failure before them is not theirs. One
    // message: a plain PUBLISH of the channel and payload (views into the batch).
    let sent: Promise<unknown>
    if (n === 0) sent = tail.then(() => {})
    else if (n === 1) {
      const channelEnd = 2 + batch.readUInt16BE(0)
      sent = pub.publish(batch.subarray(2, channelEnd), batch.subarray(channelEnd + 4))
    } else sent = pub.mqgwPublishPacked(batch)
    inFlight++
    sent.then(() => { for (const cb of cbs) cb() }, (err: Error) => { for (const cb of cbs) cb(n === 0 ? undefined : err) })
    const done = n === 0
      ? settled
      : () => {
          settled()
          owner.pending--
          if (owner !== slab) release(owner)
        }
    tail = sent.then(done, done)
  }

  bus.emit = function emit (msg, done) {
    const cb = done ?? bus._onError
    if (bus.closed === true) { cb(new Error('mqemitter-redis is closed')); return }
    // The route table's channels are never an MQTT message's (nor forged as one).
    if (msg.topic.startsWith(ROUTE_CHANNEL_PREFIX) || !wantsRemote(msg.topic)) {
      deliverLocal(msg)
      // No other node subscribes: nothing to wait for, unless earlier PUBLISHes still are.
      if (callbacks.length === 0 && inFlight === 0) { cb(); return }
      if (callbacks.length === 0) setImmediate(flush)
      if (callbacks.push(cb) >= MAX_BATCH) flush()
      return
    }
    // Encoded before local delivery (as before: what the other nodes get is the message as
    // published), its callback queued with it, so a listener that throws cannot leave a batch
    // entry without its callback.
    append(msg.topic, msg)
    if (callbacks.length === 0) setImmediate(flush)
    const full = callbacks.push(cb) >= MAX_BATCH
    deliverLocal(msg)
    if (full) flush()
  }

  // The duplicate check (see below): the last message's id, as its encoded bytes when it
  // came in the usual encoding (HEAD, then a fixstr: compared, the string never built), else
  // as the decoded string.
  let lastId: string | undefined
  const lastIdBytes = Buffer.alloc(32)
  let lastIdLength = -1
  const handler = (channel: Buffer, payload: Buffer): void => {
    if (isEcho(payload) || (channel.length === SENTINEL_HELLO.length && channel.equals(SENTINEL_HELLO))) return
    // A pattern subscription (`#` becomes `*`) also receives the route table's messages (U+0000
    // at index 4: never in an MQTT topic, so one byte test per message settles it).
    if (channel[4] === 0 && channel.compare(ROUTE_CHANNELS, 0, ROUTE_CHANNELS.length, 0, Math.min(channel.length, ROUTE_CHANNELS.length)) === 0) return
    // One message reaches this connection once per subscription of it that matches (a channel
    // and patterns, or several patterns), and those copies are adjacent and byte for byte the
    // same: Redis writes them all while running the one PUBLISH. So the last id is enough where
    // mqemitter-redis looked every id up in an LRU with a TTL (~3 % of a node's CPU in
    // bench/redis aggregate, profiled).
    const idLength = payload.length > idStart && payload[0] === HEAD[0] && payload[1] === HEAD[1] && payload[2] === HEAD[2] &&
      payload[3] === HEAD[3] && (payload[4]! & 0xe0) === 0xa0 ? payload[4]! & 0x1f : -1
    if (idLength >= 0) {
      if (idLength === lastIdLength && sameBytes(payload, idStart, lastIdBytes, idLength)) return
      for (let i = 0; i < idLength; i++) lastIdBytes[i] = payload[idStart + i]!
      lastIdLength = idLength
      lastId = undefined
    }
    let packet: { id: string, msg: unknown }
    try {
      packet = decodeBusMessage(payload, idLength < 0)
    } catch (err) {
      // Something else PUBLISHed on a subscribed channel (anyone who can write to Redis can):
      // a throw here would escape ioredis' event emit and end the process. Reported, the
      // message dropped, the bus reads on.
      onUndecodable(channel.toString(), err as Error)
      return
    }
    if (idLength < 0) {
      if (packet.id === lastId) return
      lastId = packet.id
      lastIdLength = -1
    }
    deliverLocal(packet.msg as { topic: string })
  }
  // mqemitter-redis' own listeners (decode, then emit every message, echoes included) go.
  bus.subConn.removeAllListeners('messageBuffer')
  bus.subConn.removeAllListeners('pmessageBuffer')
  bus.subConn.on('messageBuffer', (channel: Buffer, payload: Buffer) => handler(channel, payload))
  bus.subConn.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, payload: Buffer) => handler(channel, payload))
}
