import type { PublishPacket } from 'aedes'
import type { AsyncRedisPersistence } from 'aedes-persistence-redis'
import type { Cluster, Redis } from 'ioredis'
import msgpack from 'msgpack-lite'
import { covers } from '../topic.js'
import { InvalidCursorError, SessionOnlineError, retainedTombstone, toBuffer, type RetainedView, type StoreInspector } from './inspect.js'
import type { RetainedLedger } from './ledgers.js'

/** aedes-persistence-redis' key layout (asyncPersistence.js), read here and nowhere else. */
const RETAINED_HASH = 'retained'
const RETAINED_KEY_PREFIX = 'retained:'
export const outgoingKey = (clientId: string): string => `outgoing:${encodeURIComponent(clientId)}`
/** The node of an online-session token, `<node id>|<random>` (written by redis.ts). */
export const nodeOfToken = (token: string): string => token.slice(0, token.lastIndexOf('|'))
/** SCAN/HSCAN calls one page may make, so that a sparse match over a huge store stays bounded. */
const MAX_SCANS_PER_PAGE = 50

export interface RedisInspectorDeps {
  conn: Redis | Cluster
  store: AsyncRedisPersistence
  retainedLedger: RetainedLedger
  onlineKey: string
  offlineKey: string
  ownersKey: string
  /** Drops a queue's oldest entries beyond `keep` (releasing their packets); returns how many (TRIM_QUEUE, or trimQueueByCommands on a Cluster). */
  trimQueue: (key: string, keep: number) => Promise<number>
}

/**
 * Drops the oldest entries of a queue beyond `keep`, one command at a time (what TRIM_QUEUE
 * does in one script call). Redis Cluster refuses that script: the packet keys it releases
 * live in other hash slots than the queue ("Script attempted to access a non local key"), so
 * in cluster mode every QoS 1 publish to a full queue failed. Each popped entry releases its
 * packet reference once; a PUBACK arriving for an entry popped here finds it gone and
 * releases nothing (the store's clear decrements only what its LREM removed).
 */
export async function trimQueueByCommands (conn: Redis | Cluster, key: string, keep: number): Promise<number> {
  let excess = await conn.llen(key) - keep
  let dropped = 0
  for (; excess > 0; excess--) {
    const entry = await conn.lpop(key)
    if (entry === null) break
    dropped++
    if (entry.startsWith('packet:')) {
      if (await conn.decr(entry + ':offlineCount') <= 0) {
        await conn.del(entry)
        await conn.del(entry + ':offlineCount')
      }
    } else {
      await conn.del(entry)
    }
  }
  return dropped
}

/** Removes a session's subscriptions, queue and owner (expiry sweep and the admin API). */
export async function removeSessionData (deps: RedisInspectorDeps, clientId: string): Promise<number> {
  const dropped = await deps.trimQueue(outgoingKey(clientId), 0)
  await deps.store.cleanSubscriptions({ id: clientId })
  await deps.conn.hdel(deps.ownersKey, clientId)
  await deps.conn.zrem(deps.offlineKey, clientId)
  return dropped
}

const decodePacket = (value: Buffer): RetainedView => {
  const p = msgpack.decode(value) as PublishPacket
  return { topic: p.topic, qos: p.qos, payload: toBuffer(p.payload) }
}

/**
 * Sessions and retained messages in Redis: cluster-wide answers (every node shares them).
 * With Redis Cluster the store keeps each retained message under its own key
 * (`retained:<topic>`), spread over the masters: a SCAN of one connection sees one master's
 * keys only, so listing scans every master in turn (the cursor names the master).
 */
