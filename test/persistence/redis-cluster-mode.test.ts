import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { collect, connectClient, endClient, pollUntil, waitFor } from '../helpers/mqtt.js'
import { TestRedisCluster } from '../helpers/redis.js'

/**
 * `persistence.redis.cluster`: two gateway processes against a real three-master Redis Cluster
 * (ioredis Cluster for the session store, the bus and the gateway's own Lua scripts).
 * The bus uses a plain connection to one cluster node (see createBusConnection and the tests' comments).
 */
describe('Redis Cluster mode (real three-master Redis Cluster, two gateway processes)', () => {
  const redis = new TestRedisCluster(3)
  let a: ClusterNode
  let b: ClusterNode

  before(async () => {
    await redis.start()
    a = await startNode(redis, 'gw-ca', { yaml: 'flow: {}' })
    b = await startNode(redis, 'gw-cb', { yaml: 'flow: {}' })
  })
  after(async () => {
    await Promise.all([a?.crash(), b?.crash()])
    await redis.stop()
  })

  // Failed in 2 of 6 runs while the bus used an ioredis Cluster client: keyless PUBLISHes entered
  // the cluster at different nodes, arrived out of order, and Aedes' per-broker duplicate filter
  // dropped the earlier one (see createBusConnection).
  it('QoS 1 and retained messages cross nodes', async () => {
    const sub = await connectClient(a.url, { clientId: 'cl-sub', clean: false })
    const received = collect(sub)
    await sub.subscribeAsync('cl/#', { qos: 1 })
    const pub = await connectClient(b.url, { clientId: 'cl-pub' })
    // Back-to-back pairs on different topics (different cluster slots): each pair lost its first
    // message about one time in four with the old bus, so eight pairs catch it almost surely.
    const expected: string[] = []
    for (let k = 0; k < 8; k++) {
      await pub.publishAsync(`cl/${k}/live`, `across-${k}`, { qos: 1 })
      await pub.publishAsync(`cl/${k}/retained`, `kept-${k}`, { qos: 1, retain: true })
      expected.push(`across-${k}`, `kept-${k}`)
    }
    // Marker: the same publisher and QoS, after the pairs; B's bus connection hands Redis one
    // node's messages in order, so a late or second copy of a pair would arrive before it.
    await pub.publishAsync('cl/marker', 'marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'every message across nodes').catch(() => {})
    assert.deepEqual(received.map((m) => m.payload).filter((p) => p !== 'marker').sort(), expected.sort(), `received: ${received.map((m) => m.payload).join(' ')}`)

    await Promise.all([endClient(sub), endClient(pub)])
  })

  /** A persistent subscriber on A goes away, 5 QoS 1 messages are published on B, it comes back on B. */
  async function queueAcrossNodes (clientId: string): Promise<string[]> {
    const sub = await connectClient(a.url, { clientId, clean: false })
    await sub.subscribeAsync(`${clientId}/t`, { qos: 1 })
    await endClient(sub)
    const pub = await connectClient(b.url)
    for (let i = 0; i < 5; i++) await pub.publishAsync(`${clientId}/t`, `q${i}`, { qos: 1 })
    const back = await connectClient(b.url, { clientId, clean: false })
    const queued = collect(back)
    await waitFor(() => new Set(queued.map((m) => m.payload)).size >= 5, 'the queued messages on the other node')
    // Marker: the same publisher, QoS and topic, once the client is back: a late bus copy of
    // a queued message left B's bus connection before it, so it would arrive first.
    await pub.publishAsync(`${clientId}/t`, 'marker', { qos: 1 })
    await waitFor(() => queued.some((m) => m.payload === 'marker'), 'the marker')
    await Promise.all([endClient(back), endClient(pub)])
    return queued.map((m) => m.payload).filter((p) => p !== 'marker')
  }

  it('a persistent session queues while offline and gets every queued message on the other node', async () => {
    const received = await queueAcrossNodes('cl-queue')
    assert.deepEqual([...new Set(received)].sort(), ['q0', 'q1', 'q2', 'q3', 'q4'], `received: ${received.join(' ')}`)
  })

  // Failed while the bus used an ioredis Cluster client (seen: q2 q0 q1 q2 q3 q4): a bus copy
  // of a queued message arrived late, after the client was back, ahead of the queue and twice
  // (Aedes' duplicate filter does not see stored-queue deliveries). With the bus on one node
  // (createBusConnection) copies arrive as fast as with a single Redis.
  it('... in order and once each', async () => {
    const received = await queueAcrossNodes('cl-order')
    assert.deepEqual(received, ['q0', 'q1', 'q2', 'q3', 'q4'])
  })

  // Failed while the queue bound used the TRIM_QUEUE script in cluster mode too: the packet
  // keys it releases live on other masters ("Script attempted to access a non local key"), so
  // from the first publish beyond maxOfflineQueue on, no QoS 1 publish was acknowledged.
  it('an offline session\'s queue is trimmed to maxOfflineQueue: every publish acknowledged, the newest kept, packets released', async () => {
    const c = await startNode(redis, 'gw-cc', { persistence: { maxOfflineQueue: 2 } })
    try {
      const sub = await connectClient(c.url, { clientId: 'cl-bound', clean: false })
      await sub.subscribeAsync('bound/t', { qos: 1 })
      await endClient(sub)
      const pub = await connectClient(c.url)
      for (let i = 0; i < 6; i++) await pub.publishAsync('bound/t', `q${i}`, { qos: 1 })
      await endClient(pub)
      const back = await connectClient(c.url, { clientId: 'cl-bound', clean: false })
      const received = collect(back)
      await waitFor(() => received.some((m) => m.payload === 'q5'), 'the newest queued message')
      assert.deepEqual(received.map((m) => m.payload), ['q4', 'q5'])
      await endClient(back)
      const metrics = await (await fetch(`${c.admin}/metrics`)).text()
      assert.match(metrics, /mqgw_offline_queue_dropped_total 4/)
      // Dropped and acknowledged packets are released on whichever master holds them.
      const packets = async (): Promise<number> => (await Promise.all(redis.nodes.map(async (n) => {
        const conn = n.client()
        try { return (await conn.keys('packet:*')).length } finally { conn.disconnect() }
      }))).reduce((x, y) => x + y, 0)
      assert.equal(await pollUntil(packets, (n) => n === 0, 5000, 100), 0, 'packets left')
    } finally {
      await c.crash()
    }
  })

  it('the session bookkeeping scripts run in the cluster (no CROSSSLOT) and the keys spread over the masters', async () => {
    const db = redis.client()
    try {
      const sub = await connectClient(a.url, { clientId: 'cl-track', clean: false })
      await sub.subscribeAsync('track/t', { qos: 1 })
      const online = await pollUntil(() => db.hget('mqgw:{sessions}:online', 'cl-track'), (v) => v !== null, 3000)
      assert.match(online ?? '', /^gw-ca\|/, 'recorded online with node A\'s token')
      await endClient(sub)
      const offline = await pollUntil(() => db.zscore('mqgw:{sessions}:offline', 'cl-track'), (v) => v !== null, 3000)
      assert.notEqual(offline, null, 'marked offline by the Lua script')
      assert.equal(await db.hexists('mqgw:{sessions}:online', 'cl-track'), 0)
      // Both nodes' heartbeats are there, and the data really is sharded: more than one master holds keys.
      assert.equal(await db.exists('mqgw:node:gw-ca'), 1)
      assert.equal(await db.exists('mqgw:node:gw-cb'), 1)
      const perMaster = await Promise.all(redis.nodes.map(async (n) => {
        const c = n.client()
        try { return await c.dbsize() } finally { c.disconnect() }
      }))
      assert.ok(perMaster.filter((keys) => keys > 0).length >= 2, `keys per master: ${perMaster.join(', ')}`)
    } finally {
      db.disconnect()
    }
  })
})
