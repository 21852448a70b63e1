import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { before, describe, it } from 'node:test'
import { authPlugin } from '../../../plugins/auth/plugin.js'
import { hashPassword } from '../../../plugins/auth/password-hash.js'
import { startTestGateway, type TestGateway } from '../../helpers/gateway.js'
import { sleep } from '../../helpers/mqtt.js'
import { rawConnect } from './raw-connect.js'

/** A counter's value from the gateway's /metrics (0 when the series does not exist yet). */
async function metric (gw: TestGateway, series: string): Promise<number> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line ? Number(line.slice(series.length + 1)) : 0
}

const HASHES = 'mqgw_auth_hashes_total'

describe('static users under a wrong-password flood (real gateway, raw MQTT sockets)', () => {
  let opsHash: string
  before(async () => { opsHash = await hashPassword('ops-pw') })

  it('200 wrong passwords in 1 s from one address: the real user (another address) still gets CONNACK 0 quickly, and few hashes run', async (t) => {
    const gw = await startTestGateway(`
auth:
  users:
    - { username: ops, passwordHash: "${opsHash}" }
`, { plugins: [authPlugin] })
    try {
      const port = gw.gateway.ports.mqtt!
      const flood: Array<Promise<number>> = []
      // 10 waves of 20 sockets, 100 ms apart (200/s; one core does ~25 scrypt/s), each with its own wrong password (so no cache can help).
      const sending = (async () => {
        for (let wave = 0; wave < 10; wave++) {
          for (let i = 0; i < 20; i++) {
            flood.push(rawConnect({ port, clientId: `attacker-${wave}-${i}`, username: 'ops', password: Buffer.from(`guess-${wave}-${i}`), localAddress: '127.0.0.1', timeoutMs: 30_000 }))
          }
          await sleep(100)
        }
      })()
      await sleep(1000) // as the last wave goes out: unbounded hashing has a backlog of seconds by now
      const started = performance.now()
      const real = await rawConnect({ port, clientId: 'ops-real', username: 'ops', password: Buffer.from('ops-pw'), localAddress: '127.0.0.2', timeoutMs: 30_000 })
      const latencyMs = Math.round(performance.now() - started)
      await sending
      const codes = await Promise.all(flood)
      const hashes = await metric(gw, HASHES)
      const histogram: Record<string, number> = {}
      for (const c of codes) histogram[c] = (histogram[c] ?? 0) + 1
      t.diagnostic(`real user: CONNACK ${real} after ${latencyMs} ms; flood CONNACKs ${JSON.stringify(histogram)}; ${HASHES} ${hashes}`)
      assert.equal(real, 0, 'the real user is let in')
      // One scrypt is ~40 ms here; unbounded hashing put the real user behind ~200 of them (seconds).
      assert.ok(latencyMs < 1500, `real user waited ${latencyMs} ms`)
      assert.equal(codes.length, 200)
      assert.ok(codes.every((c) => c === 3 || c === 4 || c === 5), `every wrong password is refused: ${JSON.stringify(histogram)}`)
      // Default maxFailuresPerAddress is 10: at most 10 attempts from 127.0.0.1 are hashed in the window, plus the real user.
      assert.ok(hashes >= 2 && hashes <= 11, `${HASHES} = ${hashes}`)
    } finally {
      await gw.stop()
    }
  })

  /** A gateway with the one static user `ops` and the given passwordChecks settings. */
  async function gatewayWith (checks: string): Promise<TestGateway> {
    return startTestGateway(`
auth:
  passwordChecks: ${checks}
  users:
    - { username: ops, passwordHash: "${opsHash}" }
`, { plugins: [authPlugin] })
  }
  const ops = (port: number, password: string, localAddress: string): Promise<number> =>
    rawConnect({ port, clientId: `ops-${localAddress}-${Math.random()}`, username: 'ops', password: Buffer.from(password), localAddress })

  it('hash slots are bounded: beyond concurrency + queue a check is refused with CONNACK 3 at once, with one log line', async (t) => {
    const gw = await gatewayWith('{ concurrency: 1, queue: 2, maxFailuresPerAddress: 0, maxFailuresPerUser: 0, failureCacheTtlMs: 0 }')
    try {
      const port = gw.gateway.ports.mqtt!
      const codes = await Promise.all(Array.from({ length: 20 }, (_, i) => ops(port, `burst-${i}`, '127.0.0.1')))
      const refused = codes.filter((c) => c === 3).length
      const judged = codes.filter((c) => c === 4).length
      const hashes = await metric(gw, HASHES)
      t.diagnostic(`20 concurrent wrong passwords: ${judged} × CONNACK 4 (hashed), ${refused} × CONNACK 3; ${HASHES} ${hashes}`)
      assert.equal(refused + judged, 20, `codes ${codes.join(',')}`)
      assert.ok(refused >= 10, `most of the burst is refused without hashing (${refused})`)
      assert.equal(hashes, judged, 'a refused check costs no hash')
      assert.equal(await metric(gw, 'mqgw_auth_throttled_total{reason="overload"}'), refused)
      assert.equal(gw.logs.find('auth: static-user password checks overloaded; refusing with CONNACK 3 (server unavailable)').length, 1, 'one warning, not one per refusal')
      // Once the burst is over the real user gets in.
      assert.equal(await ops(port, 'ops-pw', '127.0.0.1'), 0)
    } finally {
      await gw.stop()
    }
  })

  it('the same wrong password again within failureCacheTtlMs is refused (0x04) without hashing; after it, hashed again', async () => {
    const gw = await gatewayWith('{ failureCacheTtlMs: 400, maxFailuresPerAddress: 0, maxFailuresPerUser: 0 }')
    try {
      const port = gw.gateway.ports.mqtt!
      assert.equal(await ops(port, 'typo-pw', '127.0.0.5'), 4)
      assert.equal(await ops(port, 'typo-pw', '127.0.0.6'), 4)
      assert.equal(await metric(gw, HASHES), 1, 'the second attempt was not hashed')
      assert.equal(await metric(gw, 'mqgw_auth_throttled_total{reason="known_failure"}'), 1)
      // A different password (here the right one) is not affected by the cached failure.
      assert.equal(await ops(port, 'ops-pw', '127.0.0.5'), 0)
      assert.equal(await metric(gw, HASHES), 2)
      await sleep(500)
      assert.equal(await ops(port, 'typo-pw', '127.0.0.5'), 4)
      assert.equal(await metric(gw, HASHES), 3, 'hashed again once the cached failure expired')
    } finally {
      await gw.stop()
    }
  })

  it('identical attempts in flight share one hash', async () => {
    const gw = await gatewayWith('{ maxFailuresPerAddress: 0, maxFailuresPerUser: 0, failureCacheTtlMs: 0 }')
    try {
      const port = gw.gateway.ports.mqtt!
      const codes = await Promise.all(Array.from({ length: 5 }, (_, i) => ops(port, 'same-wrong', `127.0.0.${30 + i}`)))
      assert.deepEqual(codes, [4, 4, 4, 4, 4])
      assert.ok(await metric(gw, HASHES) < 5, 'concurrent identical attempts were coalesced')
    } finally {
      await gw.stop()
    }
  })

  it('per address: after maxFailuresPerAddress failures the address is refused (0x05) without hashing, other addresses are not, until the window ends', async () => {
    const gw = await gatewayWith('{ maxFailuresPerAddress: 3, maxFailuresPerUser: 0, failureWindowMs: 1500 }')
    try {
      const port = gw.gateway.ports.mqtt!
      for (let i = 0; i < 3; i++) assert.equal(await ops(port, `wrong-${i}`, '127.0.0.21'), 4)
      assert.equal(await ops(port, 'ops-pw', '127.0.0.21'), 5, 'even the right password: the address is throttled')
      assert.equal(await ops(port, 'wrong-x', '127.0.0.21'), 5)
      assert.equal(await metric(gw, HASHES), 3)
      assert.equal(await ops(port, 'ops-pw', '127.0.0.22'), 0, 'another address is not throttled')
      const warnings = gw.logs.find('auth: too many failed static-user logins from this address; refusing it without checking until the window ends')
      assert.equal(warnings.length, 1, 'one warning per address per window')
      assert.equal(warnings[0]!.remoteAddress, '127.0.0.21')
      const refused = gw.logs.find('connection refused').filter((l) => l.remoteAddress === '127.0.0.21' && l.returnCode === 5)
      assert.equal(refused.length, 2)
      assert.match(String(refused[0]!.reason), /too many failed logins from this address/)
      await sleep(1600)
      assert.equal(await ops(port, 'ops-pw', '127.0.0.21'), 0, 'the window ended')
    } finally {
      await gw.stop()
    }
  })

  it('per user: after maxFailuresPerUser failures, addresses that failed for the user are refused without hashing; a clean address is still checked', async () => {
    const gw = await gatewayWith('{ maxFailuresPerAddress: 0, maxFailuresPerUser: 5, failureCacheTtlMs: 0 }')
    try {
      const port = gw.gateway.ports.mqtt!
      // A distributed guesser: one failure from each of five addresses (no address limit trips).
      for (let i = 11; i <= 15; i++) assert.equal(await ops(port, `guess-${i}`, `127.0.0.${i}`), 4)
      assert.equal(await metric(gw, HASHES), 5)
      assert.equal(await ops(port, 'guess-again', '127.0.0.11'), 5)
      assert.equal(await ops(port, 'ops-pw', '127.0.0.12'), 5)
      assert.equal(await metric(gw, HASHES), 5, 'refused without hashing')
      assert.equal(await metric(gw, 'mqgw_auth_throttled_total{reason="user"}'), 2)
      // The real user, from an address that never failed, is not locked out by the guesser.
      assert.equal(await ops(port, 'ops-pw', '127.0.0.2'), 0)
      // A new address is still checked (and its failure counts).
      assert.equal(await ops(port, 'guess-16', '127.0.0.16'), 4)
      assert.equal(await metric(gw, HASHES), 7)
      assert.equal(gw.logs.find('auth: too many failed logins for this static user; refusing addresses that failed for it until the window ends').length, 1)
    } finally {
      await gw.stop()
    }
  })
})
