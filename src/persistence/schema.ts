import { z } from 'zod'

const hostPort = z.strictObject({ host: z.string().min(1), port: z.number().int().min(1).max(65535) })

const redisConnection = z.strictObject({
  url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
  /** Sentinel: the sentinels and the master group name. */
  sentinels: z.array(hostPort).min(1).optional(),
  name: z.string().min(1).optional(),
  /** Redis Cluster: its seed nodes (the store then keeps retained messages per key). */
  cluster: z.array(hostPort).min(1).optional(),
  connectTimeoutMs: z.number().int().min(100).default(5000),
  /** How often a command is retried across reconnects before it fails (and a QoS 1 PUBLISH is refused). */
  maxRetriesPerRequest: z.number().int().min(0).default(2),
  /** Replicas that must confirm (Redis WAIT) a message's queue writes before its PUBACK, a subscription before its SUBACK; 0: no wait (asynchronous replication). */
  waitReplicas: z.number().int().min(0).default(0),
  waitReplicasTimeoutMs: z.number().int().min(1).default(1000),
  /** Any other ioredis option (password, username, db, tls...), passed through. */
  options: z.record(z.string(), z.unknown()).default({})
}).refine((v) => !(v.sentinels && !v.name), { message: 'sentinels need "name" (the master group)', path: ['name'] })
  .refine((v) => !(v.cluster && v.waitReplicas > 0), { message: 'waitReplicas is for a primary with replicas (url or sentinels), not cluster', path: ['waitReplicas'] })

export const memoryPersistenceSchema = z.strictObject({
  type: z.literal('memory')
})

export const redisPersistenceSchema = z.strictObject({
  type: z.literal('redis'),
  redis: redisConnection.prefault({}),
  /** An offline persistent session and its queue are removed after this long (MQTT 3.1.1 sessions never expire by themselves; EMQX's default is 2 h). */
  sessionExpiryS: z.number().int().min(1).default(7200),
  /** Queued messages kept per persistent session; beyond it the oldest are dropped (counted). */
  maxOfflineQueue: z.number().int().min(1).default(1000),
  /**
   * Cluster route table: a message no other node subscribes to is not PUBLISHed to Redis.
   * false: this node announces that it wants everything and publishes everything (for a
   * cluster that also has nodes which do not know the table; see the README).
   */
  routeTable: z.boolean().default(true)
})
export type RedisPersistenceConfig = z.infer<typeof redisPersistenceSchema>

/** `persistence.type` chooses the session store and bus; without `type` it is memory. */
export const persistenceSchema = z.preprocess(
  (v) => (typeof v === 'object' && v !== null && !('type' in v)) ? { ...v, type: 'memory' } : v,
  z.discriminatedUnion('type', [memoryPersistenceSchema, redisPersistenceSchema])
)
