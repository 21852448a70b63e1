import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { aclPlugin } from '../../plugins/acl/plugin.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { collect, connectClient, endClient, waitFor } from '../helpers/mqtt.js'
import { TEST_TOKEN, api } from './api-client.js'

const dir = mkdtempSync(join(tmpdir(), 'mqgw-admin-'))
const aclFile = join(dir, 'acl.yaml')
writeFileSync(aclFile, 'rules:\n  - { permission: deny, action: all, topics: ["secret/#"] }\n')

describe('admin API without a token: off', () => {
  let gw: TestGateway
  before(async () => { gw = await startTestGateway('') })
  after(async () => { await gw.stop() })

  it('/api/v1 answers 404 (also with a token and for the document) while /healthz, /readyz and /metrics stay open', async () => {
    for (const path of ['/node', '/clients', '/openapi.json', '']) {
      assert.equal((await api(gw.adminUrl, 'GET', path)).status, 404, path)
      assert.equal((await api(gw.adminUrl, 'GET', path, { token: null })).status, 404, path)
    }
    assert.equal((await api(gw.adminUrl, 'POST', '/reload')).status, 404)
    for (const path of ['/healthz', '/readyz', '/metrics']) assert.equal((await fetch(gw.adminUrl + path)).status, 200, path)
  })

  it('a token shorter than 16 characters is a configuration error naming the key', async () => {
    await assert.rejects(startTestGateway('listeners: { admin: { apiToken: short } }'), /listeners\.admin\.apiToken/)
  })
})

