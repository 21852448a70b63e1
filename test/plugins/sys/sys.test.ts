/**
 * The $SYS plugin against real gateways and real MQTT clients: a superuser reads the
 * Mosquitto-named tree, the values follow the traffic, a normal user is refused, the
 * interval is honoured, and in Redis mode each node has its own tree.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { aclPlugin } from '../../../plugins/acl/plugin.js'
import { authPlugin } from '../../../plugins/auth/plugin.js'
import { hashPassword } from '../../../plugins/auth/password-hash.js'
import { flowPlugin } from '../../../plugins/flow/plugin.js'
import { LoadAverage } from '../../../plugins/sys/load-average.js'
import { sysPlugin } from '../../../plugins/sys/plugin.js'
import { parseConfig } from '../../../src/config/load.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { collect, connectClient, endClient, pollUntil, subscribeRaw, waitFor, type Received } from '../../helpers/mqtt.js'
import { TestRedis } from '../../helpers/redis.js'

const PLUGINS = [authPlugin, aclPlugin, flowPlugin, sysPlugin]
const VERSION = (JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as { version: string }).version

/** The Mosquitto topics the plugin publishes under its prefix. */
const TOPICS = [
  'version', 'uptime', 'clients/connected', 'clients/disconnected', 'clients/total', 'clients/maximum',
  'messages/received', 'messages/sent', 'publish/messages/received', 'publish/messages/sent', 'publish/messages/dropped',
  'bytes/received', 'bytes/sent', 'subscriptions/count', 'retained messages/count', 'heap/current',
  ...['messages/received', 'messages/sent', 'publish/received', 'publish/sent', 'publish/dropped', 'bytes/received', 'bytes/sent', 'connections']
    .flatMap((n) => ['1min', '5min', '15min'].map((w) => `load/${n}/${w}`))
]

/** The last value seen of each $SYS topic (under `prefix`), by topic name after it. */
function latest (received: Received[], prefix: string): Map<string, string> {
  const values = new Map<string, string>()
  for (const m of received) if (m.topic.startsWith(prefix + '/')) values.set(m.topic.slice(prefix.length + 1), m.payload)
  return values
}

const num = (values: Map<string, string>, name: string): number => Number(values.get(name) ?? NaN)

