import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { retainedAnswer, sessionAnswer, sessionDeleted } from '../../src/admin/schemas.js'
import { TEST_TOKEN, api } from '../admin/api-client.js'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { connectClient, endClient, pollUntil } from '../helpers/mqtt.js'
import { TestRedisCluster } from '../helpers/redis.js'

/**
 * The store inspector against a real three-master Redis Cluster: there the store keeps each
 * retained message under its own key (`retained:<topic>`), spread over the masters, so a
 * listing that SCANs one connection sees one master's share only. The inspector scans every
 * master in turn; the cursor names the master.
 */
describe('Redis Cluster: retained listing scans every master; sessions', () => {
  const redis = new TestRedisCluster(3)
  let gw: ClusterNode
  before(async () => {
    await redis.start()
    gw = await startNode(redis, 'ins-a', { env: { MQGW_ADMIN_API_TOKEN: TEST_TOKEN } })
  })
  after(async () => {
    await gw?.stop()
    await redis.stop()
  })

  it('lists every retained message across the masters, page by page, without duplicates; deletes one', async () => {
    const pub = await connectClient(gw.url, { clientId: 'ins-pub' })
    const topics = Array.from({ length: 40 }, (_, i) => `ins/${i}/state`)
    for (const t of topics) await pub.publishAsync(t, `v${t}`, { qos: 1, retain: true })

    // The keys really are spread: each master holds some, none holds all.
    const perMaster = await Promise.all(redis.nodes.map(async (n) => {
      const c = n.client()
      try {
        let cursor = '0'
        let count = 0
        do {
          const [next, keys] = await c.scan(cursor, 'MATCH', 'retained:ins*', 'COUNT', 1000)
          cursor = next
          count += keys.length
        } while (cursor !== '0')
        return count
      } finally {
        c.disconnect()
      }
    }))
    assert.equal(perMaster.reduce((x, y) => x + y, 0), 40)
    assert.ok(perMaster.filter((n) => n > 0).length >= 2, `keys on several masters: ${perMaster.join(', ')}`)

    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const res = await api(gw.admin, 'GET', `/retained?filter=ins/%2B/state&limit=7${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      assert.equal(res.status, 200, JSON.stringify(res.body))
      const page = retainedAnswer.parse(res.body)
      assert.ok(page.data.length <= 7, `at most limit per page: ${page.data.length}`)
      seen.push(...page.data.map((m) => m.topic))
      for (const m of page.data) assert.equal(Buffer.from(m.payload, 'base64').toString(), `v${m.topic}`)
      cursor = page.next
    } while (cursor !== undefined && ++pages < 100)
    assert.equal(seen.length, 40, 'no duplicates, none missing')
    assert.deepEqual([...seen].sort(), [...topics].sort())

    assert.equal((await api(gw.admin, 'DELETE', `/retained/${encodeURIComponent('ins/7/state')}`)).status, 200)
    const after = retainedAnswer.parse((await api(gw.admin, 'GET', '/retained?filter=ins/%23&limit=1000')).body)
    // One page may end before the last master; follow it to the end.
    const all = [...after.data.map((m) => m.topic)]
    let next = after.next
    for (let i = 0; next !== undefined && i < 20; i++) {
      const page = retainedAnswer.parse((await api(gw.admin, 'GET', `/retained?filter=ins/%23&limit=1000&cursor=${encodeURIComponent(next)}`)).body)
      all.push(...page.data.map((m) => m.topic))
      next = page.next
    }
    assert.equal(all.length, 39)
    assert.ok(!all.includes('ins/7/state'))
    await endClient(pub)
  })

  it('a persistent session\'s subscriptions and queue in cluster mode; deleted with its queue', async () => {
    const c = await connectClient(gw.url, { clientId: 'ins-s', clean: false })
    await c.subscribeAsync({ 'ins-s/a': { qos: 1 }, 'ins-s/b': { qos: 0 } })
    await endClient(c)
    const pub = await connectClient(gw.url, { clientId: 'ins-p2' })
    for (let i = 0; i < 4; i++) await pub.publishAsync('ins-s/a', `m${i}`, { qos: 1 })
    const s = await pollUntil(async () => sessionAnswer.parse((await api(gw.admin, 'GET', '/sessions/ins-s')).body), (v) => !v.online, 5000)
    assert.deepEqual({ ...s, subscriptions: [...s.subscriptions].sort((x, y) => x.filter.localeCompare(y.filter)) },
      { clientId: 'ins-s', online: false, node: null, subscriptions: [{ filter: 'ins-s/a', qos: 1 }, { filter: 'ins-s/b', qos: 0 }], queued: 4 })
    const packetKeys = (): Promise<number[]> => Promise.all(redis.nodes.map(async (n) => {
      const c = n.client()
      try { return (await c.keys('packet:*')).length } finally { c.disconnect() }
    }))
    assert.ok((await packetKeys()).reduce((x, y) => x + y, 0) >= 4, 'the queued packets are stored')
    const del = await api(gw.admin, 'DELETE', '/sessions/ins-s')
    assert.equal(del.status, 200, JSON.stringify(del.body))
    assert.equal(sessionDeleted.parse(del.body).droppedMessages, 4)
    assert.equal((await api(gw.admin, 'GET', '/sessions/ins-s')).status, 404)
    // The queued packets were released too (they live on other masters than the queue).
    assert.deepEqual(await packetKeys(), [0, 0, 0])
    await endClient(pub)
  })
})
