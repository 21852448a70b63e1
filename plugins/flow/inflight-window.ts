import { encodeQos0Publish, type PublishFields } from './publish-encoder.js'
import { countPacketSent, type FlowConnection, type OutboundClient, type OutboundFlow } from '../../src/aedes/internals.js'
import type { FlowConfig } from './schema.js'

/** A packet as the bus delivers it (an Aedes packet); the window only reads it. */
export type OutboundPacket = PublishFields

export type { FlowConnection, OutboundClient } from '../../src/aedes/internals.js'

interface Queued {
  packet: OutboundPacket
  qos: number
  bytes: number
}

export type OverflowReason = 'queue_full' | 'queue_bytes' 

/** Shared by every window of a plugin instance (no closures per connection). */
export interface WindowEvents {
  /** A message was dropped (policy drop-oldest / drop-new). */
  dropped: (window: InflightWindow, reason: OverflowReason, qos: number) => void
  /** Policy disconnect: the client must be closed. */
  overflow: (window: InflightWindow, reason: OverflowReason) => void
}

/** Shared placeholders until a window first queues something: an idle client allocates nothing. */
const NO_QUEUE: Queued[] = []
const NO_STORED: Array<{ messageId: number, send: () => void }> = []
const NO_INFLIGHT: ReadonlySet<number> = new Set<number>()

/**
 * The outbound flow of one client (src/aedes/internals.ts OutboundFlow: the patched Aedes
 * calls deliver / deliverStored / acked):
 * - QoS 0 is encoded and written here (one buffer per message shared by all subscribers),
 *   QoS 1/2 goes back to Aedes (`sendQueuedQoS`) for its message id and session store;
 * - at most `inflightWindow` QoS 1/2 messages unacknowledged; the rest wait in order;
 * - nothing is written while the socket is above its high-water mark (resume on drain),
 *   so a slow client's backlog sits in its own bounded queue, never in a shared slot;
 * - the queue is bounded in count and bytes, with the configured overflow policy.
 * Stored messages replayed on reconnect (persistent sessions) take slots first.
 */
export class InflightWindow implements OutboundFlow {
  readonly client: OutboundClient
  readonly #config: FlowConfig
  readonly #conn: FlowConnection
  readonly #events: WindowEvents
  #inflight: Set<number> = NO_INFLIGHT as Set<number>
  #queue: Queued[] = NO_QUEUE
  #head = 0
  #queuedBytes = 0
  /** QoS 0 messages in the queue: drop-oldest looks for one only when there is one. */
  #queuedQos0 = 0
  #stored = NO_STORED
  #waitingForDrain = false
  /** Closed by the overflow policy `disconnect` (Aedes' own close is read from the client). */
  #overflowed = false

  constructor (config: FlowConfig, client: OutboundClient, events: WindowEvents) {
    this.#config = config
    this.client = client
    this.#conn = client.conn
    this.#events = events
  }

  get inflight (): number { return this.#inflight.size }
  get queued (): number { return this.#queue.length - this.#head }
  get queuedBytes (): number { return this.#queuedBytes }

  get #closed (): boolean { return this.#overflowed || this.client.closed }

  #track (messageId: number): void {
    if (this.#inflight === NO_INFLIGHT) this.#inflight = new Set()
    this.#inflight.add(messageId)
  }

  /** Takes one packet for this client: written now, queued behind the window or the socket, or dropped by the overflow policy. */
  deliver (packet: OutboundPacket, qos: number): void {
    if (this.#closed) return
    // Fast path: nothing waiting, a free slot, a socket that takes more. No allocation.
    if (this.#head === this.#queue.length && this.#stored.length === 0 && !this.#conn.writableNeedDrain && (qos === 0 || this.#inflight.size < this.#config.inflightWindow)) {
      this.#send(packet, qos)
      return
    }
    const bytes = byteLength(packet)
    if (!this.#admit(qos, bytes)) return
    if (this.#queue === NO_QUEUE) this.#queue = []
    this.#queue.push({ packet, qos, bytes })
    this.#queuedBytes += bytes
    if (qos === 0) this.#queuedQos0++
    this.#pump()
  }

  /** A message from the session store on reconnect: sent when a slot is free (the caller's stream waits). */
  deliverStored (messageId: number, send: () => void): void {
    if (this.#closed) return
    if (this.#stored === NO_STORED) this.#stored = []
    this.#stored.push({ messageId, send })
    this.#pump()
  }

  acked (messageId: number): void {
    if (this.#inflight.delete(messageId)) this.#pump()
  }

  #overflowReason (bytes: number): OverflowReason | undefined {
    if (this.queued + 1 > this.#config.maxQueued) return 'queue_full'
    return this.#queuedBytes + bytes > this.#config.maxQueuedBytes ? 'queue_bytes' : undefined
  }

  #admit (qos: number, bytes: number): boolean {
    const overflow = this.#config.overflow
    let reason = this.#overflowReason(bytes)
    if (reason === undefined) return true
    if (overflow === 'disconnect') {
      this.#overflowed = true
      this.#events.overflow(this, reason)
      return false
    }
    if (overflow === 'drop-new') {
      this.#events.dropped(this, reason, qos)
      return false
    }
    // drop-oldest, QoS 0 first: make room until the new message fits.
    while (reason !== undefined && this.queued > 0) {
      const victim = this.#dropOldest()
      this.#events.dropped(this, reason, victim.qos)
      reason = this.#overflowReason(bytes)
    }
    if (reason !== undefined) {
      // Larger than the whole byte budget on its own.
      this.#events.dropped(this, reason, qos)
      return false
    }
    return true
  }

  /** Removes the oldest QoS 0 message, or the oldest one if none is QoS 0. O(1) when it is the head. */
  #dropOldest (): Queued {
    let index = this.#head
    if (this.#queuedQos0 > 0) {
      for (let i = this.#head; i < this.#queue.length; i++) {
        if (this.#queue[i]!.qos === 0) { index = i; break }
      }
    }
    if (index === this.#head) return this.#shift()
    const victim = this.#queue.splice(index, 1)[0]!
    this.#forget(victim)
    return victim
  }

  /** Takes the head of the queue (the array is compacted now and then, not per message). */
  #shift (): Queued {
    const item = this.#queue[this.#head]!
    this.#queue[this.#head] = undefined as unknown as Queued
    this.#head++
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
    this.#forget(item)
    return item
  }

  #forget (item: Queued): void {
    this.#queuedBytes -= item.bytes
    if (item.qos === 0) this.#queuedQos0--
  }

  #send (packet: OutboundPacket, qos: number): void {
    if (qos === 0) {
      // As Aedes' write(): nothing is written once the client is no longer connected.
      if (this.client.connected || this.client.connecting) {
        this.#conn.write(encodeQos0Publish(packet))
        countPacketSent(this.client)
      }
      return
    }
    this.#track(this.client.sendQueuedQoS(packet, qos))
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
        this.#track(stored.messageId)
        stored.send()
        continue
      }
      if (this.queued === 0) break
      if (this.#queue[this.#head]!.qos > 0 && full) return
      const item = this.#shift()
      this.#send(item.packet, item.qos)
    }
  }
}

function byteLength (packet: OutboundPacket): number {
  const payload = packet.payload
  const size = payload == null ? 0 : (typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength)
  return size + packet.topic.length + 8
}

