import type { FlowConfig } from './schema.js'

/** Writes one packet; `track(messageId)` is called synchronously when it takes an in-flight slot; `done` when written. */
export type SendPacket = (track: (messageId: number) => void, done: () => void) => void

interface Queued {
  qos: number
  bytes: number
  send: SendPacket
}

/** What the window needs to know of the connection under it. */
export interface FlowConnection {
  /** True while the socket's buffer is above its high-water mark. */
  readonly writableNeedDrain: boolean
  once: (event: 'drain' | 'close', listener: () => void) => unknown
}

export type OverflowReason = 'queue_full' | 'queue_bytes' 

export interface WindowEvents {
  /** A message was dropped (policy drop-oldest / drop-new). */
  dropped: (reason: OverflowReason, qos: number) => void
  /** Policy disconnect: the client must be closed. */
  overflow: (reason: OverflowReason) => void
}

/**
 * The outbound flow of one client, installed on the Aedes client as `outboundFlow`
 * (patches/aedes+1.2.0.patch calls deliver / deliverStored / acked):
 * - at most `inflightWindow` QoS 1/2 messages unacknowledged; the rest wait in order;
 * - nothing is written while the socket is above its high-water mark (resume on drain),
 *   so a slow client's backlog sits in its own bounded queue, never in a shared slot;
 * - the queue is bounded in count and bytes, with the configured overflow policy.
 * Stored messages replayed on reconnect (persistent sessions) take slots first.
 */
export class InflightWindow {
  readonly #config: FlowConfig
  readonly #conn: FlowConnection
  readonly #events: WindowEvents
  readonly #inflight = new Set<number>()
  #queue: Queued[] = []
  #head = 0
  #queuedBytes = 0
  readonly #stored: Array<{ messageId: number, send: () => void }> = []
  #waitingForDrain = false
  #closed = false

  constructor (config: FlowConfig, conn: FlowConnection, events: WindowEvents) {
    this.#config = config
    this.#conn = conn
    this.#events = events
    conn.once('close', () => { this.#closed = true })
  }

  get inflight (): number { return this.#inflight.size }
  get queued (): number { return this.#queue.length - this.#head }
  get queuedBytes (): number { return this.#queuedBytes }

  deliver (packet: { payload?: Buffer | string, topic: string }, qos: number, send: SendPacket): void {
    if (this.#closed) return
    // Fast path: nothing waiting, a free slot, a socket that takes more. No allocation.
    if (this.#head === this.#queue.length && this.#stored.length === 0 && !this.#conn.writableNeedDrain && (qos === 0 || this.#inflight.size < this.#config.inflightWindow)) {
      send(this.#track, noop)
      return
    }
    const bytes = byteLength(packet)
    if (!this.#admit(qos, bytes)) return
    this.#queue.push({ qos, bytes, send })
    this.#queuedBytes += bytes
    this.#pump()
  }

  /** A message from the session store on reconnect: sent when a slot is free (the caller's stream waits). */
  deliverStored (messageId: number, send: () => void): void {
    if (this.#closed) return
    this.#stored.push({ messageId, send })
    this.#pump()
  }

  acked (messageId: number): void {
    if (this.#inflight.delete(messageId)) this.#pump()
  }

  #admit (qos: number, bytes: number): boolean {
    const { maxQueued, maxQueuedBytes, overflow } = this.#config
    const over = (): OverflowReason | undefined =>
      this.queued + 1 > maxQueued ? 'queue_full' : (this.#queuedBytes + bytes > maxQueuedBytes ? 'queue_bytes' : undefined)
    let reason = over()
    if (reason === undefined) return true
    if (overflow === 'disconnect') {
      this.#closed = true
      this.#events.overflow(reason)
      return false
    }
    if (overflow === 'drop-new') {
      this.#events.dropped(reason, qos)
      return false
    }
    // drop-oldest, QoS 0 first: make room until the new message fits.
    while (reason !== undefined && this.queued > 0) {
      const victim = this.#dropOldest()
      this.#events.dropped(reason, victim.qos)
      reason = over()
    }
    if (reason !== undefined) {
      // Larger than the whole byte budget on its own.
      this.#events.dropped(reason, qos)
      return false
    }
    return true
  }

  #dropOldest (): Queued {
    let index = -1
    for (let i = this.#head; i < this.#queue.length; i++) {
      if (this.#queue[i]!.qos === 0) { index = i; break }
    }
    if (index === -1) index = this.#head
    const [victim] = this.#queue.splice(index, 1)
    this.#queuedBytes -= victim!.bytes
    return victim!
  }

  /** Bound once per window: called with the message id of each QoS 1/2 packet sent. */
  readonly #track = (messageId: number): void => { this.#inflight.add(messageId) }

  #send (item: Queued): void {
    item.send(this.#track, noop)
  }

  #pump (): void {
    while (!this.#closed) {
      if (this.#conn.writableNeedDrain) {
        if (!this.#waitingForDrain) {
          this.#waitingForDrain = true
          this.#conn.once('drain', () => {
            this.#waitingForDrain = false
            this.#pump()
          })
        }
        return
      }
      const full = this.#inflight.size >= this.#config.inflightWindow
      if (this.#stored.length > 0) {
        if (full) return
        const stored = this.#stored.shift()!
        this.#inflight.add(stored.messageId)
        stored.send()
        continue
      }
      if (this.queued === 0) break
      const item = this.#queue[this.#head]!
      if (item.qos > 0 && full) return
      this.#queue[this.#head] = undefined as unknown as Queued
      this.#head++
      this.#queuedBytes -= item.bytes
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head)
        this.#head = 0
      }
      this.#send(item)
    }
  }
}

function byteLength (packet: { payload?: Buffer | string, topic: string }): number {
  const payload = packet.payload
  const size = payload === undefined ? 0 : (typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length)
  return size + packet.topic.length + 8
}

function noop (): void {}
