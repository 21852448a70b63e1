import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { collect, connectClient, endClient, pollUntil, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

/**
 * A second CONNECT with the same client id on the same node (takeover, [MQTT-3.1.4-2]) stores
 * the new connection's will before Aedes closes the old one; the old one's close then deleted
 * "the client's will" from the store, i.e. the new one (patch: aedes.js registerClient marks the
 * old client, lib/client.js close skips that delete). With Redis sessions that stored will is
 * what another node publishes when this node dies: two real gateway processes, one SIGKILLed.
 */
describe('same-node takeover keeps the new connection\'s stored will (Redis mode, two gateway processes)', () => {
  const redis = new TestRedis()
  let a: ClusterNode
  let b: ClusterNode
  let db: Redis

  before(async () => {
    await redis.start()
    a = await startNode(redis, 'tw-a')
    b = await startNode(redis, 'tw-b')
    db = new Redis(redis.port, '127.0.0.1')
  })
  after(async () => {
    await a.crash()
    await b.stop()
    db.disconnect()
    await redis.stop()
  })

  it('the old connection\'s will is published at the takeover; the new one\'s is still stored and published when its node dies', async () => {
    const watch = await connectClient(b.url, { clientId: 'tw-watch' })
    const seen = collect(watch)
    await watch.subscribeAsync('status/#', { qos: 1 })
    const will = (id: string, payload: string): { topic: string, payload: Buffer, qos: 1, retain: boolean } => ({ topic: `status/${id}`, payload: Buffer.from(payload), qos: 1, retain: false })
    const first = await connectClient(a.url, { clientId: 'tw-x', will: will('tw-x', 'first-gone'), reconnectPeriod: 0 })
    const second = await connectClient(a.url, { clientId: 'tw-x', will: will('tw-x', 'second-gone'), reconnectPeriod: 0 })
    // The first connection's will, published by its close (a takeover is not a DISCONNECT).
    await waitFor(() => seen.some((m) => m.payload === 'first-gone'), 'the first connection\'s will at the takeover')
    first.end(true)
    // Node a dies with the second connection: node b publishes what node a stored for tw-x.
    await a.crash()
    second.end(true)
    await waitFor(() => seen.some((m) => m.payload === 'second-gone'), 'the second connection\'s will, published by node b', 20000)
    assert.deepEqual(seen.filter((m) => m.topic === 'status/tw-x').map((m) => m.payload), ['first-gone', 'second-gone'])
    assert.equal(await pollUntil(() => db.llen('will'), (n) => n === 0, 5000), 0, 'no will left behind')
    await endClient(watch)
  })
})