export function redisInspector (deps: RedisInspectorDeps): StoreInspector {
  const { conn, store } = deps
  const isCluster = (conn as Cluster).isCluster === true

  /**
   * One SCAN step of source `index` (the retained hash, or master `index` of a cluster) from
   * `cursor`: the next cursor and the retained messages of that batch matching `filter`.
   */
  type Batch = { next: string, items: RetainedView[] }
  const scanSingle = async (_index: number, cursor: string, filter: string[], count: number): Promise<Batch> => {
    const [next, entries] = await conn.hscanBuffer(RETAINED_HASH, cursor, 'COUNT', count)
    const items: RetainedView[] = []
    for (let i = 0; i + 1 < entries.length; i += 2) {
      if (covers(filter, entries[i]!.toString().split('/'))) items.push(decodePacket(entries[i + 1]!))
    }
    return { next: next.toString(), items }
  }
  const masters = (): Redis[] => (conn as Cluster).nodes('master').sort((a, b) => `${a.options.host}:${a.options.port}`.localeCompare(`${b.options.host}:${b.options.port}`))
  const scanCluster = async (index: number, cursor: string, filter: string[], count: number): Promise<Batch> => {
    const [next, keys] = await masters()[index]!.scan(cursor, 'MATCH', `${RETAINED_KEY_PREFIX}*`, 'COUNT', count)
    const items: RetainedView[] = []
    for (const key of keys) {
      const topic = decodeURIComponent(key.slice(RETAINED_KEY_PREFIX.length))
      if (!covers(filter, topic.split('/'))) continue
      const value = await conn.getBuffer(key)
      if (value) items.push(decodePacket(value))
    }
    return { next, items }
  }

  /**
   * At most `limit` messages. The cursor is `source:scanCursor:skip`: a page that ends inside a
   * SCAN batch resumes by scanning that batch again and skipping what it already returned.
   * As with SCAN itself, a message added or removed during the listing may be missed or seen twice.
   */
  const retainedPage = async (filterText: string, limit: number, cursor: string | undefined): Promise<{ items: RetainedView[], next: string | undefined }> => {
    const filter = filterText.split('/')
    const sources = isCluster ? masters().length : 1
    const scan = isCluster ? scanCluster : scanSingle
    const [i0, c0, s0] = (cursor ?? '0:0:0').split(':')
    let index = Number(i0)
    let scanCursor = c0 ?? '0'
    let skip = Number(s0 ?? 0)
    if (!Number.isInteger(index) || index < 0 || !/^\d+$/.test(scanCursor) || !Number.isInteger(skip) || skip < 0) throw new InvalidCursorError()
    const items: RetainedView[] = []
    for (let scans = 0; scans < MAX_SCANS_PER_PAGE && index < sources; scans++) {
      const batch = await scan(index, scanCursor, filter, limit)
      const available = batch.items.slice(skip)
      const room = limit - items.length
      if (available.length > room) {
        items.push(...available.slice(0, room))
        return { items, next: `${index}:${scanCursor}:${skip + room}` }
      }
      items.push(...available)
      skip = 0
      scanCursor = batch.next
      if (scanCursor === '0') index++
      if (items.length === limit) break
    }
    return { items, next: index < sources ? `${index}:${scanCursor}:0` : undefined }
  }

  const onlineNode = async (clientId: string): Promise<string | undefined> => {
    const token = await conn.hget(deps.onlineKey, clientId)
    return token === null ? undefined : nodeOfToken(token)
  }

  return {
    session: async (clientId) => {
      const [subs, queued, node, offlineSince] = await Promise.all([
        store.subscriptionsByClient({ id: clientId }), conn.llen(outgoingKey(clientId)), onlineNode(clientId), conn.zscore(deps.offlineKey, clientId)
      ])
      if (subs.length === 0 && queued === 0 && node === undefined && offlineSince === null) return undefined
      return { clientId, online: node !== undefined, node: node ?? null, subscriptions: subs.map((s) => ({ filter: s.topic, qos: s.qos })), queued }
    },
    deleteSession: async (clientId) => {
      const node = await onlineNode(clientId)
      if (node !== undefined) throw new SessionOnlineError(node)
      return removeSessionData(deps, clientId)
    },
    retained: retainedPage,
    deleteRetained: async (topic) => {
      const exists = isCluster
        ? await conn.exists(RETAINED_KEY_PREFIX + encodeURIComponent(topic)) === 1
        : await conn.hexists(RETAINED_HASH, topic) === 1
      if (!exists) return false
      await store.storeRetained(retainedTombstone(topic))
      await deps.retainedLedger.release(topic)
      return true
    }
  }
}
