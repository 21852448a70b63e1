import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { z } from 'zod'
import type { MqttClient } from 'mqtt'
import { ALLOW, PASS, deny, type AuthVerdict, type PublishVerdict, type SubscribeVerdict, type Verdict } from '../src/hooks/types.js'
import { definePlugin } from '../src/plugin.js'
import { startTestGateway, type TestGateway } from './helpers/gateway.js'
import { closesWithin, collect, connectClient, endClient, subscribeRaw, waitFor } from './helpers/mqtt.js'

/**
 * Two plugins written only against the plugin API, as later capabilities are: the
 * core composes them into chains without knowing either.
 */
const events: string[] = []

const gatekeeper = definePlugin({
  name: 'gatekeeper',
  configKey: 'gatekeeper',
  schema: z.strictObject({ password: z.string(), slowUser: z.string().default('slow') }),
  setup: (ctx) => {
    ctx.hook('preConnect', ({ packet }): Verdict => packet.clientId === 'banned' ? deny('banned client id') : PASS)
    ctx.hook('authenticate', async ({ username, password }): Promise<AuthVerdict> => {
      if (username === undefined) return PASS
      if (username === ctx.config.slowUser) return new Promise(() => {})
      if (username === 'crash') throw new Error('auth backend exploded')
      if (username === 'blocked') return { result: 'deny', reason: 'account blocked', returnCode: 5 }
      if (password?.toString() !== ctx.config.password) return { result: 'deny', reason: 'bad password', returnCode: 4 }
      return { result: 'allow', superuser: username === 'root', claims: { tenant: 'acme' } }
    })
    ctx.hook('authorizePublish', ({ packet, info }): PublishVerdict => {
      if (packet.topic.startsWith('secret/')) return { result: 'deny', reason: 'secret', disconnect: false }
      if (packet.topic.startsWith('fatal/')) return { result: 'deny', reason: 'fatal', disconnect: true }
      if (packet.topic === 'whoami') packet.payload = Buffer.from(`${info?.username}:${info?.claims.tenant}:${info?.superuser}`)
      return PASS
    })
    ctx.hook('authorizeSubscribe', ({ subscription }): SubscribeVerdict => {
      if (subscription.topic.startsWith('forbidden/')) return deny('forbidden')
      if (subscription.topic.startsWith('granted/')) return ALLOW
      return PASS
    })
    ctx.hook('authorizeForward', ({ packet, info }): Verdict => packet.topic === 'private/root' && !info?.superuser ? deny('root only') : PASS)
    ctx.hook('clientCreated', ({ info }) => { if (info.listener === 'ws') events.push('gatekeeper:created') })
    ctx.hook('clientConnected', ({ client, info }) => { if (client.id.startsWith('audit-')) events.push(`gatekeeper:connected:${client.id}:${info.username}`) })
    ctx.hook('clientDisconnected', ({ client }) => { if (client.id.startsWith('audit-')) events.push(`gatekeeper:disconnected:${client.id}`) })
    return { close: () => { events.push('gatekeeper closed') } }
  }
})

const auditor = definePlugin({
  name: 'auditor',
  configKey: 'auditor',
  schema: z.strictObject({}),
  setup: (ctx) => {
    ctx.hook('authenticate', ({ username }): AuthVerdict => username === undefined ? deny('anonymous not allowed') : PASS)
    ctx.hook('clientCreated', ({ info }) => { if (info.listener === 'ws') events.push('auditor:created') })
    ctx.hook('clientConnected', ({ client }) => { if (client.id.startsWith('audit-')) throw new Error('auditor observer bug') })
    ctx.hook('clientDisconnected', ({ client }) => { if (client.id.startsWith('audit-')) events.push(`auditor:disconnected:${client.id}`) })
    ctx.readiness.register('auditor', () => ({ ready: true }))
    return { close: () => { events.push('auditor closed') } }
  }
})

/** A plugin whose section is absent: it must not run at all. */
const absent = definePlugin({
  name: 'absent',
  configKey: 'absent',
  schema: z.strictObject({}),
  setup: (ctx) => { ctx.hook('authenticate', () => deny('absent plugin ran')) }
})

