import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Aedes, type AedesPublishPacket } from 'aedes'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { pollUntil } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'

/**
 * Aedes announces every CONNECT on $SYS/<node>/new/clients (and every disconnect on
 * .../disconnect/clients) so that other nodes close their connection of that client id
 * (takeover). In memory mode (one process) the gateway replaces both announcements through
 * the patch's seams (`announceClient`, `announceClientGone`;
 * src/persistence/memory-announcements.ts, issue #14 connect rate): Aedes' own takeover check
 * is removed and an announcement is published only when a listener would hear it.
 */
describe('$SYS new/clients announcements (patch)', () => {
  let gw: TestGateway
  const announced: string[] = []
  const published: string[] = []
  before(async () => {
    gw = await startTestGateway()
    gw.gateway.broker.on('publish', (packet: AedesPublishPacket) => {
      published.push(packet.topic)
      if (/^\$SYS\/[^/]+\/(new|disconnect)\/clients$/.test(packet.topic)) announced.push(`${packet.topic} ${packet.payload.toString()}`)
    })
  })
  after(async () => { await gw.stop() })
  const port = (): number => gw.gateway.ports.mqtt!

  it('memory mode: no announcement is published per CONNECT or disconnect, and a second CONNECT with the same id still closes the first', async () => {
    announced.length = 0
    const first = await RawClient.connect(port(), 'announce-takeover')
    const second = await RawClient.connect(port(), 'announce-takeover')
    await first.closed
    await second.ping() // the second connection is served
    const other = await RawClient.connect(port(), 'announce-other')
    other.socket.end()
    await other.closed
    // Marker: a message published after all of the above went through the same publish path.
    const marker = await RawClient.connect(port(), 'announce-marker')
    marker.send({ cmd: 'publish', topic: 'announce/marker', payload: Buffer.from('m'), qos: 0, retain: false, dup: false })
    await pollUntil(async () => published.includes('announce/marker'), (seen) => seen, 5000, 5)
    assert.deepEqual(announced, [], 'nothing but Aedes\' own check listens: nothing announced')
    second.destroy()
    marker.destroy()
  })

  it('a client subscribed to the announcements still receives them (CONNECT and disconnect)', async () => {
    const watcher = await RawClient.connect(port(), 'announce-watcher')
    await watcher.subscribe('$SYS/+/new/clients', 0)
    await watcher.subscribe('$SYS/+/disconnect/clients', 0)
    const node = gw.gateway.broker.id
    const seen = (): string[] => watcher.publishes().map((p) => `${p.topic} ${p.payload.toString()}`)
    const c = await RawClient.connect(port(), 'announce-watched')
    await pollUntil(async () => seen(), (s) => s.includes(`$SYS/${node}/new/clients announce-watched`), 5000, 5)
    c.socket.end()
    await pollUntil(async () => seen(), (s) => s.includes(`$SYS/${node}/disconnect/clients announce-watched`), 5000, 5)
    watcher.destroy()
  })

  it('plain Aedes (its default bus, no replacement) still announces every CONNECT', async () => {
    const broker = await Aedes.createBroker()
    try {
      const heard: string[] = []
      broker.on('publish', (packet: AedesPublishPacket) => { if (packet.topic.endsWith('/new/clients')) heard.push(packet.payload.toString()) })
      const { createServer } = await import('node:net')
      const server = createServer((socket) => { broker.handle(socket) })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const p = (server.address() as { port: number }).port
      const c = await RawClient.connect(p, 'announce-plain')
      await pollUntil(async () => heard, (h) => h.includes('announce-plain'), 5000, 5)
      c.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
    }
  })
})
