import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { IConnackPacket } from 'mqtt-packet'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { connectPacket, mqttString, rawConnect, sleep, Wire } from './wire.js'

/**
 * MQTT 3.1.1 sections 3.1 (CONNECT), 3.2 (CONNACK), 3.12 (PINGREQ) and 3.14 (DISCONNECT),
 * against the gateway over raw sockets. Each test is named after the statement it checks.
 */
describe('MQTT 3.1.1 conformance: CONNECT, CONNACK, PINGREQ, DISCONNECT', () => {
  let gw: TestGateway
  let port: number
  let n = 0
  const id = (name: string): string => `${name}${++n}`
  before(async () => {
    gw = await startTestGateway('limits: { maxClientIdLength: 64, keepaliveMaxS: 600 }')
    port = gw.gateway.ports.mqtt!
  })
  after(async () => { await gw.stop() })

  /** A connected subscriber to `filter` at QoS 2. */
  async function subscriber (filter: string): Promise<Wire> {
    const { wire } = await Wire.connect(port, id('sub'))
    await wire.subscribe([{ topic: filter, qos: 2 }])
    return wire
  }

  /** Publishes a fence message and waits for `sub` to get it: anything published before has arrived. */
  async function fence (sub: Wire, topic: string): Promise<void> {
    const { wire } = await Wire.connect(port, id('fence'))
    const payload = `fence-${n}`
    await wire.publish(topic, payload, 1)
    await sub.received(payload)
    wire.destroy()
  }

  it('[MQTT-3.1.0-1] a PUBLISH or SUBSCRIBE before CONNECT closes the connection and is not processed', async () => {
    const sub = await subscriber('c310/#')
    for (const first of [
      { cmd: 'publish', topic: 'c310/t', payload: 'before-connect', qos: 0, retain: false, dup: false },
      { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }] }
    ]) {
      const wire = await Wire.open(port)
      wire.send(first)
      assert.equal(await wire.closesWithin(), true)
      assert.deepEqual(wire.packets.map((p) => p.cmd), [])
    }
    await fence(sub, 'c310/t')
    assert.deepEqual(sub.payloads().filter((p) => p === 'before-connect'), [])
    sub.destroy()
  })

  it('[MQTT-3.1.0-2] [MQTT-4.8.0-1] a second CONNECT is a protocol violation: the connection is closed', async () => {
    const { wire } = await Wire.connect(port, id('twice'))
    wire.send(connectPacket(id('twice')))
    assert.equal(await wire.closesWithin(), true)
    assert.deepEqual(wire.packets.map((p) => p.cmd), ['connack'])
  })

  it('[MQTT-3.1.2-1] [MQTT-3.1.4-1] [MQTT-3.2.2-6] protocol name other than "MQTT": closed without CONNACK', async () => {
    for (const name of ['MQTX', 'mqtt', 'MQIsdp']) {
      const wire = await Wire.open(port)
      // MQIsdp is only valid with level 3: with level 4 it is a wrong name too.
      wire.sendRaw(rawConnect({ protocolName: name, level: 4, flags: 0x02, payload: [mqttString(id('pn'))] }))
      assert.equal(await wire.closesWithin(), true, name)
      assert.deepEqual(wire.packets.map((p) => p.cmd), [], name)
    }
  })

  it('[MQTT-3.1.2-2] an unsupported protocol level: CONNACK 0x01 and the connection is closed', async () => {
    for (const level of [2, 6, 255]) {
      const wire = await Wire.open(port)
      wire.sendRaw(rawConnect({ level, flags: 0x02, payload: [mqttString(id('lvl'))] }))
      const connack = await wire.next('connack') as IConnackPacket
      assert.equal(connack.returnCode, 1, `level ${level}`)
      assert.equal(connack.sessionPresent, false)
      assert.equal(await wire.closesWithin(), true, `level ${level}`)
    }
  })

  it('[MQTT-3.1.2-3] [MQTT-3.1.4-1] the reserved CONNECT flag set: closed without CONNACK', async () => {
    const wire = await Wire.open(port)
    wire.sendRaw(rawConnect({ flags: 0x03, payload: [mqttString(id('rsv'))] }))
    assert.equal(await wire.closesWithin(), true)
    assert.deepEqual(wire.packets.map((p) => p.cmd), [])
  })

  it('[MQTT-3.1.2-4] [MQTT-3.1.3-2] [MQTT-3.2.2-2] [MQTT-3.2.2-3] [MQTT-4.1.0-1] CleanSession 0 resumes the session named by the Client Identifier (Session Present 1), or creates one (Session Present 0)', async () => {
    const clientId = id('resume')
    const first = await Wire.connect(port, clientId, { clean: false })
    assert.equal(first.connack.returnCode, 0)
    assert.equal(first.connack.sessionPresent, false)
    await first.wire.subscribe([{ topic: 'c324/t', qos: 1 }])
    first.wire.disconnect()
    await first.wire.closed
    const second = await Wire.connect(port, clientId, { clean: false })
    assert.equal(second.connack.sessionPresent, true)
    // The subscription is part of the resumed session: no SUBSCRIBE on this connection.
    const { wire: pub } = await Wire.connect(port, id('pub'))
    await pub.publish('c324/t', 'resumed', 1)
    const got = await second.wire.received('resumed')
    assert.equal(got.qos, 1)
    second.wire.send({ cmd: 'puback', messageId: got.messageId })
    second.wire.disconnect()
    pub.destroy()
  })

  it('[MQTT-3.1.2-5] [MQTT-4.5.0-1] CleanSession 0: QoS 1 and QoS 2 messages published while disconnected are stored and delivered on reconnect', async () => {
    const clientId = id('offline')
    const first = await Wire.connect(port, clientId, { clean: false })
    await first.wire.subscribe([{ topic: 'c325/t', qos: 2 }])
    first.wire.disconnect()
    await first.wire.closed
    const { wire: pub } = await Wire.connect(port, id('pub'))
    await pub.publish('c325/t', 'stored-q1', 1)
    await pub.publish('c325/t', 'stored-q2', 2)
    const second = await Wire.connect(port, clientId, { clean: false })
    const q1 = await second.wire.received('stored-q1')
    const q2 = await second.wire.received('stored-q2')
    assert.deepEqual([q1.qos, q2.qos], [1, 2])
    // [MQTT-3.2.0-1]: CONNACK came first, before the stored messages.
    assert.equal(second.wire.packets[0]!.cmd, 'connack')
    pub.destroy()
    second.wire.destroy()
  })

  it('[MQTT-3.2.0-1] the first packet the Server sends is CONNACK, also when a session has queued messages', async () => {
    const clientId = id('first')
    const first = await Wire.connect(port, clientId, { clean: false })
    await first.wire.subscribe([{ topic: 'c320/t', qos: 1 }])
    first.wire.disconnect()
    await first.wire.closed
    const { wire: pub } = await Wire.connect(port, id('pub'))
    for (let i = 0; i < 5; i++) await pub.publish('c320/t', `q${i}`, 1)
    const second = await Wire.connect(port, clientId, { clean: false })
    await second.wire.received('q4')
    assert.equal(second.wire.packets[0]!.cmd, 'connack')
    assert.deepEqual(second.wire.payloads(), ['q0', 'q1', 'q2', 'q3', 'q4'])
    pub.destroy()
    second.wire.destroy()
  })

  it('[MQTT-3.1.2-6] [MQTT-3.1.4-3] [MQTT-3.2.2-1] CleanSession 1 discards the stored session (Session Present 0, no queued messages, no subscriptions) and its own session ends with the connection', async () => {
    const clientId = id('clean')
    const first = await Wire.connect(port, clientId, { clean: false })
    await first.wire.subscribe([{ topic: 'c326/t', qos: 1 }])
    first.wire.disconnect()
    await first.wire.closed
    const { wire: pub } = await Wire.connect(port, id('pub'))
    await pub.publish('c326/t', 'queued-before-clean', 1)
    const clean = await Wire.connect(port, clientId, { clean: true })
    assert.equal(clean.connack.sessionPresent, false)
    await pub.publish('c326/t', 'after-clean', 1)
    // Neither the queued message nor the old subscription survive. Fence: a message from the
    // same publisher after 'after-clean', on a subscription made now; the stored queue would
    // have been sent while CONNECT was handled, before this SUBSCRIBE was read.
    await clean.wire.subscribe([{ topic: 'c326-fence/t', qos: 1 }])
    await pub.publish('c326/t', 'after-clean-2', 1)
    await pub.publish('c326-fence/t', 'fence', 1)
    await clean.wire.received('fence')
    assert.deepEqual(clean.wire.payloads(), ['fence'])
    clean.wire.disconnect()
    await clean.wire.closed
    // The clean session ended with its connection: a CleanSession 0 connect finds nothing.
    const again = await Wire.connect(port, clientId, { clean: false })
    assert.equal(again.connack.sessionPresent, false)
    again.wire.destroy()
    pub.destroy()
  })

  it('[MQTT-3.1.2-7] retained messages are not session state: they outlive the session of their publisher', async () => {
    const { wire: pub } = await Wire.connect(port, id('retpub'))
    await pub.publish('c327/t', 'kept', 1, true)
    pub.disconnect()
    await pub.closed
    const sub = await subscriber('c327/t')
    const got = await sub.received('kept')
    assert.equal(got.retain, true)
    const { wire: cleaner } = await Wire.connect(port, id('cleaner'))
    await cleaner.publish('c327/t', '', 1, true)
    cleaner.destroy()
    sub.destroy()
  })

  it('[MQTT-3.1.2-8] [MQTT-3.1.2-9] [MQTT-3.1.2-16] [MQTT-3.1.3-1] the Will (topic, message, QoS) is published when the connection closes without DISCONNECT; Will Retain 0 publishes it non-retained', async () => {
    const sub = await subscriber('c328/#')
    const { wire } = await Wire.connect(port, id('will'), { will: { topic: 'c328/will', payload: Buffer.from('gone'), qos: 1, retain: false } })
    wire.destroy()
    const got = await sub.received('gone')
    assert.deepEqual([got.topic, got.qos, got.retain], ['c328/will', 1, false])
    // Not stored as retained: a new subscriber gets nothing, fenced by a later retained message.
    const { wire: pub } = await Wire.connect(port, id('pub'))
    await pub.publish('c328/zz', 'later-retained', 1, true)
    const late = await subscriber('c328/#')
    await late.received('later-retained')
    assert.deepEqual(late.payloads(), ['later-retained'])
    await pub.publish('c328/zz', '', 1, true)
    for (const w of [sub, pub, late]) w.destroy()
  })

  it('[MQTT-3.1.2-17] Will Retain 1: the Will is published as a retained message', async () => {
    const sub = await subscriber('c3217/will')
    const { wire } = await Wire.connect(port, id('willret'), { will: { topic: 'c3217/will', payload: Buffer.from('retained-will'), qos: 0, retain: true } })
    wire.destroy()
    await sub.received('retained-will')
    const late = await subscriber('c3217/will')
    const got = await late.received('retained-will')
    assert.equal(got.retain, true)
    const { wire: cleaner } = await Wire.connect(port, id('cleaner'))
    await cleaner.publish('c3217/will', '', 1, true)
    for (const w of [sub, late, cleaner]) w.destroy()
  })

  it('[MQTT-3.1.2-10] [MQTT-3.14.4-3] on DISCONNECT the Will is discarded: not published when the connection then closes', async () => {
    const sub = await subscriber('c3210/#')
    const { wire } = await Wire.connect(port, id('nowill'), { will: { topic: 'c3210/will', payload: Buffer.from('must-not-appear'), qos: 1, retain: false } })
    wire.disconnect()
    await wire.closed
    await fence(sub, 'c3210/fence')
    assert.deepEqual(sub.payloads().filter((p) => p === 'must-not-appear'), [])
    sub.destroy()
  })

  it('[MQTT-3.1.2-12] Will Flag 0: nothing is published when the connection drops', async () => {
    const sub = await subscriber('#')
    const before = sub.publishes().length
    const { wire } = await Wire.connect(port, id('nowillflag'))
    wire.destroy()
    await wire.closed
    await fence(sub, 'c3212/fence')
    // Only the fence arrived on '#' from this test ($SYS is not matched by '#', [MQTT-4.7.2-1]).
    assert.deepEqual(sub.publishes().slice(before).map((p) => p.topic).filter((t) => !t.startsWith('c3') || t === 'c3212/fence'), ['c3212/fence'])
    sub.destroy()
  })

  for (const [label, flags, ids] of [
    ['Will QoS 1 with Will Flag 0', 0x02 | 0x08, '[MQTT-3.1.2-11] [MQTT-3.1.2-13]'],
    ['Will Retain 1 with Will Flag 0', 0x02 | 0x20, '[MQTT-3.1.2-11] [MQTT-3.1.2-15]'],
    ['Will QoS 3', 0x02 | 0x04 | 0x18, '[MQTT-3.1.2-14]'],
    ['Password Flag 1 with User Name Flag 0', 0x02 | 0x40, '[MQTT-3.1.2-22]']
  ] as const) {
    it(`${ids} [MQTT-3.1.4-1] ${label}: the CONNECT is malformed and closed without CONNACK`, async () => {
      const payload = [mqttString(id('flags'))]
      if (flags & 0x04) payload.push(mqttString('w/t'), mqttString('w'))
      if (flags & 0x40) payload.push(mqttString('secret'))
      const wire = await Wire.open(port)
      wire.sendRaw(rawConnect({ flags, payload }))
      assert.equal(await wire.closesWithin(), true)
      assert.deepEqual(wire.packets.map((p) => p.cmd), [])
    })
  }

  it('[MQTT-3.1.2-18] [MQTT-3.1.2-19] [MQTT-3.1.2-20] [MQTT-3.1.2-21] [MQTT-3.1.3-11] user name and password are read as their flags say; a flag without its field is malformed', async () => {
    const ok = await Wire.connect(port, id('userpass'), { username: 'ümlaut-user', password: Buffer.from('pw') })
    assert.equal(ok.connack.returnCode, 0)
    ok.wire.destroy()
    const userOnly = await Wire.connect(port, id('useronly'), { username: 'u' })
    assert.equal(userOnly.connack.returnCode, 0)
    userOnly.wire.destroy()
    // User Name Flag 1 (0x80) but the payload ends after the Client Identifier.
    for (const flags of [0x82, 0xc2]) {
      const wire = await Wire.open(port)
      wire.sendRaw(rawConnect({ flags, payload: [mqttString(id('nouser'))] }))
      assert.equal(await wire.closesWithin(), true, `flags ${flags}`)
      assert.deepEqual(wire.packets.map((p) => p.cmd), [], `flags ${flags}`)
    }
  })

  it('[MQTT-3.1.2-24] no packet within 1.5 x Keep Alive: the Server disconnects (and not before the Keep Alive)', async () => {
    const { wire } = await Wire.connect(port, id('ka'), { keepalive: 1 })
    const start = Date.now()
    await wire.closed
    const elapsed = Date.now() - start
    assert.ok(elapsed >= 1000 && elapsed < 2600, `closed after ${elapsed} ms`)
    // A client that pings every 800 ms stays connected past 3 s.
    const { wire: alive } = await Wire.connect(port, id('ka-alive'), { keepalive: 1 })
    for (let i = 0; i < 4; i++) {
      await sleep(800)
      assert.equal(await alive.ping(), true, `ping ${i}`)
    }
    alive.destroy()
  })

  it('[MQTT-3.1.3-3] [MQTT-3.1.3-5] [MQTT-3.1.4-4] a 23-byte Client Identifier of 0-9a-zA-Z is accepted with CONNACK 0', async () => {
    const { wire, connack } = await Wire.connect(port, 'Az09Az09Az09Az09Az09Az0')
    assert.equal(connack.returnCode, 0)
    assert.equal(await wire.ping(), true)
    wire.destroy()
  })

  it('[MQTT-3.1.3-6] a zero-byte Client Identifier with CleanSession 1 is accepted and given a unique identifier', async () => {
    const a = await Wire.connect(port, '', { clean: true })
    const b = await Wire.connect(port, '', { clean: true })
    assert.equal(a.connack.returnCode, 0)
    assert.equal(b.connack.returnCode, 0)
    // Unique: the second did not take over the first.
    assert.equal(await a.wire.ping(), true)
    assert.equal(await b.wire.ping(), true)
    a.wire.destroy()
    b.wire.destroy()
  })

  it('[MQTT-3.1.3-8] [MQTT-3.2.2-4] [MQTT-3.2.2-5] a zero-byte Client Identifier with CleanSession 0: CONNACK 0x02, Session Present 0, closed', async () => {
    // mqtt-packet will not build this CONNECT: flags 0x00 (CleanSession 0), empty identifier.
    const wire = await Wire.open(port)
    wire.sendRaw(rawConnect({ flags: 0x00, payload: [mqttString('')] }))
    const connack = await wire.next('connack') as IConnackPacket
    assert.equal(connack.returnCode, 2)
    assert.equal(connack.sessionPresent, false)
    assert.equal(await wire.closesWithin(), true)
  })

  it('[MQTT-3.1.3-9] [MQTT-3.2.2-4] [MQTT-3.2.2-5] a Client Identifier the gateway rejects (longer than limits.maxClientIdLength): CONNACK 0x02, closed; Session Present 0 even with a stored session', async () => {
    const { wire, connack } = await Wire.connect(port, 'x'.repeat(65))
    assert.equal(connack.returnCode, 2)
    assert.equal(connack.sessionPresent, false)
    assert.equal(await wire.closesWithin(), true)
    // A stored session exists for this id; the refused CONNECT (keepalive above keepaliveMaxS) must not say so.
    const clientId = id('stored')
    const first = await Wire.connect(port, clientId, { clean: false })
    await first.wire.subscribe([{ topic: 'c339/t', qos: 1 }])
    first.wire.disconnect()
    await first.wire.closed
    const refused = await Wire.connect(port, clientId, { clean: false, keepalive: 601 })
    assert.equal(refused.connack.returnCode, 2)
    assert.equal(refused.connack.sessionPresent, false)
    assert.equal(await refused.wire.closesWithin(), true)
  })

  for (const [field, ids] of [['client id', '[MQTT-3.1.3-4] [MQTT-1.5.3-1]'], ['will topic', '[MQTT-3.1.3-10] [MQTT-1.5.3-1]'], ['user name', '[MQTT-3.1.3-11] [MQTT-1.5.3-1]']] as const) {
    it(`${ids} the ${field} is ill-formed UTF-8 (a lone surrogate, an invalid byte): the connection is closed`, async () => {
      for (const bad of [Buffer.from([0x61, 0xed, 0xa0, 0x80]), Buffer.from([0x61, 0xff, 0x62])]) {
        const clientId = field === 'client id' ? bad : Buffer.from(id('utf'))
        const payload = [mqttString(clientId)]
        let flags = 0x02
        if (field === 'will topic') { flags |= 0x04; payload.push(mqttString(bad), mqttString('w')) }
        if (field === 'user name') { flags |= 0x80; payload.push(mqttString(bad)) }
        const wire = await Wire.open(port)
        wire.sendRaw(rawConnect({ flags, payload }))
        assert.equal(await wire.closesWithin(), true, bad.toString('hex'))
        assert.notEqual((wire.packets[0] as IConnackPacket | undefined)?.returnCode, 0, 'not accepted')
      }
    })
  }

  it('[MQTT-1.5.3-2] a client id containing U+0000: the connection is closed', async () => {
    const wire = await Wire.open(port)
    wire.sendRaw(rawConnect({ flags: 0x02, payload: [mqttString(Buffer.from([0x61, 0x00, 0x62]))] }))
    assert.equal(await wire.closesWithin(), true)
    assert.notEqual((wire.packets[0] as IConnackPacket | undefined)?.returnCode, 0, 'not accepted')
  })

  it('[MQTT-3.1.4-2] a second connection with the same Client Identifier disconnects the first', async () => {
    const clientId = id('takeover')
    const first = await Wire.connect(port, clientId)
    const second = await Wire.connect(port, clientId)
    assert.equal(second.connack.returnCode, 0)
    assert.equal(await first.wire.closesWithin(), true)
    assert.equal(await second.wire.ping(), true)
    second.wire.destroy()
  })

  it('[MQTT-3.1.4-5] after a refused CONNECT nothing the client sent is processed', async () => {
    const sub = await subscriber('c3145/#')
    const wire = await Wire.open(port)
    // A refused CONNECT (zero-byte id, CleanSession 0) and a PUBLISH in the same TCP segment.
    const { generate } = (await import('mqtt-packet')).default
    wire.sendRaw(Buffer.concat([
      rawConnect({ flags: 0x00, payload: [mqttString('')] }),
      generate({ cmd: 'publish', topic: 'c3145/t', payload: Buffer.from('after-refusal'), qos: 0, retain: false, dup: false })
    ]))
    assert.equal(await wire.closesWithin(), true)
    await fence(sub, 'c3145/fence')
    assert.deepEqual(sub.payloads().filter((p) => p === 'after-refusal'), [])
    sub.destroy()
  })

  it('[MQTT-3.12.4-1] PINGREQ is answered with PINGRESP', async () => {
    const { wire } = await Wire.connect(port, id('ping'))
    assert.equal(await wire.ping(), true)
    wire.destroy()
  })

  it('[MQTT-3.14.1-1] a DISCONNECT with reserved bits set is malformed: the connection is closed and the Will is published', async () => {
    const sub = await subscriber('c3141/will')
    const { wire } = await Wire.connect(port, id('baddisc'), { will: { topic: 'c3141/will', payload: Buffer.from('will-after-bad-disconnect'), qos: 0, retain: false } })
    wire.sendRaw([0xe1, 0x00])
    assert.equal(await wire.closesWithin(), true)
    await sub.received('will-after-bad-disconnect')
    sub.destroy()
  })

  it('[MQTT-4.1.0-2] a CleanSession 1 session lasts as long as its connection: its subscription works until it closes', async () => {
    const { wire } = await Wire.connect(port, id('lasting'))
    await wire.subscribe([{ topic: 'c410/t', qos: 0 }])
    const { wire: pub } = await Wire.connect(port, id('pub'))
    for (let i = 0; i < 3; i++) {
      await sleep(300)
      await pub.publish('c410/t', `still-${i}`, 1)
      await wire.received(`still-${i}`)
    }
    wire.destroy()
    pub.destroy()
  })
})

