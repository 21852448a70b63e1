import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { flowPlugin } from '../../plugins/flow/plugin.js'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { connectClient, endClient } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-client.js'
import { TestRedis } from '../helpers/redis.js'

/**
 * Issue #12: the QoS of a delivered message is min(published QoS, granted QoS)
 * ([MQTT-3.8.4-6]) for every kind of filter, and with overlapping subscriptions the
 * gateway sends ONE copy at the maximum QoS of all matching subscriptions ([MQTT-3.3.5-1],
 * the first of the two rules 3.3.5 allows; Mosquitto does the same). The subscriber is a
 * raw mqtt-packet socket, so the QoS read is the one on the wire.
 */
type Qos = 0 | 1 | 2

/** The copies of `payload` the raw client received, as [topic, qos, retain]. */
function copies (c: RawClient, payload: string): Array<[string, number, boolean]> {
  return c.publishes().filter((p) => p.payload.toString() === payload).map((p) => [p.topic, p.qos, p.retain])
}

/** Publishes `payload`, then a marker on `markerTopic` (which the subscriber also matches); resolves once the marker arrived, so every copy of `payload` has arrived too. */
async function publishAndFence (pub: MqttClient, sub: RawClient, topic: string, payload: string, qos: Qos, markerTopic: string): Promise<void> {
  await pub.publishAsync(topic, payload, { qos })
  const marker = `marker-${payload}`
  await pub.publishAsync(markerTopic, marker, { qos: 0 })
  await sub.waitFor((p) => p.cmd === 'publish' && p.payload.toString() === marker, `marker after ${payload}`)
}

for (const withFlow of [false, true]) {
  describe(`QoS downgrade on delivery (issue #12), ${withFlow ? 'with' : 'without'} the flow plugin`, () => {
    let gw: TestGateway
    let pub: MqttClient
    let n = 0
    const id = (name: string): string => `${name}-${withFlow ? 'flow' : 'plain'}-${++n}`
    before(async () => {
      gw = await startTestGateway(withFlow ? 'flow: { inflightWindow: 32, maxQueued: 100 }' : '', { plugins: withFlow ? [flowPlugin] : [] })
      pub = await connectClient(gw.mqttUrl, { clientId: id('publisher') })
    })
    after(async () => {
      await endClient(pub)
      await gw.stop()
    })

    for (const [filter, topic] of [['dg/+/x', 'dg/a/x'], ['dg/#', 'dg/a/x'], ['dg/a/x', 'dg/a/x'], ['+/a/#', 'dg/a/x']] as const) {
      for (const granted of [0, 1, 2] as const) {
        it(`[MQTT-3.8.4-6] filter ${filter} granted QoS ${granted}: QoS 0/1/2 messages arrive at min(published, ${granted})`, async () => {
          const sub = await RawClient.connect(gw.gateway.ports.mqtt!, id('sub'))
          try {
            await sub.subscribe(filter, granted)
            for (const qos of [0, 1, 2] as const) {
              const payload = `${filter}|${granted}|${qos}`
              await publishAndFence(pub, sub, topic, payload, qos, topic)
              assert.deepEqual(copies(sub, payload), [[topic, Math.min(qos, granted), false]], payload)
            }
          } finally {
            sub.destroy()
          }
        })
      }
    }

    // Both orders of subscribing: the copy Aedes keeps is the first matching subscription to
    // fire, so the rule must not depend on which one that is.
    for (const subs of [
      [['ov/+', 0], ['ov/#', 2], ['ov/t', 1]],
      [['ov/t', 1], ['ov/#', 2], ['ov/+', 0]],
      [['ov/#', 0], ['ov/+', 1]],
      [['ov/+', 1], ['ov/#', 0]],
      [['ov/t', 0], ['ov/#', 0], ['+/t', 0]]
    ] as Array<Array<[string, Qos]>>) {
      const max = Math.max(...subs.map(([, q]) => q))
      it(`[MQTT-3.3.5-1] overlapping ${subs.map(([f, q]) => `${f}@${q}`).join(' ')}: one copy per message at min(published, ${max})`, async () => {
        const sub = await RawClient.connect(gw.gateway.ports.mqtt!, id('overlap'))
        try {
          for (const [filter, qos] of subs) await sub.subscribe(filter, qos)
          for (const qos of [0, 1, 2] as const) {
            const payload = `${subs.map(([f, q]) => f + q).join(',')}|${qos}`
            await publishAndFence(pub, sub, 'ov/t', payload, qos, 'ov/t')
            assert.deepEqual(copies(sub, payload), [['ov/t', Math.min(qos, max), false]], payload)
          }
        } finally {
          sub.destroy()
        }
      })
    }

    it('[MQTT-3.8.4-6] [MQTT-3.3.1-6] a retained QoS 2 message sent on SUBSCRIBE to a QoS 1 wildcard filter arrives at QoS 1', async () => {
      await pub.publishAsync('rt/a/x', 'retained-q2', { qos: 2, retain: true })
      const sub = await RawClient.connect(gw.gateway.ports.mqtt!, id('retained'))
      try {
        await sub.subscribe('rt/+/x', 1)
        await sub.waitFor((p) => p.cmd === 'publish' && p.payload.toString() === 'retained-q2', 'retained message')
        await publishAndFence(pub, sub, 'rt/b/x', 'after-retained', 0, 'rt/b/x')
        assert.deepEqual(copies(sub, 'retained-q2'), [['rt/a/x', 1, true]])
      } finally {
        sub.destroy()
        await pub.publishAsync('rt/a/x', '', { qos: 0, retain: true })
      }
    })

    it('[MQTT-3.8.4-6] [MQTT-3.3.5-1] persistent session (memory store): a QoS 2 message queued for overlapping QoS 1 wildcards is sent once, at QoS 1', async () => {
      await persistentOverlap(gw.gateway.ports.mqtt!, pub, id('persistent'))
    })
  })
}

