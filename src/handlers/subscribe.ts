import type { Client } from 'aedes'
import { GatewayError } from '../errors.js'
import type { SubscribeVerdict } from '../hooks/types.js'
import { exceedsTopicLimits, isValidTopicFilter } from '../topic.js'
import type { Connection } from './connections.js'
import type { HandlerContext } from './context.js'

interface Filter { topic: string, qos: 0 | 1 | 2 }
type SubscribeDone = (error: Error | null, subscription?: Filter | null) => void

/** What the patched Aedes passes to authorizeSubscribe as the SUBSCRIBE packet. */
export interface SubscribePacketLike { cmd: 'subscribe', subscriptions: ReadonlyArray<{ topic: string }> }

/**
 * SUBSCRIBE, one filter at a time (Aedes calls authorizeSubscribe per filter, with the
 * packet as 4th argument in the patched version): the filter checks, the per-packet and
 * per-client limits, the authorizeSubscribe chain, and the record of what was granted.
 */
export class SubscribeHandler {
  readonly #ctx: HandlerContext
  /** Filter positions of the SUBSCRIBE packets being authorized (per-packet limit). */
  readonly #filterIndex = new WeakMap<object, Map<object, number>>()

  constructor (ctx: HandlerContext) {
    this.#ctx = ctx
  }

  authorizeSubscribe (client: Client, sub: Filter, cb: SubscribeDone, packet?: SubscribePacketLike): void {
    const { config, connections, hooks, metrics, log } = this.#ctx
    const limits = config.limits
    if (!isValidTopicFilter(sub.topic)) {
      // A malformed filter is a protocol violation: close, as Aedes does for the cases it detects.
      cb(new GatewayError('invalid_filter', `invalid topic filter "${sub.topic.slice(0, 128)}"`))
      return
    }
    if (exceedsTopicLimits(sub.topic, limits)) {
      log.info({ clientId: client.id, topic: sub.topic.slice(0, 128) }, 'subscription refused: filter exceeds topic limits')
      cb(null, null)
      return
    }
    const conn = connections.get(client)
    if (!conn) {
      cb(null, null)
      return
    }
    const max = limits.maxFiltersPerSubscribe
    if (packet && max > 0 && packet.subscriptions.length > max) {
      const position = this.#filterPosition(packet, sub)
      if (position >= max) {
        metrics.subscriptionsRefused.inc({ reason: 'max_filters_per_subscribe' })
        // One line per packet, not one per refused filter.
        if (position === max) log.info({ clientId: client.id, filters: packet.subscriptions.length, maxFiltersPerSubscribe: max }, 'SUBSCRIBE carries more filters than maxFiltersPerSubscribe; those beyond refused')
        cb(null, null)
        return
      }
    }
    if (hooks.size('authorizeSubscribe') === 0) {
      this.#grant(client, conn, sub, cb)
      return
    }
    hooks.decide<'authorizeSubscribe', SubscribeVerdict>('authorizeSubscribe', { client, info: conn, subscription: sub },
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}` }),
      (verdict) => {
        if (verdict.result === 'deny') cb(null, null)
        else this.#grant(client, conn, sub, cb)
      })
  }

  /** UNSUBSCRIBE: the filters are no longer granted. */
  unsubscribed (client: Client, filters: readonly string[]): void {
    const granted = this.#ctx.connections.get(client)?.granted
    if (granted) for (const filter of filters) granted.delete(filter)
  }

  /** Records a granted filter, unless the client already holds maxSubscriptionsPerClient others. */
  #grant (client: Client, conn: Connection, sub: Filter, cb: SubscribeDone): void {
    const granted = conn.granted ??= new Map()
    const max = this.#ctx.config.limits.maxSubscriptionsPerClient
    if (max > 0 && granted.size >= max && !granted.has(sub.topic)) {
      this.#ctx.metrics.subscriptionsRefused.inc({ reason: 'max_subscriptions_per_client' })
      this.#ctx.log.info({ clientId: client.id, topic: sub.topic.slice(0, 128), maxSubscriptionsPerClient: max }, 'subscription refused: client holds maxSubscriptionsPerClient subscriptions')
      cb(null, null)
      return
    }
    granted.set(sub.topic, sub.qos)
    cb(null, sub)
  }

  /** The index of `sub` in its SUBSCRIBE packet (one index per packet, built once). */
  #filterPosition (packet: SubscribePacketLike, sub: object): number {
    let positions = this.#filterIndex.get(packet)
    if (!positions) {
      positions = new Map()
      for (let i = 0; i < packet.subscriptions.length; i++) positions.set(packet.subscriptions[i]!, i)
      this.#filterIndex.set(packet, positions)
    }
    return positions.get(sub) ?? -1
  }
}
