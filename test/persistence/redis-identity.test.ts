import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import type { MqttClient } from 'mqtt'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { startBusinessService } from '../helpers/http-server.js'
import { collect, connectClient, connectCollecting, endClient, pollUntil, waitFor } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'

// The store's own encoding (aedes-persistence-redis keeps wills as msgpack-lite), to plant
// wills as a node that died would have left them.
const msgpack = createRequire(import.meta.url)('msgpack-lite') as { encode: (value: unknown) => Buffer }

const rules = (extra: string): string => `
rules:
${extra}
  - { permission: allow, action: subscribe, topics: ["user/\${username}/inbox"] }
  - { permission: allow, action: publish,   topics: ["user/\${username}/status"] }
  - { permission: allow, action: all,       topics: ["open/#"] }
  - { permission: deny,  action: all,       topics: ["#"] }
`

/**
 * Issue #11 B.4 and B.9 across two real gateway processes sharing a real Redis: a will a
 * dead node left behind is authorized as its owner on the node that publishes it, and a
 * persistent session is only ever resumed by the user who owns it, on any node.
 */
describe('identities across nodes (Redis mode, two gateway processes)', () => {
  const redis = new TestRedis()
  let service: Awaited<ReturnType<typeof startBusinessService>>
  let a: ClusterNode
  let b: ClusterNode
  let db: Redis
  let root: MqttClient
  let rootReceived: ReturnType<typeof collect>

  before(async () => {
    await redis.start()
    db = new Redis(redis.port, '127.0.0.1')
    service = await startBusinessService((call) => {
      if (call.body.password !== 'pw') return { json: { result: 'deny' } }
      return { json: { result: 'allow', superuser: call.body.username === 'root' } }
    })
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-redis-id-'))
    // Node b's rules were changed after carol's will was accepted on node a: her will topic is revoked there.
    writeFileSync(join(dir, 'acl-a.yaml'), rules(''))
    writeFileSync(join(dir, 'acl-b.yaml'), rules('  - { permission: deny, action: publish, topics: ["open/revoked"] }'))
    const yaml = (file: string): string => `
auth: { http: { url: ${service.url}/auth } }
acl: { file: ${join(dir, file)} }
`
    a = await startNode(redis, 'id-a', { yaml: yaml('acl-a.yaml') })
    b = await startNode(redis, 'id-b', { yaml: yaml('acl-b.yaml') })
    root = await connectClient(b.url, { username: 'root', password: 'pw', clientId: 'root-b' })
    rootReceived = collect(root)
    await root.subscribeAsync('#', { qos: 1 })
  })
  after(async () => {
    await endClient(root, true).catch(() => {})
    await a.crash()
    await b.stop()
    db.disconnect()
    await service.close()
    await redis.stop()
  })

  const refusedWith = (url: string, username: string, clientId: string, clean: boolean): Promise<number | undefined> =>
    connectClient(url, { username, password: 'pw', clientId, clean }).then(async (c) => { await endClient(c); return 0 }, (err: { code?: number }) => err.code)

  it('a persistent session belongs to its user on every node: another user is refused (0x05) and the queue survives', async () => {
    const alice = await connectClient(a.url, { username: 'alice', password: 'pw', clientId: 'shared-1', clean: false })
    await alice.subscribeAsync('user/alice/inbox', { qos: 1 })
    await endClient(alice)
    await root.publishAsync('user/alice/inbox', 'queued-for-alice', { qos: 1 })
    assert.equal(await refusedWith(b.url, 'bob', 'shared-1', false), 5)
    assert.equal(await refusedWith(b.url, 'bob', 'shared-1', true), 5)
    const { client: back, received } = await connectCollecting(b.url, { username: 'alice', password: 'pw', clientId: 'shared-1', clean: false })
    await waitFor(() => received.some((m) => m.payload === 'queued-for-alice'), 'alice\'s queued message on the other node')
    await endClient(back)
  })

  it('wills of a dead node are authorized as their owners: allowed ones are delivered, revoked, forged and ownerless ones are dropped', async () => {
    const bob = await connectClient(a.url, { username: 'bob', password: 'pw', clientId: 'bob-1', will: { topic: 'user/bob/status', payload: Buffer.from('bob-will'), qos: 1, retain: false } })
    const carol = await connectClient(a.url, { username: 'carol', password: 'pw', clientId: 'carol-1', will: { topic: 'open/revoked', payload: Buffer.from('revoked-will'), qos: 1, retain: true } })
    // As if bob had managed to store a will on alice's inbox, and as if a will had been stored with no owner.
    const plant = async (clientId: string, packet: Record<string, unknown>): Promise<void> => {
      const key = `will:id-a:${clientId}`
      await db.set(key, msgpack.encode({ ...packet, qos: 1, retain: true, clientId, brokerId: 'id-a' }))
      await db.rpush('will', key)
    }
    await plant('bob-forged', { topic: 'user/alice/inbox', payload: Buffer.from('forged-will'), mqgwOwner: { clientId: 'bob-forged', username: 'bob', superuser: false, claims: {}, listener: 'mqtt' } })
    await plant('ghost', { topic: 'open/ghost', payload: Buffer.from('ownerless-will') })
    void bob
    void carol
    await a.crash()
    await waitFor(() => rootReceived.some((m) => m.payload === 'bob-will'), 'bob\'s will published by node b', 20000)
    // Every will was decided and removed, the denied ones too (none is retried forever).
    await pollUntil(() => db.llen('will'), (n) => n === 0, 10000)
    await root.publishAsync('open/marker', 'after-wills', { qos: 1 })
    await waitFor(() => rootReceived.some((m) => m.payload === 'after-wills'), 'marker after the wills')
    const payloads = rootReceived.map((m) => m.payload)
    for (const dropped of ['revoked-will', 'forged-will', 'ownerless-will']) assert.ok(!payloads.includes(dropped), `${dropped} was published`)
    assert.equal(await db.hget('retained', 'user/alice/inbox'), null)
    assert.equal(await db.hget('retained', 'open/ghost'), null)
    assert.equal(b.child.exitCode, null, 'node b still runs')
  })
})