/**
 * A session with overlapping QoS 1 wildcards: a QoS 2 message queued while offline is
 * replayed once at QoS 1; online, one copy at QoS 1; after the acknowledgements nothing
 * is left in the queue (Aedes queued one copy per matching filter and cleared them with
 * the duplicate deliveries: offline, every copy was replayed, at QoS 2).
 */
async function persistentOverlap (port: number, pub: MqttClient, clientId: string): Promise<void> {
  const first = await RawClient.connect(port, clientId, { clean: false })
  await first.subscribe('ps/+', 1)
  await first.subscribe('ps/#', 1)
  first.send({ cmd: 'disconnect' })
  await first.closed
  await pub.publishAsync('ps/t', 'queued-q2', { qos: 2 })
  await pub.publishAsync('ps/t', 'queued-marker', { qos: 1 })
  const second = await RawClient.connect(port, clientId, { clean: false })
  try {
    await second.waitFor((p) => p.cmd === 'publish' && p.payload.toString() === 'queued-marker', 'queued marker')
    for (const p of second.publishes()) if (p.qos === 1) second.ack(p.messageId!)
    assert.deepEqual(copies(second, 'queued-q2'), [['ps/t', 1, false]])
    assert.deepEqual(copies(second, 'queued-marker'), [['ps/t', 1, false]])
    await publishAndFence(pub, second, 'ps/t', 'online-q2', 2, 'ps/t')
    assert.deepEqual(copies(second, 'online-q2'), [['ps/t', 1, false]])
    for (const p of second.publishes()) if (p.payload.toString() === 'online-q2') second.ack(p.messageId!)
  } finally {
    second.send({ cmd: 'disconnect' })
    await second.closed
  }
  const third = await RawClient.connect(port, clientId, { clean: false })
  try {
    await publishAndFence(pub, third, 'ps/t', 'third', 1, 'ps/t')
    assert.deepEqual(third.publishes().map((p) => p.payload.toString()).filter((s) => !s.startsWith('marker-')), ['third'])
  } finally {
    third.destroy()
  }
}

describe('QoS downgrade on delivery (issue #12), Redis session store (one stored copy shared by all sessions)', () => {
  const redis = new TestRedis()
  let gw: TestGateway
  let pub: MqttClient
  before(async () => {
    await redis.start()
    gw = await startTestGateway(`persistence: { type: redis, redis: ${redis.configYaml} }`)
    pub = await connectClient(gw.mqttUrl, { clientId: 'redis-publisher' })
  })
  after(async () => {
    await endClient(pub)
    await gw.stop()
    await redis.stop()
  })

  it('[MQTT-3.8.4-6] [MQTT-3.3.5-1] persistent session (Redis store): a QoS 2 message queued for overlapping QoS 1 wildcards is sent once, at QoS 1', async () => {
    await persistentOverlap(gw.gateway.ports.mqtt!, pub, 'redis-persistent')
  })

  it('[MQTT-3.8.4-6] a QoS 2 message queued for a QoS 1 session and a QoS 2 session goes out at 1 and 2 respectively (the stored copy keeps QoS 2)', async () => {
    const port = gw.gateway.ports.mqtt!
    for (const [cid, q] of [['redis-q1', 1], ['redis-q2', 2]] as const) {
      const c = await RawClient.connect(port, cid, { clean: false })
      await c.subscribe('shared/#', q)
      c.send({ cmd: 'disconnect' })
      await c.closed
    }
    await pub.publishAsync('shared/t', 'shared-q2', { qos: 2 })
    for (const [cid, q] of [['redis-q1', 1], ['redis-q2', 2]] as const) {
      const c = await RawClient.connect(port, cid, { clean: false })
      try {
        await c.waitFor((p) => p.cmd === 'publish' && p.payload.toString() === 'shared-q2', `queued message for ${cid}`)
        await publishAndFence(pub, c, 'shared/t', `fence-${cid}`, 0, 'shared/t')
        assert.deepEqual(copies(c, 'shared-q2'), [['shared/t', q, false]])
      } finally {
        c.destroy()
      }
    }
  })
})
