import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import type { Aedes, Client } from 'aedes'
import aedesPersistenceRedis from 'aedes-persistence-redis'
import type { ChainableCommander, Cluster, Redis } from 'ioredis'
import mqemitterRedis from 'mqemitter-redis'
import { Counter } from 'prom-client'
import { batchWritesPerTurn } from '../aedes/write-batching.js'
import { busStateOf, connectedClients, continuePacketCounter, declareSyncDone, replaceLocalMatcher } from '../aedes/internals.js'
import { SubscriptionIndex } from '../bus/subscription-index.js'
import { RateLimitedWarn } from '../log.js'
import { ClientRegistry } from './client-registry.js'
import type { PersistenceBackend, PersistenceDeps } from './backend.js'
import { localFirstBus } from './redis-bus.js'
import { routeBus } from './route-seam.js'
import { RouteTable } from './route-table.js'
import { createBusConnection, createRedisConnection, isReady } from './redis-connection.js'
import type { RetainedAdmission, RetainedLedger, RetainedLimits, SessionOwners } from './ledgers.js'
import { confirmReplicatedWrites, ReplicaWait } from './replica-wait.js'
import { MARK_OFFLINE, MARK_ONLINE, RETAINED_ADMIT, RETAINED_RELEASE, TRIM_QUEUE } from './redis-scripts.js'
import type { RedisPersistenceConfig } from './schema.js'
import { nodeOfToken, outgoingKey, redisInspector, removeSessionData, trimQueueByCommands, type RedisInspectorDeps } from './redis-inspect.js'

// One hash tag for both: the Lua scripts touch the two keys at once, which Redis Cluster only
// allows within one hash slot (CROSSSLOT otherwise).
const ONLINE_KEY = 'mqgw:{sessions}:online'
const OFFLINE_KEY = 'mqgw:{sessions}:offline'
/** clientId -> owner key (src/persistence/ledgers.ts ownerKey) of each persistent session. */
const OWNERS_KEY = 'mqgw:{sessions}:owners'
/** The retained ledger's keys (RETAINED_ADMIT): one hash tag, the script touches all three. */
const RETAINED_KEYS = ['mqgw:{retained}:topics', 'mqgw:{retained}:totals', 'mqgw:{retained}:owners'] as const
/** `mqgw:node:<node id>`: present while that node runs (refreshed by its janitor, expires after 3 periods). */
const NODE_KEY_PREFIX = 'mqgw:node:'
/** Online entries examined per sweep when looking for sessions of nodes that are gone. */
const ADOPT_SCAN_COUNT = 1000


type ScriptConn = (Redis | Cluster) & {
  mqgwTrimQueue: (key: string, keep: number) => Promise<number>
  mqgwMarkOffline: (online: string, offline: string, clientId: string, token: string, now: number) => Promise<number>
  mqgwMarkOnline: (online: string, offline: string, clientId: string, token: string) => Promise<number>
  mqgwRetainedAdmit: (topics: string, totals: string, owners: string, topic: string, bytes: number, owner: string, maxMessages: number, maxBytes: number, maxPerClient: number) => Promise<RetainedAdmission>
  mqgwRetainedRelease: (topics: string, totals: string, owners: string, topic: string) => Promise<number>
}

/**
 * Redis sessions (aedes-persistence-redis) and the Redis bus (mqemitter-redis), with the
 * defects of those packages handled here (numbers as in the README's list):
 *  1. multi-filter SUBSCRIBE of a persistent session never acknowledged (aedes#569; fixed in the Aedes patch);
 *  2. bus connection errors re-emitted on `mq.state` crash the process without a listener;
 *  3. broker counters restart at 0, so a restarted node with a stable id would overwrite
 *     queued packets (`packet:<id>:<counter>`) of its previous life;
 *  4. persistent sessions never expire and offline queues are unbounded;
 *  6. only `maxSessionDelivery` queued messages are sent per reconnect.
 * (5, PUBACK only after storage, is the core's: see Gateway#authorizePublish.)
 */