describe('plugins compose into hook chains (real clients)', () => {
  let gw: TestGateway
  let observer: MqttClient
  let observed: ReturnType<typeof collect>
  const auth = { username: 'alice', password: 'pw' }

  before(async () => {
    gw = await startTestGateway(`
hooks: { timeoutMs: 300 }
gatekeeper: { password: pw }
auditor: {}
`, { plugins: [gatekeeper, auditor, absent] })
    observer = await connectClient(gw.mqttUrl, { username: 'root', password: 'pw', clientId: 'observer' })
    observed = collect(observer)
    await observer.subscribeAsync('#', { qos: 1 })
  })
  after(async () => {
    await endClient(observer)
    await gw.stop()
  })

  async function refusal (opts: object): Promise<number | undefined> {
    try {
      const c = await connectClient(gw.mqttUrl, opts)
      await endClient(c)
      return 0
    } catch (err) {
      return (err as { code?: number }).code
    }
  }

  it('authenticate: allow, bad password (4), explicit deny (5), anonymous passed on to the next plugin (5)', async () => {
    assert.equal(await refusal(auth), 0)
    assert.equal(await refusal({ username: 'alice', password: 'wrong' }), 4)
    assert.equal(await refusal({ username: 'blocked', password: 'pw' }), 5)
    assert.equal(await refusal({}), 5)
    const refused = gw.logs.find('connection refused')
    assert.ok(refused.some((l) => l.reason === 'anonymous not allowed'))
    assert.ok(refused.every((l) => !JSON.stringify(l).includes('wrong')), 'password never logged')
  })

  it('authenticate: a handler that throws or hangs fails closed with CONNACK 5', async () => {
    assert.equal(await refusal({ username: 'crash', password: 'pw' }), 5)
    const started = Date.now()
    assert.equal(await refusal({ username: 'slow', password: 'pw' }), 5)
    assert.ok(Date.now() - started < 2000)
    assert.ok(gw.logs.lines.some((l) => l.msg === 'hook handler failed; denying' && l.plugin === 'gatekeeper'))
  })

  it('preConnect deny closes the connection without CONNACK', async () => {
    const code = await refusal({ ...auth, clientId: 'banned', connectTimeout: 1000 })
    assert.notEqual(code, 0)
  })

  it('authorizePublish: a denied QoS 1 publish is acknowledged but never delivered; others flow', async () => {
    const c = await connectClient(gw.mqttUrl, auth)
    await c.publishAsync('secret/x', 'hidden', { qos: 1 })
    await c.publishAsync('open/x', 'visible', { qos: 1 })
    await waitFor(() => observed.some((m) => m.topic === 'open/x'), 'open message')
    assert.ok(!observed.some((m) => m.topic === 'secret/x'))
    assert.equal(c.connected, true)
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /mqgw_messages_dropped_total\{reason="publish_denied"\} 1/)
    await endClient(c)
  })

  it('authorizePublish: a deny with disconnect closes the connection', async () => {
    const c = await connectClient(gw.mqttUrl, auth)
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()))
    c.publish('fatal/x', 'bye', { qos: 1 })
    await closed
    assert.ok(!observed.some((m) => m.topic === 'fatal/x'))
    await endClient(c, true)
  })

  it('clients can never publish to $SYS/: the PUBLISH is refused, the connection closed, nothing delivered', async () => {
    // A superuser subscribed to $SYS/# (# alone does not match $SYS/ topics, [MQTT-4.7.2-1]).
    const sysWatcher = await connectClient(gw.mqttUrl, { username: 'root', password: 'pw', clientId: 'sys-watcher' })
    const sysReceived = collect(sysWatcher)
    await sysWatcher.subscribeAsync('$SYS/#', { qos: 0 })
    const c = await connectClient(gw.mqttUrl, { username: 'root', password: 'pw', clientId: 'sys-forger' })
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()))
    c.publish('$SYS/fake', 'x', { qos: 0 })
    // The gateway's authorizePublish answers a $SYS/ topic with an error; Aedes then closes the connection.
    assert.equal(await closesWithin(closed, 5000), true, 'the connection is closed')
    // Marker: the broker announces the forger's disconnect on $SYS/<id>/disconnect/clients
    // once it has handled the close, which came after the refused PUBLISH: had that PUBLISH
    // been routed, the watcher would have it before this announcement.
    const disconnectTopic = `$SYS/${gw.gateway.broker.id}/disconnect/clients`
    await waitFor(() => sysReceived.some((m) => m.topic === disconnectTopic && m.payload === 'sys-forger'), 'the $SYS disconnect announcement')
    assert.deepEqual(sysReceived.filter((m) => m.topic === '$SYS/fake'), [], 'the forged $SYS message was not delivered')
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /mqgw_messages_dropped_total\{reason="sys_topic"\} 1\n/)
    await endClient(c, true)
    await endClient(sysWatcher)
  })

  it('claims and superuser from authenticate are visible to later hooks', async () => {
    const c = await connectClient(gw.mqttUrl, auth)
    await c.publishAsync('whoami', 'x', { qos: 1 })
    await waitFor(() => observed.some((m) => m.topic === 'whoami'), 'whoami')
    assert.equal(observed.find((m) => m.topic === 'whoami')!.payload, 'alice:acme:false')
    await endClient(c)
  })

  it('authorizeSubscribe: a denied filter gets 0x80 while the other filters of the same SUBSCRIBE are granted', async () => {
    const c = await connectClient(gw.mqttUrl, auth)
    const granted = await subscribeRaw(c, { 'ok/a': { qos: 1 }, 'forbidden/a': { qos: 1 }, 'granted/a': { qos: 2 } })
    assert.deepEqual(granted, [1, 128, 2])
    const received = collect(c)
    await observer.publishAsync('forbidden/a', 'no', { qos: 1 })
    // Marker: the same publisher, same QoS, after the message to the refused filter.
    await observer.publishAsync('granted/a', 'yes', { qos: 1 })
    await waitFor(() => received.some((m) => m.topic === 'granted/a'), 'granted message')
    assert.deepEqual(received.map((m) => [m.topic, m.qos]), [['granted/a', 1]])
    await endClient(c)
  })

  it('authorizeForward: a message is withheld from clients the hook denies', async () => {
    const c = await connectClient(gw.mqttUrl, auth)
    const received = collect(c)
    await c.subscribeAsync('private/#', { qos: 1 })
    await c.publishAsync('private/root', 'for root', { qos: 1 })
    await c.publishAsync('private/all', 'for all', { qos: 1 })
    await waitFor(() => received.length === 1 && observed.some((m) => m.topic === 'private/root'), 'deliveries')
    assert.deepEqual(received.map((m) => m.topic), ['private/all'])
    await endClient(c)
  })

  it('observer events reach every plugin in registry order; a throwing observer stops no one', async () => {
    events.length = 0
    const c = await connectClient(gw.wsUrl, { ...auth, clientId: 'audit-1' })
    assert.deepEqual(events, ['gatekeeper:created', 'auditor:created', `gatekeeper:connected:audit-1:${auth.username}`])
    await endClient(c)
    await waitFor(() => events.includes('auditor:disconnected:audit-1'), 'disconnect observers')
    assert.deepEqual(events.slice(3), ['gatekeeper:disconnected:audit-1', 'auditor:disconnected:audit-1'])
    assert.ok(gw.logs.lines.some((l) => l.msg === 'observer failed' && l.plugin === 'auditor' && l.hook === 'clientConnected'), 'the throwing observer is logged')
  })

  it('hook latency is exported per hook', async () => {
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /mqgw_hook_duration_seconds_count\{hook="authenticate"\} [1-9]/)
    assert.match(metrics, /mqgw_hook_duration_seconds_count\{hook="authorizePublish"\} [1-9]/)
    assert.match(metrics, /mqgw_hook_duration_seconds_count\{hook="authorizeSubscribe"\} [1-9]/)
  })

  it('plugins close in reverse order on stop', async () => {
    const other = await startTestGateway('gatekeeper: { password: x }\nauditor: {}', { plugins: [gatekeeper, auditor] })
    events.length = 0
    await other.stop()
    assert.deepEqual(events, ['auditor closed', 'gatekeeper closed'])
  })
})

