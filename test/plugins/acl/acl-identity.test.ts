import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { aclPlugin } from '../../../plugins/acl/plugin.js'
import { authPlugin } from '../../../plugins/auth/plugin.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { startBusinessService } from '../../helpers/http-server.js'
import { collect, connectClient, endClient, sleep, subscribeRaw, waitFor } from '../../helpers/mqtt.js'

/**
 * Security issue #11 B: the ACL holds for every identity and every path. Every decision
 * belongs to an identity (user name, claims, client id), never to a client id alone.
 */
const RULES = `
rules:
  - { permission: allow, action: subscribe, topics: ["user/\${username}/inbox"] }
  - { permission: allow, action: publish,   topics: ["user/\${username}/status", "device/\${clientid}/telemetry"] }
  - { permission: allow, action: all,       topics: ["live/+/chat"], callback: live }
  - { permission: allow, action: all,       topics: ["open/#"] }
  - { permission: allow, action: all,       topics: ["\$SYS/#"], who: { superuser: true } }
  - { permission: deny,  action: all,       topics: ["#"] }
`

describe('ACL bound to identities (issue #11 B)', () => {
  let gw: TestGateway
  let service: Awaited<ReturnType<typeof startBusinessService>>
  let root: MqttClient
  let rootReceived: ReturnType<typeof collect>
  const paid = new Set<string>(['alice'])

  before(async () => {
    service = await startBusinessService((call) => {
      if (call.path === '/mqtt/auth') {
        if (call.body.password !== 'pw') return { json: { result: 'deny' } }
        return { json: { result: 'allow', superuser: call.body.username === 'root' } }
      }
      return { json: { result: paid.has(call.body.username as string) ? 'allow' : 'deny' } }
    })
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-acl-id-'))
    writeFileSync(join(dir, 'acl.yaml'), RULES)
    gw = await startTestGateway(`
auth:
  http: { url: ${service.url}/mqtt/auth, cacheTtlMs: 60000 }
acl:
  file: acl.yaml
  callbacks:
    live: { url: ${service.url}/mqtt/acl, timeoutMs: 1000, cacheTtlMs: 300, denyCacheTtlMs: 300 }
  clientIds: ["\${username}-*", "dev-*"]
`, { plugins: [authPlugin, aclPlugin], baseDir: dir })
    root = await connectClient(gw.mqttUrl, { username: 'root', password: 'pw', clientId: 'root-observer' })
    rootReceived = collect(root)
    await root.subscribeAsync('#', { qos: 1 })
  })
  after(async () => {
    await endClient(root)
    await gw.stop()
    await service.close()
  })

  const connect = (username: string, clientId: string, opts: Record<string, unknown> = {}): Promise<MqttClient> =>
    connectClient(gw.mqttUrl, { username, password: 'pw', clientId, ...opts })
  const refusedWith = async (username: string, clientId: string, opts: Record<string, unknown> = {}): Promise<number | undefined> =>
    connect(username, clientId, opts).then(async (c) => { await endClient(c); return 0 }, (err: { code?: number }) => err.code)

  it('the ACL callback cache is keyed by identity: a decision for alice is not reused for bob on the same client id', async () => {
    const aclCalls = (): number => service.calls.filter((c) => c.path === '/mqtt/acl').length
    const alice = await connect('alice', 'dev-phone-42')
    assert.deepEqual(await subscribeRaw(alice, { 'live/7/chat': { qos: 0 } }), [0])
    await alice.publishAsync('live/7/chat', 'alice-paid', { qos: 1 })
    await waitFor(() => rootReceived.some((m) => m.payload === 'alice-paid'), 'alice\'s message')
    await endClient(alice)
    const before = aclCalls()
    const bob = await connect('bob', 'dev-phone-42')
    assert.deepEqual(await subscribeRaw(bob, { 'live/7/chat': { qos: 0 } }), [128], 'bob is asked about, and refused')
    await bob.publishAsync('live/7/chat', 'bob-unpaid', { qos: 1 })
    await bob.publishAsync('open/marker', 'bob-marker', { qos: 1 })
    await waitFor(() => rootReceived.some((m) => m.payload === 'bob-marker'), 'bob\'s marker after his refused publish')
    assert.ok(!rootReceived.some((m) => m.payload === 'bob-unpaid'), 'bob\'s publish to the paid topic was dropped')
    assert.equal(aclCalls() - before, 2, 'the callback was asked for bob (subscribe and publish), not answered from alice\'s cache')
    await endClient(bob)
  })

  it('forward time fails closed: a filter the callback refused never delivers from the stored queue, even after the cache expired', async () => {
    // alice's persistent session asks for a paid topic of another room that the service refuses,
    // together with an allowed filter (one SUBSCRIBE: aedes#200 stored both before the fix).
    paid.delete('alice')
    const sub = await connect('alice', 'alice-persistent', { clean: false })
    assert.deepEqual(await subscribeRaw(sub, { 'open/feed': { qos: 1 }, 'live/9/chat': { qos: 1 } }), [1, 128])
    await endClient(sub)
    paid.add('alice')
    await sleep(400) // the callback's decisions (300 ms) have expired: nothing cached says "deny"
    await root.publishAsync('live/9/chat', 'queued-refused', { qos: 1 })
    await root.publishAsync('open/feed', 'queued-marker', { qos: 1 })
    const back = await connect('alice', 'alice-persistent', { clean: false })
    const received = collect(back)
    await waitFor(() => received.some((m) => m.payload === 'queued-marker'), 'the queued marker')
    await root.publishAsync('live/9/chat', 'live-refused', { qos: 1 })
    await root.publishAsync('open/feed', 'live-marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'live-marker'), 'the live marker')
    assert.deepEqual(received.map((m) => m.payload), ['queued-marker', 'live-marker'])
    await endClient(back, true)
    const clean = await connect('alice', 'alice-persistent')
    await endClient(clean)
  })

  it('a will is authorized at CONNECT as its owner: another user\'s topic, a wildcard or $SYS is refused with 0x05', async () => {
    const will = (topic: string): Record<string, unknown> => ({ will: { topic, payload: Buffer.from('forged'), qos: 1, retain: true } })
    assert.equal(await refusedWith('bob', 'bob-w1', will('user/alice/inbox')), 5)
    assert.equal(await refusedWith('bob', 'bob-w2', will('user/bob/#')), 5)
    assert.equal(await refusedWith('bob', 'bob-w3', will('$SYS/broker/x')), 5)
    // An allowed will is accepted, and fires when its owner vanishes.
    const bob = await connect('bob', 'bob-w4', { will: { topic: 'user/bob/status', payload: Buffer.from('bob-gone'), qos: 1, retain: false } })
    bob.stream.destroy()
    await waitFor(() => rootReceived.some((m) => m.payload === 'bob-gone'), 'bob\'s own will')
    assert.ok(!rootReceived.some((m) => m.payload === 'forged'))
  })

  it('acl.clientIds binds client ids to identities: another user\'s id is refused with 0x05 and its owner is not kicked', async () => {
    const alice = await connect('alice', 'alice-phone')
    const received = collect(alice)
    await alice.subscribeAsync('user/alice/inbox', { qos: 1 })
    assert.equal(await refusedWith('bob', 'alice-phone'), 5)
    assert.equal(await refusedWith('bob', 'carol-phone'), 5)
    await root.publishAsync('user/alice/inbox', 'still-here', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'still-here'), 'alice still connected')
    assert.equal(alice.connected, true)
    // Superusers are exempt; a user's own pattern works.
    const rootOther = await connect('root', 'anything-goes')
    await endClient(rootOther)
    await endClient(alice)
  })

  it('a persistent session belongs to its user: another user cannot resume or discard it, and its queue survives', async () => {
    const alice = await connect('alice', 'dev-shared', { clean: false })
    await alice.subscribeAsync('user/alice/inbox', { qos: 1 })
    await endClient(alice)
    await root.publishAsync('user/alice/inbox', 'queued-for-alice', { qos: 1 })
    assert.equal(await refusedWith('bob', 'dev-shared', { clean: false }), 5, 'resume refused')
    assert.equal(await refusedWith('bob', 'dev-shared', { clean: true }), 5, 'discard refused')
    const back = await connect('alice', 'dev-shared', { clean: false })
    const received = collect(back)
    await waitFor(() => received.some((m) => m.payload === 'queued-for-alice'), 'alice\'s queued message')
    await endClient(back)
    // The owner discards it with a clean CONNECT; then the id is free for another user.
    const cleanAlice = await connect('alice', 'dev-shared', { clean: true })
    await endClient(cleanAlice)
    await waitFor(() => true, 'tick')
    const bob = await connect('bob', 'dev-shared', { clean: false })
    await endClient(bob)
    assert.equal(await refusedWith('alice', 'dev-shared', { clean: false }), 5, 'now bob owns it')
  })
})