describe('admin API with a token', () => {
  let gw: TestGateway
  let victim: MqttClient
  let victimReceived: ReturnType<typeof collect>
  let publisher: MqttClient
  before(async () => {
    gw = await startTestGateway(`
listeners: { admin: { apiToken: ${TEST_TOKEN} } }
acl: { file: ${aclFile}, noMatch: allow }
`, { plugins: [aclPlugin] })
    victim = await connectClient(gw.mqttUrl, { clientId: 'victim', clean: false })
    victimReceived = collect(victim)
    await victim.subscribeAsync('v/#', { qos: 1 })
    publisher = await connectClient(gw.mqttUrl, { clientId: 'pub' })
    await publisher.publishAsync('keep/me', 'retained', { qos: 1, retain: true })
  })
  after(async () => {
    await endClient(victim, true)
    await endClient(publisher, true)
    await gw.stop()
  })

  it('the OpenAPI 3.1 document lists every route with its scope, parameters from the zod schemas, and the plugin\'s route', async () => {
    const { status, body } = await api(gw.adminUrl, 'GET', '/openapi.json')
    assert.equal(status, 200)
    assert.equal(body.openapi, '3.1.0')
    const paths = body.paths as Record<string, Record<string, { 'x-mqgw-scope': string, parameters?: Array<{ name: string, in: string, schema: { type?: string, maximum?: number } }>, requestBody?: unknown }>>
    const scopes = Object.fromEntries(Object.entries(paths).flatMap(([p, ops]) => Object.entries(ops).map(([m, op]) => [`${m.toUpperCase()} ${p}`, op['x-mqgw-scope']])))
    assert.deepEqual(scopes, {
      'GET /api/v1/clients': 'node',
      'GET /api/v1/clients/{clientId}': 'node',
      'DELETE /api/v1/clients/{clientId}': 'node',
      'GET /api/v1/subscriptions': 'node',
      'GET /api/v1/subscriptions/count': 'node',
      'GET /api/v1/node': 'node',
      'POST /api/v1/reload': 'node',
      'GET /api/v1/sessions/{clientId}': 'cluster',
      'DELETE /api/v1/sessions/{clientId}': 'cluster',
      'GET /api/v1/retained': 'cluster',
      'DELETE /api/v1/retained/{topic}': 'cluster',
      'POST /api/v1/acl/check': 'node'
    })
    const limit = paths['/api/v1/clients']!.get!.parameters!.find((p) => p.name === 'limit')!
    assert.equal(limit.in, 'query')
    assert.equal(limit.schema.type, 'integer')
    assert.equal(limit.schema.maximum, 1000)
    assert.ok(paths['/api/v1/acl/check']!.post!.requestBody)
    const operationIds = Object.values(paths).flatMap((ops) => Object.values(ops).map((op) => (op as unknown as { operationId: string }).operationId))
    assert.equal(new Set(operationIds).size, 12)
    assert.ok(operationIds.includes('getClientsByClientId') && operationIds.includes('deleteRetainedByTopic'), operationIds.join(' '))
  })

  it('a missing or wrong bearer token gets 401 on every route', async () => {
    const { body } = await api(gw.adminUrl, 'GET', '/openapi.json')
    const paths = body.paths as Record<string, Record<string, unknown>>
    let checked = 0
    for (const [p, ops] of Object.entries(paths)) {
      for (const method of Object.keys(ops)) {
        const path = p.slice('/api/v1'.length).replace(/\{[A-Za-z]+\}/g, 'x')
        for (const token of [null, 'wrong-token-0123456789abcdef', TEST_TOKEN + 'x']) {
          const res = await api(gw.adminUrl, method.toUpperCase(), path, { token, body: method === 'post' ? {} : undefined })
          assert.equal(res.status, 401, `${method} ${path} with ${token}`)
          assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/)
          checked++
        }
      }
    }
    assert.equal(checked, 12 * 3)
    assert.equal((await api(gw.adminUrl, 'GET', '/openapi.json', { token: null })).status, 401)
  })

  it('nothing changes without the token: no kick, no session or retained deletion, no reload', async () => {
    const reloadsBefore = gw.logs.find('ACL rules reloaded').length
    for (const token of [null, 'wrong-token-0123456789abcdef']) {
      assert.equal((await api(gw.adminUrl, 'DELETE', '/clients/victim', { token })).status, 401)
      assert.equal((await api(gw.adminUrl, 'DELETE', '/retained/keep%2Fme', { token })).status, 401)
      assert.equal((await api(gw.adminUrl, 'POST', '/reload', { token })).status, 401)
    }
    // The victim is still connected and served: a message published now reaches it.
    await publisher.publishAsync('v/marker', 'still here', { qos: 1 })
    await waitFor(() => victimReceived.some((m) => m.payload === 'still here'), 'marker to the victim')
    assert.equal(victim.connected, true)
    const details = await api(gw.adminUrl, 'GET', '/clients/victim')
    assert.equal(details.status, 200)
    const retained = await api(gw.adminUrl, 'GET', '/retained?filter=keep/%23')
    assert.deepEqual((retained.body.data as Array<{ topic: string }>).map((m) => m.topic), ['keep/me'])
    const session = await api(gw.adminUrl, 'GET', '/sessions/victim')
    assert.equal(session.status, 200)
    assert.equal(gw.logs.find('ACL rules reloaded').length, reloadsBefore)
  })

  it('bad requests get 400 naming the field at fault, one log line each, and change nothing', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ['GET', '/clients?limit=0', undefined, 'query.limit'],
      ['GET', '/clients?limit=1001', undefined, 'query.limit'],
      ['GET', '/clients?page=first', undefined, 'query.page'],
      ['GET', '/clients?colour=red', undefined, 'query.colour'],
      ['GET', '/subscriptions?limit=-1', undefined, 'query.limit'],
      ['GET', '/retained?filter=a/%23/b', undefined, 'query.filter'],
      ['GET', '/retained?cursor=-5', undefined, 'query.cursor'],
      ['GET', '/retained?cursor=abc', undefined, 'query.cursor'],
      ['GET', '/clients/%E0%A4%A', undefined, 'path.clientId'],
      ['DELETE', '/retained/a%2F%2B', undefined, 'path.topic'],
      ['POST', '/acl/check', { clientid: 'c', action: 'publish' }, 'body.topic'],
      ['POST', '/acl/check', { clientid: 'c', action: 'read', topic: 't' }, 'body.action'],
      ['POST', '/acl/check', { clientid: 'c', action: 'publish', topic: 'a/+' }, 'body.topic'],
      ['POST', '/acl/check', { clientid: 'c', action: 'subscribe', topic: 'a#' }, 'body.topic'],
      ['POST', '/acl/check', { clientid: 'c', action: 'publish', topic: 't', claims: { uid: 7 } }, 'body.claims.uid'],
      ['POST', '/acl/check', { clientid: 'c', action: 'publish', topic: 't', extra: 1 }, 'body.extra']
    ]
    const refusedBefore = gw.logs.find('admin API request refused').length
    for (const [method, path, body, field] of cases) {
      const res = await api(gw.adminUrl, method, path, { body })
      assert.equal(res.status, 400, `${method} ${path}`)
      assert.equal(res.body.field, field, `${method} ${path}: ${JSON.stringify(res.body)}`)
      assert.equal(typeof res.body.error, 'string')
    }
    const notJson = await api(gw.adminUrl, 'POST', '/acl/check', { rawBody: '{"clientid":' })
    assert.equal(notJson.status, 400)
    assert.equal(notJson.body.field, 'body')
    assert.equal(gw.logs.find('admin API request refused').length, refusedBefore + cases.length + 1)
    // Unknown routes and methods.
    assert.equal((await api(gw.adminUrl, 'GET', '/nothing-here')).status, 404)
    const wrongMethod = await api(gw.adminUrl, 'PUT', '/clients')
    assert.equal(wrongMethod.status, 405)
    assert.equal(wrongMethod.headers.get('allow'), 'GET')
    // Still served afterwards.
    assert.equal((await api(gw.adminUrl, 'GET', '/node')).status, 200)
  })
})
