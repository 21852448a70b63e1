import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { authPlugin } from '../../../plugins/auth/plugin.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { startBusinessService, type Call, type Reply } from '../../helpers/http-server.js'
import { connectClient, endClient } from '../../helpers/mqtt.js'
import { rawConnect } from './raw-connect.js'

// Two byte strings that are not valid UTF-8 and decode (lossily) to the same text "\uFFFDa".
const BIN_A = Buffer.from([0x80, 0x61])
const BIN_B = Buffer.from([0xff, 0x61])

interface Body { username: string | null, password: string | null, password_base64?: string | null, peerhost: string, listener: string, protocol: string }

/** A business service whose answer depends on every input the gateway tells it. */
function login (call: Call): Reply {
  const b = call.body as unknown as Body
  const allow = (ok: boolean): Reply => ({ json: { result: ok ? 'allow' : 'deny' } })
  switch (b.username) {
    case 'lan': return allow(b.peerhost === '127.0.0.1')
    case 'tcp-only': return allow(b.listener === 'mqtt')
    case 'v311': return allow(b.protocol === 'mqtt3.1.1')
    case 'bin': return allow(b.password_base64 === BIN_A.toString('base64'))
    case 'text': return allow(b.password === 'pässwörd ✓' && b.password_base64 === Buffer.from('pässwörd ✓').toString('base64'))
    default: return { json: { result: 'ignore' } }
  }
}

describe('auth callback: every input it is told is part of the cache key; passwords are sent binary-safe', () => {
  let service: Awaited<ReturnType<typeof startBusinessService>>
  let gw: TestGateway
  let port: number

  before(async () => {
    service = await startBusinessService(login)
    // Long TTLs on purpose: a wrongly shared cache entry would be reused by every later CONNECT.
    gw = await startTestGateway(`
auth:
  http: { url: ${service.url}/mqtt/auth, timeoutMs: 2000, cacheTtlMs: 60000, denyCacheTtlMs: 60000 }
`, { plugins: [authPlugin] })
    port = gw.gateway.ports.mqtt!
  })
  after(async () => {
    await gw.stop()
    await service.close()
  })

  const calls = (username: string): Body[] => service.calls.map((c) => c.body as unknown as Body).filter((b) => b.username === username)
  const pw = Buffer.from('same-pw')

  it('peer address: an allow for 127.0.0.1 is not reused for 127.0.0.2 (same client id, user, password)', async () => {
    assert.equal(await rawConnect({ port, clientId: 'lan-1', username: 'lan', password: pw, localAddress: '127.0.0.1' }), 0)
    assert.equal(await rawConnect({ port, clientId: 'lan-1', username: 'lan', password: pw, localAddress: '127.0.0.2' }), 4)
    assert.deepEqual(calls('lan').map((b) => b.peerhost), ['127.0.0.1', '127.0.0.2'])
    // Both decisions are cached under their own key.
    assert.equal(await rawConnect({ port, clientId: 'lan-1', username: 'lan', password: pw, localAddress: '127.0.0.1' }), 0)
    assert.equal(calls('lan').length, 2)
  })

  it('listener: an allow on the TCP listener is not reused on the WebSocket listener', async () => {
    assert.equal(await rawConnect({ port, clientId: 'tcp-1', username: 'tcp-only', password: pw }), 0)
    const viaWs = await connectClient(gw.wsUrl, { clientId: 'tcp-1', username: 'tcp-only', password: 'same-pw' })
      .then(async (c) => { await endClient(c); return 0 }, (err: { code?: number }) => err.code ?? -1)
    assert.equal(viaWs, 4)
    assert.deepEqual(calls('tcp-only').map((b) => b.listener), ['mqtt', 'ws'])
  })

  it('protocol: an allow for MQTT 3.1.1 is not reused for MQTT 3.1', async () => {
    assert.equal(await rawConnect({ port, clientId: 'v-1', username: 'v311', password: pw, protocolVersion: 4 }), 0)
    assert.equal(await rawConnect({ port, clientId: 'v-1', username: 'v311', password: pw, protocolVersion: 3 }), 4)
    assert.deepEqual(calls('v311').map((b) => b.protocol), ['mqtt3.1.1', 'mqtt3.1'])
  })

  it('binary passwords: two invalid-UTF-8 byte strings reach the callback as distinct password_base64, password null', async () => {
    assert.equal(BIN_A.toString('utf8'), BIN_B.toString('utf8'), 'the two passwords look the same once decoded as UTF-8')
    assert.equal(await rawConnect({ port, clientId: 'bin-1', username: 'bin', password: BIN_A }), 0)
    // The allow of BIN_A is cached for 60 s; BIN_B must not get it.
    assert.equal(await rawConnect({ port, clientId: 'bin-1', username: 'bin', password: BIN_B }), 4)
    assert.equal(await rawConnect({ port, clientId: 'bin-1', username: 'bin', password: BIN_A }), 0)
    const seen = calls('bin')
    assert.deepEqual(seen.map((b) => b.password_base64), [BIN_A.toString('base64'), BIN_B.toString('base64')])
    assert.deepEqual(seen.map((b) => b.password), [null, null], 'bytes that are not UTF-8 are not sent as (lossy) text')
  })

  it('text passwords: valid UTF-8 arrives as the same text in password, and its bytes in password_base64', async () => {
    assert.equal(await rawConnect({ port, clientId: 'text-1', username: 'text', password: Buffer.from('pässwörd ✓') }), 0)
    assert.equal(calls('text').length, 1)
  })

  it('no password: password and password_base64 are both null', async () => {
    assert.equal(await rawConnect({ port, clientId: 'nopw-1', username: 'nobody' }), 5)
    const b = calls('nobody')[0]!
    assert.equal(b.password, null)
    assert.equal(b.password_base64, null)
  })
})
