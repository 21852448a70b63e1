import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'
import { afterEach, describe, it } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { flowPlugin } from '../../plugins/flow/plugin.js'
import { readOncePerTurn } from '../../src/aedes/read-fairness.js'
import { startTestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'

const SOCKETS = 4
const BURST = 1024 * 1024

interface Reads {
  /** Socket index of every read, in order. */
  order: number[]
  /** Over the whole run: how many reads a socket was ahead of the least-read socket that still had bytes to come. */
  maxLead: number
  /** Bytes each server socket got. */
  got: number[]
}

/**
 * SOCKETS real TCP connections on 127.0.0.1, each with BURST bytes already handed to the
 * kernel before the server reads any of them; then every server socket is read the way
 * Aedes reads (lib/client.js: on 'readable', one read() of everything buffered, consumed at
 * once). Records the order of the reads.
 */
async function burstReads (fair: boolean, cleanups: Array<() => void>): Promise<Reads> {
  const server: Server = createServer({ pauseOnConnect: true })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted: Socket[] = []
  server.on('connection', (s: Socket) => accepted.push(s))
  const clients: Socket[] = []
  cleanups.push(() => { for (const s of [...clients, ...accepted]) s.destroy(); server.close() })
  for (let i = 0; i < SOCKETS; i++) {
    const c = connect((server.address() as AddressInfo).port, '127.0.0.1')
    await once(c, 'connect')
    clients.push(c)
  }
  await waitFor(() => accepted.length === SOCKETS, 'every connection accepted')
  for (const c of clients) c.write(Buffer.alloc(BURST, 0x30))
  // The server reads nothing yet (paused on connect): each burst ends up in the kernel's buffers.
  await waitFor(() => clients.every((c) => c.writableLength === 0), 'every burst handed to the kernel')

  const reads: Reads = { order: [], maxLead: 0, got: new Array<number>(SOCKETS).fill(0) }
  const count = new Array<number>(SOCKETS).fill(0)
  accepted.forEach((s, i) => {
    if (fair) readOncePerTurn(s)
    s.on('readable', () => {
      const chunk = s.read() as Buffer | null
      if (chunk === null) return
      reads.got[i]! += chunk.length
      count[i]!++
      reads.order.push(i)
      let least = Infinity
      for (let j = 0; j < SOCKETS; j++) if (j === i || reads.got[j]! < BURST) least = Math.min(least, count[j]!)
      reads.maxLead = Math.max(reads.maxLead, count[i]! - least)
    })
  })
  await waitFor(() => reads.got.every((g) => g === BURST), 'every burst read', 10000)
  return reads
}

describe('readOncePerTurn', () => {
  const cleanups: Array<() => void> = []
  afterEach(() => { for (const c of cleanups.splice(0)) c() })

  it('without it, one socket is read many times in a row while the others wait (the case the fix is for)', async () => {
    // libuv reads a socket up to 32 times per readiness event while each read fills its 64 KiB
    // buffer and Aedes' consumer restarts the handle in between; if this did not happen here,
    // the test below could not fail.
    const reads = await burstReads(false, cleanups)
    assert.ok(reads.maxLead > 2, `expected back-to-back reads of one socket, got order ${reads.order.join('')}`)
  })

  it('with it, every socket with bytes waiting is read once before any is read again', async () => {
    const reads = await burstReads(true, cleanups)
    // Round-robin: a socket is at most one read ahead of any other that still has bytes (one
    // turn's order may put a socket last and first in the next turn: never two reads ahead).
    assert.ok(reads.maxLead <= 1, `a socket was ${reads.maxLead} reads ahead; order ${reads.order.join('')}`)
    assert.deepEqual(reads.got, new Array<number>(SOCKETS).fill(BURST))
  })

  it('leaves a socket with its own _read alone, and installs once', () => {
    const s = connect({ port: 1, host: '127.0.0.1' })
    s.on('error', () => {})
    cleanups.push(() => s.destroy())
    readOncePerTurn(s)
    const installed = (s as unknown as { _read: unknown })._read
    assert.ok(Object.hasOwn(s, '_read'))
    readOncePerTurn(s)
    assert.equal((s as unknown as { _read: unknown })._read, installed)
    const own = connect({ port: 1, host: '127.0.0.1' })
    own.on('error', () => {})
    cleanups.push(() => own.destroy())
    const mine = (): void => {}
    ;(own as unknown as { _read: unknown })._read = mine
    readOncePerTurn(own)
    assert.equal((own as unknown as { _read: unknown })._read, mine)
  })
})

describe('fair reads in the gateway (fan-in)', () => {
  it('publishers whose bursts wait in the kernel are delivered interleaved, not one burst after another', async () => {
    // As config/gateway.yaml runs (the flow plugin: deliveries complete synchronously, which is
    // what let one socket's reads run back to back), with a queue no burst overflows.
    const gw = await startTestGateway('flow: { maxQueued: 100000, maxQueuedBytes: 100000000 }', { plugins: [flowPlugin] })
    try {
      const port = gw.gateway.ports.mqtt!
      const sub = await RawClient.connect(port, 'fair-sub')
      await sub.subscribe('fair/#', 0)
      const publishers = await Promise.all(Array.from({ length: SOCKETS }, (_, i) => RawClient.connect(port, `fair-pub-${i}`)))
      // 256 KiB of QoS 0 PUBLISHes per publisher (four of the gateway's 64 KiB reads), the payload
      // naming the publisher. Written in one synchronous block: the gateway, in this process,
      // reads none of it before every burst is in the kernel.
      const bursts = publishers.map((_, i) => {
        const one = mqttPacket.generate({ cmd: 'publish', topic: `fair/${i}`, payload: Buffer.alloc(100, 48 + i), qos: 0, dup: false, retain: false })
        return { one, burst: Buffer.concat(Array.from({ length: Math.ceil(256 * 1024 / one.length) }, () => one)) }
      })
      publishers.forEach((p, i) => p.socket.write(bursts[i]!.burst))
      assert.ok(publishers.every((p) => p.socket.writableLength === 0), 'every burst went to the kernel at once')
      const perPublisher = bursts[0]!.burst.length / bursts[0]!.one.length
      const total = perPublisher * SOCKETS
      await waitFor(() => sub.publishes().length >= total, `${total} deliveries`, 30000)
      const order = sub.publishes().map((p) => Number(p.topic.slice('fair/'.length)))
      // When the last publisher's first message arrives, how far ahead is the one read first?
      const firstOfLast = Math.max(...publishers.map((_, i) => order.indexOf(i)))
      const ahead = Math.max(...publishers.map((_, i) => order.slice(0, firstOfLast).filter((x) => x === i).length))
      const perRead = Math.floor(64 * 1024 / bursts[0]!.one.length)
      // Round-robin: at most two reads of one publisher (a turn's order may put one last and
      // then first) before every other has had one; one burst after another would be all four.
      assert.ok(ahead <= 2 * perRead, `one publisher had ${ahead} messages delivered (${(ahead / perRead).toFixed(1)} reads) before the last publisher had any`)
      assert.deepEqual(publishers.map((_, i) => order.filter((x) => x === i).length), publishers.map(() => perPublisher))
      for (const c of [sub, ...publishers]) c.destroy()
    } finally {
      await gw.stop()
    }
  })
})
