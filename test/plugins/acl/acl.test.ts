import assert from 'node:assert/strict'
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { aclPlugin } from '../../../plugins/acl/plugin.js'
import { authPlugin } from '../../../plugins/auth/plugin.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { startBusinessService, type Reply } from '../../helpers/http-server.js'
import { closesWithin, collect, connectClient, endClient, subscribeRaw, waitFor } from '../../helpers/mqtt.js'

const RULES = `
rules:
  - { permission: allow, action: subscribe, topics: ["user/\${username}/inbox", "user/\${username}/notify/#"] }
  - { permission: allow, action: publish,   topics: ["device/\${clientid}/telemetry"] }
  - { permission: allow, action: all,       topics: ["live/+/chat"], callback: live }
  - { permission: allow, action: subscribe, topics: ["uid/\${claims.uid}/#"] }
  - { permission: allow, action: all,       topics: ["\$SYS/#"], who: { superuser: true } }
  - { permission: allow, action: all,       topics: ["eq lit/+/x"] }
  - { permission: allow, action: publish,   topics: ["user/+/inbox", "user/+/notify/#", "uid/+/#", "open/#"] }
  - { permission: deny,  action: subscribe, topics: ["open/secret"] }
  - { permission: allow, action: subscribe, topics: ["open/#"] }
  - { permission: deny,  action: all,       topics: ["#"] }
`