export async function createRedisBackend (cfg: RedisPersistenceConfig, nodeId: string, subscriptionShards: number, deps: PersistenceDeps): Promise<PersistenceBackend> {
  const { log, readiness, metrics } = deps
  const registers = [metrics.registry]
  const queueDropped = new Counter({ name: 'mqgw_offline_queue_dropped_total', help: 'Queued messages dropped because a session queue exceeded maxOfflineQueue', registers })
  const sessionsExpired = new Counter({ name: 'mqgw_sessions_expired_total', help: 'Offline persistent sessions removed after sessionExpiryS', registers })

  const conn = createRedisConnection(cfg.redis, 'sessions') as ScriptConn
  conn.defineCommand('mqgwTrimQueue', { numberOfKeys: 1, lua: TRIM_QUEUE })
  conn.defineCommand('mqgwMarkOffline', { numberOfKeys: 2, lua: MARK_OFFLINE })
  conn.defineCommand('mqgwMarkOnline', { numberOfKeys: 2, lua: MARK_ONLINE })
  conn.defineCommand('mqgwRetainedAdmit', { numberOfKeys: 3, lua: RETAINED_ADMIT })
  conn.defineCommand('mqgwRetainedRelease', { numberOfKeys: 3, lua: RETAINED_RELEASE })
  const registry = new ClientRegistry(conn, nodeId, log)
  const pubConn = createBusConnection(cfg.redis, 'bus-pub')
  const subConn = createBusConnection(cfg.redis, 'bus-sub')
  // The route table's control channels, on a connection of their own: a pattern subscription
  // of the bus (`#` is PSUBSCRIBE `*`) would otherwise mix them with the bus's messages.
  const routesSub = createBusConnection(cfg.redis, 'routes-sub')
  const routes = new RouteTable(conn, routesSub, nodeId, log, !cfg.routeTable)

  // One line per outage and connection, not one per retry.
  const lastErrors = new Map<string, string>()
  const onRedisError = (source: string) => (err: Error): void => {
    if (lastErrors.get(source) === err.message) return
    lastErrors.set(source, err.message)
    log.error({ redis: source, err: err.message }, 'Redis connection error; retrying')
  }
  conn.on('error', onRedisError('sessions'))
  routesSub.on('error', onRedisError('routes-sub'))
  conn.on('ready', () => { lastErrors.clear(); log.info('Redis connection ready') })

  // Defect 6: the whole queue flows on reconnect; it is bounded by maxOfflineQueue anyway.
  const isCluster = cfg.redis.cluster !== undefined
  // ioredis writes every command with its own write() (a syscall each: ~17 % of a Redis-mode
  // node's CPU under QoS 1 load, profiled in bench/redis aggregate). The store's commands of
  // one turn leave in one writev instead, as client sockets do (write-batching.ts); replies
  // and order are unchanged. On each connect: a reconnect is a new socket. Cluster clients
  // keep a connection per master; left as they are. Not the bus's publishing connection: its
  // only command is redis-bus.ts' one script call per turn, already the turn's batch, sent
  // from a setImmediate; corking it there deferred the write to the next loop iteration
  // (immediates queued while immediates run wait for the next turn), one more loop pass and
  // poll on every cross-node message's path.
  if (!isCluster) conn.on('connect', () => { const stream = (conn as Redis).stream as unknown; if (stream instanceof Writable) batchWritesPerTurn(stream) })
  /** The queue bound: one script call on one Redis; by separate commands on a Cluster (its scripts cannot reach packet keys in other slots). */
  const trimQueue = isCluster
    ? (key: string, keep: number) => trimQueueByCommands(conn, key, keep)
    : (key: string, keep: number) => conn.mqgwTrimQueue(key, keep)
  // Defect 4 (queue bound) on one Redis: the trim goes in the enqueue's own pipeline, right
  // after each RPUSH (patched store), so a message's queue writes are one round trip.
  const afterEnqueue = (pipeline: ChainableCommander, listKey: string): void => {
    ;(pipeline as unknown as ScriptConn).mqgwTrimQueue(listKey, cfg.maxOfflineQueue)
  }
  const persistence = aedesPersistenceRedis({ conn, cluster: isCluster, maxSessionDelivery: cfg.maxOfflineQueue + 1, ...(isCluster ? {} : { afterEnqueue }) })
  const store = persistence.asyncPersistence

  // Defect 1 (Aedes called addSubscriptions once per filter, each time with the whole list,
  // and the store keys its broadcast wait by the first filter, so the concurrent calls
  // overwrote each other's waiters) is fixed where it starts: the Aedes patch stores the
  // granted filters of a SUBSCRIBE once (lib/handlers/subscribe.js storeGranted).

  // Defect 4 (queue bound): after each enqueue, drop the oldest beyond maxOfflineQueue; on a
  // Cluster (no cross-slot pipeline or script) by separate commands after the enqueue.
  const enqueue = store.outgoingEnqueueCombi.bind(store)
  store.outgoingEnqueueCombi = async (subs, packet) => {
    const replies = await enqueue(subs, packet)
    const trims = isCluster
      ? await Promise.all(subs.map((sub) => trimQueue(outgoingKey(sub.clientId), cfg.maxOfflineQueue)))
      : (replies ?? []).map(Number)
    const dropped = trims.reduce((a, b) => a + b, 0)
    if (dropped > 0) queueDropped.inc(dropped)
    return replies
  }
  // Sentinel/replicas: acknowledged writes on `waitReplicas` replicas before PUBACK/SUBACK (replica-wait.ts).
  if (cfg.redis.waitReplicas > 0) confirmReplicatedWrites(store, new ReplicaWait(conn, cfg.redis.waitReplicas, cfg.redis.waitReplicasTimeoutMs))

  const mq = mqemitterRedis({ pubConn, subConn } as unknown as Parameters<typeof mqemitterRedis>[0])
  // Local matching of bus messages through the sharded subscription index instead of
  // mqemitter's qlobber trie: mqemitter calls only add/remove/match on `_matcher`.
  replaceLocalMatcher(mq, new SubscriptionIndex<object>({ shards: subscriptionShards }))
  // Deliveries complete synchronously (no setImmediate per delivery in the Aedes patch):
  // mqemitter recurses on a synchronous done only through its overflow queue, which a bus
  // without a concurrency limit (as built here) never uses; local dispatch starts from
  // each Redis message event, never from inside a delivery.
  declareSyncDone(mq)
  // This node's subscribers get its messages at once, not from Redis' echo (redis-bus.ts).
  // At most one line a second: whoever writes junk to Redis could otherwise flood the log.
  const junk = new RateLimitedWarn(log, 1000)
  localFirstBus(mq, (channel, err) => {
    junk.warn('undecodable', { channel, err: err.message }, 'undecodable bus message dropped (not MessagePack { id, msg }: something else publishes on this Redis)')
  }, (topic) => routes.wantsRemote(topic))
  // A message no other node subscribes to skips Redis; SUBACK waits for the route (route-table.ts).
  routeBus(mq, routes, log)
  // Defect 2: without this listener an unreachable Redis kills the process (ECONNREFUSED).
  busStateOf(mq).on('error', onRedisError('bus'))

  readiness.register('redis', () => {
    const down = [['sessions', conn], ['bus-pub', pubConn], ['bus-sub', subConn]].filter(([, c]) => !isReady(c as Redis)).map(([name]) => name)
    return down.length === 0 ? { ready: true } : { ready: false, reason: `Redis not connected: ${down.join(', ')}` }
  })

  const token = (): string => `${nodeId}|${randomBytes(6).toString('base64url')}`
  const connectionTokens = new WeakMap<Client, string>()
  let janitor: NodeJS.Timeout | undefined
  let sweeping = false

  const every = Math.min(30000, Math.max(200, Math.floor(cfg.sessionExpiryS * 1000 / 4)))
  const heartbeat = (): Promise<unknown> => conn.set(NODE_KEY_PREFIX + nodeId, String(Date.now()), 'PX', 3 * every)
  let adoptCursor = '0'

  /**
   * Sessions marked online by a node that is gone for good (retired, never restarted with its
   * id) would never expire: mark them offline once that node's heartbeat key has lapsed. A
   * bounded slice of the online hash per sweep; the cursor carries over to the next sweep.
   */
  const adoptSessionsOfGoneNodes = async (isAlive: (node: string) => Promise<boolean>): Promise<void> => {
    const [next, entries] = await conn.hscan(ONLINE_KEY, adoptCursor, 'COUNT', ADOPT_SCAN_COUNT)
    adoptCursor = next
    let adopted = 0
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const clientId = entries[i]!
      const token = entries[i + 1]!
      if (!await isAlive(nodeOfToken(token))) adopted += await conn.mqgwMarkOffline(ONLINE_KEY, OFFLINE_KEY, clientId, token, Date.now())
    }
    if (adopted > 0) log.info({ sessions: adopted }, 'sessions left online by nodes that are gone marked offline')
  }

  /** Whether a node runs (its heartbeat key is there), asked once per node per sweep. */
  const nodeAliveCache = (): (node: string) => Promise<boolean> => {
    const alive = new Map<string, boolean>([[nodeId, true]])
    return async (node) => {
      let known = alive.get(node)
      if (known === undefined) {
        known = await conn.exists(NODE_KEY_PREFIX + node) === 1
        alive.set(node, known)
      }
      return known
    }
  }

  /** Defect 4 (expiry): remove sessions offline for longer than sessionExpiryS; every node may run it, ZREM decides who does. */
  const sweep = async (): Promise<void> => {
    if (sweeping || !isReady(conn)) return
    sweeping = true
    try {
      await heartbeat()
      const isAlive = nodeAliveCache()
      await adoptSessionsOfGoneNodes(isAlive)
      await registry.sweepGoneNodes(isAlive)
      await routes.sweepGone(isAlive)
      await routes.refresh()
      const cutoff = Date.now() - cfg.sessionExpiryS * 1000
      const expired = await conn.zrangebyscore(OFFLINE_KEY, '-inf', cutoff, 'LIMIT', 0, 500)
      for (const clientId of expired) {
        if (await conn.zrem(OFFLINE_KEY, clientId) !== 1) continue
        if (await conn.hexists(ONLINE_KEY, clientId)) continue
        const dropped = await removeSessionData(inspectDeps, clientId)
        await registry.forgetExpired(clientId, ONLINE_KEY)
        sessionsExpired.inc()
        log.info({ clientId, droppedMessages: dropped }, 'persistent session expired')
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'session expiry sweep failed; will retry')
    } finally {
      sweeping = false
    }
  }

  const reclaimOwnSessions = async (): Promise<void> => {
    const prefix = `${nodeId}|`
    let cursor = '0'
    let reclaimed = 0
    do {
      const [next, entries] = await conn.hscan(ONLINE_KEY, cursor, 'COUNT', 1000)
      cursor = next
      for (let i = 0; i + 1 < entries.length; i += 2) {
        if (entries[i + 1]!.startsWith(prefix)) reclaimed += await conn.mqgwMarkOffline(ONLINE_KEY, OFFLINE_KEY, entries[i]!, entries[i + 1]!, Date.now())
      }
    } while (cursor !== '0')
    if (reclaimed > 0) log.info({ sessions: reclaimed }, 'sessions left online by this node\'s previous run marked offline')
  }

  const retainedLedger: RetainedLedger = {
    admit: (topic: string, bytes: number, owner: string, limits: RetainedLimits) =>
      conn.mqgwRetainedAdmit(...RETAINED_KEYS, topic, bytes, owner, limits.maxMessages, limits.maxBytes, limits.maxPerClient),
    release: async (topic: string) => { await conn.mqgwRetainedRelease(...RETAINED_KEYS, topic) },
    count: async () => Number(await conn.hget(RETAINED_KEYS[1], 'count') ?? 0)
  }
  const inspectDeps: RedisInspectorDeps = {
    conn, store, retainedLedger, onlineKey: ONLINE_KEY, offlineKey: OFFLINE_KEY, ownersKey: OWNERS_KEY,
    trimQueue
  }
  const sessionOwners: SessionOwners = {
    get: async (clientId) => (await conn.hget(OWNERS_KEY, clientId)) ?? undefined,
    set: (clientId, owner) => conn.hset(OWNERS_KEY, clientId, owner),
    delete: (clientId) => conn.hdel(OWNERS_KEY, clientId)
  }

  return {
    persistence,
    mq,
    retainedLedger,
    sessionOwners,
    inspector: () => redisInspector(inspectDeps),
    available: () => isReady(conn) && isReady(pubConn) && isReady(subConn),
    // The store loads every persistent subscription at setup: wait for Redis rather than
    // fail (ioredis keeps reconnecting); /healthz and /readyz answer meanwhile.
    ready: async () => {
      const waitFor = (c: Redis | Cluster, name: string): Promise<void> => isReady(c)
        ? Promise.resolve()
        : new Promise((resolve) => {
          log.info({ redis: name }, 'waiting for Redis')
          c.once('ready', () => resolve())
        })
      await Promise.all([waitFor(conn, 'sessions'), waitFor(pubConn, 'bus-pub'), waitFor(subConn, 'bus-sub'), waitFor(routesSub, 'routes-sub')])
      // Alive before joining the route table: another node's sweep drops members without a heartbeat.
      await heartbeat()
      await routes.start()
    },
    start: async (broker: Aedes) => {
      // Defect 3: continue counting from a value this node id cannot have used before.
      continuePacketCounter(broker, Date.now() * 1000)
      // A CONNECT tells only the node that held the client id, not every node (client-registry.ts).
      registry.install(broker)
      broker.on('client', (client) => {
        if (client.clean) return
        const t = token()
        connectionTokens.set(client, t)
        conn.multi().hset(ONLINE_KEY, client.id, t).zrem(OFFLINE_KEY, client.id).exec().catch((err: Error) => {
          log.warn({ clientId: client.id, err: err.message }, 'could not record session as online')
        })
      })
      broker.on('clientDisconnect', (client) => {
        const t = connectionTokens.get(client)
        if (client.clean || t === undefined) return
        conn.mqgwMarkOffline(ONLINE_KEY, OFFLINE_KEY, client.id, t, Date.now()).catch((err: Error) => {
          log.warn({ clientId: client.id, err: err.message }, 'could not record session as offline')
        })
      })
      // Sessions this node had open when it last died (SIGKILL, crash) are still marked online
      // with its tokens: mark them offline now, so that they expire if their clients never
      // return. A client that reconnected elsewhere has a newer token and is left alone.
      void reclaimOwnSessions().catch((err: Error) => log.warn({ err: err.message }, 'could not reclaim sessions of this node\'s previous run'))
      // Alive from now on for the other nodes' adoption sweep (see adoptSessionsOfGoneNodes).
      void heartbeat().catch(() => {})
      // After a Redis outage longer than the heartbeat, other nodes may have marked this node's
      // sessions offline: put back the ones still connected here (unless another node took them).
      conn.on('ready', () => {
        const clients = connectedClients(broker)
        void heartbeat().catch(() => {})
        for (const id in clients) {
          const client = clients[id]!
          const t = connectionTokens.get(client)
          if (t !== undefined) conn.mqgwMarkOnline(ONLINE_KEY, OFFLINE_KEY, client.id, t).catch(() => {})
        }
      })
      janitor = setInterval(() => { void sweep() }, every)
      janitor.unref()
    },
    close: async () => {
      clearInterval(janitor)
      await routes.close()
      await new Promise<void>((resolve) => { (mq as unknown as { close: (cb: () => void) => void }).close(() => resolve()) })
      // Not persistence.destroy(): it unsubscribes through the bus, which is closed by now,
      // and never settles. The connections are ours; closing them is all it would do.
      for (const c of [conn, pubConn, subConn, routesSub]) c.disconnect()
    }
  }
}
