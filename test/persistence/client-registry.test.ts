import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import msgpack from 'msgpack-lite'
import type { MqttClient } from 'mqtt'
import { CLIENT_NODES_KEY } from '../../src/persistence/client-registry.js'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { connectClient, endClient, pollUntil, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

/** The registry's entry for a client id, polled until it names `node` (it is written just after CONNACK). */
let nodeOf: (clientId: string, node: string) => Promise<string | null>

const closed = (client: MqttClient): Promise<void> => new Promise((resolve) => client.once('close', () => resolve()))

describe('client registry: a CONNECT tells only the node that held the client id (real redis-server, three gateway processes)', () => {
  const redis = new TestRedis()
  const nodes: ClusterNode[] = []
  let a: ClusterNode
  let b: ClusterNode
  let c: ClusterNode
  let conn: Redis
  let watcher: Redis
  /** Every takeover or new-client announcement Redis carried, in order: [channel, client id]. */
  const announced: Array<[string, string]> = []

  before(async () => {
    await redis.start()
    // sessionExpiryS 8: the janitor sweeps every 2 s and a node's heartbeat key lapses 6 s after it dies.
    for (const id of ['reg-a', 'reg-b', 'reg-c']) nodes.push(await startNode(redis, id, { persistence: { sessionExpiryS: 8 } }))
    ;[a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode]
    conn = new Redis(redis.port, '127.0.0.1')
    watcher = new Redis(redis.port, '127.0.0.1')
    nodeOf = (clientId, node) => pollUntil(() => conn.hget(CLIENT_NODES_KEY, clientId), (v) => v === node, 5000)
    // The bus carries each message msgpack-encoded as { id, msg } (mqemitter-redis); msg.payload is the client id.
    watcher.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, message: Buffer) => {
      const name = channel.toString()
      if (name.includes('/new/clients') || name.includes('/takeover/')) {
        announced.push([name, Buffer.from((msgpack.decode(message) as { msg: { payload: Uint8Array } }).msg.payload).toString()])
      }
    })
    await watcher.psubscribe('$SYS/*')
  })
  after(async () => {
    for (const n of nodes) await n.crash()
    watcher.disconnect()
    conn.disconnect()
    await redis.stop()
  })

  it('a second CONNECT of a client id on another node closes the first, with one message to that node only', async () => {
    const onA = await connectClient(a.url, { clientId: 'reg-x' })
    assert.equal(await nodeOf('reg-x', 'reg-a'), 'reg-a')
    const closedOnA = closed(onA)
    const onB = await connectClient(b.url, { clientId: 'reg-x' })
    await closedOnA
    // Marker on the same path: a takeover of reg-y from node b by node c.
    const yOnB = await connectClient(b.url, { clientId: 'reg-y' })
    const yClosed = closed(yOnB)
    const yOnC = await connectClient(c.url, { clientId: 'reg-y' })
    await yClosed
    await waitFor(() => announced.some(([, id]) => id === 'reg-y'), 'the marker takeover message')
    assert.deepEqual(announced, [['$SYS/reg-a/takeover/clients', 'reg-x'], ['$SYS/reg-b/takeover/clients', 'reg-y']],
      'no broadcast to every node: only the node that held the id heard of each CONNECT')
    assert.equal(onB.connected, true)
    assert.equal(yOnC.connected, true)
    assert.equal(await nodeOf('reg-x', 'reg-b'), 'reg-b')
    await Promise.all([endClient(onB), endClient(yOnC)])
  })

  it('a clean session leaves the registry when it disconnects; a persistent session stays until it expires', async () => {
    const persistent = await connectClient(a.url, { clientId: 'reg-p', clean: false })
    await endClient(persistent)
    // Marker: a clean client's release on the same node and the same Redis connection, after reg-p's.
    const clean = await connectClient(a.url, { clientId: 'reg-c1' })
    assert.equal(await nodeOf('reg-c1', 'reg-a'), 'reg-a')
    await endClient(clean)
    assert.equal(await pollUntil(() => conn.hexists(CLIENT_NODES_KEY, 'reg-c1'), (n) => n === 0, 5000), 0, 'clean session removed at disconnect')
    assert.equal(await conn.hget(CLIENT_NODES_KEY, 'reg-p'), 'reg-a', 'persistent session kept: its node must hear of its return')
    // The expiry sweep (8 s offline) removes the session and its entry.
    assert.equal(await pollUntil(() => conn.hexists(CLIENT_NODES_KEY, 'reg-p'), (n) => n === 0, 20000), 0, 'entry removed with the expired session')
  })

  it('a client back on another node after its node died: the will it left there is removed, not published later', async () => {
    const d = await startNode(redis, 'reg-d', { persistence: { sessionExpiryS: 8 } })
    nodes.push(d)
    const watch = await connectClient(b.url, { clientId: 'reg-watch' })
    const seen: string[] = []
    watch.on('message', (topic, payload) => seen.push(`${topic}=${payload.toString()}`))
    await watch.subscribeAsync('status/#', { qos: 1 })
    const will = (id: string): { topic: string, payload: Buffer, qos: 1, retain: boolean } => ({ topic: `status/${id}`, payload: Buffer.from('offline'), qos: 1, retain: false })
    const back = await connectClient(d.url, { clientId: 'reg-w-back', will: will('reg-w-back'), reconnectPeriod: 0 })
    // Marker on the same path: a client of the same node that does not come back; its will is published.
    const gone = await connectClient(d.url, { clientId: 'reg-w-gone', will: will('reg-w-gone'), reconnectPeriod: 0 })
    assert.equal(await nodeOf('reg-w-back', 'reg-d'), 'reg-d')
    assert.equal(await nodeOf('reg-w-gone', 'reg-d'), 'reg-d')
    assert.equal(await conn.exists('will:reg-d:reg-w-back', 'will:reg-d:reg-w-gone'), 2, 'both wills stored by node d')
    await d.crash()
    back.end(true)
    gone.end(true)
    const again = await connectClient(b.url, { clientId: 'reg-w-back' })
    await again.publishAsync('status/reg-w-back', 'online', { qos: 1 })
    assert.equal(await pollUntil(() => conn.exists('will:reg-d:reg-w-back'), (n) => n === 0, 5000), 0, 'the will left on the dead node removed at the CONNECT elsewhere')
    await waitFor(() => seen.includes('status/reg-w-gone=offline'), 'the will of the client that stayed away (node d declared dead)', 20000)
    // Every will node d left has been decided, then a last message on the same subscription.
    await pollUntil(() => conn.lrange('will', 0, -1), (keys) => !keys.some((k) => k.startsWith('will:reg-d:')), 10000)
    await again.publishAsync('status/marker', 'end', { qos: 1 })
    await waitFor(() => seen.includes('status/marker=end'), 'the marker')
    assert.deepEqual(seen.filter((m) => m.startsWith('status/reg-w-back')), ['status/reg-w-back=online'], 'no "offline" will after the client came back')
    await Promise.all([endClient(again), endClient(watch)])
  })

  it('entries of a node that died are removed by the other nodes\' sweep; the id still connects elsewhere', async () => {
    const onC = await connectClient(c.url, { clientId: 'reg-dead' })
    assert.equal(await nodeOf('reg-dead', 'reg-c'), 'reg-c')
    await c.crash()
    onC.end(true)
    assert.equal(await pollUntil(() => conn.hexists(CLIENT_NODES_KEY, 'reg-dead'), (n) => n === 0, 20000), 0, 'entry of the dead node removed')
    const again = await connectClient(b.url, { clientId: 'reg-dead' })
    assert.equal(await nodeOf('reg-dead', 'reg-b'), 'reg-b')
    await endClient(again)
  })
})