describe('$SYS statistics (memory mode, auth + ACL)', () => {
  let gw: TestGateway
  let ops: MqttClient
  let opsReceived: Received[]
  const arrivals: Array<{ at: number, payload: string }> = []

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-sys-'))
    writeFileSync(join(dir, 'acl.yaml'), 'rules:\n  - { permission: allow, action: all, topics: ["demo/#"] }\n')
    const [opsHash, aliceHash] = await Promise.all([hashPassword('ops-pw'), hashPassword('alice-pw')])
    gw = await startTestGateway(`
auth:
  users:
    - { username: ops, passwordHash: "${opsHash}", superuser: true }
    - { username: alice, passwordHash: "${aliceHash}" }
acl: { file: acl.yaml }
flow: {}
sys: { intervalS: 1 }
`, { plugins: PLUGINS, baseDir: dir })
    ops = await connectClient(gw.mqttUrl, { clientId: 'ops-1', username: 'ops', password: 'ops-pw' })
    opsReceived = collect(ops)
    ops.on('message', (topic, payload) => { if (topic === '$SYS/broker/uptime') arrivals.push({ at: Date.now(), payload: payload.toString() }) })
    assert.deepEqual(await subscribeRaw(ops, { '$SYS/broker/#': { qos: 0 } }), [0])
  })

  after(async () => {
    await endClient(ops, true)
    await gw.stop()
  })

  it('a superuser receives every Mosquitto topic, retained, QoS 0, with well-formed values', async () => {
    await waitFor(() => TOPICS.every((t) => latest(opsReceived, '$SYS/broker').has(t)), 'every $SYS topic')
    const values = latest(opsReceived, '$SYS/broker')
    assert.deepEqual([...values.keys()].sort(), [...TOPICS].sort())
    // Published before the SUBSCRIBE: delivered from the retained store.
    for (const t of TOPICS) {
      const first = opsReceived.find((m) => m.topic === `$SYS/broker/${t}`)!
      assert.equal(first.retain, true, `${t} retained`)
      assert.equal(first.qos, 0)
    }
    assert.equal(values.get('version'), `mqtt-gateway version ${VERSION}`)
    assert.match(values.get('uptime')!, /^\d+ seconds$/)
    for (const t of TOPICS.filter((t) => t !== 'version' && t !== 'uptime')) {
      assert.match(values.get(t)!, t.startsWith('load/') ? /^\d+\.\d\d$/ : /^\d+$/, t)
    }
    // The retained values were taken at start, before anyone connected; the next update
    // counts ops' connection and subscription.
    const now = await pollUntil(async () => latest(opsReceived, '$SYS/broker'), (v) => num(v, 'clients/connected') === 1 && num(v, 'subscriptions/count') === 1, 5000)
    assert.equal(num(now, 'clients/connected'), 1)
    assert.equal(num(now, 'subscriptions/count'), 1)
    assert.equal(num(now, 'clients/maximum'), 1)
  })

  it('values follow the traffic: connections, messages, bytes, retained, load, persistent sessions gone offline', async () => {
    const read = (): Map<string, string> => latest(opsReceived, '$SYS/broker')
    // A snapshot taken with ops alone connected and subscribed.
    await waitFor(() => num(read(), 'clients/connected') === 1 && num(read(), 'subscriptions/count') === 1, 'a snapshot with ops connected')
    const before = read()
    const alice = await connectClient(gw.mqttUrl, { clientId: 'alice-1', username: 'alice', password: 'alice-pw', clean: false })
    const aliceReceived = collect(alice)
    await alice.subscribeAsync('demo/#', { qos: 1 })
    for (let i = 0; i < 20; i++) await alice.publishAsync('demo/load', `m${i}`, { qos: 1 })
    await alice.publishAsync('demo/kept', 'retained', { qos: 1, retain: true })
    await waitFor(() => aliceReceived.length >= 21, 'alice receives her messages')
    const grown = (v: Map<string, string>): boolean =>
      num(v, 'publish/messages/received') >= num(before, 'publish/messages/received') + 21 &&
      num(v, 'publish/messages/sent') >= num(before, 'publish/messages/sent') + 21 &&
      // Each QoS 1 PUBLISH is a packet in and its PUBACK one out, plus CONNECT, SUBSCRIBE...
      num(v, 'messages/received') >= num(before, 'messages/received') + 21 + 21 + 2 &&
      num(v, 'messages/sent') >= num(before, 'messages/sent') + 21 + 21 + 2 &&
      num(v, 'bytes/received') > num(before, 'bytes/received') + 21 * 10 &&
      num(v, 'bytes/sent') > num(before, 'bytes/sent') + 21 * 10 &&
      num(v, 'clients/connected') === num(before, 'clients/connected') + 1 &&
      num(v, 'clients/maximum') >= num(before, 'clients/connected') + 1 &&
      num(v, 'subscriptions/count') === num(before, 'subscriptions/count') + 1 &&
      num(v, 'retained messages/count') === num(before, 'retained messages/count') + 1 &&
      num(v, 'load/publish/received/1min') > 0 &&
      num(v, 'load/connections/1min') > 0
    const after = await pollUntil(async () => read(), grown, 5000)
    assert.ok(grown(after), `values grew: before ${JSON.stringify(Object.fromEntries(before))} after ${JSON.stringify(Object.fromEntries(after))}`)

    // A persistent session that goes offline counts as disconnected until it comes back.
    const offlineBefore = num(after, 'clients/disconnected')
    await endClient(alice)
    const offline = await pollUntil(async () => read(), (v) => num(v, 'clients/disconnected') === offlineBefore + 1, 5000)
    assert.equal(num(offline, 'clients/disconnected'), offlineBefore + 1)
    assert.equal(num(offline, 'clients/total'), num(offline, 'clients/connected') + num(offline, 'clients/disconnected'))
    const back = await connectClient(gw.mqttUrl, { clientId: 'alice-1', username: 'alice', password: 'alice-pw', clean: false })
    const online = await pollUntil(async () => read(), (v) => num(v, 'clients/disconnected') === offlineBefore, 5000)
    assert.equal(num(online, 'clients/disconnected'), offlineBefore)
    await endClient(back)
  })

  it('a normal user may not subscribe to $SYS, and a wildcard never delivers it', async () => {
    const alice = await connectClient(gw.mqttUrl, { clientId: 'alice-2', username: 'alice', password: 'alice-pw' })
    const received = collect(alice)
    assert.deepEqual(await subscribeRaw(alice, { '$SYS/broker/#': { qos: 0 }, '$SYS/broker/uptime': { qos: 0 }, 'demo/#': { qos: 0 } }), [128, 128, 0])
    // Marker: wait for two more uptime updates (seen by ops), then a message on alice's path.
    const seen = arrivals.length
    await waitFor(() => arrivals.length >= seen + 2, 'two more $SYS updates')
    await alice.publishAsync('demo/marker', 'marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'marker'), 'the marker')
    assert.deepEqual(received.filter((m) => m.topic.startsWith('$SYS')), [])
    await endClient(alice)
  })

  it('clients cannot publish to $SYS, not even a superuser', async () => {
    const admin = await connectClient(gw.mqttUrl, { clientId: 'ops-2', username: 'ops', password: 'ops-pw' })
    const closed = new Promise<void>((resolve) => admin.once('close', () => resolve()))
    admin.publish('$SYS/broker/uptime', 'forged')
    await closed
    // The next update is the broker's own value, never the forged one.
    const seen = arrivals.length
    await waitFor(() => arrivals.length > seen, 'the next uptime')
    assert.ok(!opsReceived.some((m) => m.payload === 'forged'))
    await endClient(admin, true)
  })

  it('honours intervalS: one uptime update per second, each one second later', async () => {
    const seen = arrivals.length
    await waitFor(() => arrivals.length >= seen + 4, 'four uptime updates', 10000)
    const run = arrivals.slice(seen, seen + 4)
    for (let i = 1; i < run.length; i++) {
      // Each gap near 1 s (timers on a loaded machine fire late, never early by much)...
      const gap = run[i]!.at - run[i - 1]!.at
      assert.ok(gap >= 500 && gap <= 2000, `gap ${gap} ms between uptime updates (intervalS: 1)`)
      assert.equal(Number.parseInt(run[i]!.payload), Number.parseInt(run[i - 1]!.payload) + 1)
    }
    // ...and three of them about 3 s: not 10 s (the default), not a burst.
    const span = run[3]!.at - run[0]!.at
    assert.ok(span >= 2500 && span <= 4000, `three intervals took ${span} ms`)
    // Unchanged values are not published again (as Mosquitto): version came once, from the store.
    assert.equal(opsReceived.filter((m) => m.topic === '$SYS/broker/version').length, 1)
  })
})

