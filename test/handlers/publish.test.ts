import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Client, PublishPacket } from 'aedes'
import { z } from 'zod'
import { PASS } from '../../src/hooks/types.js'
import { definePlugin } from '../../src/plugin.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { collect, connectClient, endClient, waitFor } from '../helpers/mqtt.js'

/**
 * The seam (src/aedes/, patches/aedes+1.2.0.patch): a QoS 1 PUBLISH is authorized once,
 * crosses into Aedes' publish once, and its PUBACK goes out only after that publish
 * (which stores it for offline subscribers) completed. Nothing intercepts broker.publish.
 */
describe('a QoS 1 PUBLISH crosses the gateway/Aedes boundary once (real clients)', () => {
  let gw: TestGateway
  const authorized: string[] = []
  const counter = definePlugin({
    name: 'counter',
    configKey: 'counter',
    schema: z.strictObject({}),
    setup: (ctx) => {
      ctx.hook('authorizePublish', ({ packet }) => { authorized.push(packet.topic); return PASS })
    }
  })
  before(async () => { gw = await startTestGateway('counter: {}', { plugins: [counter] }) })
  after(async () => { await gw.stop() })

  it('one authorization, one broker.publish, and the PUBACK after the publish completed', async () => {
    const broker = gw.gateway.broker as unknown as { publish: (p: PublishPacket, c: Client | null, done: (err?: Error) => void) => void }
    const original = broker.publish.bind(gw.gateway.broker)
    const calls: Array<{ topic: string, clientId: string | undefined }> = []
    let published = 0
    // Holds each publish 200 ms: a PUBACK written before the publish completed would arrive first.
    broker.publish = (packet, client, done) => {
      // Aedes publishes its own $SYS events through the same method.
      if (packet.topic.startsWith('$SYS/')) {
        original(packet, client, done)
        return
      }
      calls.push({ topic: packet.topic, clientId: client?.id })
      setTimeout(() => original(packet, client, (err) => { published = Date.now(); done(err) }), 200)
    }
    const sub = await connectClient(gw.mqttUrl, { clientId: 'seam-sub' })
    await sub.subscribeAsync('seam/#', { qos: 1 })
    const received = collect(sub)
    const pub = await connectClient(gw.mqttUrl, { clientId: 'seam-pub' })
    try {
      await pub.publishAsync('seam/once', 'x', { qos: 1 })
      const acked = Date.now()
      assert.ok(published > 0 && acked >= published, `PUBACK (${acked}) after the publish completed (${published})`)
      await waitFor(() => received.length === 1, 'delivery')
      assert.deepEqual(calls, [{ topic: 'seam/once', clientId: 'seam-pub' }])
      assert.deepEqual(authorized, ['seam/once'])
    } finally {
      broker.publish = original
      await endClient(pub)
      await endClient(sub)
    }
  })
})
