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
    return new Redis({ ...options, sentinels: cfg.sentinels, name: cfg.name })
  }
  return new Redis(cfg.url, options)
}

export function isReady (conn: Redis | Cluster): boolean {
  return conn.status === 'ready'
}