describe('messagePublish: plugins that take messages over, in each client\'s order', () => {
  it('async authorization with random delays still hands messages over in publish order; handled messages are acknowledged, not delivered locally', async () => {
    const seen: string[] = []
    const router = definePlugin({
      name: 'router',
      configKey: 'router',
      schema: z.strictObject({}),
      setup: (ctx) => {
        ctx.hook('authorizePublish', () => new Promise<Verdict>((resolve) => setTimeout(() => resolve(PASS), Math.random() * 5)))
        ctx.hook('messagePublish', ({ packet }) => {
          if (!packet.topic.startsWith('routed/')) return PASS
          seen.push(packet.payload.toString())
          return new Promise((resolve) => setTimeout(() => resolve({ result: 'handled' }), Math.random() * 5))
        })
      }
    })
    const gw = await startTestGateway('router: {}', { plugins: [router] })
    try {
      const sub = await connectClient(gw.mqttUrl)
      const received = collect(sub)
      await sub.subscribeAsync('#', { qos: 1 })
      const pub = await connectClient(gw.mqttUrl)
      const sent = Array.from({ length: 200 }, (_, i) => String(i))
      await Promise.all(sent.map((p) => pub.publishAsync('routed/t', p, { qos: 1 })))
      assert.deepEqual(seen, sent)
      await pub.publishAsync('plain/t', 'local', { qos: 1 })
      await waitFor(() => received.length === 1, 'the unrouted message')
      assert.deepEqual(received.map((m) => m.topic), ['plain/t'])
      await Promise.all([endClient(sub), endClient(pub)])
    } finally {
      await gw.stop()
    }
  })
})
