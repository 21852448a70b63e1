import type { Aedes, PublishPacket } from 'aedes'
import { connectedClients, sessionStore } from '../aedes/internals.js'
import type { RetainedLedger, SessionOwners } from './ledgers.js'

/** A persistent session as the store holds it. */
export interface SessionView {
  clientId: string
  online: boolean
  node: string | null
  subscriptions: Array<{ filter: string, qos: number }>
  queued: number
}

export interface RetainedView { topic: string, qos: number, payload: Buffer }

/**
 * What the admin API reads and removes in the session store, the same way in memory mode
 * and in Redis (there cluster-wide: every node shares the store).
 */
export interface StoreInspector {
  /** The persistent session of `clientId`, or undefined when the store has none. */
  session: (clientId: string) => Promise<SessionView | undefined>
  /** Removes an offline session (subscriptions, queue, owner); returns the messages dropped. */
  deleteSession: (clientId: string) => Promise<number>
  /** At most `limit` retained messages matching `filter` from `cursor` on, and the next cursor. */
  retained: (filter: string, limit: number, cursor: string | undefined) => Promise<{ items: RetainedView[], next: string | undefined }>
  /** Removes the retained message of `topic`; false when there was none. */
  deleteRetained: (topic: string) => Promise<boolean>
}

export class SessionOnlineError extends Error {
  constructor (readonly node: string | null) {
    super(`the session is connected${node ? ` on node ${node}` : ''}; disconnect the client first`)
  }
}

/** A `cursor` the listing did not hand out. */
export class InvalidCursorError extends Error {
  constructor () { super('not a cursor this listing returned') }
}

export const toBuffer = (payload: PublishPacket['payload'] | undefined | null): Buffer =>
  payload == null ? Buffer.alloc(0) : Buffer.isBuffer(payload) ? payload : Buffer.from(payload as string)

async function count (stream: AsyncIterable<unknown>): Promise<number> {
  let n = 0
  for await (const _ of stream) n++
  return n
}

/** An empty retained PUBLISH: how a store removes a retained message. */
export const retainedTombstone = (topic: string): PublishPacket => ({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false })

/** Aedes' in-memory store (memory mode: one process). */
export function memoryInspector (broker: Aedes, ledger: RetainedLedger, owners: SessionOwners): StoreInspector {
  const store = sessionStore(broker)
  const onlineHere = (clientId: string): boolean => {
    const client = connectedClients(broker)[clientId]
    return client !== undefined && !client.clean
  }
  return {
    session: async (clientId) => {
      const subs = await store.subscriptionsByClient({ id: clientId })
      const queued = await count(store.outgoingStream({ id: clientId }))
      const online = onlineHere(clientId)
      if (subs.length === 0 && queued === 0 && !online) return undefined
      return { clientId, online, node: online ? broker.id : null, subscriptions: subs.map((s) => ({ filter: s.topic, qos: s.qos })), queued }
    },
    deleteSession: async (clientId) => {
      if (onlineHere(clientId)) throw new SessionOnlineError(broker.id)
      // The memory store has no "drop queue" call: each queued packet gets a message id
      // (outgoingUpdate, matched by broker id and counter) and is then cleared by it.
      const queued: Array<{ brokerId: string, brokerCounter: number }> = []
      for await (const p of store.outgoingStream({ id: clientId })) queued.push(p as { brokerId: string, brokerCounter: number })
      let id = 0
      for (const p of queued) {
        const messageId = -(++id)
        await store.outgoingUpdate({ id: clientId }, { ...p, messageId })
        await store.outgoingClearMessageId({ id: clientId }, { messageId })
      }
      await store.cleanSubscriptions({ id: clientId })
      await owners.delete(clientId)
      return queued.length
    },
    retained: async (filter, limit, cursor) => {
      const offset = cursor === undefined ? 0 : Number(cursor)
      if (!Number.isInteger(offset) || offset < 0) throw new InvalidCursorError()
      const items: RetainedView[] = []
      let i = 0
      for await (const p of store.createRetainedStream(filter)) {
        const packet = p as PublishPacket
        if (i++ < offset) continue
        if (items.length === limit) return { items, next: String(offset + limit) }
        items.push({ topic: packet.topic, qos: packet.qos, payload: toBuffer(packet.payload) })
      }
      return { items, next: undefined }
    },
    deleteRetained: async (topic) => {
      const found = await count(store.createRetainedStream(topic))
      if (found === 0) return false
      await store.storeRetained(retainedTombstone(topic))
      await ledger.release(topic)
      return true
    }
  }
}