describe('MQTT 3.1 (MQIsdp, protocol level 3): where it differs from 3.1.1', () => {
  let gw: TestGateway
  let port: number
  before(async () => {
    gw = await startTestGateway()
    port = gw.gateway.ports.mqtt!
  })
  after(async () => { await gw.stop() })

  it('MQTT 3.1: "MQIsdp" level 3 is accepted; publish/subscribe and Will work as in 3.1.1', async () => {
    const sub = await Wire.connect(port, 'v31-sub', { protocolVersion: 3 })
    assert.equal(sub.connack.returnCode, 0)
    // 3.1 SUBACK has no failure code: a valid filter is granted as requested.
    assert.deepEqual(await sub.wire.subscribe([{ topic: 'v31/#', qos: 2 }]), [2])
    const pub = await Wire.connect(port, 'v31-pub', { protocolVersion: 3, will: { topic: 'v31/will', payload: Buffer.from('v31-gone'), qos: 1, retain: false } })
    await pub.wire.publish('v31/t', 'v31-q2', 2)
    const got = await sub.wire.received('v31-q2')
    assert.equal(got.qos, 2)
    pub.wire.destroy()
    await sub.wire.received('v31-gone')
    sub.wire.destroy()
  })

  it('MQTT 3.1: "MQIsdp" with level 4, or "MQTT" with level 3, is refused', async () => {
    for (const [name, level] of [['MQIsdp', 4], ['MQTT', 3]] as const) {
      const wire = await Wire.open(port)
      wire.sendRaw(rawConnect({ protocolName: name, level, flags: 0x02, payload: [mqttString('v31-mismatch')] }))
      assert.equal(await wire.closesWithin(), true, `${name} ${level}`)
      assert.notEqual((wire.packets[0] as IConnackPacket | undefined)?.returnCode, 0, `${name} ${level}`)
    }
  })

  it('MQTT 3.1: a Client Identifier longer than 23 bytes is accepted (3.1 let a server refuse it with 0x02; the gateway applies its own limit, limits.maxClientIdLength)', async () => {
    const { wire, connack } = await Wire.connect(port, 'a-3.1-client-id-longer-than-23', { protocolVersion: 3 })
    assert.equal(connack.returnCode, 0)
    wire.destroy()
  })

  it('MQTT 3.1: the CONNACK has no Session Present flag (the byte is 0 even for a resumed session)', async () => {
    const first = await Wire.connect(port, 'v31-session', { protocolVersion: 3, clean: false })
    await first.wire.subscribe([{ topic: 'v31s/t', qos: 1 }])
    first.wire.disconnect()
    await first.wire.closed
    const wire = await Wire.open(port, 3)
    const raw: Buffer[] = []
    wire.socket.on('data', (c: Buffer) => raw.push(c))
    wire.send(connectPacket('v31-session', { protocolVersion: 3, clean: false }))
    await wire.next('connack')
    assert.deepEqual([...Buffer.concat(raw).subarray(0, 4)], [0x20, 0x02, 0x00, 0x00])
    wire.destroy()
  })
})
