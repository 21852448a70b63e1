import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { collect, connectClient, endClient, pollUntil, sleep, subscribeRaw, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

/** Publishes `count` QoS 1 messages with a window of `inflight`; resolves with the payloads that were acknowledged. */
async function publishAcked (client: MqttClient, topic: string, count: number, inflight = 50, prefix = 'm', timeoutMs = 30000): Promise<Set<string>> {
  const acked = new Set<string>()
  let next = 0
  let outstanding = 0
  const deadline = Date.now() + timeoutMs
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (next < count && outstanding < inflight && client.connected && Date.now() < deadline) {
        const payload = `${prefix}${next++}`
        outstanding++
        client.publish(topic, payload, { qos: 1 }, (err) => {
          outstanding--
          if (!err) acked.add(payload)
          if ((next >= count || !client.connected || Date.now() >= deadline) && outstanding === 0) resolve()
          else pump()
        })
      }
      if ((!client.connected || Date.now() >= deadline) && outstanding === 0) resolve()
    }
    client.once('close', () => setTimeout(resolve, 200))
    pump()
  })
  return acked
}

describe('Redis sessions and a multi-node cluster (real redis-server, gateway processes)', () => {
  const redis = new TestRedis()
  const nodes: ClusterNode[] = []
  let a: ClusterNode
  let b: ClusterNode

  before(async () => {
    await redis.start()
    a = await startNode(redis, 'gw-a', { persistence: { maxOfflineQueue: 10000 }, yaml: 'flow: {}' })
    b = await startNode(redis, 'gw-b', { persistence: { maxOfflineQueue: 10000 }, yaml: 'flow: {}' })
    nodes.push(a, b)
  })
  after(async () => {
    for (const n of nodes) await n.crash()
    await redis.stop()
  })

  it('persistent subscriber on node A, publisher on node B: QoS 1 across nodes; retained across nodes', async () => {
    const sub = await connectClient(a.url, { clientId: 'x-sub', clean: false })
    const received = collect(sub)
    await sub.subscribeAsync('x/#', { qos: 1 })
    const pub = await connectClient(b.url, { clientId: 'x-pub' })
    await pub.publishAsync('x/1', 'across', { qos: 1 })
    await pub.publishAsync('x/retained', 'kept', { qos: 1, retain: true })
    await waitFor(() => received.length === 2, 'two messages across nodes')
    assert.deepEqual(received.map((m) => m.payload).sort(), ['across', 'kept'])
    const late = await connectClient(a.url, { clientId: 'x-late' })
    const lateReceived = collect(late)
    await late.subscribeAsync('x/retained', { qos: 1 })
    await waitFor(() => lateReceived.length === 1, 'retained from the other node')
    assert.equal(lateReceived[0]!.retain, true)
    await Promise.all([endClient(sub), endClient(pub), endClient(late)])
  })

  it('a multi-topic SUBSCRIBE of a persistent session gets its SUBACK (aedes#569)', async () => {
    const c = await connectClient(a.url, { clientId: 'multi-sub', clean: false })
    const granted = await Promise.race([
      subscribeRaw(c, { 'm/1': { qos: 1 }, 'm/2': { qos: 0 }, 'm/3/#': { qos: 1 } }),
      sleep(3000).then(() => 'no SUBACK' as const)
    ])
    assert.deepEqual(granted, [1, 0, 1])
    await endClient(c)
  })

  it('session takeover across nodes closes the first connection within 1 s', async () => {
    const first = await connectClient(a.url, { clientId: 'roamer', clean: false })
    const closed = new Promise<number>((resolve) => first.once('close', () => resolve(Date.now())))
    const started = Date.now()
    const second = await connectClient(b.url, { clientId: 'roamer', clean: false })
    const closedAt = await Promise.race([closed, sleep(3000).then(() => Infinity)])
    assert.ok(closedAt - started < 1000, `first connection closed after ${closedAt - started} ms`)
    assert.equal(second.connected, true)
    await endClient(second)
  })

  it('crash of the subscriber\'s node: every acknowledged message arrives after reconnecting to the other node', async () => {
    const total = 5000
    const sub = await connectClient(a.url, { clientId: 'crash-sub', clean: false })
    const received = collect(sub)
    await sub.subscribeAsync('crash/t', { qos: 1 })
    const pub = await connectClient(b.url, { clientId: 'crash-pub' })
    const publishing = publishAcked(pub, 'crash/t', total)
    await waitFor(() => received.length >= 1000, 'first 1000 messages on node A', 20000)
    await a.crash()
    const acked = await publishing
    assert.equal(acked.size, total, 'node B acknowledged every publish')
    await endClient(sub, true)
    const back = await connectClient(b.url, { clientId: 'crash-sub', clean: false })
    const after = collect(back)
    const unique = (): Set<string> => new Set([...received, ...after].map((m) => m.payload))
    await waitFor(() => unique().size === total, `all ${total} messages (have ${unique().size})`, 30000)
    const duplicates = received.length + after.length - total
    console.log(`# crash-sub: ${total} delivered, ${duplicates} duplicates`)
    // What may come twice: messages in flight when the node died (delivered, PUBACK not yet
    // applied to the session store). A window slot is freed only once the store dropped the
    // acknowledged message, so that is at most the in-flight window (flow default 32).
    assert.ok(duplicates <= 32, `${duplicates} duplicates, more than the in-flight window`)
    // Every acknowledgement reached the store: the queue and the packets are gone.
    const db = redis.client()
    assert.equal(await pollUntil(() => db.llen('outgoing:crash-sub'), (n) => n === 0, 10000, 100), 0, 'acknowledged messages left in the queue')
    assert.deepEqual(await pollUntil(() => db.keys('packet:*'), (k) => k.length === 0, 10000, 100), [], 'packets left after every subscriber acknowledged')
    db.disconnect()
    await Promise.all([endClient(back), endClient(pub)])
    a = await startNode(redis, 'gw-a', { persistence: { maxOfflineQueue: 10000 }, yaml: 'flow: {}' })
    nodes.push(a)
  })

  it('crash of the publisher\'s node: every message the publisher got a PUBACK for is delivered', async () => {
    const sub = await connectClient(b.url, { clientId: 'crash2-sub', clean: false })
    const received = collect(sub)
    await sub.subscribeAsync('crash2/t', { qos: 1 })
    const pub = await connectClient(a.url, { clientId: 'crash2-pub' })
    const publishing = publishAcked(pub, 'crash2/t', 5000)
    await waitFor(() => received.length >= 1000, 'first 1000 messages', 20000)
    await a.crash()
    const acked = await publishing
    assert.ok(acked.size >= 1000 && acked.size < 5000, `acknowledged ${acked.size} before the crash`)
    const payloads = (): Set<string> => new Set(received.map((m) => m.payload))
    await waitFor(() => [...acked].every((p) => payloads().has(p)), 'every acknowledged message', 20000)
    await endClient(sub)
    await endClient(pub, true)
    a = await startNode(redis, 'gw-a', { persistence: { maxOfflineQueue: 10000 }, yaml: 'flow: {}' })
    nodes.push(a)
  })

  it('a restarted node keeps its id and does not overwrite the queue of its previous life', async () => {
    const sub = await connectClient(b.url, { clientId: 'restart-sub', clean: false })
    await sub.subscribeAsync('restart/t', { qos: 1 })
    await endClient(sub)
    const pub1 = await connectClient(a.url, { clientId: 'restart-pub' })
    for (let i = 0; i < 3; i++) await pub1.publishAsync('restart/t', `before-${i}`, { qos: 1 })
    await endClient(pub1)
    await a.stop()
    a = await startNode(redis, 'gw-a', { persistence: { maxOfflineQueue: 10000 }, yaml: 'flow: {}' })
    nodes.push(a)
    // Enough publishes for the restarted node's counter to pass the values of its previous
    // life: without the fix, packet:gw-a:<counter> keys of the old queue are overwritten.
    const pub2 = await connectClient(a.url, { clientId: 'restart-pub' })
    const afterCount = 300
    for (let i = 0; i < afterCount; i++) await pub2.publishAsync('restart/t', `after-${i}`, { qos: 1 })
    await endClient(pub2)
    const back = await connectClient(b.url, { clientId: 'restart-sub', clean: false })
    const received = collect(back)
    // after-299 ends the queue: a copy of anything queued before it would come first.
    await waitFor(() => received.some((m) => m.payload === `after-${afterCount - 1}`), `${3 + afterCount} queued messages`, 10000)
    const expected = ['before-0', 'before-1', 'before-2', ...Array.from({ length: afterCount }, (_, i) => `after-${i}`)]
    assert.deepEqual(received.map((m) => m.payload), expected)
    await endClient(back)
  })

  it('Redis stopped and restarted: /readyz follows, persistent CONNECT gets 0x03, nothing acknowledged is lost, recovery without restart', async () => {
    const sub = await connectClient(a.url, { clientId: 'outage-sub', clean: false })
    const received = collect(sub)
    await sub.subscribeAsync('outage/t', { qos: 1 })
    const pub = await connectClient(b.url, { clientId: 'outage-pub' })
    const acked = new Set<string>()
    for (let i = 0; i < 20; i++) { await pub.publishAsync('outage/t', `pre-${i}`, { qos: 1 }); acked.add(`pre-${i}`) }

    await redis.stop()
    const readyDown = async (url: string): Promise<boolean> => (await fetch(`${url}/readyz`)).status === 503
    const down = await pollUntil(async () => await readyDown(a.admin) && await readyDown(b.admin), (d) => d, 5000, 50)
    assert.equal(down, true, '/readyz is 503 on both nodes')
    const body = await (await fetch(`${a.admin}/readyz`)).json() as { checks: Record<string, { reason?: string }> }
    assert.match(String(body.checks.redis?.reason), /Redis not connected/)
    const refused = await connectClient(a.url, { clientId: 'outage-new', clean: false }).catch((err: { code?: number }) => err)
    assert.equal((refused as { code?: number }).code, 3, 'persistent CONNECT refused with server unavailable')

    // Publishing during the outage: whatever gets a PUBACK must be delivered later.
    const during = await publishAcked(pub, 'outage/t', 20, 5, 'during-', 3000)
    for (const p of during) acked.add(p)

    await redis.start()
    const up = await pollUntil(async () => !(await readyDown(a.admin)) && !(await readyDown(b.admin)), (u) => u, 10000, 50)
    assert.equal(up, true, '/readyz back to 200 without a restart')
    const pubAgain = pub.connected ? pub : await connectClient(b.url, { clientId: 'outage-pub' })
    for (let i = 0; i < 20; i++) { await pubAgain.publishAsync('outage/t', `post-${i}`, { qos: 1 }); acked.add(`post-${i}`) }
    const subAgain = sub.connected ? sub : await connectClient(a.url, { clientId: 'outage-sub', clean: false })
    const receivedAgain = subAgain === sub ? received : collect(subAgain)
    const payloads = (): Set<string> => new Set([...received, ...receivedAgain].map((m) => m.payload))
    await waitFor(() => [...acked].every((p) => payloads().has(p)), `every acknowledged message (${acked.size})`, 20000)
    assert.ok(a.child.exitCode === null && b.child.exitCode === null, 'both nodes survived')
    await Promise.all([endClient(subAgain), endClient(pubAgain)])
    if (subAgain !== sub) await endClient(sub, true)
    if (pubAgain !== pub) await endClient(pub, true)
  })
})