describe('ACL plugin with real clients, a real business service and a real rules file', () => {
  let gw: TestGateway
  let service: Awaited<ReturnType<typeof startBusinessService>>
  let aclFile: string
  const paid = new Set<string>(['alice'])
  let liveReply: ((body: Record<string, unknown>) => Reply) | undefined
  let root: MqttClient
  let rootReceived: ReturnType<typeof collect>

  const authReply = (body: Record<string, unknown>): Reply => {
    const username = body.username as string
    if (body.password !== 'pw') return { json: { result: 'deny' } }
    return { json: { result: 'allow', superuser: username === 'root', claims: { uid: username === 'alice' ? '1001' : '2002' } } }
  }

  before(async () => {
    service = await startBusinessService((call) => {
      if (call.path === '/mqtt/auth') return authReply(call.body)
      if (liveReply) return liveReply(call.body)
      return { json: { result: paid.has(call.body.username as string) ? 'allow' : 'deny' } }
    })
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-acl-'))
    aclFile = join(dir, 'acl.yaml')
    writeFileSync(aclFile, RULES)
    gw = await startTestGateway(`
auth:
  http: { url: ${service.url}/mqtt/auth, timeoutMs: 2000, cacheTtlMs: 60000 }
acl:
  file: ${aclFile}
  noMatch: deny
  denyAction: ignore
  callbacks:
    live: { url: ${service.url}/mqtt/acl, timeoutMs: 300, cacheTtlMs: 30000 }
`, { plugins: [authPlugin, aclPlugin] })
    root = await connectClient(gw.mqttUrl, { username: 'root', password: 'pw', clientId: 'root-observer' })
    rootReceived = collect(root)
    await root.subscribeAsync('#', { qos: 1 })
  })
  after(async () => {
    await endClient(root)
    await gw.stop()
    await service.close()
  })

  const connect = (username: string, clientId?: string, clean = true): Promise<MqttClient> =>
    connectClient(gw.mqttUrl, { username, password: 'pw', clean, ...(clientId ? { clientId } : {}) })

  it('subscribe: own inbox and notify subtree granted, others refused with 0x80 in the same SUBSCRIBE', async () => {
    const alice = await connect('alice')
    const granted = await subscribeRaw(alice, {
      'user/alice/inbox': { qos: 1 }, 'user/alice/notify/#': { qos: 1 }, 'user/alice/notify/a/b': { qos: 0 },
      'user/bob/inbox': { qos: 1 }, 'user/+/inbox': { qos: 1 }, 'user/#': { qos: 1 }, '#': { qos: 1 }
    })
    assert.deepEqual(granted, [1, 1, 0, 128, 128, 128, 128])
    const received = collect(alice)
    await root.publishAsync('user/bob/inbox', 'hi bob', { qos: 1 })
    // Marker: the same publisher, same QoS, after bob's message, to alice's own inbox.
    await root.publishAsync('user/alice/inbox', 'hi alice', { qos: 1 })
    await waitFor(() => received.some((m) => m.topic === 'user/alice/inbox'), 'alice inbox')
    assert.deepEqual(received.map((m) => m.topic), ['user/alice/inbox'])
    await endClient(alice)
  })

  it('publish: ${clientid} template; a denied QoS 0 is dropped and a denied QoS 1 acknowledged but dropped (denyAction ignore)', async () => {
    const dev = await connect('alice', 'dev-7')
    await dev.publishAsync('device/dev-7/telemetry', 'ok', { qos: 1 })
    await dev.publishAsync('device/dev-8/telemetry', 'spoof-1', { qos: 1 })
    dev.publish('device/dev-8/telemetry', 'spoof-0', { qos: 0 })
    // Markers: allowed messages from the same connection after the denied ones, one per QoS
    // (the gateway keeps one client's publishes in order; QoS 0 and 1 reach root by different paths).
    dev.publish('device/dev-7/telemetry', 'marker-0', { qos: 0 })
    await dev.publishAsync('device/dev-7/telemetry', 'marker-1', { qos: 1 })
    await waitFor(() => ['ok', 'marker-0', 'marker-1'].every((p) => rootReceived.some((m) => m.payload === p)), 'allowed telemetry and markers')
    assert.ok(!rootReceived.some((m) => m.payload.startsWith('spoof')))
    assert.equal(dev.connected, true)
    const denied = gw.logs.find('ACL denied').filter((l) => l.clientId === 'dev-7')
    assert.equal(denied.length, 2)
    assert.deepEqual({ username: denied[0]!.username, topic: denied[0]!.topic, action: denied[0]!.action }, { username: 'alice', topic: 'device/dev-8/telemetry', action: 'publish' })
    await endClient(dev)
  })

  it('claims from the auth callback fill ${claims.uid}', async () => {
    const alice = await connect('alice')
    assert.deepEqual(await subscribeRaw(alice, { 'uid/1001/#': { qos: 0 }, 'uid/2002/#': { qos: 0 } }), [0, 128])
    await endClient(alice)
  })

  it('user names and client ids with +, #, / or empty never widen a rule (template injection)', async () => {
    for (const username of ['#', '+', 'a/+', 'x/#']) {
      const evil = await connect(username, `evil-${Math.random().toString(36).slice(2)}`)
      // The filter a naive string substitution would allow (user/a/+/inbox for "a/+");
      // for "#" and "x/#" that filter is not even valid, so the wildcard ones stand in.
      const filters = [...new Set(['user/+/inbox', 'user/#', ...(username.includes('#') ? [] : [`user/${username}/inbox`])])]
      const granted = await subscribeRaw(evil, Object.fromEntries(filters.map((f) => [f, { qos: 0 as const }])))
      assert.deepEqual(granted, filters.map(() => 128), `username ${username}`)
      await endClient(evil)
    }
    for (const clientId of ['+', 'a/b']) {
      const evil = await connect('alice', clientId)
      const closed = new Promise<void>((resolve) => evil.once('close', () => resolve()))
      await evil.publishAsync('device/x/telemetry', `inject-${clientId}`, { qos: 1 })
      // Marker: an allowed publish (open/#) from the same connection, after the denied one.
      const marker = `marker-${clientId}`
      await evil.publishAsync('open/injection-marker', marker, { qos: 1 })
      await waitFor(() => rootReceived.some((m) => m.payload === marker), `the marker of ${clientId}`)
      // device/+/telemetry is not even a valid PUBLISH topic: the broker closes the connection
      // on it, before authorization or routing. device/a/b/telemetry is denied (and acknowledged).
      evil.publish(`device/${clientId}/telemetry`, `inject2-${clientId}`, { qos: 1 })
      if (clientId === '+') {
        assert.equal(await closesWithin(closed, 5000), true, 'an invalid topic closes the connection')
      } else {
        await evil.publishAsync('open/injection-marker', `${marker}-2`, { qos: 1 })
        await waitFor(() => rootReceived.some((m) => m.payload === `${marker}-2`), `the second marker of ${clientId}`)
      }
      await endClient(evil, true)
    }
    // inject2-+ has no marker of its own connection (it is closed by that very packet); the
    // a/b client's markers, published after the close, went to root the same way.
    assert.deepEqual(rootReceived.filter((m) => m.payload.startsWith('inject')).map((m) => m.payload), [])
  })

  it('eq rule matches the literal filter only', async () => {
    const alice = await connect('alice')
    assert.deepEqual(await subscribeRaw(alice, { 'lit/+/x': { qos: 0 }, 'lit/1/x': { qos: 0 } }), [0, 128])
    await endClient(alice)
  })

  it('$SYS: only superusers may subscribe; nobody may publish', async () => {
    const alice = await connect('alice')
    assert.deepEqual(await subscribeRaw(alice, { '$SYS/#': { qos: 0 } }), [128])
    await endClient(alice)
    const admin = await connect('root')
    assert.deepEqual(await subscribeRaw(admin, { '$SYS/#': { qos: 0 } }), [0])
    const closed = new Promise<void>((resolve) => admin.once('close', () => resolve()))
    admin.publish('$SYS/fake', 'x')
    await closed
    await endClient(admin, true)
  })

  it('callback rule: the business service decides, answers are cached per client/action/topic', async () => {
    service.calls.length = 0
    const alice = await connect('alice', 'alice-live')
    const bob = await connect('bob', 'bob-live')
    assert.deepEqual(await subscribeRaw(alice, { 'live/1/chat': { qos: 0 } }), [0])
    assert.deepEqual(await subscribeRaw(bob, { 'live/1/chat': { qos: 0 } }), [128])
    const aclCalls = (): Array<Record<string, unknown>> => service.calls.filter((c) => c.path === '/mqtt/acl').map((c) => c.body)
    assert.equal(aclCalls().length, 2)
    assert.deepEqual(aclCalls()[0], { clientid: 'alice-live', username: 'alice', action: 'subscribe', topic: 'live/1/chat', claims: { uid: '1001' } })
    // cached: the same question again costs no call
    await alice.unsubscribeAsync('live/1/chat')
    assert.deepEqual(await subscribeRaw(alice, { 'live/1/chat': { qos: 0 } }), [0])
    assert.equal(aclCalls().length, 2)
    // publishing is its own question
    await alice.publishAsync('live/1/chat', 'paid message', { qos: 1 })
    await bob.publishAsync('live/1/chat', 'unpaid message', { qos: 1 })
    // Marker: an allowed publish (open/#, no callback) from bob's connection after the refused one.
    await bob.publishAsync('open/live-marker', 'bob marker', { qos: 1 })
    await waitFor(() => ['paid message', 'bob marker'].every((p) => rootReceived.some((m) => m.payload === p)), 'paid message and bob\'s marker')
    assert.ok(!rootReceived.some((m) => m.payload === 'unpaid message'))
    assert.equal(aclCalls().length, 4)
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /mqgw_callback_cache_total\{callback="acl:live",result="hit"\} [1-9]/)
    assert.match(metrics, /mqgw_callback_duration_seconds_count\{callback="acl:live",outcome="ok"\} [1-9]/)
    await Promise.all([endClient(alice), endClient(bob)])
  })

  for (const [name, reply] of [
    ['times out', { hang: true }],
    ['answers 500', { status: 500, text: 'oops' }],
    ['answers malformed JSON', { status: 200, text: '{"result": ' }],
    ['answers an unknown result', { json: { result: 'maybe' } }]
  ] as Array<[string, Reply]>) {
    it(`callback rule: a service that ${name} denies`, async () => {
      liveReply = () => reply
      try {
        const alice = await connect('alice', `alice-${name.replace(/\W/g, '')}`)
        assert.deepEqual(await subscribeRaw(alice, { [`live/${name.length}/chat`]: { qos: 0 } }), [128])
        assert.ok(gw.logs.lines.some((l) => l.msg === 'ACL callback failed; denying' && l.topic === `live/${name.length}/chat`))
        await endClient(alice)
      } finally {
        liveReply = undefined
      }
    })
  }

  it('denyAction disconnect closes a client that publishes QoS 1 where it may not; QoS 0 is still only dropped', async () => {
    const other = await startTestGateway(`
auth: { http: { url: ${service.url}/mqtt/auth } }
acl: { file: ${aclFile}, denyAction: disconnect, callbacks: { live: { url: ${service.url}/mqtt/acl } } }
`, { plugins: [authPlugin, aclPlugin] })
    try {
      const c = await connectClient(other.mqttUrl, { username: 'alice', password: 'pw' })
      c.publish('forbidden/q0', 'x', { qos: 0 })
      // Marker: a PUBACK for an allowed QoS 1 publish sent after it. The gateway decides one
      // client's publishes in order, so a disconnect for the QoS 0 one would come first.
      await c.publishAsync('open/after-q0', 'marker', { qos: 1 })
      assert.equal(c.connected, true)
      const closed = new Promise<void>((resolve) => c.once('close', () => resolve()))
      c.publish('forbidden/q1', 'x', { qos: 1 })
      await closed
      await endClient(c, true)
    } finally {
      await other.stop()
    }
  })

  it('hot reload: a valid file applies at once, also to existing connections at forward time', async () => {
    const alice = await connect('alice', 'alice-reload')
    const received = collect(alice)
    assert.deepEqual(await subscribeRaw(alice, { 'open/news': { qos: 1 }, 'user/alice/inbox': { qos: 1 } }), [1, 1])
    await root.publishAsync('open/news', 'before', { qos: 1 })
    await waitFor(() => received.length === 1, 'message before reload')
    // Replace the file the way editors do (write + rename): open/# is no longer subscribable.
    const tmp = `${aclFile}.tmp`
    writeFileSync(tmp, RULES.replace('  - { permission: allow, action: subscribe, topics: ["open/#"] }\n', ''))
    renameSync(tmp, aclFile)
    await waitFor(() => gw.logs.lines.some((l) => l.msg === 'ACL rules reloaded' && l.why === 'file changed'), 'reload log')
    await root.publishAsync('open/news', 'after', { qos: 1 })
    // Marker: the same publisher, same QoS, to a subscription the new rules still allow.
    await root.publishAsync('user/alice/inbox', 'reload-marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'reload-marker'), 'the marker')
    assert.deepEqual(received.map((m) => m.payload), ['before', 'reload-marker'])
    assert.equal(alice.connected, true, 'existing connections are kept')
    writeFileSync(aclFile, RULES)
    await waitFor(() => gw.logs.lines.filter((l) => l.msg === 'ACL rules reloaded').length >= 2, 'second reload')
    await endClient(alice)
  })

  it('hot reload: an invalid file is rejected with one clear line and the old rules stay', async () => {
    const before = gw.logs.find('ACL file rejected; previous rules stay in force').length
    writeFileSync(aclFile, 'rules:\n  - { permission: allow, action: everything, topics: ["#"] }\n')
    await waitFor(() => gw.logs.find('ACL file rejected; previous rules stay in force').length > before, 'rejection log')
    const line = gw.logs.find('ACL file rejected; previous rules stay in force').at(-1)!
    assert.match(String(line.err), /rules\[0\]\.action/)
    const alice = await connect('alice')
    assert.deepEqual(await subscribeRaw(alice, { 'user/alice/inbox': { qos: 0 }, 'user/bob/inbox': { qos: 0 } }), [0, 128])
    await endClient(alice)
    // SIGHUP path (Gateway.reload) also validates
    await gw.gateway.reload()
    assert.equal(gw.logs.find('ACL file rejected; previous rules stay in force').at(-1)!.why, 'SIGHUP')
    writeFileSync(aclFile, RULES)
    await gw.gateway.reload()
    assert.equal(gw.logs.find('ACL rules reloaded').at(-1)!.why, 'SIGHUP')
  })

  it('forward time: a persistent session never receives a denied filter\'s messages (aedes#200), nor after an ACL change', async () => {
    // One SUBSCRIBE with an allowed and a denied filter from a clean:false client: Aedes
    // stores both; the forward check must keep the denied one from ever delivering.
    const sub = await connect('alice', 'alice-persistent', false)
    assert.deepEqual(await subscribeRaw(sub, { 'open/feed': { qos: 1 }, 'user/bob/inbox': { qos: 1 } }), [1, 128])
    await endClient(sub)
    await root.publishAsync('open/feed', 'queued-allowed', { qos: 1 })
    await root.publishAsync('user/bob/inbox', 'queued-denied', { qos: 1 })
    const back = await connectClient(gw.mqttUrl, { username: 'alice', password: 'pw', clientId: 'alice-persistent', clean: false })
    const received = collect(back)
    await waitFor(() => received.length >= 1, 'queued allowed message')
    await root.publishAsync('user/bob/inbox', 'live-denied', { qos: 1 })
    // Marker: the same publisher, same QoS, after the denied message.
    await root.publishAsync('open/feed', 'live-allowed', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'live-allowed'), 'live allowed message')
    assert.deepEqual(received.map((m) => m.payload), ['queued-allowed', 'live-allowed'])
    await endClient(back)

    // ACL change while offline: open/# no longer subscribable; the restored session gets nothing.
    writeFileSync(aclFile, RULES.replace('  - { permission: allow, action: subscribe, topics: ["open/#"] }\n', ''))
    await gw.gateway.reload()
    await root.publishAsync('open/feed', 'after-change', { qos: 1 })
    const again = await connectClient(gw.mqttUrl, { username: 'alice', password: 'pw', clientId: 'alice-persistent', clean: false })
    const receivedAgain = collect(again)
    // Marker: a stored queue is sent while CONNECT is handled, before the broker reads this
    // SUBSCRIBE; the marker is then published by the same publisher after 'after-change-live'.
    assert.deepEqual(await subscribeRaw(again, { 'user/alice/inbox': { qos: 1 } }), [1])
    await root.publishAsync('open/feed', 'after-change-live', { qos: 1 })
    await root.publishAsync('user/alice/inbox', 'change-marker', { qos: 1 })
    await waitFor(() => receivedAgain.some((m) => m.payload === 'change-marker'), 'the marker')
    assert.deepEqual(receivedAgain.map((m) => m.payload), ['change-marker'])
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /mqgw_acl_denials_total\{action="forward"\} [1-9]/)
    await endClient(again)
    writeFileSync(aclFile, RULES)
    await gw.gateway.reload()
  })

  it('retained messages are filtered at forward time too', async () => {
    // open/# may be subscribed, but open/secret may not: the wildcard must not leak it.
    await root.publishAsync('open/secret', 'retained-secret', { qos: 1, retain: true })
    await root.publishAsync('open/public', 'retained-public', { qos: 1, retain: true })
    const alice = await connect('alice', 'alice-retained')
    const received = collect(alice)
    assert.deepEqual(await subscribeRaw(alice, { 'open/#': { qos: 1 } }), [1])
    await waitFor(() => received.length >= 1, 'retained public message')
    await root.publishAsync('open/secret', 'live-secret', { qos: 1 })
    // Marker: the same publisher, same QoS, after the live secret. (A leaked retained secret
    // would have come before retained-public: the store sends them in the order first stored.)
    await root.publishAsync('open/public', 'live-marker', { qos: 1 })
    await waitFor(() => received.some((m) => m.payload === 'live-marker'), 'the marker')
    assert.deepEqual(received.map((m) => m.payload), ['retained-public', 'live-marker'])
    await root.publishAsync('open/secret', '', { qos: 1, retain: true })
    await root.publishAsync('open/public', '', { qos: 1, retain: true })
    await endClient(alice)
  })
})
