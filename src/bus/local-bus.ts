/**
 * An in-process bus with the interface Aedes expects of `mq` (mqemitter's `on`,
 * `removeListener`, `emit`, `close`), matching with SubscriptionIndex (hash-sharded exact
 * filters plus a wildcard trie) instead of one qlobber trie. It holds only this node's
 * subscriptions.
 *
 * Differences from mqemitter 7, each on purpose:
 *  - No broker-wide concurrency slot or message queue. mqemitter lets at most `concurrency`
 *    messages be in delivery at once, so one slow subscriber that holds `done` stalls every
 *    publisher on the node. Here every emit is independent; a publisher still gets
 *    back-pressure because its own callback waits for the `done` of each listener it reached.
 *  - `removeListener` takes effect immediately (mqemitter defers it to setImmediate, so a
 *    re-subscription briefly holds both the old and the new listener). Each emit delivers to
 *    the listeners that matched when it started, whatever is removed while it is in flight.
 *  - A listener that throws counts as done and does not stop delivery to the others.
 *  - No unbounded synchronous recursion (mqemitter's queue recursed once per queued message:
 *    aedes#193, mqemitter#204). Completion callbacks nested inside other completion callbacks
 *    (a publisher that emits the next message from the callback of the previous one while
 *    everything completes synchronously) go to a later turn after a bounded depth.
 */
import type { AedesPublishPacket } from 'aedes'
import type { SyncDoneBus } from '../aedes/internals.js'
import { noop } from '../noop.js'
import { SubscriptionIndex } from './subscription-index.js'

/** What Aedes subscribes: called with each matching packet; must call `done` exactly once. */
export type BusListener<P> = (packet: P, done: () => void) => void
export type EmitCallback = (err?: Error) => void

export interface LocalBusOptions {
  /** Exact-filter shards in the subscription index (default 256). */
  shards?: number
  /** A listener threw (a defect of the subscriber's code); the bus itself does not log. */
  onListenerError?: (err: unknown) => void
}

/**
 * How many completion callbacks may run nested inside one another on one stack before the
 * next one is moved to a later turn. Small enough to stay far from the stack limit whatever
 * each callback does, large enough that ordinary publishing never pays for a deferral.
 */
const MAX_NESTED_COMPLETIONS = 32


/**
 * Completion callbacks currently running nested on this thread's stack. Module-wide rather
 * than per bus: the stack is shared by every bus in the process.
 */
let nestedCompletions = 0

/** Runs an emit callback, or defers it when too many already run nested on this stack. */
function complete (cb: EmitCallback, err: Error | undefined): void {
  if (nestedCompletions >= MAX_NESTED_COMPLETIONS) {
    setImmediate(cb, err)
    return
  }
  nestedCompletions++
  try {
    cb(err)
  } finally {
    nestedCompletions--
  }
}

/** The `done` bookkeeping of one emit. */
class Delivery {
  /** Listeners that have not called done yet, plus one held by emit until it has called them all. */
  private pending: number
  constructor (listenerCount: number, private readonly callback: EmitCallback) {
    this.pending = listenerCount + 1
  }

  release (): void {
    if (--this.pending === 0) complete(this.callback, undefined)
  }
}

export class LocalBus<P extends { topic: string } = AedesPublishPacket> implements SyncDoneBus {
  /**
   * Read by patches/aedes+1.2.0.patch (SyncDoneBus): listeners may call `done` before they return. Safe
   * here (completion callbacks are depth-bounded, see `complete`); mqemitter recurses once
   * per queued message on synchronous completion, so Aedes defers `done` for other buses.
   */
  readonly toleratesSyncDone = true
  private readonly index: SubscriptionIndex<BusListener<P>>
  /** Bumped by every on/removeListener: a listenersOf answer is reused only while it is unchanged. */
  private version = 0
  /** listenersOf answers by topic at `version` (Aedes asks for two topics; bounded anyway). */
  private readonly listenersOfCache = new Map<string, { version: number, listeners: ReadonlyArray<BusListener<P>> }>()
  private closed = false
  private readonly onListenerError: (err: unknown) => void

  constructor (options: LocalBusOptions = {}) {
    this.index = new SubscriptionIndex<BusListener<P>>(options.shards === undefined ? {} : { shards: options.shards })
    this.onListenerError = options.onListenerError ?? noop
  }

  /** (filter, listener) pairs held; Aedes adds one per client subscription plus a few `$SYS/+/...` of its own. */
  get subscriptionCount (): number {
    return this.index.size
  }

  get isClosed (): boolean {
    return this.closed
  }

  /** Adds `listener` under `filter` now; `cb` runs on a later turn (as mqemitter). */
  on (filter: string, listener: BusListener<P>, cb?: () => void): this {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function')
    this.index.add(filter, listener)
    this.version++
    if (cb !== undefined) setImmediate(cb)
    return this
  }

  /** Removes one registration of `listener` under `filter` now; `cb` runs on a later turn. */
  removeListener (filter: string, listener: BusListener<P>, cb?: () => void): this {
    this.index.remove(filter, listener)
    this.version++
    if (cb !== undefined) setImmediate(cb)
    return this
  }

  /**
   * Calls every listener whose filter matches `packet.topic` (once per matching registration)
   * with `(packet, done)`; `cb` runs once all of them have called done. With no listener,
   * `cb` runs before emit returns.
   */
  emit (packet: P, cb: EmitCallback = noop): this {
    if (this.closed) {
      complete(cb, new Error('bus closed'))
      return this
    }
    let listeners: Array<BusListener<P>>
    try {
      listeners = this.index.match(packet.topic)
    } catch (err) {
      // Only `too many words` (beyond 100 levels); Aedes refuses such topics before the bus.
      complete(cb, err as Error)
      return this
    }
    const delivery = new Delivery(listeners.length, cb)
    for (const listener of listeners) this.deliver(listener, packet, delivery)
    // emit's own hold: cb can only run here or later, never inside a listener's synchronous
    // `done` (where the catch below would swallow what cb throws).
    delivery.release()
    return this
  }

  /** The listeners an emit of `topic` would call now (once per matching registration). */
  listenersOf (topic: string): ReadonlyArray<BusListener<P>> {
    // Memory mode asks for the same two topics at every CONNECT and disconnect
    // (persistence/memory-announcements.ts); between subscription changes the answer is the
    // same (clients that only publish never change it).
    const cached = this.listenersOfCache.get(topic)
    if (cached !== undefined && cached.version === this.version) return cached.listeners
    const listeners = this.index.match(topic)
    if (this.listenersOfCache.size >= 8) this.listenersOfCache.clear()
    this.listenersOfCache.set(topic, { version: this.version, listeners })
    return listeners
  }

  /** Refuses further emits (they call back with Error('bus closed')); `cb` runs on a later turn. */
  close (cb?: () => void): void {
    this.closed = true
    if (cb !== undefined) setImmediate(cb)
  }

  private deliver (listener: BusListener<P>, packet: P, delivery: Delivery): void {
    // One done per (listener, emit): calling it twice, or calling it and then throwing,
    // counts once.
    let called = false
    const done = (): void => {
      if (called) return
      called = true
      delivery.release()
    }
    try {
      listener(packet, done)
    } catch (err) {
      // Counted as done: one failing subscriber must not hold the publisher's completion.
      this.onListenerError(err)
      done()
    }
  }
}
