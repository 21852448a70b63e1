import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import { Aedes, type AuthorizePublishHandler, type Client } from 'aedes'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { waitFor } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'

/**
 * How the Aedes patch reads a client's stream (node_modules/aedes/lib/read-turns.js, issue #14
 * CPU per read): flowing-mode 'data' instead of 'readable' + read(); a read that arrives while a
 * packet of an earlier read is still being handled waits in the (paused) stream, and all that
 * waited is then parsed as one chunk (issue #15, as Aedes' read() did); a socket that
 * keeps libuv's 64 KiB buffer full is read at most READS_PER_TURN (4) times in one turn before
 * the other ready sockets (fairness, issue #14 fan-in stalls). Real sockets on 127.0.0.1 and a
 * real (patched) Aedes broker throughout.
 */
const READS_PER_TURN = 4
const SOCKETS = 4
const BURST = 1024 * 1024

interface ParserInternals { _parser: { parse: (buf: Buffer) => void } }
/** Aedes' client pause()/resume() (used by its CONNECT handling; not in its type declarations). */
interface Pausable { pause: () => void, resume: () => void }

const publish = (topic: string, payload: Buffer | string, qos: 0 | 1, messageId?: number): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, ...(messageId === undefined ? {} : { messageId }) } as unknown as Packet)

