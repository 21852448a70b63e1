import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startTestGateway, testCertificate, type TestGateway } from '../helpers/gateway.js'
import { run, start } from '../helpers/process.js'

/** The virtual environment scripts/test.sh creates with paho-mqtt installed. */
const PYTHON = process.env.MQGW_TEST_PYTHON ?? join(process.cwd(), '.cache/venv/bin/python')

describe('interop with independent client implementations, each a real process', () => {
  let gw: TestGateway
  const tls = testCertificate()
  before(async () => {
    gw = await startTestGateway(`listeners: { mqtts: { enabled: true, host: 127.0.0.1, port: 0, cert: ${tls.cert}, key: ${tls.key} } }`)
  })
  after(async () => { await gw.stop() })

  /**
   * Resolves once the broker has added a subscription to `filter` (its 'subscribe' event);
   * publishing before that could lose a QoS 0 message, which is not queued for anybody.
   */
  function subscribedTo (filter: string): Promise<void> {
    const broker = gw.gateway.broker
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { broker.off('subscribe', onSubscribe); reject(new Error(`no subscription to ${filter} within 5 s`)) }, 5000)
      function onSubscribe (subscriptions: Array<{ topic: string }>): void {
        if (!subscriptions.some((s) => s.topic === filter)) return
        clearTimeout(timer)
        broker.off('subscribe', onSubscribe)
        resolve()
      }
      broker.on('subscribe', onSubscribe)
    })
  }

  for (const proto of ['311', '31']) {
    it(`Python paho-mqtt, MQTT ${proto === '311' ? '3.1.1' : '3.1'}: QoS 0/1/2 to itself`, async () => {
      assert.ok(existsSync(PYTHON), `${PYTHON} missing: run the tests with "npm test" (scripts/test.sh creates the venv)`)
      const result = await run(PYTHON, [join(process.cwd(), 'test/interop/paho_client.py'), '127.0.0.1', String(gw.gateway.ports.mqtt), proto])
      assert.equal(result.code, 0, result.stdout + result.stderr)
      assert.equal((JSON.parse(result.stdout) as { ok: boolean }).ok, true)
    })
  }

  for (const version of ['mqttv311', 'mqttv31']) {
    it(`mosquitto_pub / mosquitto_sub (${version}), QoS 0/1/2 and retained`, async () => {
      const port = String(gw.gateway.ports.mqtt)
      const topic = `mosq/${version}`
      await run('mosquitto_pub', ['-V', version, '-h', '127.0.0.1', '-p', port, '-t', `${topic}/retained`, '-m', 'kept', '-r', '-q', '1'])
      const subscribed = subscribedTo(`${topic}/#`)
      const sub = start('mosquitto_sub', ['-V', version, '-h', '127.0.0.1', '-p', port, '-t', `${topic}/#`, '-q', '2', '-C', '4', '-v', '-W', '10'])
      await subscribed
      for (const qos of ['0', '1', '2']) {
        const pub = await run('mosquitto_pub', ['-V', version, '-h', '127.0.0.1', '-p', port, '-t', `${topic}/q${qos}`, '-m', `m${qos}`, '-q', qos])
        assert.equal(pub.code, 0, pub.stderr)
      }
      assert.equal(await sub.done, 0, sub.output())
      assert.deepEqual(sub.output().trim().split('\n'), [`${topic}/retained kept`, `${topic}/q0 m0`, `${topic}/q1 m1`, `${topic}/q2 m2`])
    })
  }

  it('mosquitto_pub / mosquitto_sub over TLS with certificate verification', async () => {
    const port = String(gw.gateway.ports.mqtts)
    const subscribed = subscribedTo('tls/t')
    const sub = start('mosquitto_sub', ['-h', 'localhost', '-p', port, '--cafile', tls.cert, '-t', 'tls/t', '-C', '1', '-W', '10'])
    await subscribed
    const pub = await run('mosquitto_pub', ['-h', 'localhost', '-p', port, '--cafile', tls.cert, '-t', 'tls/t', '-m', 'over tls', '-q', '1'])
    assert.equal(pub.code, 0, pub.stderr)
    assert.equal(await sub.done, 0, sub.output())
    assert.equal(sub.output(), 'over tls\n')
  })
})
