import { Writable } from 'node:stream'

/**
 * Batches each connection's writes per event-loop turn: the first write of a turn corks the
 * stream, one setImmediate uncorks every corked stream, so all the packets a turn produced
 * for a client leave in one writev (one syscall) instead of one write each.
 *
 * mqtt-packet corks too, but only until process.nextTick, which runs after each I/O
 * callback: a subscriber fed by ten publishers (fan-in) got a syscall per publisher read,
 * and every PUBACK of a QoS 1 stream its own. Node's `cork()` keeps back-pressure intact
 * (`write()` returns false and `writableNeedDrain` is set once the buffered bytes pass the
 * high-water mark), so the flow window and Aedes' drain handling see what they saw before.
 * The latency added is at most the rest of the current turn.
 *
 * `destroy()` discards a corked buffer, and Aedes destroys the socket right after writing
 * a refusal (CONNACK 0x01, errors), so destroy() first hands what was written to the OS.
 *
 * `write` and `destroy` become own properties pointing at shared functions (no closure
 * per connection); the flushing destroy then calls the stream's class destroy() (Writable's,
 * or a subclass's such as src/listeners/ws-duplex.ts). Streams whose `write` is not
 * Writable's, or with a `destroy` of their own (an own property), are left alone.
 */
const CORKED = Symbol('mqgw.corkedForTurn')

interface Batched extends Writable {
  [CORKED]?: boolean
}

const corked: Batched[] = []
const writableWrite = Writable.prototype.write

/** Sends what a stream buffered since it was corked for this turn (no-op when it was not). */
function flush (stream: Batched): void {
  if (stream[CORKED] !== true) return
  stream[CORKED] = false
  stream.uncork()
}

function uncorkAll (): void {
  // Uncorking starts the writes; their callbacks run later, so nothing is added to `corked` here.
  // A stream already flushed by batchedWrite (its buffer filled) is skipped by flush().
  for (let i = 0; i < corked.length; i++) flush(corked[i]!)
  corked.length = 0
}

// Fixed parameters rather than a rest array: this runs for every packet written.
function batchedWrite (this: Batched, chunk: unknown, encoding?: BufferEncoding | ((err?: Error | null) => void), cb?: (err?: Error | null) => void): boolean {
  if (this[CORKED] !== true && !this.destroyed) {
    this[CORKED] = true
    this.cork()
    if (corked.push(this) === 1) setImmediate(uncorkAll)
  }
  const ok = (writableWrite as (this: Writable, c: unknown, e?: unknown, f?: unknown) => boolean).call(this, chunk, encoding, cb)
  // A buffer past its high-water mark leaves now rather than at the end of the turn: the
  // batch is already large, and the writer (the flow window, Aedes' drain handling) now
  // waits for 'drain', which only comes once the buffer is out.
  if (!ok) flush(this)
  return ok
}

function flushingDestroy (this: Batched, error?: Error, cb?: (err: Error | null) => void): Batched {
  flush(this)
  const classDestroy = (Object.getPrototypeOf(this) as Writable).destroy
  return (classDestroy as (this: Writable, e?: Error, f?: unknown) => Writable).call(this, error, cb) as Batched
}

export function batchWritesPerTurn (stream: Writable): void {
  if (stream.write !== writableWrite || Object.hasOwn(stream, 'destroy')) return
  stream.write = batchedWrite as Writable['write']
  stream.destroy = flushingDestroy as Writable['destroy']
}
