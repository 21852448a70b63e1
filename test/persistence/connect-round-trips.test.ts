import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import aedesPersistenceRedis from 'aedes-persistence-redis'
import { Redis } from 'ioredis'
import { TestRedis } from '../helpers/redis.js'

/**
 * Every CONNECT waits for the store's delWill (the client's previous will is removed).
 * patches/aedes-persistence-redis+12.0.0.patch sends its DEL with the LREM and the GET,
 * one round trip instead of two; Redis answers one connection's commands in order, so the
 * GET still returns the will the DEL then removes.
 */
interface WillStore {
  putWill: (client: { id: string }, packet: Record<string, unknown>) => Promise<void>
  delWill: (client: { id: string, brokerId?: string }) => Promise<{ topic: string, payload: Buffer } | null>
}

describe('Redis store: round trips of a CONNECT', () => {
  const redis = new TestRedis()
  before(async () => { await redis.start() })
  after(async () => { await redis.stop() })

  it('delWill sends LREM, GET and DEL at once, returns the will and removes it', async () => {
    const conn = new Redis(redis.port, '127.0.0.1')
    const broker = { id: 'rt-node', subscribe: (_t: string, _f: unknown, cb: () => void) => cb(), publish: () => {} }
    const persistence = aedesPersistenceRedis({ conn })
    try {
      await (persistence.asyncPersistence as unknown as { setup: (b: unknown) => Promise<void> }).setup(broker)
      const store = persistence.asyncPersistence as unknown as WillStore
      const client = { id: 'rt-client', brokerId: 'rt-node' }
      await store.putWill(client, { cmd: 'publish', topic: 'rt/will', payload: Buffer.from('w'), qos: 1, retain: false })

      const sent: string[] = []
      const send = conn.sendCommand.bind(conn)
      conn.sendCommand = ((command: { name: string }, stream?: unknown) => {
        sent.push(command.name)
        return send(command as never, stream as never)
      }) as typeof conn.sendCommand
      const deleted = store.delWill(client)
      // Before any reply can arrive (same turn): every command of delWill is already sent.
      assert.deepEqual(sent, ['lrem', 'get', 'del'], 'one round trip')
      const will = await deleted
      assert.equal(will?.topic, 'rt/will', 'the GET read the will before the DEL')
      assert.equal(will?.payload.toString(), 'w')
      conn.sendCommand = send
      assert.equal(await store.delWill(client), null, 'removed')
      assert.equal(await conn.exists('will:rt-node:rt-client'), 0)
      // At CONNECT Aedes passes the client itself, which has no brokerId: the key is this node's.
      await store.putWill(client, { cmd: 'publish', topic: 'rt/will', payload: Buffer.from('w2'), qos: 1, retain: false })
      assert.equal((await store.delWill({ id: 'rt-client' }))?.payload.toString(), 'w2', 'the CONNECT path finds the will')
      assert.equal(await conn.exists('will:rt-node:rt-client'), 0)
      assert.equal(await conn.llen('will'), 0)
    } finally {
      conn.disconnect()
    }
  })
})
