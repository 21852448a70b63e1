import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { collect, connectClient, endClient, subscribeRaw, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

/** Issue #11 C.10 and C.13: what one client can make the gateway hold is bounded. */

const metric = async (gw: TestGateway, pattern: RegExp): Promise<number> => {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  const m = text.match(pattern)
  return m ? Number(m[1]) : 0
}

describe('subscription limits (limits.maxFiltersPerSubscribe, limits.maxSubscriptionsPerClient)', () => {
  let gw: TestGateway
  before(async () => {
    gw = await startTestGateway('limits: { maxFiltersPerSubscribe: 5, maxSubscriptionsPerClient: 8 }')
  })
  after(async () => { await gw.stop() })

  it('filters beyond maxFiltersPerSubscribe in one SUBSCRIBE get 0x80; beyond maxSubscriptionsPerClient too; counted', async () => {
    const c = await connectClient(gw.mqttUrl, { clientId: 'many-filters', clean: false })
    const received = collect(c)
    const filters = (prefix: string, n: number): Record<string, { qos: 0 | 1 | 2 }> =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}/${i}`, { qos: 1 as const }]))
    assert.deepEqual(await subscribeRaw(c, filters('a', 7)), [1, 1, 1, 1, 1, 128, 128])
    assert.deepEqual(await subscribeRaw(c, filters('b', 4)), [1, 1, 1, 128], '5 held + 3 = 8')
    // Re-subscribing a filter already held is not a new subscription.
    assert.deepEqual(await subscribeRaw(c, filters('a', 1)), [1])
    await c.unsubscribeAsync('a/0')
    assert.deepEqual(await subscribeRaw(c, { 'c/0': { qos: 1 } }), [1], 'an unsubscribe frees a place')
    assert.equal(await metric(gw, /mqgw_subscriptions_refused_total\{reason="max_filters_per_subscribe"\} (\d+)/), 2)
    assert.equal(await metric(gw, /mqgw_subscriptions_refused_total\{reason="max_subscriptions_per_client"\} (\d+)/), 1)
    // What was refused delivers nothing; what was granted does (the path is open).
    const pub = await connectClient(gw.mqttUrl, { clientId: 'limits-pub' })
    await pub.publishAsync('a/6', 'refused', { qos: 1 })
    await pub.publishAsync('b/3', 'refused', { qos: 1 })
    await pub.publishAsync('c/0', 'granted', { qos: 1 })
    await waitFor(() => received.length >= 1, 'the granted message')
    assert.deepEqual(received.map((m) => m.topic), ['c/0'])
    await endClient(pub)
    // A restored session keeps its granted subscriptions within the limit.
    await endClient(c)
    const back = await connectClient(gw.mqttUrl, { clientId: 'many-filters', clean: false })
    assert.deepEqual(await subscribeRaw(back, { 'd/0': { qos: 1 } }), [128], 'the 8 restored subscriptions count')
    await endClient(back)
  })
})

describe('a SUBSCRIBE with thousands of filters on a persistent session is stored once', () => {
  for (const mode of ['memory', 'redis'] as const) {
    it(`${mode}: one store write per SUBSCRIBE packet, refused filters never stored`, async () => {
      const redis = mode === 'redis' ? new TestRedis() : undefined
      await redis?.start()
      const gw = await startTestGateway(`limits: { maxFiltersPerSubscribe: 0, maxSubscriptionsPerClient: 0, maxTopicLevels: 3 }
${redis ? `persistence: { type: redis, redis: ${redis.configYaml} }` : ''}`)
      try {
        const persistence = (gw.gateway.broker as unknown as { persistence: { addSubscriptions: (client: unknown, subs: Array<{ topic: string }>) => Promise<unknown> } }).persistence
        const stored: Array<Array<{ topic: string }>> = []
        const add = persistence.addSubscriptions.bind(persistence)
        persistence.addSubscriptions = (client, subs) => {
          stored.push(subs)
          return add(client, subs)
        }
        const c = await connectClient(gw.mqttUrl, { clientId: `bulk-${mode}`, clean: false })
        const filters: Record<string, { qos: 0 | 1 | 2 }> = {}
        for (let i = 0; i < 4000; i++) filters[`bulk/${i}`] = { qos: 1 }
        filters['too/deep/for/the/limit'] = { qos: 1 }
        const granted = await subscribeRaw(c, filters)
        assert.equal(granted.filter((g) => g === 1).length, 4000)
        assert.equal(granted.at(-1), 128)
        assert.equal(stored.length, 1, 'one store call for the packet')
        assert.equal(stored[0]!.length, 4000, 'only the granted filters are stored')
        assert.ok(!stored[0]!.some((s) => s.topic === 'too/deep/for/the/limit'))
        await endClient(c)
      } finally {
        await gw.stop()
        await redis?.stop()
      }
    })
  }
})

describe('retained store limits (limits.maxRetainedMessages, maxRetainedBytes, maxRetainedPerClient)', () => {
  for (const mode of ['memory', 'redis'] as const) {
    describe(mode, () => {
      const redis = mode === 'redis' ? new TestRedis() : undefined
      let gw: TestGateway
      let second: TestGateway | undefined
      before(async () => {
        await redis?.start()
        const persistence = redis ? `persistence: { type: redis, redis: ${redis.configYaml} }` : ''
        gw = await startTestGateway(`limits: { maxRetainedMessages: 4, maxRetainedBytes: 100, maxRetainedPerClient: 2 }\n${persistence}\nnode: { id: ${mode}-one }`)
        // In Redis mode the limits hold for the whole cluster: a second node shares the ledger.
        if (redis) second = await startTestGateway(`limits: { maxRetainedMessages: 4, maxRetainedBytes: 100, maxRetainedPerClient: 2 }\n${persistence}\nnode: { id: ${mode}-two }`)
      })
      after(async () => {
        await gw.stop()
        await second?.stop()
        await redis?.stop()
      })

      /** What a new subscriber receives as retained on `filter`, up to a live marker published after it subscribed. */
      const retainedOn = async (url: string, filter: string): Promise<string[]> => {
        const c = await connectClient(url, { clientId: `probe-${Math.random().toString(36).slice(2)}` })
        const received = collect(c)
        await c.subscribeAsync(filter, { qos: 1 })
        const marker = await connectClient(url)
        await marker.publishAsync(filter.replace('#', 'marker'), 'marker', { qos: 1 })
        await waitFor(() => received.some((m) => m.payload === 'marker'), 'marker')
        await Promise.all([endClient(c), endClient(marker)])
        return received.filter((m) => m.retain).map((m) => m.topic).sort()
      }

      it('per client, total count and total bytes: beyond them a message is delivered but not retained; counted, logged once', async () => {
        const otherUrl = second?.mqttUrl ?? gw.mqttUrl
        const live = await connectClient(gw.mqttUrl, { clientId: 'ret-live' })
        const liveReceived = collect(live)
        await live.subscribeAsync('ret/#', { qos: 1 })
        const p1 = await connectClient(gw.mqttUrl, { clientId: 'ret-p1' })
        await p1.publishAsync('ret/a', 'x'.repeat(10), { qos: 1, retain: true })
        await p1.publishAsync('ret/b', 'x'.repeat(10), { qos: 1, retain: true })
        await p1.publishAsync('ret/c', 'x'.repeat(10), { qos: 1, retain: true }) // p1's third: over maxRetainedPerClient
        await p1.publishAsync('ret/a', 'y'.repeat(20), { qos: 1, retain: true }) // replaces its own: allowed
        const p2 = await connectClient(otherUrl, { clientId: 'ret-p2' })
        await p2.publishAsync('ret/d', 'x'.repeat(80), { qos: 1, retain: true }) // 20 + 10 + 80 > 100 bytes
        await p2.publishAsync('ret/d', 'x'.repeat(10), { qos: 1, retain: true })
        const p3 = await connectClient(otherUrl, { clientId: 'ret-p3' })
        await p3.publishAsync('ret/e', 'x', { qos: 1, retain: true })
        await p3.publishAsync('ret/f', 'x', { qos: 1, retain: true }) // a fifth topic: over maxRetainedMessages
        await waitFor(() => liveReceived.filter((m) => m.topic.startsWith('ret/')).length >= 8, 'every message delivered live')
        assert.deepEqual(await retainedOn(gw.mqttUrl, 'ret/#'), ['ret/a', 'ret/b', 'ret/d', 'ret/e'])
        // Clearing a retained message frees its place.
        await p3.publishAsync('ret/e', '', { qos: 1, retain: true })
        await p3.publishAsync('ret/f', 'x', { qos: 1, retain: true })
        assert.deepEqual(await retainedOn(otherUrl, 'ret/#'), ['ret/a', 'ret/b', 'ret/d', 'ret/f'])
        const refused = async (reason: string): Promise<number> => {
          let n = await metric(gw, new RegExp(`mqgw_retained_refused_total\\{reason="${reason}"\\} (\\d+)`))
          if (second) n += await metric(second, new RegExp(`mqgw_retained_refused_total\\{reason="${reason}"\\} (\\d+)`))
          return n
        }
        assert.equal(await refused('client'), 1)
        assert.equal(await refused('bytes'), 1)
        assert.equal(await refused('count'), 1)
        const lines = [...gw.logs.find('retained store limit reached; message delivered but not retained (logged once a minute per limit)'),
          ...(second?.logs.find('retained store limit reached; message delivered but not retained (logged once a minute per limit)') ?? [])]
        assert.equal(lines.length, 3, 'one line per limit')
        await Promise.all([endClient(live), endClient(p1), endClient(p2), endClient(p3)])
      })
    })
  }
})
