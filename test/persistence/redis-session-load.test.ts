import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, it } from 'node:test'
import { startNode } from '../helpers/cluster.js'
import { collect, connectClient, endClient, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

const require = createRequire(import.meta.url)
// The store's own encoder: the sessions written below are exactly what the store writes.
const msgpack = createRequire(require.resolve('aedes-persistence-redis'))('msgpack-lite') as { encode: (v: unknown) => Buffer }

/**
 * A starting node loads every persistent subscription from Redis (the store keeps them all
 * in memory to find offline sessions to queue for). The store read them one round trip per
 * session, one after another (seconds with 100k sessions); the patch reads them in pages of
 * 1,000, a few pages at once. Here 2,345 sessions (two full pages and a partial one, more
 * pages than are in flight at once) must all be found after the start.
 */
describe('a node starting with many persistent sessions in Redis', () => {
  const redis = new TestRedis()
  const sessions = 2345
  before(async () => { await redis.start() })
  after(async () => { await redis.stop() })

  it('loads every session\'s subscriptions, in pages: each offline session gets its queued message', async () => {
    // Sessions made by real clients on a first node: a wildcard filter and a client with two filters.
    const first = await startNode(redis, 'gw-load-a')
    const wildcard = await connectClient(first.url, { clientId: 'watcher', clean: false })
    await wildcard.subscribeAsync('load/+/cmd', { qos: 1 })
    const twoFilters = await connectClient(first.url, { clientId: 'two-filters', clean: false })
    await twoFilters.subscribeAsync({ 'load/device-0/cmd': { qos: 1 }, 'load/last': { qos: 1 } })
    await Promise.all([endClient(wildcard), endClient(twoFilters)])
    await first.stop()

    // Many more written in the store's format, as a long-running cluster would have left them.
    const db = redis.client()
    const pipeline = db.pipeline()
    for (let i = 0; i < sessions; i++) {
      const id = `device-${i}`
      pipeline.sadd('clients', id)
      pipeline.hset(`client:${encodeURIComponent(id)}`, `load/${id}/cmd`, msgpack.encode({ topic: `load/${id}/cmd`, qos: 1 }))
    }
    await pipeline.exec()

    const node = await startNode(redis, 'gw-load-b', { persistence: { maxOfflineQueue: sessions + 10 } })
    try {
      const pub = await connectClient(node.url)
      for (let i = 0; i < sessions; i++) await pub.publishAsync(`load/device-${i}/cmd`, `m${i}`, { qos: 1 })
      await pub.publishAsync('load/last', 'last', { qos: 1 })
      await endClient(pub)

      // Every synthetic session holds exactly its own message (PUBACK came after the enqueue).
      const lengths = db.pipeline()
      for (let i = 0; i < sessions; i++) lengths.llen(`outgoing:device-${i}`)
      const replies = await lengths.exec()
      const missing = (replies ?? []).map(([, n], i) => [i, n] as const).filter(([, n]) => n !== 1).map(([i]) => i)
      assert.deepEqual(missing, [], 'sessions without their queued message')
      assert.equal(await db.llen('outgoing:watcher'), sessions, 'the wildcard session has every message')

      // The client-made session with two filters gets both of its messages, in order, on resume.
      const back = await connectClient(node.url, { clientId: 'two-filters', clean: false })
      const received = collect(back)
      await waitFor(() => received.some((m) => m.payload === 'last'), 'the last queued message')
      assert.deepEqual(received.map((m) => m.payload), ['m0', 'last'])
      await endClient(back)
    } finally {
      db.disconnect()
      await node.stop()
    }
  })
})
