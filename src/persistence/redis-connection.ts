import { Redis, Cluster, type RedisOptions } from 'ioredis'
import type { RedisPersistenceConfig } from './schema.js'

/**
 * One place that turns the `persistence.redis` section into ioredis connections, so
 * the session store and both bus connections reach the same Redis the same way:
 * a URL, Sentinel (`sentinels` + `name`), or Cluster (`cluster: [nodes]`).
 */
export function createRedisConnection (cfg: RedisPersistenceConfig['redis'], purpose: string): Redis | Cluster {
  const options: RedisOptions = {
    connectionName: `mqtt-gateway:${purpose}`,
    // Fail commands fast while Redis is away instead of queueing them for minutes:
    // a QoS 1 PUBLISH that cannot be stored must be refused, not held.
    maxRetriesPerRequest: cfg.maxRetriesPerRequest,
    connectTimeout: cfg.connectTimeoutMs,
    // Keep reconnecting forever, backing off to 2 s: the gateway recovers by itself.
    retryStrategy: (times) => Math.min(100 * times, 2000),
    ...(cfg.options as RedisOptions)
  }
  if (cfg.cluster) {
    return new Cluster(cfg.cluster, { redisOptions: options, clusterRetryStrategy: (times) => Math.min(100 * times, 2000) })
  }
  if (cfg.sentinels) {
    // failoverDetector: leave the old primary as soon as the sentinels announce +switch-master.
    // Without it the connections stay on a primary that a manual failover (or a partition) left
    // running, until Sentinel demotes it seconds later and drops the writes it took meanwhile.
    return new Redis({ failoverDetector: true, ...options, sentinels: cfg.sentinels, name: cfg.name })
  }
  return new Redis(cfg.url, options)
}

/**
 * A connection for the message bus (mqemitter-redis). With Redis Cluster it is a plain
 * connection to the first configured node, not a Cluster client: ioredis sends each keyless
 * PUBLISH to any node, so one gateway's messages on different topics entered the cluster at
 * different nodes and reached the other gateways out of order, and Aedes drops a message whose
 * per-broker counter is below one already seen (measured: about 1 in 4 of two back-to-back
 * QoS 1 messages lost). Cluster pub/sub reaches subscribers on every node, so one node is
 * enough, and all publishes through it keep each gateway's order. The price: the bus follows
 * that node; while it is down the bus is down (/readyz says so) until it returns.
 */
export function createBusConnection (cfg: RedisPersistenceConfig['redis'], purpose: string): Redis | Cluster {
  if (cfg.cluster) {
    const { cluster, ...single } = cfg
    const first = cluster[0]!
    return createRedisConnection({ ...single, url: `${(cfg.options as { tls?: unknown }).tls ? 'rediss' : 'redis'}://${first.host}:${first.port}` }, purpose)
  }
  return createRedisConnection(cfg, purpose)
}

export function isReady (conn: Redis | Cluster): boolean {
  return conn.status === 'ready'
}
