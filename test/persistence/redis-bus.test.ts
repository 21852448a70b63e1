/**
 * src/persistence/redis-bus.ts on real gateway processes and a real redis-server:
 *  - local first: a message between two clients of one node is delivered without waiting for
 *    Redis (redis-server SIGSTOPped: the subscriber has it, the publisher's PUBACK waits for
 *    Redis), exactly once when Redis' echo arrives later (SIGCONT), in order;
 *  - the other nodes still get it through Redis, in order, also when a turn's PUBLISHes go out
 *    together in one script call (checked in Redis' command stats);
 *  - the batch buffers: messages held in ioredis' offline queue (the bus connection reconnecting
 *    to a stopped Redis) as views into buffers that later turns fill and retire reach the other
 *    node intact, and so do later ones written into reused buffers;
 *  - the wire format is plain mqemitter-redis (msgpack { id, msg }): a stock mqemitter-redis
 *    on the same Redis (msgpack-lite, as a node of the previous version) reads the gateway's
 *    messages and the gateway delivers the stock emitter's. A node of the previous version
 *    does not announce routes (route-table.ts): the gateway node that talks to it here runs
 *    with `routeTable: false` (publishes everything, announces `#`), as the README's upgrade
 *    path says, and a route-aware node still routes to that node's subscribers.
 */
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, it } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { connectCollecting, endClient, waitFor } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'
import { TestRedis } from '../helpers/redis.js'
import { codec } from '../../src/persistence/bus-codec.js'

const require = createRequire(import.meta.url)
interface StockBus {
  on: (topic: string, cb: (msg: Record<string, unknown>, done: () => void) => void, done?: () => void) => void
  emit: (msg: object, done?: (err?: Error) => void) => void
  close: (cb: () => void) => void
}
const mqemitterRedis = require('mqemitter-redis') as (opts: object) => StockBus

