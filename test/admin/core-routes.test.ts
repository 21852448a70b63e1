import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { aclPlugin } from '../../plugins/acl/plugin.js'
import { flowPlugin } from '../../plugins/flow/plugin.js'
import { clientDetails, clientsAnswer, countAnswer, kickAnswer, nodeAnswer, reloadAnswer, subscriptionsAnswer } from '../../src/admin/schemas.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { connectClient, endClient, waitFor } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'
import { TEST_TOKEN, api } from './api-client.js'

const dir = mkdtempSync(join(tmpdir(), 'mqgw-admin-core-'))
const aclFile = join(dir, 'acl.yaml')
const RULES = 'rules:\n  - { permission: deny, action: all, topics: ["secret/#"] }\n'
writeFileSync(aclFile, RULES)

describe('admin API: clients, subscriptions, node, reload (node scope)', () => {
  let gw: TestGateway
  const clients: MqttClient[] = []
  let raw: RawClient
  const started = Date.now()

  before(async () => {
    gw = await startTestGateway(`
listeners: { admin: { apiToken: ${TEST_TOKEN} } }
acl: { file: ${aclFile}, noMatch: allow }
flow: { inflightWindow: 2, maxQueued: 100 }
`, { plugins: [aclPlugin, flowPlugin] })
    const a1 = await connectClient(gw.mqttUrl, { clientId: 'alpha-1', username: 'alice', keepalive: 42 })
    await a1.subscribeAsync('a/#', { qos: 1 })
    const a2 = await connectClient(gw.mqttUrl, { clientId: 'alpha-2', username: 'bob', clean: false })
    await a2.subscribeAsync({ 'a/b': { qos: 0 }, 'c/d': { qos: 1 } })
    const b1 = await connectClient(gw.wsUrl, { clientId: 'beta-1', username: 'alice', protocolVersion: 3, protocolId: 'MQIsdp' })
    clients.push(a1, a2, b1)
  })
  after(async () => {
    raw?.destroy()
    for (const c of clients) await endClient(c, true)
    await gw.stop()
  })

  const ids = (body: Record<string, unknown>): string[] => (body.data as Array<{ clientId: string }>).map((c) => c.clientId)

  it('lists the connected clients with filters (client id prefix, user name, listener, address) and paging', async () => {
    const all = await api(gw.adminUrl, 'GET', '/clients')
    assert.equal(all.status, 200)
    const parsed = clientsAnswer.parse(all.body)
    assert.deepEqual(ids(all.body), ['alpha-1', 'alpha-2', 'beta-1'])
    assert.equal(parsed.total, 3)
    const beta = parsed.data.find((c) => c.clientId === 'beta-1')!
    assert.equal(beta.listener, 'ws')
    assert.equal(beta.protocolVersion, 3)
    assert.equal(beta.address, '127.0.0.1')
    assert.deepEqual(ids((await api(gw.adminUrl, 'GET', '/clients?clientid=alpha')).body), ['alpha-1', 'alpha-2'])
    assert.deepEqual(ids((await api(gw.adminUrl, 'GET', '/clients?username=alice')).body), ['alpha-1', 'beta-1'])
    assert.deepEqual(ids((await api(gw.adminUrl, 'GET', '/clients?listener=ws')).body), ['beta-1'])
    assert.deepEqual(ids((await api(gw.adminUrl, 'GET', '/clients?address=127.0.0.1&listener=mqtt')).body), ['alpha-1', 'alpha-2'])
    assert.deepEqual(ids((await api(gw.adminUrl, 'GET', '/clients?address=10.0.0.1')).body), [])
    const page2 = await api(gw.adminUrl, 'GET', '/clients?limit=1&page=2')
    assert.deepEqual(ids(page2.body), ['alpha-2'])
    assert.equal(page2.body.total, 3)
    assert.deepEqual(ids((await api(gw.adminUrl, 'GET', '/clients?limit=2&page=3')).body), [])
  })

  it('one client\'s details: connected since, protocol, keepalive, in flight and queued (flow window), subscriptions', async () => {
    const res = await api(gw.adminUrl, 'GET', '/clients/alpha-1')
    assert.equal(res.status, 200)
    const d = clientDetails.parse(res.body)
    assert.equal(d.keepaliveS, 42)
    assert.equal(d.protocolVersion, 4)
    assert.equal(d.clean, true)
    assert.equal(d.username, 'alice')
    assert.ok(Date.parse(d.connectedAt) >= started - 1000 && Date.parse(d.connectedAt) <= Date.now())
    assert.deepEqual(d.subscriptions, [{ filter: 'a/#', qos: 1 }])
    assert.equal(d.inflight, 0)
    assert.equal(d.queued, 0)

    // A subscriber that never acknowledges: the window (2) fills, the rest queue behind it.
    raw = await RawClient.connect(gw.gateway.ports.mqtt!, 'slow-1')
    await raw.subscribe('slow/t', 1)
    const pub = clients[0]!
    for (let i = 0; i < 5; i++) await pub.publishAsync('slow/t', `m${i}`, { qos: 1 })
    await raw.waitFor(() => raw.publishes().length === 2, 'two messages in flight')
    const slow = clientDetails.parse((await api(gw.adminUrl, 'GET', '/clients/slow-1')).body)
    assert.equal(slow.inflight, 2)
    assert.equal(slow.queued, 3)
    assert.equal((await api(gw.adminUrl, 'GET', '/clients/nobody')).status, 404)
  })

  it('subscriptions: list and count by client, exact filter or a topic they match', async () => {
    const byTopic = subscriptionsAnswer.parse((await api(gw.adminUrl, 'GET', '/subscriptions?topic=a/b')).body)
    assert.deepEqual(byTopic.data, [{ clientId: 'alpha-1', filter: 'a/#', qos: 1 }, { clientId: 'alpha-2', filter: 'a/b', qos: 0 }])
    const byFilter = subscriptionsAnswer.parse((await api(gw.adminUrl, 'GET', '/subscriptions?filter=c/d')).body)
    assert.deepEqual(byFilter.data, [{ clientId: 'alpha-2', filter: 'c/d', qos: 1 }])
    const byClient = subscriptionsAnswer.parse((await api(gw.adminUrl, 'GET', '/subscriptions?clientid=alpha-2')).body)
    assert.deepEqual(byClient.data.map((s) => s.filter), ['a/b', 'c/d'])
    assert.deepEqual(countAnswer.parse((await api(gw.adminUrl, 'GET', '/subscriptions/count?topic=a/b')).body).count, 2)
    assert.deepEqual(countAnswer.parse((await api(gw.adminUrl, 'GET', '/subscriptions/count')).body).count, 4)
    assert.equal(countAnswer.parse((await api(gw.adminUrl, 'GET', '/subscriptions/count?clientid=nobody')).body).count, 0)
  })

  it('node info: id, version, uptime, listeners, plugins, persistence', async () => {
    const n = nodeAnswer.parse((await api(gw.adminUrl, 'GET', '/node')).body)
    assert.equal(n.node, gw.gateway.config.node.id)
    assert.deepEqual(n.plugins, ['acl', 'flow'])
    assert.deepEqual(n.listeners.map((l) => `${l.name}:${l.port}`).sort(), [`mqtt:${gw.gateway.ports.mqtt}`, `ws:${gw.gateway.ports.ws}`])
    assert.deepEqual(n.persistence, { type: 'memory', available: true })
    assert.equal(n.connections, 4)
    assert.equal(n.ready, true)
    assert.ok(n.uptimeS >= 0 && n.uptimeS < 120)
  })

  it('reload: as SIGHUP, with each plugin\'s outcome; a rejected file keeps the previous rules', async () => {
    const ok = reloadAnswer.parse((await api(gw.adminUrl, 'POST', '/reload')).body)
    assert.deepEqual(ok, { ok: true, plugins: [{ plugin: 'acl', ok: true }] })
    writeFileSync(aclFile, 'rules:\n  - { permission: deny, action: everything, topics: ["#"] }\n')
    const bad = reloadAnswer.parse((await api(gw.adminUrl, 'POST', '/reload')).body)
    assert.equal(bad.ok, false)
    assert.equal(bad.plugins[0]!.plugin, 'acl')
    assert.match(bad.plugins[0]!.error!, /rules\[0\]\.action/)
    // The previous rules still decide.
    const check = await api(gw.adminUrl, 'POST', '/acl/check', { body: { clientid: 'x', action: 'publish', topic: 'secret/a' } })
    assert.equal(check.body.decision, 'deny')
    writeFileSync(aclFile, RULES)
    assert.equal(reloadAnswer.parse((await api(gw.adminUrl, 'POST', '/reload')).body).ok, true)
  })

  it('kick: the client is disconnected and gone from the list; others stay', async () => {
    const victim = clients[2]!
    const closed = new Promise<void>((resolve) => victim.once('close', () => resolve()))
    const res = await api(gw.adminUrl, 'DELETE', '/clients/beta-1')
    assert.equal(res.status, 200)
    assert.deepEqual(kickAnswer.parse(res.body), { clientId: 'beta-1', kicked: true })
    await closed
    const audit = gw.logs.find('admin API change').at(-1)!
    assert.equal(audit.route, 'DELETE /clients/{clientId}')
    assert.deepEqual(audit.params, { clientId: 'beta-1' })
    await waitFor(() => gw.gateway.broker.connectedClients === 3, 'the broker lost the client')
    assert.equal((await api(gw.adminUrl, 'GET', '/clients/beta-1')).status, 404)
    assert.equal((await api(gw.adminUrl, 'DELETE', '/clients/beta-1')).status, 404)
    assert.deepEqual(ids((await api(gw.adminUrl, 'GET', '/clients')).body), ['alpha-1', 'alpha-2', 'slow-1'])
  })
})