/** A net server on 127.0.0.1 that hands every socket to `broker`; the server sockets in accept order. */
async function serve (broker: Aedes, cleanups: Array<() => void>): Promise<{ port: number, accepted: Socket[], clients: Client[] }> {
  const accepted: Socket[] = []
  const clients: Client[] = []
  const server: Server = createServer((s) => { accepted.push(s); clients.push(broker.handle(s)) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(() => { for (const s of accepted) s.destroy(); server.close() })
  return { port: (server.address() as AddressInfo).port, accepted, clients }
}

describe('flowing-mode reads (Aedes patch lib/read-turns.js)', () => {
  const cleanups: Array<() => void | Promise<void>> = []
  afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c() })

  it('a read that arrives while handling waits is not parsed: the stream stays paused, buffers at most its high-water mark plus one read, then everything is handled in order', async () => {
    // Every PUBLISH of the first write waits at authorizePublish until the test opens the gate.
    let gateOpen = false
    const waiting: Array<() => void> = []
    const authorized: string[] = []
    const authorizePublish: AuthorizePublishHandler = (_client, packet, done) => {
      authorized.push(packet.payload.toString())
      if (gateOpen) done(null)
      else waiting.push(() => done(null))
    }
    const broker = await Aedes.createBroker({ authorizePublish })
    cleanups.push(() => new Promise<void>((resolve) => broker.close(() => resolve())))
    const { port, accepted } = await serve(broker, cleanups)
    const sub = await RawClient.connect(port, 'rt-sub')
    cleanups.push(() => { sub.socket.destroy() })
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rt/t', qos: 0 }] })
    await sub.waitFor((p) => p.cmd === 'suback', 'SUBACK')
    const pub = await RawClient.connect(port, 'rt-pub')
    cleanups.push(() => { pub.socket.destroy() })
    const server = accepted[1]!

    // First write: 50 QoS 1 PUBLISHes in one write (one read), all now waiting at the gate.
    const FIRST = 50
    pub.socket.write(Buffer.concat(Array.from({ length: FIRST }, (_, i) => publish('rt/t', String(i), 1, i + 1))))
    await waitFor(() => waiting.length === FIRST, 'the first write\'s PUBLISHes at the gate')
    assert.deepEqual(authorized, Array.from({ length: FIRST }, (_, i) => String(i)), 'dispatched in order')

    // Second write: 1 MiB of QoS 0 PUBLISHes. The server stream takes it from the kernel until its
    // buffer passes the high-water mark, then stops; none of it is parsed while the gate is shut.
    const SECOND = 16000
    const second = Buffer.concat(Array.from({ length: SECOND }, (_, i) => publish('rt/t', String(FIRST + i).padStart(48, '0'), 0)))
    pub.socket.write(second)
    const hwm = server.readableHighWaterMark
    await waitFor(() => server.readableLength >= hwm, 'the server stream buffered up to its high-water mark')
    // A later marker on the same path: a PINGREQ written after the burst is not answered either
    // (it sits behind the burst in the same stream), and the buffer stays bounded.
    pub.socket.write(mqttPacket.generate({ cmd: 'pingreq' }))
    assert.equal(server.readableFlowing, false, 'the server stream is paused while handling waits')
    assert.ok(server.readableLength <= hwm + 64 * 1024, `the stream buffered ${server.readableLength} bytes (high-water mark ${hwm})`)
    assert.equal(authorized.length, FIRST, 'nothing of the second write was parsed')
    assert.equal(pub.packets.filter((p) => p.cmd === 'pingresp').length, 0)
    assert.equal(pub.packets.filter((p) => p.cmd === 'puback').length, 0)

    // Open the gate: every message of both writes arrives once, in the order written, then the PINGRESP.
    gateOpen = true
    for (const release of waiting.splice(0)) release()
    await pub.waitFor((p) => p.cmd === 'pingresp', 'PINGRESP after the burst', 20000)
    await waitFor(() => sub.publishes().length === FIRST + SECOND, 'every message delivered', 20000)
    const got = sub.publishes().map((p) => Number(p.payload.toString()))
    assert.deepEqual(got, Array.from({ length: FIRST + SECOND }, (_, i) => i))
    assert.deepEqual(pub.packets.filter((p) => p.cmd === 'puback').map((p) => (p as mqttPacket.IPubackPacket).messageId),
      Array.from({ length: FIRST }, (_, i) => i + 1), 'PUBACKs in order')
    assert.equal(server.readableFlowing, true, 'reading again')
  })

  it('the reads that arrived while a read\'s packets were handled are parsed together once those finish, not one read per handling round (issue #15)', async () => {
    // Each PUBLISH waits at authorizePublish until the test releases it (a routed QoS 1 PUBLISH
    // waits for Kafka's ack the same way). Resumed one chunk at a time, the reads that arrived
    // meanwhile were handled one per round: one TCP segment's packets per Kafka round trip.
    const waiting: Array<() => void> = []
    const authorized: string[] = []
    const broker = await Aedes.createBroker({
      authorizePublish: (_client, packet, done) => { authorized.push(packet.payload.toString()); waiting.push(() => done(null)) }
    })
    cleanups.push(() => new Promise<void>((resolve) => broker.close(() => resolve())))
    const { port, accepted, clients } = await serve(broker, cleanups)
    const pub = await RawClient.connect(port, 'rt-merge')
    cleanups.push(() => { pub.socket.destroy() })
    const server = accepted[0]!
    const parsed: number[] = []
    const parser = (clients[0] as unknown as ParserInternals)._parser
    const parse = parser.parse.bind(parser)
    parser.parse = (buf: Buffer) => { parsed.push(buf.length); parse(buf) }

    pub.socket.write(publish('rt/m', '0', 1, 1))
    await waitFor(() => waiting.length === 1, 'the first PUBLISH at the gate')
    // Five more writes, each one its own chunk in the server stream (the next is written once the
    // previous one is buffered there), while the first PUBLISH is still being handled.
    const LATER = 5
    const one = publish('rt/m', '1', 1, 2).length
    for (let i = 1; i <= LATER; i++) {
      pub.socket.write(publish('rt/m', String(i), 1, i + 1))
      await waitFor(() => server.readableLength >= i * one, `write ${i} buffered at the server`)
    }
    assert.equal(server.readableFlowing, false, 'the server stream is paused while the first PUBLISH is handled')
    assert.deepEqual(authorized, ['0'])
    const before = parsed.length
    waiting.shift()!()
    await waitFor(() => authorized.length === 1 + LATER, 'the five later PUBLISHes at the gate together (the first one alone released)')
    assert.deepEqual(authorized, ['0', '1', '2', '3', '4', '5'], 'in order')
    assert.deepEqual(parsed.slice(before), [LATER * one], 'the five buffered reads parsed as one chunk')
    for (const release of waiting.splice(0)) release()
    await waitFor(() => pub.packets.filter((p) => p.cmd === 'puback').length === 1 + LATER, 'every PUBACK')
    assert.deepEqual(pub.packets.filter((p) => p.cmd === 'puback').map((p) => (p as mqttPacket.IPubackPacket).messageId), [1, 2, 3, 4, 5, 6], 'PUBACKs in order')
    assert.equal(server.readableFlowing, true, 'reading again')
  })

  it('packets before CONNACK wait for it (the CONNECT is still being handled), then are handled in order', async () => {
    let release: (() => void) | undefined
    const broker = await Aedes.createBroker({
      authenticate: (_client, _u, _p, done) => { release = () => done(null, true) }
    })
    cleanups.push(() => new Promise<void>((resolve) => broker.close(() => resolve())))
    const { port, accepted } = await serve(broker, cleanups)
    const socket = connect(port, '127.0.0.1')
    cleanups.push(() => { socket.destroy() })
    await once(socket, 'connect')
    const packets: Packet[] = []
    const parser = mqttPacket.parser()
    parser.on('packet', (p: Packet) => packets.push(p))
    socket.on('data', (b: Buffer) => parser.parse(b))
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'rt-early', keepalive: 60 } as unknown as Packet))
    await waitFor(() => release !== undefined, 'authenticate called')
    // Writes while authentication waits (separate reads): the first one pauses the stream.
    const subscribe = (i: number): Buffer => mqttPacket.generate({ cmd: 'subscribe', messageId: i + 1, subscriptions: [{ topic: `rt/e${i}`, qos: 0 }] } as unknown as Packet)
    socket.write(subscribe(0))
    await waitFor(() => accepted[0]!.readableFlowing === false, 'the server stream paused while CONNECT is handled')
    for (let i = 1; i < 5; i++) socket.write(subscribe(i))
    socket.write(mqttPacket.generate({ cmd: 'pingreq' }))
    await waitFor(() => accepted[0]!.readableLength >= 5 * subscribe(0).length + 2, 'every write buffered at the server')
    assert.equal(packets.length, 0, 'nothing answered before the CONNACK')
    release!()
    await waitFor(() => packets.some((p) => p.cmd === 'pingresp') && packets.filter((p) => p.cmd === 'suback').length === 5, 'PINGRESP and five SUBACKs')
    // (A PINGREQ read together with SUBSCRIBEs is answered first: the packets of one read are
    // dispatched together and a SUBSCRIBE waits for the store. Aedes did the same.)
    assert.equal(packets[0]!.cmd, 'connack')
    assert.deepEqual(packets.filter((p) => p.cmd === 'suback').map((p) => (p as mqttPacket.ISubackPacket).messageId), [1, 2, 3, 4, 5])
  })

  /**
   * SOCKETS connections, each with BURST bytes of QoS 0 PUBLISHes handed to the kernel while
   * its Aedes client is paused (client.pause()); then all are resumed at once. Records the
   * order of the parser's reads, one tick per event-loop turn (check phase).
   */
  async function burstReads (viaAedes: boolean): Promise<{ order: number[], maxPerTurn: number, got: number[], delivered: number[], noTickBetween: number }> {
    const broker = await Aedes.createBroker()
    cleanups.push(() => new Promise<void>((resolve) => broker.close(() => resolve())))
    const accepted: Socket[] = []
    const aedesClients: Client[] = []
    const server: Server = createServer({ pauseOnConnect: !viaAedes }, (s) => {
      accepted.push(s)
      if (viaAedes) aedesClients.push(broker.handle(s))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    cleanups.push(() => { for (const s of accepted) s.destroy(); server.close() })
    const port = (server.address() as AddressInfo).port
    const clients: Socket[] = []
    cleanups.push(() => { for (const c of clients) c.destroy() })
    for (let i = 0; i < SOCKETS; i++) {
      if (viaAedes) {
        const raw = await RawClient.connect(port, `rt-burst-${i}`)
        clients.push(raw.socket)
      } else {
        const c = connect(port, '127.0.0.1')
        await once(c, 'connect')
        clients.push(c)
      }
    }
    await waitFor(() => accepted.length === SOCKETS, 'every connection accepted')
    const delivered = new Array<number>(SOCKETS).fill(0)
    broker.on('publish', (packet, client) => {
      if (client === null || !packet.topic.startsWith('rt/b')) return
      const i = aedesClients.indexOf(client)
      if (i >= 0) delivered[i]!++
    })
    // Each burst: PUBLISHes of 64 bytes each; the client is held, so the server reads little.
    const one = publish('rt/b', Buffer.alloc(56, 0x31), 0)
    const perBurst = Math.floor(BURST / one.length)
    for (const c of aedesClients) (c as unknown as Pausable).pause()
    for (const c of clients) c.write(Buffer.concat(new Array<Buffer>(perBurst).fill(one)))
    await waitFor(() => clients.every((c) => c.writableLength === 0), 'every burst handed to the kernel', 10000)

    const reads = { order: [] as number[], maxPerTurn: 0, got: new Array<number>(SOCKETS).fill(0), delivered, noTickBetween: 0 }
    let turn = 0
    let ticking = true
    const tick = (): void => { turn++; if (ticking) setImmediate(tick) }
    setImmediate(tick)
    cleanups.push(() => { ticking = false })
    const inTurn = new Array<number>(SOCKETS).fill(0)
    const turnOf = new Array<number>(SOCKETS).fill(-1)
    const record = (i: number, length: number): void => {
      reads.got[i]! += length
      reads.order.push(i)
      if (turnOf[i] !== turn) { turnOf[i] = turn; inTurn[i] = 0 }
      inTurn[i]!++
      reads.maxPerTurn = Math.max(reads.maxPerTurn, inTurn[i]!)
    }
    if (viaAedes) {
      // Observed where the client parses a read (the patch's onData), nothing changed in between.
      // And whether the nextTick queue ran between one socket's read and the next socket's: the
      // writes a read made complete ('drain') in a nextTick, and a subscriber fed by several
      // publishers must see them before the next publisher's chunk (plugins/flow queue bound).
      let last = -1
      let tickRan = true
      aedesClients.forEach((c, i) => {
        const parser = (c as unknown as ParserInternals)._parser
        const parse = parser.parse.bind(parser)
        parser.parse = (buf: Buffer) => {
          if (last !== i && !tickRan) reads.noTickBetween++
          last = i
          tickRan = false
          process.nextTick(() => { tickRan = true })
          record(i, buf.length)
          parse(buf)
        }
      })
      // One immediate each (Node runs the nextTick queue between immediates), as the patch resumes.
      for (const c of aedesClients) setImmediate(() => (c as unknown as Pausable).resume())
    } else {
      // The case the fix is for: a plain flowing consumer that keeps up.
      // (pauseOnConnect left the stream explicitly paused: 'data' alone does not start it.)
      accepted.forEach((s, i) => { s.on('data', (b: Buffer) => record(i, b.length)); s.resume() })
    }
    const total = perBurst * one.length
    await waitFor(() => reads.got.every((g) => g >= total), 'every burst read', 20000)
    ticking = false
    return reads
  }

  it('without a budget, a flowing socket is read many times in a row while the others wait (the case the budget is for)', async () => {
    const reads = await burstReads(false)
    assert.ok(reads.maxPerTurn > READS_PER_TURN + 1, `expected back-to-back reads of one socket in one turn, got at most ${reads.maxPerTurn}; order ${reads.order.join('')}`)
  })

  it(`Aedes reads a socket at most ${READS_PER_TURN} times in one turn, then the other ready sockets go first, each resumed on its own (ticks run in between); every message handled`, async () => {
    const reads = await burstReads(true)
    assert.ok(reads.maxPerTurn <= READS_PER_TURN + 1, `a socket was read ${reads.maxPerTurn} times in one turn; order ${reads.order.join('')}`)
    // Round-robin: each of the four is read before any has had more than one turn's budget.
    assert.deepEqual(reads.order.slice(0, SOCKETS * READS_PER_TURN).filter((v, k, a) => a.indexOf(v) === k).sort(), [0, 1, 2, 3])
    assert.equal(reads.noTickBetween, 0, 'two sockets\' reads handled with no nextTick between them (held streams resumed together)')
    const perBurst = Math.floor(BURST / 64)
    await waitFor(() => reads.delivered.every((d) => d === perBurst), `every PUBLISH handled (${reads.delivered.join(',')})`, 20000)
  })
})
