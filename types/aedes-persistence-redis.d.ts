// aedes-persistence-redis 12 ships no types. What the gateway uses of it.
declare module 'aedes-persistence-redis' {
  import type { ChainableCommander, Redis, Cluster, RedisOptions } from 'ioredis'

  export interface AedesPersistenceRedisOptions extends RedisOptions {
    /** A ready-made connection (Sentinel, TLS, Cluster); with a Cluster also pass `cluster: true`. */
    conn?: Redis | Cluster
    /** `true` with a Cluster `conn`, or the list of Cluster nodes (switches to per-key retained storage). */
    cluster?: boolean | Array<{ host: string, port: number }>
    /** Queued messages streamed to a reconnecting client (default 1000). */
    maxSessionDelivery?: number
    packetTTL?: (packet: unknown) => number
    /**
     * Patch (one Redis only): queues exactly one command after each RPUSH of an enqueue, in
     * the same pipeline; outgoingEnqueueCombi then resolves to those commands' replies.
     */
    afterEnqueue?: (pipeline: ChainableCommander, listKey: string) => void
  }

  /** The promise-based instance behind the callback wrapper (AsyncRedisPersistence). */
  export interface AsyncRedisPersistence {
    addSubscriptions: (client: { id: string }, subs: unknown[]) => Promise<unknown>
    cleanSubscriptions: (client: { id: string }) => Promise<void>
    subscriptionsByClient: (client: { id: string }) => Promise<Array<{ topic: string, qos: number }>>
    storeRetained: (packet: import('aedes').PublishPacket) => Promise<void>
    /** With `afterEnqueue` on one Redis: the replies of its commands, one per subscriber. */
    outgoingEnqueueCombi: (subs: Array<{ clientId: string }>, packet: unknown) => Promise<unknown[] | undefined>
    setup: (broker: unknown) => Promise<void>
    destroy: () => Promise<void>
  }

  /** aedes-persistence's CallBackPersistence around an AsyncRedisPersistence; what Aedes is given. */
  export interface CallBackRedisPersistence {
    asyncPersistence: AsyncRedisPersistence
    setup: (broker: unknown) => Promise<void>
    destroy: (cb?: () => void) => unknown
  }

  export default function aedesPersistenceRedis (opts?: AedesPersistenceRedisOptions): CallBackRedisPersistence
}
