import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { retainedAnswer, retainedDeleted, sessionAnswer, sessionDeleted } from '../../src/admin/schemas.js'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { collect, connectClient, endClient, pollUntil, waitFor } from '../helpers/mqtt.js'
import { freePort } from '../helpers/process.js'
import { TestRedis } from '../helpers/redis.js'
import { TEST_TOKEN, api } from './api-client.js'

/** Every retained message matching `filter`, following the cursor page by page (bounded). */
async function allRetained (adminUrl: string, filter: string, limit: number): Promise<{ topics: string[], pages: number }> {
  const topics: string[] = []
  let cursor: string | undefined
  let pages = 0
  do {
    const res = await api(adminUrl, 'GET', `/retained?filter=${encodeURIComponent(filter)}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const page = retainedAnswer.parse(res.body)
    assert.ok(page.data.length <= limit, `a page holds at most limit (${page.data.length} > ${limit})`)
    topics.push(...page.data.map((m) => m.topic))
    cursor = page.next
    pages++
  } while (cursor !== undefined && pages < 100)
  return { topics: topics.sort(), pages }
}

describe('admin API: sessions and retained messages, memory mode', () => {
  let gw: TestGateway
  let pub: MqttClient
  before(async () => {
    gw = await startTestGateway(`listeners: { admin: { apiToken: ${TEST_TOKEN} } }`)
    pub = await connectClient(gw.mqttUrl, { clientId: 'mem-pub' })
  })
  after(async () => {
    await endClient(pub, true)
    await gw.stop()
  })

  it('looks up an offline session (subscriptions, queue length), refuses to delete an online one, deletes an offline one with its queue', async () => {
    const s1 = await connectClient(gw.mqttUrl, { clientId: 'sess-1', clean: false })
    await s1.subscribeAsync('q/1', { qos: 1 })
    await endClient(s1)
    await pub.publishAsync('q/1', 'queued-1', { qos: 1 })
    await pub.publishAsync('q/1', 'queued-2', { qos: 1 })
    const found = sessionAnswer.parse((await api(gw.adminUrl, 'GET', '/sessions/sess-1')).body)
    assert.deepEqual(found, { clientId: 'sess-1', online: false, node: null, subscriptions: [{ filter: 'q/1', qos: 1 }], queued: 2 })

    const online = await connectClient(gw.mqttUrl, { clientId: 'sess-on', clean: false })
    await online.subscribeAsync('q/2', { qos: 1 })
    const on = sessionAnswer.parse((await api(gw.adminUrl, 'GET', '/sessions/sess-on')).body)
    assert.equal(on.online, true)
    assert.equal(on.node, gw.gateway.config.node.id)
    const refused = await api(gw.adminUrl, 'DELETE', '/sessions/sess-on')
    assert.equal(refused.status, 409)
    assert.match(String(refused.body.error), /connected/)
    assert.equal(online.connected, true)
    await endClient(online)

    const deleted = await api(gw.adminUrl, 'DELETE', '/sessions/sess-1')
    assert.equal(deleted.status, 200)
    assert.deepEqual(sessionDeleted.parse(deleted.body), { clientId: 'sess-1', deleted: true, droppedMessages: 2 })
    assert.equal((await api(gw.adminUrl, 'GET', '/sessions/sess-1')).status, 404)
    assert.equal((await api(gw.adminUrl, 'DELETE', '/sessions/sess-1')).status, 404)
    // Reconnecting: no session, nothing queued replayed; only the marker published after arrives.
    const again = await connectClient(gw.mqttUrl, { clientId: 'sess-1', clean: false })
    const received = collect(again)
    await again.subscribeAsync('q/1', { qos: 1 })
    await pub.publishAsync('q/1', 'marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'the marker')
    assert.deepEqual(received.map((m) => m.payload), ['marker'])
    await endClient(again)
  })

  it('lists retained messages by filter page by page and deletes one', async () => {
    for (const t of ['r/1', 'r/2', 'r/3', 'x/1']) await pub.publishAsync(t, `payload ${t}`, { qos: 1, retain: true })
    const first = retainedAnswer.parse((await api(gw.adminUrl, 'GET', '/retained?filter=r/%2B&limit=2')).body)
    assert.equal(first.data.length, 2)
    assert.ok(first.next !== undefined)
    assert.equal(Buffer.from(first.data[0]!.payload, 'base64').toString(), `payload ${first.data[0]!.topic}`)
    assert.equal(first.data[0]!.bytes, `payload ${first.data[0]!.topic}`.length)
    assert.deepEqual(await allRetained(gw.adminUrl, 'r/+', 2), { topics: ['r/1', 'r/2', 'r/3'], pages: 2 })
    assert.deepEqual((await allRetained(gw.adminUrl, '#', 100)).topics, ['r/1', 'r/2', 'r/3', 'x/1'])

    const del = await api(gw.adminUrl, 'DELETE', '/retained/r%2F2')
    assert.deepEqual(retainedDeleted.parse(del.body), { topic: 'r/2', deleted: true })
    assert.equal((await api(gw.adminUrl, 'DELETE', '/retained/r%2F2')).status, 404)
    // A new subscriber gets the other two, then the marker published after it subscribed.
    const sub = await connectClient(gw.mqttUrl, { clientId: 'ret-sub' })
    const received = collect(sub)
    await sub.subscribeAsync('r/#', { qos: 1 })
    await pub.publishAsync('r/marker', 'marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'the marker')
    assert.deepEqual(received.map((m) => m.topic).sort(), ['r/1', 'r/3', 'r/marker'])
    await endClient(sub)
  })
})

describe('admin API: cluster-wide sessions and retained messages across two Redis-mode nodes', () => {
  const redis = new TestRedis()
  let a: ClusterNode
  let b: ClusterNode
  const env = { MQGW_ADMIN_API_TOKEN: TEST_TOKEN }
  before(async () => {
    await redis.start()
    a = await startNode(redis, 'adm-a', { env })
    b = await startNode(redis, 'adm-b', { env })
  })
  after(async () => {
    await a?.stop()
    await b?.stop()
    await redis.stop()
  })

  it('a session held on node A is seen from node B (online, then offline with its queue) and deleted from B', async () => {
    const c = await connectClient(a.url, { clientId: 'cw-1', clean: false })
    await c.subscribeAsync('cw/x', { qos: 1 })
    const online = sessionAnswer.parse((await api(b.admin, 'GET', '/sessions/cw-1')).body)
    assert.deepEqual(online, { clientId: 'cw-1', online: true, node: 'adm-a', subscriptions: [{ filter: 'cw/x', qos: 1 }], queued: 0 })
    const refused = await api(b.admin, 'DELETE', '/sessions/cw-1')
    assert.equal(refused.status, 409)
    assert.match(String(refused.body.error), /adm-a/)
    // Node-local: the client is not connected to B.
    assert.equal((await api(b.admin, 'GET', '/clients/cw-1')).status, 404)
    assert.equal((await api(a.admin, 'GET', '/clients/cw-1')).status, 200)
    await endClient(c)

    const pub = await connectClient(b.url, { clientId: 'cw-pub' })
    for (let i = 0; i < 3; i++) await pub.publishAsync('cw/x', `q${i}`, { qos: 1 })
    // The offline mark is written when node A sees the disconnect.
    const offline = await pollUntil(async () => sessionAnswer.parse((await api(b.admin, 'GET', '/sessions/cw-1')).body), (s) => !s.online && s.queued === 3, 5000)
    assert.deepEqual(offline, { clientId: 'cw-1', online: false, node: null, subscriptions: [{ filter: 'cw/x', qos: 1 }], queued: 3 })

    // Without the token nothing happens.
    assert.equal((await api(b.admin, 'DELETE', '/sessions/cw-1', { token: null })).status, 401)
    assert.equal(sessionAnswer.parse((await api(a.admin, 'GET', '/sessions/cw-1')).body).queued, 3)

    const deleted = sessionDeleted.parse((await api(b.admin, 'DELETE', '/sessions/cw-1')).body)
    assert.equal(deleted.droppedMessages, 3)
    assert.equal((await api(a.admin, 'GET', '/sessions/cw-1')).status, 404)
    const keys = redis.client()
    try {
      assert.equal(await keys.exists('client:cw-1', 'outgoing:cw-1'), 0)
      assert.equal(await keys.hexists('mqgw:{sessions}:owners', 'cw-1'), 0)
      assert.equal(await keys.zscore('mqgw:{sessions}:offline', 'cw-1'), null)
    } finally {
      keys.disconnect()
    }
    // Back on node A: no queued message replayed, only the marker published afterwards.
    const again = await connectClient(a.url, { clientId: 'cw-1', clean: false })
    const received = collect(again)
    await again.subscribeAsync('cw/x', { qos: 1 })
    await pub.publishAsync('cw/x', 'marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'the marker')
    assert.deepEqual(received.map((m) => m.payload), ['marker'])
    await endClient(again)
    await endClient(pub)
  })

  it('while the node waits for Redis at start the API answers 503 (401 without the token), then serves', async () => {
    const later = new TestRedis()
    later.port = await freePort()
    const c = await startNode(later, 'adm-c', { env, waitFor: 'healthz' })
    try {
      const starting = await api(c.admin, 'GET', '/node')
      assert.equal(starting.status, 503)
      assert.equal(starting.headers.get('retry-after'), '1')
      assert.equal((await api(c.admin, 'GET', '/node', { token: null })).status, 401)
      await later.start()
      const up = await pollUntil(() => api(c.admin, 'GET', '/node'), (r) => r.status === 200, 15000, 100)
      assert.equal(up.status, 200)
      assert.equal(up.body.node, 'adm-c')
    } finally {
      await c.stop()
      await later.stop()
    }
  })

  it('retained messages set through node A are listed and deleted through node B', async () => {
    const pub = await connectClient(a.url, { clientId: 'cw-ret' })
    const topics = Array.from({ length: 12 }, (_, i) => `cwr/${i}`)
    for (const t of topics) await pub.publishAsync(t, `v-${t}`, { qos: 1, retain: true })
    await pub.publishAsync('other/1', 'x', { qos: 1, retain: true })
    const listed = await allRetained(b.admin, 'cwr/+', 5)
    assert.deepEqual(listed.topics, [...topics].sort())
    assert.ok(listed.pages >= 2, `paged (${listed.pages} pages)`)
    // One per page: pages end inside SCAN batches and resume there (cursor `source:scan:skip`).
    const single = await allRetained(b.admin, 'cwr/+', 1)
    assert.deepEqual(single.topics, [...topics].sort())
    assert.ok(single.pages >= 12 && single.pages <= 13, `${single.pages} pages`)
    assert.equal(retainedDeleted.parse((await api(b.admin, 'DELETE', '/retained/cwr%2F3')).body).deleted, true)
    assert.deepEqual((await allRetained(a.admin, 'cwr/+', 100)).topics, topics.filter((t) => t !== 'cwr/3').sort())
    const sub = await connectClient(a.url, { clientId: 'cw-ret-sub' })
    const received = collect(sub)
    await sub.subscribeAsync('cwr/#', { qos: 1 })
    await pub.publishAsync('cwr/marker', 'marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'the marker')
    assert.equal(received.length, 12)
    assert.ok(!received.some((m) => m.topic === 'cwr/3'))
    await endClient(sub)
    await endClient(pub)
  })
})
