import { Socket } from 'node:net'

/**
 * A bounded number of reads per socket per event-loop turn: a socket that restarted its read
 * READS_PER_TURN times in one turn resumes in the next turn, after every other ready socket
 * had its reads.
 *
 * Why: libuv reads a readable socket up to 32 times in a row (64 KiB each) as long as each
 * read fills its buffer and the stream is still reading. Node stops the handle when a chunk
 * fills the stream's buffer (`push()` false), but Aedes consumes the chunk at once (its
 * 'readable' handler runs in the nextTick after the read callback and calls `read()`, which
 * starts the handle again) before libuv's loop checks the flag. So a publisher whose
 * generator keeps its socket full was read for up to 2 MiB (~17,000 small PUBLISHes, ~100 ms
 * at fan-in rates) before the next socket got a read: with 10 publishers one could wait a
 * second or more (bench/compare fan-in "1 s stalls"; per-publisher gaps of 0.9-2 s).
 *
 * How: the stream's `_read` (called by `read()` when the buffer is below its high-water
 * mark and the handle is stopped, i.e. only after a large chunk) counts the restarts of the
 * current turn; past the budget it is deferred to one `setImmediate` shared by every socket
 * waiting this turn. Small reads never stop the handle (`push()` stays true), so ordinary
 * traffic takes no detour. Back-pressure is unchanged: a stream that is not read (Aedes'
 * parsing waits on an async handler) never calls `_read`.
 *
 * `_read` becomes an own property pointing at one shared function (no closure per
 * connection); streams whose `_read` is not net.Socket's (a WebSocket duplex) are left alone.
 */
const DEFERRED = Symbol('mqgw.readDeferred')
const TURN = Symbol('mqgw.readTurn')
const READS = Symbol('mqgw.readsThisTurn')

/**
 * Reads a socket may restart within one turn before it waits for the next (libuv's own loop
 * goes to 32). One per turn cost fan-in about 13 % of its throughput (more, smaller turns);
 * four kept it (within noise) and bound a publisher's wait to about 4 x 64 KiB per other socket.
 */
export const READS_PER_TURN = 4

interface Fair extends Socket {
  [DEFERRED]?: boolean
  [TURN]?: number
  [READS]?: number
  _read: (size: number) => void
}

const socketRead = (Socket.prototype as Fair)._read
const waiting: Fair[] = []
/** Advances once per event-loop turn in which a socket restarted a read. */
let turn = 0
let turnScheduled = false

function nextTurn (): void {
  turnScheduled = false
  turn++
  // Each _read only starts a handle (libuv reads in the next poll phase): nothing is added to `waiting` here.
  for (let i = 0; i < waiting.length; i++) {
    const s = waiting[i]!
    s[DEFERRED] = false
    s[TURN] = turn
    s[READS] = 1
    if (!s.destroyed) socketRead.call(s, s.readableHighWaterMark)
  }
  waiting.length = 0
}

function fairRead (this: Fair, size: number): void {
  if (this[DEFERRED] === true) return
  if (!turnScheduled) {
    turnScheduled = true
    setImmediate(nextTurn)
  }
  if (this[TURN] !== turn) {
    this[TURN] = turn
    this[READS] = 0
  }
  if (this[READS]! < READS_PER_TURN) {
    this[READS]!++
    socketRead.call(this, size)
    return
  }
  this[DEFERRED] = true
  waiting.push(this)
}

export function readOncePerTurn (socket: Socket): void {
  const s = socket as Fair
  if (s._read !== socketRead || Object.hasOwn(s, '_read')) return
  s._read = fairRead
}
