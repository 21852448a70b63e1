import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { ReplicasNotConfirmedError, ReplicaWait } from '../../src/persistence/replica-wait.js'
import { pollUntil } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'
import { LagRelay } from '../helpers/sentinel.js'

// The replica lags this far behind (a relay of ours holds the replication stream), so a write
// read on it right after the primary acknowledged it is not there yet unless WAIT confirmed it.
const LAG_MS = 150

describe('ReplicaWait (real redis-server primary and replica)', () => {
  const primary = new TestRedis()
  let replica: TestRedis
  let conn: Redis
  let relay: LagRelay

  before(async () => {
    await primary.start()
    relay = new LagRelay(primary.port, LAG_MS)
    replica = new TestRedis(['--replicaof', '127.0.0.1', String(await relay.listen())])
    await replica.start()
    const r = replica.client()
    const linked = await pollUntil(async () => /master_link_status:up/.test(await r.info('replication')), (ok) => ok, 10000, 50)
    r.disconnect()
    assert.equal(linked, true, 'replica linked')
    conn = new Redis(primary.port, '127.0.0.1', { maxRetriesPerRequest: 1 })
    conn.on('error', () => {})
  })
  after(async () => {
    conn.disconnect()
    relay.close()
    await replica.stop()
    await primary.stop()
  })

  it('confirmed writes are on the replica when confirm() resolves; concurrent confirmations share one WAIT', async () => {
    const wait = new ReplicaWait(conn, 1, 2000)
    const r = replica.client()
    // The lag is real: unconfirmed, a fresh write is not on the replica yet.
    await conn.set('rw:unconfirmed', '1')
    assert.equal(await r.get('rw:unconfirmed'), null, 'a write is not on the lagging replica right after the primary acknowledged it')
    const seen: number[] = []
    // Count the WAITs the primary executes: 50 concurrent confirmations need far fewer than 50.
    await conn.config('RESETSTAT')
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const epoch = wait.epoch
      await conn.rpush('rw:list', `v${i}`)
      await wait.confirm(epoch)
      // Read on the replica right after: the value must be there already.
      const values = await r.lrange('rw:list', 0, -1)
      assert.ok(values.includes(`v${i}`), `v${i} on the replica once confirmed`)
      seen.push(i)
    }))
    const stats = await conn.info('commandstats')
    const waits = Number(/cmdstat_wait:calls=(\d+)/.exec(stats)?.[1] ?? 0)
    assert.equal(seen.length, 50)
    assert.ok(waits >= 1 && waits < 25, `${waits} WAIT commands for 50 confirmations`)
    assert.equal(wait.lastConfirmed, 1)
    r.disconnect()
  })

  it('too few replicas: confirm() rejects after the timeout (the caller then sends no PUBACK)', async () => {
    const wait = new ReplicaWait(conn, 2, 300)
    const epoch = wait.epoch
    await conn.set('rw:k', '1')
    const started = Date.now()
    const err = await wait.confirm(epoch).then(() => undefined, (e: Error) => e)
    assert.ok(err instanceof ReplicasNotConfirmedError, `rejected: ${String(err)}`)
    assert.match(err.message, /1 of 2 Redis replicas/)
    assert.ok(Date.now() - started >= 250, 'WAIT waited for its timeout')
  })

  it('a write made before a reconnect is never confirmed by a WAIT on the new connection', async () => {
    const wait = new ReplicaWait(conn, 1, 1000)
    const epoch = wait.epoch
    await conn.set('rw:before', '1')
    // The connection drops and comes back (as after a failover): a WAIT now would count the
    // replica, but it knows nothing of the write made on the old connection.
    const back = new Promise<void>((resolve) => conn.once('ready', () => resolve()))
    conn.disconnect(true)
    await back
    const err = await wait.confirm(epoch).then(() => undefined, (e: Error) => e)
    assert.ok(err instanceof ReplicasNotConfirmedError, `rejected: ${String(err)}`)
    assert.match(err.message, /connection was replaced/)
    // A write on the new connection is confirmed as usual.
    const fresh = wait.epoch
    await conn.set('rw:after', '1')
    await wait.confirm(fresh)
  })
})

describe('persistence.redis.waitReplicas configuration', () => {
  it('defaults to 0 (no wait); with sentinels it is accepted; with cluster it is refused with a clear message', () => {
    const parse = (redis: string): ReturnType<typeof parseConfig> => parseConfig(`persistence: { type: redis, redis: ${redis} }`, { plugins: [], env: {} })
    const plain = parse('{ url: "redis://127.0.0.1:6379" }').persistence
    assert.ok(plain.type === 'redis' && plain.redis.waitReplicas === 0 && plain.redis.waitReplicasTimeoutMs === 1000)
    const sentinel = parse('{ sentinels: [{ host: 127.0.0.1, port: 26379 }], name: mymaster, waitReplicas: 1, waitReplicasTimeoutMs: 500 }').persistence
    assert.ok(sentinel.type === 'redis' && sentinel.redis.waitReplicas === 1 && sentinel.redis.waitReplicasTimeoutMs === 500)
    assert.throws(() => parse('{ cluster: [{ host: 127.0.0.1, port: 7000 }], waitReplicas: 1 }'),
      (err: unknown) => err instanceof ConfigError && /waitReplicas is for a primary with replicas/.test(err.message))
    assert.throws(() => parse('{ waitReplicas: -1 }'), (err: unknown) => err instanceof ConfigError && /waitReplicas/.test(err.message))
  })
})
