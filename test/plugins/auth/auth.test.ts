import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { authPlugin } from '../../../plugins/auth/plugin.js'
import { hashPassword, verifyPassword } from '../../../plugins/auth/password-hash.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { startBusinessService, type Call, type Reply } from '../../helpers/http-server.js'
import { connectClient, endClient, rawSocket, sleep, waitFor } from '../../helpers/mqtt.js'
import { parseConfig } from '../../../src/config/load.js'

/** The business service's login endpoint: behaviour chosen per user name. */
function login (call: Call): Reply {
  const { username, password } = call.body as { username: string | null, password: string | null }
  switch (username) {
    case 'alice': return password === 'alice-pw' ? { json: { result: 'allow', claims: { uid: 1001, tier: 'gold' } } } : { json: { result: 'deny' } }
    case 'boss': return { json: { result: 'allow', superuser: true } }
    case 'slow': return { json: { result: 'allow' }, delayMs: 200 }
    case 'hang': return { hang: true }
    case 'broken': return { status: 500, text: 'internal error' }
    case 'garbled': return { status: 200, text: '<html>' }
    default: return { json: { result: 'ignore' } }
  }
}

describe('auth plugin: HTTP callback, static users, anonymous (real HTTP server, real clients)', () => {
  let service: Awaited<ReturnType<typeof startBusinessService>>
  let gw: TestGateway
  let opsHash: string

  before(async () => {
    service = await startBusinessService(login)
    opsHash = await hashPassword('ops-pw')
    gw = await startTestGateway(`
auth:
  anonymous: false
  http: { url: ${service.url}/mqtt/auth, timeoutMs: 300, cacheTtlMs: 60000, denyCacheTtlMs: 300 }
  users:
    - { username: ops, passwordHash: "${opsHash}", superuser: true }
`, { plugins: [authPlugin] })
  })
  after(async () => {
    await gw.stop()
    await service.close()
  })

  async function code (opts: object): Promise<number> {
    try {
      const c = await connectClient(gw.mqttUrl, opts)
      await endClient(c)
      return 0
    } catch (err) {
      return (err as { code?: number }).code ?? -1
    }
  }
  const authCalls = (username: string): Call[] => service.calls.filter((c) => c.body.username === username)

  it('allow: the callback receives the documented fields and its claims reach the session', async () => {
    assert.equal(await code({ username: 'alice', password: 'alice-pw', clientId: 'alice-phone' }), 0)
    const body = authCalls('alice')[0]!.body
    assert.deepEqual(body, { clientid: 'alice-phone', username: 'alice', password: 'alice-pw', password_base64: Buffer.from('alice-pw').toString('base64'), peerhost: '127.0.0.1', protocol: 'mqtt3.1.1', listener: 'mqtt' })
  })

  it('deny from the callback means bad credentials: CONNACK 0x04', async () => {
    assert.equal(await code({ username: 'alice', password: 'wrong', clientId: 'alice-phone' }), 4)
  })

  it('ignore passes to static users: right password allows, wrong gives 0x04; unknown users 0x05', async () => {
    assert.equal(await code({ username: 'ops', password: 'ops-pw' }), 0)
    assert.equal(await code({ username: 'ops', password: 'nope' }), 4)
    assert.equal(await code({ username: 'stranger', password: 'x' }), 5)
  })

  it('anonymous is refused (0x05) when anonymous: false', async () => {
    assert.equal(await code({}), 5)
    assert.ok(gw.logs.find('connection refused').some((l) => l.reason === 'anonymous connections are not allowed'))
  })

  for (const [username, reason] of [['hang', /timed out after 300 ms/], ['broken', /HTTP 500/], ['garbled', /invalid JSON/]] as const) {
    it(`callback failure (${username}) refuses with 0x05 and one log line naming the reason`, async () => {
      assert.equal(await code({ username, password: 'x' }), 5)
      const line = gw.logs.find('connection refused').find((l) => l.username === username)
      assert.match(String(line?.reason), reason)
      assert.equal(line?.returnCode, 5)
    })
  }

  it('unreachable callback refuses with 0x05', async () => {
    const dead = await startTestGateway('auth: { http: { url: "http://127.0.0.1:9/none", timeoutMs: 500 } }', { plugins: [authPlugin] })
    try {
      const c = await connectClient(dead.mqttUrl, { username: 'alice', password: 'alice-pw' }).catch((err: { code?: number }) => err)
      assert.equal((c as { code?: number }).code, 5)
      assert.match(String(dead.logs.find('connection refused')[0]?.reason), /unreachable/)
    } finally {
      await dead.stop()
    }
  })

  it('results are cached: allow for cacheTtlMs, deny for denyCacheTtlMs; the key includes the password', async () => {
    service.calls.length = 0
    for (let i = 0; i < 3; i++) assert.equal(await code({ username: 'alice', password: 'alice-pw', clientId: 'alice-cache' }), 0)
    assert.equal(authCalls('alice').length, 1, 'allow cached')
    assert.equal(await code({ username: 'alice', password: 'other-pw', clientId: 'alice-cache' }), 4)
    assert.equal(await code({ username: 'alice', password: 'other-pw', clientId: 'alice-cache' }), 4)
    assert.equal(authCalls('alice').length, 2, 'a different password is a different key; its deny is cached')
    await sleep(350)
    assert.equal(await code({ username: 'alice', password: 'other-pw', clientId: 'alice-cache' }), 4)
    assert.equal(authCalls('alice').length, 3, 'deny expired after denyCacheTtlMs')
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    assert.match(metrics, /mqgw_callback_cache_total\{callback="auth",result="hit"\} [1-9]/)
    assert.match(metrics, /mqgw_auth_results_total\{source="http",outcome="allow"\} [1-9]/)
  })

  it('concurrent CONNECTs with the same credentials share one callback request', async () => {
    service.calls.length = 0
    const packet = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'storm', keepalive: 30, username: 'slow', password: Buffer.from('pw') })
    const sockets = await Promise.all(Array.from({ length: 10 }, () => rawSocket(gw.gateway.ports.mqtt!)))
    for (const raw of sockets) raw.socket.write(packet)
    // The same client id: a reconnect storm. Each CONNECT is accepted and the newer one takes the
    // session over (Aedes closes the older connection), so some sockets close instead of a CONNACK.
    const closed = sockets.map(() => false)
    sockets.forEach((raw, i) => { void raw.closed.then(() => { closed[i] = true }) })
    await waitFor(() => sockets.every((raw, i) => raw.data().length >= 4 || closed[i]), 'every CONNECT answered or taken over', 3000)
    const codes = sockets.filter((raw) => raw.data().length >= 4).map((raw) => raw.data()[3])
    assert.ok(codes.length >= 1)
    assert.ok(codes.every((c) => c === 0), `CONNACK codes ${codes.join(',')}`)
    assert.equal(authCalls('slow').length, 1)
    for (const raw of sockets) raw.socket.destroy()
  })

  it('superuser flag from the callback is kept', async () => {
    const c = await connectClient(gw.mqttUrl, { username: 'boss', password: 'x', clientId: 'boss-1' })
    const info = gw.gateway.clients.get(Object.values((gw.gateway.broker as unknown as { clients: Record<string, never> }).clients).find((cl: { id: string }) => cl.id === 'boss-1'))
    assert.equal(info?.superuser, true)
    await endClient(c)
  })

  it('no password appears in any log line', () => {
    const all = JSON.stringify(gw.logs.lines)
    for (const secret of ['alice-pw', 'other-pw', 'ops-pw']) assert.ok(!all.includes(secret), secret)
  })
})

describe('auth plugin: anonymous and configuration', () => {
  it('anonymous: true admits CONNECTs without a user name, still refuses unknown users', async () => {
    const gw = await startTestGateway('auth: { anonymous: true }', { plugins: [authPlugin] })
    try {
      const c = await connectClient(gw.mqttUrl)
      await endClient(c)
      const refused = await connectClient(gw.mqttUrl, { username: 'who', password: 'x' }).catch((err: { code?: number }) => err)
      assert.equal((refused as { code?: number }).code, 5)
    } finally {
      await gw.stop()
    }
  })

  it('password hashes round-trip and plain-text passwords are rejected by the schema', async () => {
    const hash = await hashPassword('s3cret')
    assert.match(hash, /^scrypt\$16384\$8\$1\$/)
    assert.equal(await verifyPassword(Buffer.from('s3cret'), hash), true)
    assert.equal(await verifyPassword(Buffer.from('s3cre'), hash), false)
    assert.throws(() => parseConfig('auth: { users: [ { username: a, passwordHash: "hunter2" } ] }', { plugins: [authPlugin], env: {} }), /auth\.users\[0\]\.passwordHash \(line 1\)/)
  })
})