describe('$SYS configuration', () => {
  const parse = (yaml: string): unknown => parseConfig(yaml, { plugins: [sysPlugin], env: {} })

  it('Redis mode needs a per-node prefix; the prefix stays under $SYS/ without wildcards', () => {
    assert.throws(() => parse('persistence: { type: redis }\nsys: {}'), /sys\.prefix: with persistence\.type redis the tree must be per node/)
    assert.doesNotThrow(() => parse('persistence: { type: redis }\nsys: { prefix: "$SYS/brokers/${node}" }'))
    assert.doesNotThrow(() => parse('sys: {}'))
    assert.throws(() => parse('sys: { prefix: "stats/broker" }'), /sys\.prefix: must start with "\$SYS\/"/)
    assert.throws(() => parse('sys: { prefix: "$SYS/+/x" }'), /sys\.prefix: wildcards/)
    assert.throws(() => parse('sys: { prefix: "$SYS/n-${node}" }'), /sys\.prefix: the only variable/)
    assert.throws(() => parse('sys: { prefix: "$SYS/broker/" }'), /sys\.prefix: empty topic level/)
    assert.throws(() => parse('sys: { intervalS: 0 }'), /sys\.intervalS/)
  })

  it('load averages follow Mosquitto\'s formula', () => {
    const load = new LoadAverage()
    load.update(0, 0)
    load.update(600, 60) // 600 per minute for a minute
    const [one, five, fifteen] = load.values().map(([, v]) => Number(v))
    assert.equal(one, Number((600 * (1 - Math.exp(-1))).toFixed(2)))
    assert.equal(five, Number((600 * (1 - Math.exp(-1 / 5))).toFixed(2)))
    assert.equal(fifteen, Number((600 * (1 - Math.exp(-1 / 15))).toFixed(2)))
  })
})

