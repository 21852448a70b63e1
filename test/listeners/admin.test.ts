import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { after, before, describe, it } from 'node:test'
import { z } from 'zod'
import { definePlugin } from '../../src/plugin.js'
import { startTestGateway, testCertificate, type TestGateway } from '../helpers/gateway.js'
import { collect, connectClient, endClient, waitFor } from '../helpers/mqtt.js'

/** Stands in for a dependency (Redis, Kafka) whose state the test flips. */
const dependency = { up: true }
const dependencyPlugin = definePlugin({
  name: 'fake-dependency',
  configKey: 'fakeDependency',
  schema: z.strictObject({}),
  setup: (ctx) => {
    ctx.readiness.register('fake-dependency', () => dependency.up ? { ready: true } : { ready: false, reason: 'connection refused' })
  }
})

function metricValue (text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{') && l.includes('} '))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

describe('admin HTTP listener', () => {
  let gw: TestGateway
  before(async () => { gw = await startTestGateway('fakeDependency: {}', { plugins: [dependencyPlugin] }) })
  after(async () => { await gw.stop() })

  it('/healthz answers 200 while the process runs', async () => {
    const res = await fetch(`${gw.adminUrl}/healthz`)
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { status: 'ok' })
  })

  it('/readyz is 200 when every dependency is up and 503 with the reason otherwise', async () => {
    let res = await fetch(`${gw.adminUrl}/readyz`)
    assert.equal(res.status, 200)
    dependency.up = false
    res = await fetch(`${gw.adminUrl}/readyz`)
    assert.equal(res.status, 503)
    const body = await res.json() as { ready: boolean, checks: Record<string, { ready: boolean, reason?: string }> }
    assert.equal(body.ready, false)
    assert.deepEqual(body.checks['fake-dependency'], { ready: false, reason: 'connection refused' })
    assert.deepEqual(body.checks.listeners, { ready: true })
    dependency.up = true
    res = await fetch(`${gw.adminUrl}/readyz`)
    assert.equal(res.status, 200)
  })

  it('/metrics changes as clients connect, subscribe and publish', async () => {
    const before = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(before, /# TYPE mqgw_connections_current gauge/)
    const sub = await connectClient(gw.mqttUrl)
    const pub = await connectClient(gw.wsUrl)
    const received = collect(sub)
    await sub.subscribeAsync(['m/a', 'm/b'], { qos: 1 })
    await pub.publishAsync('m/a', 'x'.repeat(100), { qos: 1 })
    await pub.publishAsync('m/b', 'y', { qos: 0 })
    await waitFor(() => received.length === 2, 'deliveries')
    const during = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.equal(metricValue(during, 'mqgw_connections_current'), 2)
    assert.equal(metricValue(during, 'mqgw_subscriptions_current'), 2)
    assert.equal(metricValue(during, 'mqgw_messages_in_total{qos="1"}') - metricValue(before, 'mqgw_messages_in_total{qos="1"}'), 1)
    assert.equal(metricValue(during, 'mqgw_messages_in_total{qos="0"}') - metricValue(before, 'mqgw_messages_in_total{qos="0"}'), 1)
    assert.equal(metricValue(during, 'mqgw_messages_out_total{qos="1"}') - metricValue(before, 'mqgw_messages_out_total{qos="1"}'), 1)
    assert.equal(metricValue(during, 'mqgw_connections_total{listener="mqtt"}') - metricValue(before, 'mqgw_connections_total{listener="mqtt"}'), 1)
    assert.equal(metricValue(during, 'mqgw_connections_total{listener="ws"}') - metricValue(before, 'mqgw_connections_total{listener="ws"}'), 1)
    assert.ok(metricValue(during, 'mqgw_bytes_in_total') - metricValue(before, 'mqgw_bytes_in_total') > 100)
    assert.ok(metricValue(during, 'mqgw_bytes_out_total') - metricValue(before, 'mqgw_bytes_out_total') > 100)
    assert.equal(metricValue(during, 'mqgw_sockets_current{listener="ws"}'), 1)
    await Promise.all([endClient(sub), endClient(pub)])
    await waitFor(() => gw.gateway.broker.connectedClients === 0, 'clients gone')
    const afterText = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.equal(metricValue(afterText, 'mqgw_connections_current'), 0)
    assert.equal(metricValue(afterText, 'mqgw_disconnects_total{reason="closed"}') - metricValue(before, 'mqgw_disconnects_total{reason="closed"}'), 2)
    assert.match(afterText, /mqgw_process_resident_memory_bytes/)
  })

  it('unknown paths are 404, other methods 405', async () => {
    assert.equal((await fetch(`${gw.adminUrl}/nope`)).status, 404)
    assert.equal((await fetch(`${gw.adminUrl}/metrics`, { method: 'POST' })).status, 405)
  })
})

describe('admin listener over HTTPS (listeners.admin.tls)', () => {
  const token = 'admin-tls-token-0123456789'
  const cert = testCertificate()
  const ca = readFileSync(cert.cert)
  let gw: TestGateway
  before(async () => { gw = await startTestGateway(`listeners: { admin: { apiToken: ${token}, tls: { cert: ${cert.cert}, key: ${cert.key} } } }`) })
  after(async () => { await gw.stop() })

  const httpsGet = (path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> => new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', servername: 'localhost', port: gw.gateway.ports.admin, path, headers, ca }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject).end()
  })

  it('serves health, metrics and the token-protected API over TLS; plain HTTP to the port gets no answer and the listener serves on', async () => {
    assert.deepEqual(await httpsGet('/healthz'), { status: 200, body: '{"status":"ok"}\n' })
    assert.match((await httpsGet('/metrics')).body, /# TYPE mqgw_connections_current gauge/)
    assert.equal((await httpsGet('/api/v1/clients')).status, 401, 'no token')
    const client = await connectClient(gw.mqttUrl, { clientId: 'admin-tls-client' })
    const listed = await httpsGet('/api/v1/clients', { authorization: `Bearer ${token}` })
    assert.equal(listed.status, 200)
    assert.match(listed.body, /admin-tls-client/)
    // Plain HTTP: the TLS server sees no ClientHello and closes; the token would never go out in clear.
    await assert.rejects(fetch(`http://127.0.0.1:${gw.gateway.ports.admin}/healthz`))
    assert.equal((await httpsGet('/healthz')).status, 200, 'still serving after the failed handshake')
    await endClient(client)
  })
})
