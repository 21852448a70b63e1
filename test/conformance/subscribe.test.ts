import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { IPublishPacket, ISubackPacket } from 'mqtt-packet'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { mqttString, rawPacket, sleep, Wire } from './wire.js'

/**
 * MQTT 3.1.1 sections 3.8-3.10 (SUBSCRIBE, SUBACK, UNSUBSCRIBE) and 4.7 (Topic Names and
 * Filters), over raw sockets. For a filter that breaks 4.7.1 the specification names no
 * answer; the gateway (Aedes) closes the connection, as Mosquitto does.
 */
describe('MQTT 3.1.1 conformance: SUBSCRIBE, UNSUBSCRIBE, topic filters', () => {
  let gw: TestGateway
  let port: number
  let n = 0
  const id = (name: string): string => `${name}${++n}`
  before(async () => {
    gw = await startTestGateway('limits: { maxTopicLength: 65535, maxTopicLevels: 100, maxPacketSize: 200000 }')
    port = gw.gateway.ports.mqtt!
  })
  after(async () => { await gw.stop() })

  async function connected (name = 'c'): Promise<Wire> {
    return (await Wire.connect(port, id(name))).wire
  }

  async function subscriber (filters: string[], qos = 1): Promise<Wire> {
    const wire = await connected('sub')
    await wire.subscribe(filters.map((topic) => ({ topic, qos })))
    return wire
  }

  /** Which of `topics` (each published with its own name as payload, then a fence) reach a subscriber of `filter`. */
  async function matched (filter: string, topics: string[], fenceTopic: string): Promise<string[]> {
    const sub = await subscriber([filter, fenceTopic])
    const pub = await connected('pub')
    for (const t of topics) await pub.publish(t, `m:${t}`, 1)
    const fence = `fence-${++n}`
    await pub.publish(fenceTopic, fence, 1)
    await sub.received(fence)
    const got = sub.payloads().filter((p) => p.startsWith('m:')).map((p) => p.slice(2))
    sub.destroy()
    pub.destroy()
    return got
  }

  const subscribeBytes = (first: number, messageId: number, entries: Array<[Buffer | string, number]>): Buffer =>
    rawPacket(first, Buffer.concat([Buffer.from([messageId >> 8, messageId & 0xff]), ...entries.flatMap(([t, q]) => [mqttString(t), Buffer.from([q])])]))

  async function closedWithoutAck (bytes: Buffer): Promise<void> {
    const wire = await connected('bad')
    wire.sendRaw(bytes)
    assert.equal(await wire.closesWithin(), true, `closed after ${bytes.toString('hex')}`)
    assert.deepEqual(wire.packets.slice(1).map((p) => p.cmd), [], 'no SUBACK/UNSUBACK')
  }

  it('[MQTT-3.8.1-1] [MQTT-2.2.2-2] SUBSCRIBE with fixed header flags other than 0010 closes the connection', async () => {
    for (const first of [0x80, 0x81, 0x83, 0x8a]) await closedWithoutAck(subscribeBytes(first, 1, [['s381/t', 0]]))
  })

  it('[MQTT-3.10.1-1] [MQTT-2.2.2-2] UNSUBSCRIBE with fixed header flags other than 0010 closes the connection', async () => {
    for (const first of [0xa0, 0xa1, 0xa3]) await closedWithoutAck(rawPacket(first, Buffer.concat([Buffer.from([0, 1]), mqttString('s3101/t')])))
  })

  it('[MQTT-3.8.3-1] [MQTT-1.5.3-1] [MQTT-1.5.3-2] a Topic Filter of ill-formed UTF-8 or with U+0000 closes the connection', async () => {
    for (const bad of [[0x61, 0xed, 0xa0, 0x80], [0x61, 0xff], [0x61, 0x00]]) await closedWithoutAck(subscribeBytes(0x82, 1, [[Buffer.from(bad), 0]]))
  })

  it('[MQTT-3.10.3-1] [MQTT-1.5.3-1] an UNSUBSCRIBE Topic Filter of ill-formed UTF-8 closes the connection', async () => {
    await closedWithoutAck(rawPacket(0xa2, Buffer.concat([Buffer.from([0, 1]), mqttString(Buffer.from([0x61, 0xed, 0xa0, 0x80]))])))
  })

  it('[MQTT-3.8.3-3] a SUBSCRIBE without any Topic Filter closes the connection', async () => {
    await closedWithoutAck(rawPacket(0x82, Buffer.from([0, 1])))
  })

  it('[MQTT-3.10.3-2] an UNSUBSCRIBE without any Topic Filter closes the connection', async () => {
    await closedWithoutAck(rawPacket(0xa2, Buffer.from([0, 1])))
  })

  it('[MQTT-3.8.3-4] a requested QoS of 3, or reserved bits set in the QoS byte, closes the connection', async () => {
    for (const q of [3, 0x04, 0x41, 0x80 | 1]) await closedWithoutAck(subscribeBytes(0x82, 1, [['s383/t', q]]))
  })

  it('[MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-4] [MQTT-3.8.4-5] [MQTT-3.9.3-1] [MQTT-3.9.3-2] [MQTT-2.3.1-7] several filters in one SUBSCRIBE: one SUBACK with its Packet Identifier and a return code per filter, in order', async () => {
    const wire = await connected('multi')
    wire.sendRaw(subscribeBytes(0x82, 0x1234, [['s384/a', 2], ['s384/b', 0], ['s384/+', 1]]))
    const ack = await wire.next('suback') as ISubackPacket
    assert.equal(ack.messageId, 0x1234)
    assert.deepEqual(ack.granted, [2, 0, 1])
    assert.ok((ack.granted as number[]).every((c) => [0, 1, 2, 0x80].includes(c)))
    // Each subscription is in place, as if sent in separate SUBSCRIBEs (s384/a matches two of them: one copy).
    const pub = await connected('pub')
    await pub.publish('s384/a', 'to-a', 2)
    await pub.publish('s384/b', 'to-b', 2)
    // to-c is the fence: the same publisher after the others, so a second copy of to-a would come before it.
    await pub.publish('s384/c', 'to-c', 2)
    await wire.received('to-c')
    assert.deepEqual(wire.publishes().map((p) => [p.payload.toString(), p.qos]).sort(), [['to-a', 2], ['to-b', 1], ['to-c', 1]])
    for (const w of [wire, pub]) w.destroy()
  })

  it('[MQTT-3.8.4-3] a SUBSCRIBE with an existing filter replaces the subscription (new QoS), re-sends the retained message, and does not interrupt the flow', async () => {
    const pub = await connected('pub')
    await pub.publish('s3843/t', 'retained', 1, true)
    const sub = await connected('resub')
    await sub.subscribe([{ topic: 's3843/t', qos: 0 }])
    const first = await sub.received('retained')
    assert.equal(first.qos, 0)
    // A steady stream while the subscription is replaced: every message arrives exactly once.
    let stop = false
    let sent = 0
    const stream = (async () => {
      while (!stop) {
        await pub.publish('s3843/stream', `s${sent}`, 1)
        sent++
      }
    })()
    await sub.subscribe([{ topic: 's3843/stream', qos: 1 }])
    await sleep(50)
    await sub.subscribe([{ topic: 's3843/t', qos: 1 }])
    await sub.subscribe([{ topic: 's3843/stream', qos: 0 }])
    await sleep(50)
    stop = true
    await stream
    await pub.publish('s3843/stream', 'stream-end', 1)
    await sub.received('stream-end')
    const retainedCopies = sub.publishes().filter((p) => p.payload.toString() === 'retained')
    assert.deepEqual(retainedCopies.map((p) => [p.qos, p.retain]), [[0, true], [1, true]])
    const streamed = sub.payloads().filter((p) => /^s\d+$/.test(p))
    const firstSeen = Number(streamed[0]!.slice(1))
    assert.deepEqual(streamed, Array.from({ length: sent - firstSeen }, (_, i) => `s${firstSeen + i}`), 'no gap and no duplicate across the re-subscription')
    for (const p of sub.publishes()) if (p.qos > 0) sub.send({ cmd: 'puback', messageId: p.messageId })
    await pub.publish('s3843/t', '', 0, true)
    for (const w of [sub, pub]) w.destroy()
  })

  it('[MQTT-3.10.4-1] [MQTT-3.10.4-2] UNSUBSCRIBE deletes only the subscription whose filter is character-for-character the same; no new messages are added for it', async () => {
    const sub = await subscriber(['s3104/+', 's3104/a'])
    sub.send({ cmd: 'unsubscribe', messageId: 7, unsubscriptions: ['s3104/a'] })
    await sub.next('unsuback')
    const pub = await connected('pub')
    await pub.publish('s3104/a', 'still-via-plus', 1)
    await sub.received('still-via-plus')
    sub.send({ cmd: 'unsubscribe', messageId: 8, unsubscriptions: ['s3104/+'] })
    await sub.next('unsuback')
    await pub.publish('s3104/a', 'after-unsubscribe', 1)
    // Fence: a message on a filter the client still has.
    await sub.subscribe([{ topic: 's3104-fence', qos: 1 }])
    await pub.publish('s3104-fence', 'fence', 1)
    await sub.received('fence')
    assert.deepEqual(sub.payloads().filter((p) => p === 'after-unsubscribe'), [])
    for (const w of [sub, pub]) w.destroy()
  })

  it('[MQTT-3.10.4-3] QoS 1 and QoS 2 deliveries started before UNSUBSCRIBE are completed after it', async () => {
    const sub = await subscriber(['s3103/t'], 2)
    const pub = await connected('pub')
    await pub.publish('s3103/t', 'inflight-q1', 1)
    await pub.publish('s3103/t', 'inflight-q2', 2)
    const q1 = await sub.received('inflight-q1')
    const q2 = await sub.received('inflight-q2')
    sub.send({ cmd: 'unsubscribe', messageId: 9, unsubscriptions: ['s3103/t'] })
    await sub.next('unsuback')
    sub.send({ cmd: 'puback', messageId: q1.messageId })
    sub.send({ cmd: 'pubrec', messageId: q2.messageId })
    const rel = await sub.next('pubrel')
    assert.equal(rel.messageId, q2.messageId)
    sub.send({ cmd: 'pubcomp', messageId: q2.messageId })
    assert.equal(await sub.ping(), true)
    for (const w of [sub, pub]) w.destroy()
  })

  it('[MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6] [MQTT-2.3.1-7] UNSUBSCRIBE is answered with one UNSUBACK with its Packet Identifier, for several filters and for filters never subscribed', async () => {
    const sub = await subscriber(['s3105/a', 's3105/b'])
    sub.send({ cmd: 'unsubscribe', messageId: 0x4321, unsubscriptions: ['s3105/a', 's3105/b', 's3105/never'] })
    const ack = await sub.next('unsuback')
    assert.equal(ack.messageId, 0x4321)
    sub.send({ cmd: 'unsubscribe', messageId: 0x4322, unsubscriptions: ['s3105/nothing'] })
    assert.equal((await sub.next('unsuback')).messageId, 0x4322)
    assert.equal(await sub.ping(), true)
    assert.deepEqual(sub.packets.filter((p) => p.cmd === 'unsuback').length, 2)
    // Both subscriptions went: fenced by a new one.
    const pub = await connected('pub')
    await pub.publish('s3105/a', 'gone-a', 1)
    await pub.publish('s3105/b', 'gone-b', 1)
    await sub.subscribe([{ topic: 's3105/fence', qos: 1 }])
    await pub.publish('s3105/fence', 'fence', 1)
    await sub.received('fence')
    assert.deepEqual(sub.payloads(), ['fence'])
    for (const w of [sub, pub]) w.destroy()
  })

  it('[MQTT-4.7.1-2] # matches the parent level and any number of levels; a # not alone in the last level closes the connection', async () => {
    assert.deepEqual(await matched('s4712/#', ['s4712', 's4712/a', 's4712/a/b/c', 's4712x'], 's4712-fence'), ['s4712', 's4712/a', 's4712/a/b/c'])
    for (const filter of ['s4712/#/a', 's4712#', 's4712/a#', '#/']) await closedWithoutAck(subscribeBytes(0x82, 1, [[filter, 0]]))
  })

  it('[MQTT-4.7.1-3] + matches exactly one level (an empty one too); a + sharing a level closes the connection', async () => {
    assert.deepEqual(await matched('s4713/+', ['s4713/a', 's4713/', 's4713/a/b', 's4713'], 's4713-fence'), ['s4713/a', 's4713/'])
    assert.deepEqual(await matched('+/+', ['/s4713b', 's4713b/x', 's4713b'], 's4713b-fence'), ['/s4713b', 's4713b/x'])
    for (const filter of ['s4713/a+', 's4713/+a', 's4713+/b']) await closedWithoutAck(subscribeBytes(0x82, 1, [[filter, 0]]))
  })

  it('[MQTT-4.7.2-1] filters starting with a wildcard do not match topics starting with $; $-filters do', async () => {
    const hash = await subscriber(['#'])
    const plus = await subscriber(['+/s4721/t'])
    const dollar = await subscriber(['$app/#'])
    const pub = await connected('pub')
    await pub.publish('$app/s4721/t', 'dollar-topic', 1)
    await dollar.received('dollar-topic')
    await pub.publish('x/s4721/t', 'plain-topic', 1)
    await hash.received('plain-topic')
    await plus.received('plain-topic')
    assert.deepEqual(hash.payloads().filter((p) => p === 'dollar-topic'), [])
    assert.deepEqual(plus.payloads().filter((p) => p === 'dollar-topic'), [])
    // Nor the broker's own $SYS topics on '#'.
    assert.ok(hash.publishes().every((p: IPublishPacket) => !p.topic.startsWith('$')))
    for (const w of [hash, plus, dollar, pub]) w.destroy()
  })

  it('[MQTT-4.7.3-1] a zero-length Topic Filter closes the connection', async () => {
    await closedWithoutAck(subscribeBytes(0x82, 1, [['', 0]]))
  })

  it('[MQTT-4.7.3-3] a Topic Name and a Topic Filter of 65535 bytes work when limits.maxTopicLength allows it (the default limit is 1024, see the README)', async () => {
    const topic = 's4733/' + 'x'.repeat(65535 - 6)
    assert.equal(Buffer.byteLength(topic), 65535)
    const sub = await subscriber([topic])
    const pub = await connected('pub')
    await pub.publish(topic, 'longest-topic', 1)
    const got = await sub.received('longest-topic')
    assert.equal(got.topic, topic)
    for (const w of [sub, pub]) w.destroy()
  })

  it('[MQTT-4.7.3-4] no normalization: case, empty levels, trailing separators and Unicode composition are distinct topics', async () => {
    assert.deepEqual(await matched('s4734/Accounts', ['s4734/ACCOUNTS', 's4734/accounts', 's4734/Accounts'], 's4734-fence'), ['s4734/Accounts'])
    assert.deepEqual(await matched('s4734/a/b', ['s4734/a//b', 's4734/a/b/', 's4734//a/b', 's4734/a/b'], 's4734b-fence'), ['s4734/a/b'])
    assert.deepEqual(await matched('s4734/\u00e9', ['s4734/e\u0301', 's4734/\u00e9'], 's4734c-fence'), ['s4734/\u00e9'])
  })

  it('[MQTT-3.3.2-3] the Topic Name delivered is the published one, for exact, + and # filters', async () => {
    const sub = await subscriber(['s332/+/x', 's332b/#'])
    const pub = await connected('pub')
    await pub.publish('s332/a/x', 'plus', 1)
    await pub.publish('s332b/c/d', 'hash', 1)
    await sub.received('hash')
    assert.deepEqual(sub.publishes().map((p) => [p.topic, p.payload.toString()]).sort(), [['s332/a/x', 'plus'], ['s332b/c/d', 'hash']])
    for (const w of [sub, pub]) w.destroy()
  })
})
