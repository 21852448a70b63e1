import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { collect, connectClient, connectCollecting, endClient, pollUntil, waitFor, type Received } from '../helpers/mqtt.js'
import { TestSentinelGroup } from '../helpers/sentinel.js'

/** /readyz of each node every 50 ms: [time, status] pairs, until stopped. */
function watchReadiness (nodes: ClusterNode[]): { seen: Map<string, Array<[number, number]>>, stop: () => void } {
  const seen = new Map<string, Array<[number, number]>>(nodes.map((n) => [n.id, []]))
  let running = true
  for (const n of nodes) {
    void (async () => {
      while (running) {
        const status = await fetch(`${n.admin}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.status, () => 0)
        seen.get(n.id)!.push([Date.now(), status])
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })()
  }
  return { seen, stop: () => { running = false } }
}

/**
 * A publisher as a device would run it: MQTT.js with automatic reconnect, which sends the
 * QoS 1 messages still unacknowledged again after reconnecting. Publishes `count` messages
 * with at most `window` in flight; `acked` holds those whose PUBACK arrived. A refused
 * CONNECT (0x03 while Redis is away) is retried too.
 */
function streamPublisher (url: string, topic: string, count: number, window: number, clientId = 'sentinel-pub', prefix = 'm'): { acked: Set<string>, sent: () => number, client: MqttClient, done: Promise<void> } {
  const client = mqtt.connect(url, { clientId, reconnectPeriod: 200, connectTimeout: 3000, reconnectOnConnackError: true })
  client.on('error', () => {})
  const acked = new Set<string>()
  let next = 0
  let outstanding = 0
  const done = new Promise<void>((resolve) => {
    const pump = (): void => {
      while (next < count && outstanding < window) {
        const payload = `${prefix}${next++}`
        outstanding++
        client.publish(topic, payload, { qos: 1 }, (err) => {
          outstanding--
          if (!err) acked.add(payload)
          if (next >= count && outstanding === 0) resolve()
          else pump()
        })
      }
    }
    client.once('connect', pump)
  })
  return { acked, sent: () => next, client, done }
}

// Replication lag injected on the replica's link (ms), and the gateway's waitReplicas. With
// SENTINEL_WAIT_REPLICAS=0 this test shows what asynchronous replication loses (README).
const LAG_MS = Number(process.env.SENTINEL_LAG_MS ?? 100)
const WAIT_REPLICAS = Number(process.env.SENTINEL_WAIT_REPLICAS ?? 1)
// SENTINEL_FAILOVER_DETECTOR=0 turns ioredis' failoverDetector off (the manual failover then loses without waitReplicas).
const DETECTOR = process.env.SENTINEL_FAILOVER_DETECTOR === '0' ? ', options: { failoverDetector: false }' : ''

describe('Redis Sentinel: primary SIGKILLed mid-stream (real redis-sentinel x3, primary + replica, two gateway processes)', () => {
  const group = new TestSentinelGroup({ replicationDelayMs: LAG_MS, gatewayOptions: `waitReplicas: ${WAIT_REPLICAS}${DETECTOR}` })
  const nodes: ClusterNode[] = []
  const clients: MqttClient[] = []

  before(async () => {
    await group.start()
    nodes.push(await startNode(group, 'gw-a', { persistence: { maxOfflineQueue: 10000 } }))
    nodes.push(await startNode(group, 'gw-b', { persistence: { maxOfflineQueue: 10000 } }))
  })
  after(async () => {
    for (const c of clients) c.end(true)
    for (const n of nodes) await n.crash()
    await group.stop()
  })

  it(`the gateways follow the failover, /readyz is 503 during it and 200 after, every acknowledged QoS 1 message is delivered (replication lag ${LAG_MS} ms, waitReplicas ${WAIT_REPLICAS})`, async () => {
    const [a, b] = nodes as [ClusterNode, ClusterNode]
    const topic = 'sentinel/t'
    const total = 2000
    // One persistent subscriber online on node B (the bus path from node A), one offline (its queue).
    const online = await connectClient(b.url, { clientId: 'sentinel-online', clean: false })
    clients.push(online)
    const onlineReceived = collect(online)
    await online.subscribeAsync(topic, { qos: 1 })
    const offline = await connectClient(b.url, { clientId: 'sentinel-offline', clean: false })
    await offline.subscribeAsync(topic, { qos: 1 })
    await endClient(offline)

    const oldMaster = group.primary.port
    const readiness = watchReadiness(nodes)
    const pub = streamPublisher(a.url, topic, total, 32)
    clients.push(pub.client)
    await waitFor(() => pub.acked.size >= 400, '400 acknowledged before the crash', 20000)
    const crashedAt = Date.now()
    const ackedBeforeCrash = pub.acked.size
    await group.crashPrimary()

    const newMaster = await pollUntil(() => group.masterPort(), (p) => p !== undefined && p !== oldMaster, 20000, 100)
    const failoverMs = Date.now() - crashedAt
    assert.equal(newMaster, group.replica!.port, 'the sentinels promoted the replica')
    // The old primary comes back (as its supervisor would restart it) and the group has a
    // primary and a replica again: with waitReplicas 1, QoS 1 to persistent sessions resumes then.
    const whole = await group.restartOldPrimary()
    const rejoinedMs = Date.now() - crashedAt
    let bound: NodeJS.Timeout | undefined
    await Promise.race([pub.done, new Promise((resolve) => { bound = setTimeout(resolve, 20000) })])
    clearTimeout(bound)
    const publishedMs = Date.now() - crashedAt
    readiness.stop()
    assert.equal(pub.acked.size, total, `the publisher got a PUBACK for all ${total} (has ${pub.acked.size}) after the failover`)

    for (const n of nodes) {
      const after = readiness.seen.get(n.id)!.filter(([t]) => t >= crashedAt)
      const firstDown = after.findIndex(([, s]) => s === 503)
      assert.ok(firstDown >= 0, `${n.id}: /readyz went 503 after the primary died`)
      const backUp = after.slice(firstDown).findIndex(([, s]) => s === 200)
      assert.ok(backUp >= 0, `${n.id}: /readyz back to 200 after the failover`)
      console.log(`# ${n.id}: /readyz 503 for ${after[firstDown + backUp]![0] - after[firstDown]![0]} ms`)
    }

    // What the online subscriber missed while its node's bus switched primaries waits in its
    // queue (the gateway may also have closed it on a failed store), so it resumes its session as
    // a device would. Both subscribers must then hold every message that got a PUBACK.
    await endClient(online)
    const onlineAgain = await connectCollecting(b.url, { clientId: 'sentinel-online', clean: false })
    const offlineAgain = await connectCollecting(a.url, { clientId: 'sentinel-offline', clean: false })
    clients.push(onlineAgain.client, offlineAgain.client)
    const missing = (got: Received[]): string[] => { const have = new Set(got.map((m) => m.payload)); return [...pub.acked].filter((p) => !have.has(p)) }
    const onlineAll = (): Received[] => [...onlineReceived, ...onlineAgain.received]
    await pollUntil(async () => missing(onlineAll()).length + missing(offlineAgain.received).length, (n) => n === 0, 15000, 100)
    const dups = (got: Received[]): number => got.length - new Set(got.map((m) => m.payload)).size
    console.log(`# Sentinel group ready in ${group.startMs} ms; failover ${failoverMs} ms, group whole again after ${rejoinedMs} ms (primary ${whole.master === oldMaster ? 'the old one, promoted again' : 'the promoted replica'}), all acknowledged after ${publishedMs} ms, all delivered after ${Date.now() - crashedAt} ms; ${ackedBeforeCrash} acked before the crash, ${total} in all; ` +
      `online subscriber missing ${missing(onlineAll()).length}, duplicates ${dups(onlineAll())}; ` +
      `offline subscriber missing ${missing(offlineAgain.received).length}, duplicates ${dups(offlineAgain.received)}`)
    assert.deepEqual(missing(onlineAll()), [], 'the online subscriber received every acknowledged message')
    assert.deepEqual(missing(offlineAgain.received), [], 'the offline subscriber received every acknowledged message')
    // The bus follows too: a message published on node A now reaches node B live, through the promoted primary.
    await pub.client.publishAsync(topic, 'after-failover', { qos: 1 })
    await waitFor(() => onlineAgain.received.some((m) => m.payload === 'after-failover') && offlineAgain.received.some((m) => m.payload === 'after-failover'), 'a live message across nodes after the failover', 5000)
    await Promise.all([endClient(onlineAgain.client), endClient(offlineAgain.client), endClient(pub.client)])
  })

  it('a manual failover (SENTINEL FAILOVER, the old primary stays up until Sentinel demotes it): nothing acknowledged is lost', async () => {
    const [a, b] = nodes as [ClusterNode, ClusterNode]
    const topic = 'sentinel/manual'
    // An offline persistent session: whatever reaches it must come from its queue in Redis.
    const sub = await connectClient(b.url, { clientId: 'manual-sub', clean: false })
    await sub.subscribeAsync(topic, { qos: 1 })
    await endClient(sub)
    const before = (await group.masterPort())!
    const first = streamPublisher(a.url, topic, 200, 16, 'manual-pub', 'before-')
    clients.push(first.client)
    await first.done
    const switchedAt = Date.now()
    const after = await group.manualFailover()
    assert.notEqual(after, before, 'the sentinels switched primaries')
    // Published after the switch, while the old primary still runs as a primary: Sentinel demotes
    // it some seconds later, and its data is then replaced by the new primary's.
    const second = streamPublisher(a.url, topic, 300, 16, 'manual-pub2', 'after-')
    clients.push(second.client)
    await group.settled()
    const demotedMs = Date.now() - switchedAt
    let bound: NodeJS.Timeout | undefined
    await Promise.race([second.done, new Promise((resolve) => { bound = setTimeout(resolve, 20000) })])
    clearTimeout(bound)
    assert.equal(second.acked.size, 300, `the publisher got a PUBACK for all 300 after the switch (has ${second.acked.size})`)
    const acked = [...first.acked, ...second.acked]
    const back = await connectCollecting(b.url, { clientId: 'manual-sub', clean: false })
    clients.push(back.client)
    const missing = (): string[] => { const have = new Set(back.received.map((m) => m.payload)); return acked.filter((p) => !have.has(p)) }
    await pollUntil(async () => missing().length, (n) => n === 0, 10000, 100)
    console.log(`# manual failover: old primary demoted ${demotedMs} ms after SENTINEL FAILOVER, stream done after ${Date.now() - switchedAt} ms; offline subscriber missing ${missing().length} of ${acked.length}`)
    assert.deepEqual(missing(), [], 'every acknowledged message delivered')
    await Promise.all([endClient(back.client), endClient(first.client), endClient(second.client)])
  })
})
