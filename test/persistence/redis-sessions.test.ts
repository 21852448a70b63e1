import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { collect, connectClient, endClient, pollUntil, sleep, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

describe('session expiry and offline queue bound', () => {
  const redis = new TestRedis()
  let node: ClusterNode
  before(async () => {
    await redis.start()
    node = await startNode(redis, 'gw-exp', { persistence: { sessionExpiryS: 2, maxOfflineQueue: 5 } })
  })
  after(async () => {
    await node.crash()
    await redis.stop()
  })

  it('an offline session keeps only the newest maxOfflineQueue messages; drops are counted', async () => {
    const sub = await connectClient(node.url, { clientId: 'bounded', clean: false })
    await sub.subscribeAsync('bounded/t', { qos: 1 })
    await endClient(sub)
    const pub = await connectClient(node.url)
    for (let i = 0; i < 12; i++) await pub.publishAsync('bounded/t', `q${i}`, { qos: 1 })
    await endClient(pub)
    const back = await connectClient(node.url, { clientId: 'bounded', clean: false })
    const received = collect(back)
    // q11, the newest, is the end of the queue: any older message kept would come before it.
    await waitFor(() => received.some((m) => m.payload === 'q11'), 'the newest queued message')
    assert.deepEqual(received.map((m) => m.payload), ['q7', 'q8', 'q9', 'q10', 'q11'])
    const metrics = await (await fetch(`${node.admin}/metrics`)).text()
    assert.match(metrics, /mqgw_offline_queue_dropped_total 7/)
    await endClient(back)
  })

  it('an offline persistent session and its queue are removed after sessionExpiryS', async () => {
    const db = redis.client()
    const sub = await connectClient(node.url, { clientId: 'expiring', clean: false })
    await sub.subscribeAsync('exp/t', { qos: 1 })
    await endClient(sub)
    const pub = await connectClient(node.url)
    await pub.publishAsync('exp/t', 'queued', { qos: 1 })
    assert.equal(await db.llen('outgoing:expiring'), 1)
    // Expiry 2 s; the sweep runs every 500 ms.
    assert.equal(await pollUntil(() => db.sismember('clients', 'expiring'), (n) => n === 0, 6000, 100), 0, 'session removed')
    assert.equal(await db.exists('outgoing:expiring'), 0, 'queue removed')
    assert.equal((await db.keys('packet:*')).length, 0, 'no orphaned packets')
    await pub.publishAsync('exp/t', 'after-expiry', { qos: 1 })
    const back = await connectClient(node.url, { clientId: 'expiring', clean: false })
    const received = collect(back)
    // Marker: a stored queue is sent while CONNECT is handled, before the broker reads the
    // SUBSCRIBE that follows; the marker is published after that SUBACK by the same publisher.
    await back.subscribeAsync('exp-marker/t', { qos: 1 })
    await pub.publishAsync('exp/t', 'live-after-expiry', { qos: 1 })
    await pub.publishAsync('exp-marker/t', 'marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'the marker')
    assert.deepEqual(received.map((m) => m.payload), ['marker'], 'no subscription, no queue')
    const metrics = await (await fetch(`${node.admin}/metrics`)).text()
    assert.match(metrics, /mqgw_sessions_expired_total [1-9]/)
    await Promise.all([endClient(back), endClient(pub)])
    db.disconnect()
  })

  it('a session left online by a crashed node expires after the node restarts with the same id', async () => {
    const db = redis.client()
    const sub = await connectClient(node.url, { clientId: 'orphan', clean: false })
    await sub.subscribeAsync('orphan/t', { qos: 1 })
    await node.crash()
    await endClient(sub, true)
    node = await startNode(redis, 'gw-exp', { persistence: { sessionExpiryS: 2, maxOfflineQueue: 5 } })
    assert.equal(await pollUntil(() => db.sismember('clients', 'orphan'), (n) => n === 0, 8000, 100), 0, 'the orphaned session was removed')
    db.disconnect()
  })

  it('a session left online by a node that never returns is marked offline once the node\'s heartbeat lapses, then expires; a live node\'s sessions are left alone', async () => {
    const db = redis.client()
    const options = { persistence: { sessionExpiryS: 2, maxOfflineQueue: 5 } }
    const [gone, peer] = await Promise.all([startNode(redis, 'gw-gone', options), startNode(redis, 'gw-peer', options)])
    try {
      const abandoned = await connectClient(gone.url, { clientId: 'abandoned', clean: false })
      await abandoned.subscribeAsync('abandoned/t', { qos: 1 })
      const kept = await connectClient(peer.url, { clientId: 'kept-on-peer', clean: false })
      await kept.subscribeAsync('kept/t', { qos: 1 })
      assert.equal(await pollUntil(() => db.hexists('mqgw:{sessions}:online', 'abandoned'), (n) => n === 1, 3000), 1, 'recorded online on gw-gone')
      // gw-gone dies and is never started again (retired): nobody would ever mark its sessions offline.
      await gone.crash()
      await endClient(abandoned, true)
      // Its heartbeat key lapses after 3 sweep periods (1.5 s here); a live node then marks the
      // session offline and, sessionExpiryS (2 s) later, removes it.
      assert.equal(await pollUntil(() => db.sismember('clients', 'abandoned'), (n) => n === 0, 10000, 100), 0, 'the abandoned session was removed')
      assert.equal(await db.exists('mqgw:node:gw-gone'), 0, 'the gone node\'s heartbeat lapsed')
      // The live peer's connected session was never touched, and still receives.
      assert.equal(await db.hexists('mqgw:{sessions}:online', 'kept-on-peer'), 1)
      assert.equal(await db.sismember('clients', 'kept-on-peer'), 1)
      const received = collect(kept)
      const pub = await connectClient(node.url)
      await pub.publishAsync('kept/t', 'still here', { qos: 1 })
      await waitFor(() => received.length === 1, 'message to the live peer\'s session')
      await Promise.all([endClient(kept), endClient(pub)])
    } finally {
      await Promise.all([gone.crash(), peer.stop()])
      db.disconnect()
    }
  })

  it('a session that reconnects before expiry is kept', async () => {
    const sub = await connectClient(node.url, { clientId: 'returning', clean: false })
    await sub.subscribeAsync('ret/t', { qos: 1 })
    await endClient(sub)
    await sleep(1000)
    const back = await connectClient(node.url, { clientId: 'returning', clean: false })
    await sleep(2500)
    const pub = await connectClient(node.url)
    const received = collect(back)
    await pub.publishAsync('ret/t', 'still subscribed', { qos: 1 })
    await waitFor(() => received.length === 1, 'message to the kept session')
    await Promise.all([endClient(back), endClient(pub)])
  })
})

describe('flow control with Redis sessions', () => {
  it('a persistent session\'s queue in Redis flows through the in-flight window after reconnect, in order', async () => {
    const redis = new TestRedis()
    await redis.start()
    const node = await startNode(redis, 'gw-flow', { yaml: 'flow: { inflightWindow: 5 }' })
    try {
      const { RawClient } = await import('../helpers/raw-client.js')
      const port = Number(new URL(node.url).port)
      const first = await RawClient.connect(port, 'stored-redis', { clean: false })
      await first.subscribe('sr/t', 1)
      first.destroy()
      await first.closed
      const pub = await connectClient(node.url)
      for (let i = 0; i < 30; i++) await pub.publishAsync('sr/t', String(i), { qos: 1 })
      const back = await RawClient.connect(port, 'stored-redis', { clean: false })
      const payloads = (): string[] => back.publishes().map((p) => p.payload.toString())
      await waitFor(() => back.publishes().length >= 5, 'first 5 stored messages')
      // The full window holds every later message back, so none can be a marker; the PINGRESP
      // is written to this socket after anything the broker had sent it before.
      await back.ping()
      assert.deepEqual(payloads(), ['0', '1', '2', '3', '4'])
      await back.ackUntil(30, 10000)
      assert.deepEqual(payloads(), Array.from({ length: 30 }, (_, i) => String(i)))
      const db = redis.client()
      // The last PUBACKs are removed from Redis a moment after they arrive.
      assert.equal(await pollUntil(() => db.llen('outgoing:stored-redis'), (n) => n === 0, 5000), 0, 'acknowledged messages leave Redis')
      db.disconnect()
      back.destroy()
      await endClient(pub)
    } finally {
      await node.crash()
      await redis.stop()
    }
  })
})

describe('gateway without Redis at start', () => {
  it('keeps running and reports not ready; becomes ready and serves when Redis comes up (mq.state errors handled)', async () => {
    const redis = new TestRedis()
    const { freePort } = await import('../helpers/process.js')
    redis.port = await freePort()
    const node = await startNode(redis, 'gw-early', { waitFor: 'healthz' })
    try {
      // Marker: the bus connection's error (what killed the process without an mq.state
      // listener) has been emitted and handled once it is logged; the process answers after it.
      await waitFor(() => node.stdout().includes('"redis":"bus"'), 'the bus connection error, handled and logged', 10000)
      const res = await fetch(`${node.admin}/readyz`)
      assert.equal(res.status, 503)
      assert.equal(node.child.exitCode, null, 'still running with Redis unreachable')
      await redis.start()
      const readyz = await pollUntil(async () => (await fetch(`${node.admin}/readyz`)).status, (s) => s === 200, 10000, 50)
      assert.equal(readyz, 200)
      const c = await connectClient(node.url, { clientId: 'early', clean: false })
      const received = collect(c)
      await c.subscribeAsync('early/t', { qos: 1 })
      await c.publishAsync('early/t', 'works', { qos: 1 })
      await waitFor(() => received.length === 1, 'round trip after Redis came up')
      await endClient(c)
    } finally {
      await node.crash()
      await redis.stop()
    }
  })
})

describe('the defects exist in the packages themselves (plain Aedes, no gateway)', () => {
  it('aedes-persistence-redis: concurrent addSubscriptions calls with the same filters never all settle (what unpatched Aedes did per filter of one SUBSCRIBE)', async () => {
    // Unpatched Aedes 1.2 calls addSubscriptions once per granted filter, each time with the
    // packet's whole list; the store keys its wait for the broadcast by the first filter, so
    // the concurrent calls overwrite each other's waiters and the SUBACK never comes
    // (aedes#569). The Aedes patch stores once per packet (test: the gateway suite above).
    const redis = new TestRedis()
    await redis.start()
    const persistenceRedis = (await import('aedes-persistence-redis')).default
    const mqemitterRedis = (await import('mqemitter-redis')).default
    const { Aedes } = await import('aedes')
    const { Redis } = await import('ioredis')
    const conns = [0, 1, 2].map(() => new Redis(redis.port, '127.0.0.1'))
    const mq = mqemitterRedis({ pubConn: conns[0], subConn: conns[1] } as unknown as Parameters<typeof mqemitterRedis>[0])
    const persistence = persistenceRedis({ conn: conns[2] })
    const broker = await Aedes.createBroker({ persistence, mq })
    try {
      const store = (persistence as unknown as { asyncPersistence: { addSubscriptions: (client: object, subs: object[]) => Promise<unknown> } }).asyncPersistence
      const client = { id: 'plain-multi' }
      const subs = [{ topic: 'p/1', qos: 1 }, { topic: 'p/2', qos: 1 }]
      let bothSettled = false
      void Promise.all([store.addSubscriptions(client, subs), store.addSubscriptions(client, subs)]).then(() => { bothSettled = true })
      // The marker: a third call, started after them. Each call's Redis writes and then its
      // broadcast go through the same connections in order, and a call settles when its own
      // broadcast comes back; the lone call's comes back after theirs.
      const alone = await store.addSubscriptions({ id: 'plain-single' }, [{ topic: 'q/1', qos: 1 }]).then(() => 'settled')
      assert.equal(alone, 'settled', 'one call alone settles (the path is open)')
      // Their waiters run on process.nextTick, their promises in microtasks: all before a macrotask.
      await new Promise((resolve) => setImmediate(resolve))
      assert.equal(bothSettled, false, 'the concurrent calls have not settled')
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      for (const c of conns) c.disconnect()
      await redis.stop()
    }
  })

  it('mqemitter-redis without an mq.state error listener crashes the process when Redis is unreachable', async () => {
    const { freePort, run } = await import('../helpers/process.js')
    const port = await freePort()
    const script = `const m = require('mqemitter-redis')({ port: ${port}, host: '127.0.0.1' }); setTimeout(() => { console.log('survived'); process.exit(0) }, 3000)`
    const result = await run(process.execPath, ['-e', script], 10000)
    assert.notEqual(result.code, 0)
    assert.match(result.stderr, /ECONNREFUSED/)
    assert.doesNotMatch(result.stdout, /survived/)
  })
})
