import { Socket } from 'node:net'

/**
 * One read per socket per event-loop turn: a socket whose read filled its stream buffer
 * resumes reading in the next turn, after every other ready socket had its read.
 *
 * Why: libuv reads a readable socket up to 32 times in a row (64 KiB each) as long as each
 * read fills its buffer and the stream is still reading. Node stops the handle when a chunk
 * fills the stream's buffer (`push()` false), but Aedes consumes the chunk at once (its
 * 'readable' handler runs in the nextTick after the read callback and calls `read()`, which
 * starts the handle again) before libuv's loop checks the flag. So a publisher whose
 * generator keeps its socket full was read for 2 MiB (~17,000 small PUBLISHes, ~100 ms at
 * fan-in rates) before the next socket got a read: with 10 publishers each was read once
 * per second and closed-loop publishers saw no delivery for a whole second
 * (bench/compare fan-in "1 s stalls"; p99 latency of ~1 s).
 *
 * How: the stream's `_read` (called by `read()` when the buffer is below its high-water
 * mark and the handle is stopped, i.e. only after a large chunk) is deferred to one
 * `setImmediate` shared by every socket waiting this turn. Small reads never stop the
 * handle (`push()` stays true), so ordinary traffic takes no detour. Back-pressure is
 * unchanged: a stream that is not read (Aedes' parsing waits on an async handler) never
 * calls `_read`.
 *
 * `_read` becomes an own property pointing at one shared function (no closure per
 * connection); streams whose `_read` is not net.Socket's (a WebSocket duplex) are left alone.
 */
const DEFERRED = Symbol('mqgw.readDeferred')

interface Fair extends Socket {
  [DEFERRED]?: boolean
  _read: (size: number) => void
}

const socketRead = (Socket.prototype as Fair)._read
const waiting: Fair[] = []

function readAll (): void {
  // Each _read only starts a handle (libuv reads in the next poll phase): nothing is added to `waiting` here.
  for (let i = 0; i < waiting.length; i++) {
    const s = waiting[i]!
    s[DEFERRED] = false
    if (!s.destroyed) socketRead.call(s, s.readableHighWaterMark)
  }
  waiting.length = 0
}

function fairRead (this: Fair, size: number): void {
  if (this[DEFERRED] === true) return
  this[DEFERRED] = true
  if (waiting.push(this) === 1) setImmediate(readAll)
  void size
}

export function readOncePerTurn (socket: Socket): void {
  const s = socket as Fair
  if (s._read !== socketRead || Object.hasOwn(s, '_read')) return
  s._read = fairRead
}
