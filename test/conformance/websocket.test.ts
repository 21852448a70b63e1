import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import mqttPacket, { type Packet } from 'mqtt-packet'
import WebSocket from 'ws'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { pollUntil } from '../helpers/mqtt.js'
import { connectPacket, sleep } from './wire.js'

/** MQTT 3.1.1 section 6 (MQTT over WebSocket), against the gateway's ws listener. */
describe('MQTT 3.1.1 conformance: WebSocket transport', () => {
  let gw: TestGateway
  before(async () => { gw = await startTestGateway() })
  after(async () => { await gw.stop() })

  async function open (protocols: string[] = ['mqtt']): Promise<{ ws: WebSocket, packets: Packet[], closed: Promise<void> }> {
    const ws = new WebSocket(gw.wsUrl, protocols)
    const packets: Packet[] = []
    const parser = mqttPacket.parser()
    parser.on('packet', (p: Packet) => packets.push(p))
    ws.on('message', (data: Buffer) => parser.parse(data))
    ws.on('error', () => {})
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()))
    await once(ws, 'open')
    return { ws, packets, closed }
  }

  async function waitFor (packets: Packet[], cmd: string, count = 1): Promise<void> {
    const seen = await pollUntil(async () => packets.filter((p) => p.cmd === cmd).length, (n) => n >= count, 5000, 5)
    if (seen < count) throw new Error(`timed out waiting for ${count} ${cmd}`)
  }

  it('[MQTT-6.0.0-4] the gateway selects the "mqtt" subprotocol (and "mqttv3.1" for 3.1 clients)', async () => {
    for (const [offered, selected] of [[['mqtt'], 'mqtt'], [['mqttv3.1'], 'mqttv3.1'], [['foo', 'mqtt'], 'mqtt']] as const) {
      const { ws } = await open([...offered])
      assert.equal(ws.protocol, selected)
      ws.close()
    }
  })

  it('[MQTT-6.0.0-1] a text frame closes the connection', async () => {
    const { ws, packets, closed } = await open()
    ws.send(mqttPacket.generate(connectPacket('ws-text') as unknown as Packet))
    await waitFor(packets, 'connack')
    ws.send(mqttPacket.generate({ cmd: 'pingreq' }).toString('latin1'), { binary: false })
    await Promise.race([closed, sleep(2000).then(() => { throw new Error('not closed after a text frame') })])
    assert.equal(packets.filter((p) => p.cmd === 'pingresp').length, 0)
  })

  it('[MQTT-6.0.0-2] packets split across frames, and several packets in one frame, are read as a byte stream', async () => {
    const { ws, packets } = await open()
    const connect = mqttPacket.generate(connectPacket('ws-frames') as unknown as Packet)
    // CONNECT one byte per frame.
    for (const byte of connect) ws.send(Buffer.from([byte]))
    await waitFor(packets, 'connack')
    const subscribe = mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ws6/t', qos: 1 }] })
    const publish = mqttPacket.generate({ cmd: 'publish', topic: 'ws6/t', payload: Buffer.from('framed'), qos: 1, messageId: 2, retain: false, dup: false })
    const ping = mqttPacket.generate({ cmd: 'pingreq' })
    // SUBSCRIBE + half of PUBLISH in one frame, the rest of PUBLISH + PINGREQ in the next.
    const all = Buffer.concat([subscribe, publish, ping])
    const cut = subscribe.length + Math.floor(publish.length / 2)
    ws.send(all.subarray(0, cut))
    await sleep(20)
    ws.send(all.subarray(cut))
    await waitFor(packets, 'pingresp')
    await waitFor(packets, 'publish')
    await waitFor(packets, 'puback')
    // No order between PUBACK and PINGRESP is required (the PUBACK waits for the publish).
    assert.deepEqual(packets.map((p) => p.cmd).filter((c) => c !== 'publish').sort(), ['connack', 'pingresp', 'puback', 'suback'])
    assert.equal((packets.find((p) => p.cmd === 'publish') as mqttPacket.IPublishPacket).payload.toString(), 'framed')
    ws.close()
  })
})