describe('$SYS statistics in Redis mode (real redis-server)', () => {
  const redis = new TestRedis()
  const gws: TestGateway[] = []
  before(async () => {
    await redis.start()
    for (const id of ['sys-a', 'sys-b']) {
      gws.push(await startTestGateway(`
node: { id: ${id} }
persistence: { type: redis, redis: ${redis.configYaml} }
sys: { intervalS: 1, prefix: "$SYS/brokers/\${node}" }
`, { plugins: [sysPlugin] }))
    }
  })
  after(async () => {
    for (const gw of gws) await gw.stop()
    await redis.stop()
  })

  it('each node publishes its own tree; a subscriber on one node sees both, with their own counts', async () => {
    const [a, b] = gws as [TestGateway, TestGateway]
    const sub = await connectClient(a.mqttUrl, { clientId: 'sys-sub' })
    const received = collect(sub)
    await sub.subscribeAsync('$SYS/brokers/+/clients/connected', { qos: 0 })
    const onB = await Promise.all([1, 2, 3].map((i) => connectClient(b.mqttUrl, { clientId: `b-${i}` })))
    const counts = async (): Promise<[number, number]> => [num(latest(received, '$SYS/brokers/sys-a'), 'clients/connected'), num(latest(received, '$SYS/brokers/sys-b'), 'clients/connected')]
    const seen = await pollUntil(counts, ([na, nb]) => na === 1 && nb === 3, 10000)
    assert.deepEqual(seen, [1, 3])
    // The retained store is shared: a late subscriber on node a gets node b's tree too.
    const late = await connectClient(a.mqttUrl, { clientId: 'sys-late' })
    const lateReceived = collect(late)
    await late.subscribeAsync('$SYS/brokers/sys-b/version', { qos: 0 })
    await waitFor(() => lateReceived.some((m) => m.retain && m.payload === `mqtt-gateway version ${VERSION}`), 'node b\'s retained version')
    await Promise.all([...onB, sub, late].map((c) => endClient(c)))
  })

  it('a persistent session offline on one node stops counting there when it comes back on another', async () => {
    const [a, b] = gws as [TestGateway, TestGateway]
    const sub = await connectClient(a.mqttUrl, { clientId: 'sys-sub-2' })
    const received = collect(sub)
    await sub.subscribeAsync('$SYS/brokers/+/clients/disconnected', { qos: 0 })
    const disconnected = async (): Promise<number> => num(latest(received, '$SYS/brokers/sys-b'), 'clients/disconnected')
    await waitFor(() => latest(received, '$SYS/brokers/sys-b').has('clients/disconnected'), 'node b\'s value')
    const before = await disconnected()
    const device = await connectClient(b.mqttUrl, { clientId: 'roaming-1', clean: false })
    await endClient(device)
    assert.equal(await pollUntil(disconnected, (n) => n === before + 1, 10000), before + 1, 'offline on node b')
    // Back on node a: node b, which held the id, is told (src/persistence/client-registry.ts).
    const back = await connectClient(a.mqttUrl, { clientId: 'roaming-1', clean: false })
    assert.equal(await pollUntil(disconnected, (n) => n === before, 10000), before, 'no longer offline on node b')
    // A takeover from node a of a session connected on node b: b's connection closes, and
    // the session is online (on a), not offline on b.
    const onB = await connectClient(b.mqttUrl, { clientId: 'roaming-2', clean: false })
    const closedOnB = new Promise<void>((resolve) => onB.once('close', () => resolve()))
    const onA = await connectClient(a.mqttUrl, { clientId: 'roaming-2', clean: false })
    await closedOnB
    // Marker: two more uptime updates of node b after the takeover.
    const uptimes = (): number => received.filter((m) => m.topic === '$SYS/brokers/sys-b/uptime').length
    await sub.subscribeAsync('$SYS/brokers/sys-b/uptime', { qos: 0 })
    const seen = uptimes()
    await waitFor(() => uptimes() >= seen + 2, 'two uptime updates of node b', 10000)
    assert.equal(await disconnected(), before, 'a session taken over by another node is not offline')
    await Promise.all([back, onA, sub].map((c) => endClient(c)))
    onB.end(true)
  })
})