describe('Redis bus: local first, echo dropped, wire format of mqemitter-redis', () => {
  const redis = new TestRedis()
  let a: ClusterNode
  let b: ClusterNode
  let c: ClusterNode
  before(async () => {
    await redis.start()
    ;[a, b, c] = await Promise.all([startNode(redis, 'gw-bus-a'), startNode(redis, 'gw-bus-b'), startNode(redis, 'gw-bus-c', { persistence: { routeTable: false } })])
  })
  after(async () => {
    await Promise.all([a.stop(), b.stop(), c.stop()])
    await redis.stop()
  })

  it('a same-node subscriber gets the message while Redis is stopped, once, and the PUBACK waits for Redis', async () => {
    const local = await connectCollecting(a.url, { clientId: 'bus-local-sub' })
    const remote = await connectCollecting(b.url, { clientId: 'bus-remote-sub' })
    await local.client.subscribeAsync('bus/order', { qos: 1 })
    await remote.client.subscribeAsync('bus/order', { qos: 1 })
    const pub = (await connectCollecting(a.url, { clientId: 'bus-pub' })).client
    const db = redis.client()
    const pid = Number(/process_id:(\d+)/.exec(await db.info('server'))?.[1])
    db.disconnect()
    assert.ok(pid > 0)
    // m0 and a PINGREQ in one write: the node handles both in one read, and writes the PINGRESP
    // after anything it had decided to send this client by then (same socket, in order).
    const probe = await RawClient.connect(a.ports.mqtt!, 'bus-probe')
    process.kill(pid, 'SIGSTOP')
    try {
      probe.socket.write(Buffer.concat([
        mqttPacket.generate({ cmd: 'publish', topic: 'bus/order', payload: Buffer.from('m0'), qos: 1, messageId: 7, retain: false, dup: false }),
        mqttPacket.generate({ cmd: 'pingreq' })
      ]))
      await waitFor(() => local.received.some((m) => m.payload === 'm0'), 'local delivery with Redis stopped')
      await probe.waitFor((p) => p.cmd === 'pingresp', 'the PINGRESP behind m0')
      // Redis cannot have answered: no PUBACK before the PINGRESP, and the other node has nothing.
      assert.deepEqual(probe.packets.map((p) => p.cmd), ['connack', 'pingresp'], 'PUBACK only after Redis took the PUBLISH')
      assert.equal(remote.received.length, 0)
      process.kill(pid, 'SIGCONT')
      await probe.waitFor((p) => p.cmd === 'puback' && p.messageId === 7, 'the PUBACK once Redis answers')
    } finally {
      process.kill(pid, 'SIGCONT')
      probe.destroy()
    }
    // Sent back to back (not one per PUBACK), so the node reads several per turn and their
    // PUBLISHes go out together in the script call (PUBLISH_PACKED), whose order is checked below.
    const db2 = redis.client()
    // EVALSHA, or EVAL when Redis did not have the script yet (ioredis' NOSCRIPT fallback).
    const scriptCalls = async (): Promise<number> => {
      const stats = await db2.info('commandstats')
      return [...stats.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0)
    }
    const before = await scriptCalls()
    await Promise.all(Array.from({ length: 199 }, (_, i) => pub.publishAsync('bus/order', `m${i + 1}`, { qos: 1 })))
    assert.ok(await scriptCalls() > before, 'some PUBLISHes went out batched')
    db2.disconnect()
    await pub.publishAsync('bus/order', 'marker', { qos: 1 })
    await waitFor(() => remote.received.some((m) => m.payload === 'marker'), 'the marker on the other node')
    // A second marker from node B, sent after B had the first: Redis sends node A every echo
    // of A's messages before it (one connection, in PUBLISH order), so once A's subscriber has
    // it, a duplicate from an echo would already be there.
    const pubB = (await connectCollecting(b.url, { clientId: 'bus-pub-b' })).client
    await pubB.publishAsync('bus/order', 'marker2', { qos: 1 })
    await waitFor(() => local.received.some((m) => m.payload === 'marker2') && remote.received.some((m) => m.payload === 'marker2'), 'the second marker on both nodes')
    const expected = [...Array.from({ length: 200 }, (_, i) => `m${i}`), 'marker', 'marker2']
    assert.deepEqual(local.received.map((m) => m.payload), expected, 'same node: each once, in order (echo dropped)')
    assert.deepEqual(remote.received.map((m) => m.payload), expected, 'other node: each once, in order')
    await endClient(pubB)
    await Promise.all([endClient(local.client), endClient(remote.client), endClient(pub)])
  })

  it('batch buffers: ~3 MB published while the bus connection reconnects to a stopped Redis (each message in a turn of its own, held in ioredis\' offline queue while ~6 buffers fill and retire) and ~3 MB more once it answers (buffers reused) reach the other node once each, byte for byte', async () => {
    // src/persistence/redis-bus.ts writes a turn's messages into a 512 KB buffer and reuses a
    // buffer once every batch in it is answered. A one-message batch goes to ioredis as views into
    // that buffer; a command in ioredis' offline queue (the connection not ready) holds them until
    // it is written. (Written to a connected socket, the kernel copies them at once: a stopped
    // Redis alone does not hold a view.)
    const local = await connectCollecting(a.url, { clientId: 'slab-local' })
    const remote = await connectCollecting(b.url, { clientId: 'slab-remote' })
    await local.client.subscribeAsync('slab/#', { qos: 0 })
    await remote.client.subscribeAsync('slab/#', { qos: 0 })
    const payload = (i: number): string => `${i}:${String.fromCharCode(65 + i % 26).repeat(60000)}`
    const db = redis.client()
    const pid = Number(/process_id:(\d+)/.exec(await db.info('server'))?.[1])
    assert.ok(pid > 0)
    // One publisher per message: a client's next PUBLISH is read only once its PUBACK (which
    // waits for Redis) is written, and each message must be handled while Redis is stopped.
    const publishers = await Promise.all(Array.from({ length: 50 }, (_, i) => RawClient.connect(a.ports.mqtt!, `slab-pub-${i}`)))
    const publish = async (i: number): Promise<void> => {
      publishers[i % 50]!.send({ cmd: 'publish', topic: `slab/${i}`, payload: Buffer.from(payload(i)), qos: 1, messageId: 1 + Math.floor(i / 50), retain: false, dup: false })
      // Handled: the node's own subscriber has it (local first, Redis or not).
      await waitFor(() => local.received.some((m) => m.topic === `slab/${i}`), `slab/${i} handled by node A`)
    }
    // The nodes' bus publisher connections are dropped and Redis stopped before ioredis
    // reconnects (100 ms): the reconnected socket is accepted by the kernel but never ready, so
    // the next PUBLISHes wait in the offline queue.
    const busPub = ((await db.call('CLIENT', 'LIST')) as string).split('\n').filter((l) => l.includes('name=mqtt-gateway:bus-pub')).map((l) => /^id=(\d+)/.exec(l)![1]!)
    assert.equal(busPub.length, 3, 'one bus publisher connection per node')
    for (const id of busPub) await db.call('CLIENT', 'KILL', 'ID', id)
    db.disconnect()
    process.kill(pid, 'SIGSTOP')
    try {
      for (let i = 0; i < 50; i++) await publish(i)
      assert.equal(remote.received.length, 0, 'nothing reached node B while Redis was stopped')
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    for (let i = 50; i < 100; i++) await publish(i)
    await waitFor(() => remote.received.length >= 100, 'all 100 on node B', 30000)
    // Each once; not in publish order: the messages are from 100 clients, and those published
    // before ioredis reconnected reached node B after the later ones (seen here: 10-49, then 0-9).
    const byIndex = [...remote.received].sort((x, y) => Number(x.topic.slice(5)) - Number(y.topic.slice(5)))
    assert.deepEqual(byIndex.map((m) => m.topic), Array.from({ length: 100 }, (_, i) => `slab/${i}`), 'each once')
    for (let i = 0; i < 100; i++) assert.ok(byIndex[i]!.payload === payload(i), `slab/${i}: payload byte for byte`)
    await Promise.all(publishers.map((p) => p.waitFor((x) => x.cmd === 'puback' && x.messageId === 2, 'both PUBACKs')))
    for (const p of publishers) p.destroy()
    await Promise.all([endClient(local.client), endClient(remote.client)])
  })

  it('a batch packed into one script argument keeps every channel and payload byte for byte: non-ASCII and 300-character topics, empty and 70,000-byte payloads, in order', async () => {
    const remote = await connectCollecting(b.url, { clientId: 'bus-packed-sub' })
    await remote.client.subscribeAsync('packed/#', { qos: 1 })
    const pub = (await connectCollecting(a.url, { clientId: 'bus-packed-pub' })).client
    const db = redis.client()
    const scriptCalls = async (): Promise<number> => {
      const stats = await db.info('commandstats')
      return [...stats.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
    }
    const topics = ['packed/a', 'packed/température/€/😀', `packed/${'x'.repeat(300)}`]
    const payloads = ['', 'é'.repeat(35000), 'plain\u0000nul']
    const sent = Array.from({ length: 60 }, (_, i) => ({ topic: topics[i % 3]!, payload: `${i}:${payloads[Math.floor(i / 3) % 3]!}` }))
    try {
      const before = await scriptCalls()
      // Back to back: the node reads several per turn and sends them in one script call.
      await Promise.all(sent.map((m) => pub.publishAsync(m.topic, m.payload, { qos: 1 })))
      assert.ok(await scriptCalls() > before, 'some PUBLISHes went out batched')
      await pub.publishAsync('packed/marker', 'marker', { qos: 1 })
      await waitFor(() => remote.received.some((m) => m.payload === 'marker'), 'the marker on the other node')
      assert.deepEqual(remote.received.map((m) => ({ topic: m.topic, payload: m.payload })), [...sent, { topic: 'packed/marker', payload: 'marker' }])
    } finally {
      db.disconnect()
      await Promise.all([endClient(remote.client), endClient(pub)])
    }
  })

  // Redis sends node B each message three times (one channel, two patterns); the bus drops the
  // adjacent copies by id, and Aedes' per-broker counter check would drop them too (this passes
  // without the bus's check): a guard on the outcome, not on which of the two does it.
  it('a message that reaches a node by a channel and two patterns (SUBSCRIBE + 2 PSUBSCRIBE) is delivered once to each subscriber', async () => {
    const subs = await Promise.all(['dup/x', 'dup/#', 'dup/+'].map(async (filter, i) => {
      const c = await connectCollecting(b.url, { clientId: `bus-dup-${i}` })
      await c.client.subscribeAsync(filter, { qos: 1 })
      return c
    }))
    const pub = (await connectCollecting(a.url, { clientId: 'bus-dup-pub' })).client
    try {
      for (let i = 0; i < 20; i++) await pub.publishAsync('dup/x', `d${i}`, { qos: 1 })
      await pub.publishAsync('dup/marker', 'marker', { qos: 1 })
      await waitFor(() => subs[1]!.received.some((m) => m.payload === 'marker') && subs[2]!.received.some((m) => m.payload === 'marker'), 'the marker')
      const expected = Array.from({ length: 20 }, (_, i) => `d${i}`)
      assert.deepEqual(subs[0]!.received.map((m) => m.payload), expected, 'exact filter: each once, in order')
      assert.deepEqual(subs[1]!.received.map((m) => m.payload), [...expected, 'marker'])
      assert.deepEqual(subs[2]!.received.map((m) => m.payload), [...expected, 'marker'])
    } finally {
      await Promise.all([...subs.map((c) => endClient(c.client)), endClient(pub)])
    }
  })

  // The bus's own check, which Aedes' would hide above: adjacent messages with one id are one
  // message, whatever their content (here the broker counter differs, so Aedes delivers both
  // without the bus's check). A short id is compared as its encoded bytes, a 40-character one
  // (str8, as other encoders write long ids) as the decoded string; both paths, then a marker.
  it('adjacent bus messages with the same id are delivered once, for a short (fixstr) and a long (str8) id', async () => {
    const sub = await connectCollecting(b.url, { clientId: 'bus-sameid-sub' })
    await sub.client.subscribeAsync('sameid/#', { qos: 0 })
    const db = redis.client()
    const message = (id: string, counter: number, payload: string): Buffer => codec.pack({ id, msg: { cmd: 'publish', brokerId: 'forger', brokerCounter: counter, topic: 'sameid/x', payload: Buffer.from(payload), qos: 0, retain: false, dup: false } })
    try {
      const long = 'L'.repeat(40)
      for (const [id, counter, payload] of [['short-1', 1, 's1'], ['short-1', 2, 's1-again'], [long, 3, 'l1'], [long, 4, 'l1-again'], ['short-2', 5, 's2']] as const) {
        assert.ok(await db.publish('sameid/x', message(id, counter, payload)) >= 1, 'node b subscribes the channel')
      }
      await waitFor(() => sub.received.some((m) => m.payload === 's2'), 'the marker')
      assert.deepEqual(sub.received.map((m) => m.payload), ['s1', 'l1', 's2'])
    } finally {
      db.disconnect()
      await endClient(sub.client)
    }
  })

  it('a stock mqemitter-redis (msgpack-lite) and the gateway read each other\'s messages', async () => {
    const stock = mqemitterRedis({ port: redis.port, host: '127.0.0.1' })
    const seen: Array<Record<string, unknown>> = []
    await new Promise<void>((resolve) => stock.on('compat/#', (msg, done) => { seen.push(msg); done() }, resolve))
    const sub = await connectCollecting(a.url, { clientId: 'bus-compat-sub' })
    await sub.client.subscribeAsync('compat/from-stock', { qos: 0 })
    const pub = (await connectCollecting(c.url, { clientId: 'bus-compat-pub' })).client
    // A route-aware node routes to the subscribers of a node with routeTable: false.
    const onPassive = await connectCollecting(c.url, { clientId: 'bus-compat-passive-sub' })
    await onPassive.client.subscribeAsync('passive/to-c', { qos: 1 })
    const pubA = (await connectCollecting(a.url, { clientId: 'bus-compat-pub-a' })).client
    try {
      await pubA.publishAsync('passive/to-c', 'from a', { qos: 1 })
      await waitFor(() => onPassive.received.some((m) => m.payload === 'from a'), 'the routeTable: false node\'s subscriber')
      await pub.publishAsync('compat/from-gateway', Buffer.from([0, 1, 2, 255]), { qos: 1 })
      await waitFor(() => seen.length > 0, 'the stock emitter hears the gateway')
      const msg = seen[0]!
      assert.equal(msg.topic, 'compat/from-gateway')
      assert.equal(msg.qos, 1)
      assert.equal(msg.retain, false)
      assert.ok(Buffer.isBuffer(msg.payload), 'payload decoded as a Buffer')
      assert.deepEqual([...(msg.payload as Buffer)], [0, 1, 2, 255])
      await new Promise<void>((resolve, reject) => stock.emit({ cmd: 'publish', topic: 'compat/from-stock', payload: Buffer.from('from stock'), qos: 0, retain: false, dup: false, brokerId: 'stock', brokerCounter: 1 }, (err) => err === undefined ? resolve() : reject(err)))
      await waitFor(() => sub.received.length > 0, 'the gateway delivers the stock emitter\'s message')
      assert.deepEqual(sub.received.map((m) => [m.topic, m.payload]), [['compat/from-stock', 'from stock']])
    } finally {
      await Promise.all([endClient(sub.client), endClient(pub), endClient(onPassive.client), endClient(pubA)])
      await new Promise<void>((resolve) => stock.close(resolve))
    }
  })

  it('a message on a bus channel that is not MessagePack is dropped with a log line; the node lives and delivers the next one', async () => {
    const sub = await connectCollecting(a.url, { clientId: 'bus-junk-sub' })
    await sub.client.subscribeAsync('junk/#', { qos: 0 })
    const db = redis.client()
    const stock = mqemitterRedis({ port: redis.port, host: '127.0.0.1' })
    try {
      // 0xc1 is never used in MessagePack: the decoder throws on it.
      assert.ok(await db.publish('junk/raw', Buffer.from([0xc1, 0x00])) >= 1, 'node a subscribes the channel')
      // MessagePack that is not a bus message { id, msg }: nil, a number, a map without msg.
      // msgpackr reads them without complaint; the handler dereferenced the result (nil: a
      // TypeError thrown out of ioredis' event emit, which ended the process).
      for (const junk of [[0xc0], [0x01], [0x81, 0xa2, 0x69, 0x64, 0x01]]) {
        assert.ok(await db.publish('junk/msgpack', Buffer.from(junk)) >= 1, 'node a subscribes the channel')
      }
      // Marker on the same path: a well-formed bus message after the bad one.
      await new Promise<void>((resolve, reject) => stock.emit({ cmd: 'publish', topic: 'junk/after', payload: Buffer.from('after'), qos: 0, retain: false, dup: false, brokerId: 'stock', brokerCounter: 2 }, (err) => err === undefined ? resolve() : reject(err)))
      await waitFor(() => sub.received.some((m) => m.payload === 'after'), 'the message after the undecodable one')
      assert.deepEqual(sub.received.map((m) => m.topic), ['junk/after'])
      assert.match(a.stdout() + a.stderr(), /undecodable bus message dropped.*junk\/raw|junk\/raw.*undecodable bus message dropped/)
      assert.equal(a.child.exitCode, null, 'node a still runs')
    } finally {
      db.disconnect()
      await endClient(sub.client)
      await new Promise<void>((resolve) => stock.close(resolve))
    }
  })
})
