import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import aedesPersistenceRedis from 'aedes-persistence-redis'
import { Redis } from 'ioredis'
import { startTestGateway } from '../helpers/gateway.js'
import { collect, connectClient, endClient, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

/**
 * A store error around wills must reach the caller, never become an unhandled rejection:
 * the CLI ends the process on one (app/serve.ts), so a Redis error while any client
 * connects (every CONNECT deletes the client's previous will) stopped the node. Two places
 * made one: Aedes' storeWill chained `.finally()` on delWill (a promise nobody handled), and
 * aedes-persistence-redis sent the will list's LREM/RPUSH without awaiting them.
 */
function watchUnhandled (): { seen: unknown[], stop: () => void } {
  const seen: unknown[] = []
  const onUnhandled = (reason: unknown): void => { seen.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  return { seen, stop: () => { process.off('unhandledRejection', onUnhandled) } }
}

interface WillStore { delWill: (client: { id: string, brokerId: string }) => Promise<unknown> }

/** Unhandled rejections are reported after the microtask queue drains: give them a few turns. */
const turns = async (n: number): Promise<void> => { for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve)) }

describe('will store errors are handled, not unhandled rejections', () => {
  const redis = new TestRedis()
  before(async () => { await redis.start() })
  after(async () => { await redis.stop() })

  it('aedes-persistence-redis: delWill on a closed connection rejects to the caller only', async () => {
    const conn = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 0 })
    conn.on('error', () => {})
    const store = aedesPersistenceRedis({ conn }).asyncPersistence as unknown as WillStore
    const client = { id: 'will-owner', brokerId: 'node-x' }
    const watch = watchUnhandled()
    try {
      // The path is open: with the connection up the delete works (no will stored: null).
      assert.equal(await store.delWill(client), null)
      conn.disconnect()
      await assert.rejects(store.delWill(client), /Connection is closed/)
      await turns(5)
      assert.deepEqual(watch.seen.map(String), [], 'no unhandled rejection')
    } finally {
      watch.stop()
      conn.disconnect()
    }
  })

  it('Aedes: a CONNECT whose delWill fails is still answered, and nothing is left unhandled', async () => {
    const gw = await startTestGateway(`persistence: { type: redis, redis: ${redis.configYaml} }\nnode: { id: will-errors }`)
    const persistence = (gw.gateway.broker as unknown as { persistence: unknown }).persistence as { delWill: (client: unknown) => Promise<unknown> }
    const realDelWill = persistence.delWill.bind(persistence)
    let failed = 0
    persistence.delWill = async () => { failed++; throw new Error('Connection is closed.') }
    const watch = watchUnhandled()
    try {
      // Every CONNECT deletes the previous will: each of these fails in the store.
      const sub = await connectClient(gw.mqttUrl, { clientId: 'will-errors-sub' })
      const received = collect(sub)
      await sub.subscribeAsync('will-errors/#', { qos: 1 })
      const pub = await connectClient(gw.mqttUrl, { clientId: 'will-errors-pub', will: { topic: 'will-errors/will', payload: Buffer.from('w'), qos: 1, retain: false } })
      assert.ok(failed >= 2, `delWill was called for each CONNECT (${failed})`)
      // The node still serves: a message goes through after the failed deletes.
      await pub.publishAsync('will-errors/marker', 'm', { qos: 1 })
      await waitFor(() => received.some((m) => m.topic === 'will-errors/marker'), 'marker after the failed delWill')
      await turns(5)
      assert.deepEqual(watch.seen.map(String), [], 'no unhandled rejection')
      persistence.delWill = realDelWill
      await Promise.all([endClient(sub), endClient(pub)])
    } finally {
      watch.stop()
      persistence.delWill = realDelWill
      await gw.stop()
    }
  })
})
