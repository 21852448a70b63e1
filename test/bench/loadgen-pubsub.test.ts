import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { loadgen } from '../../bench/lib.js'
import { spawnGateway, type GatewayProcess } from '../helpers/process.js'

interface PubSub { sent: number, received: number, seconds: number, messagesPerSecond: number, p50ms: number, p99ms: number, maxms: number, lateSends: number }

/**
 * bench/loadgen.ts pubsub (bench/kafka's generator), as the bench runs it, against a real gateway
 * process: closed loop, and paced (`rate`: open loop, latency from each message's due time).
 */
describe('loadgen pubsub against a real gateway', () => {
  let gw: GatewayProcess
  let url = ''
  before(async () => {
    gw = await spawnGateway(['--config', 'config/gateway.yaml'], { MQGW_LOG_LEVEL: 'warn' })
    url = `mqtt://127.0.0.1:${gw.ports.mqtt}`
  })
  after(async () => {
    gw.child.kill('SIGTERM')
    await gw.exited
  })

  it('paced at 500 msgs/s: 600 messages take about 1.2 s (not as fast as the path allows), all received once (run with noDelay, as bench/kafka --gen-nodelay)', { timeout: 60000 }, async () => {
    const closed = await loadgen<PubSub>({ mode: 'pubsub', url, publishUrl: url, topic: 'lg/closed', qos: 1, count: 600, inflight: 100, timeLimitMs: 20000 })
    assert.equal(closed.received, 600, 'closed loop: all received')
    const paced = await loadgen<PubSub>({ mode: 'pubsub', url, publishUrl: url, topic: 'lg/paced', qos: 1, count: 600, inflight: 2000, rate: 500, noDelay: true, timeLimitMs: 20000 })
    assert.equal(paced.sent, 600)
    assert.equal(paced.received, 600, 'paced: all received')
    // Message k is due at k / 500 s: the last one not before 1.198 s after the start.
    assert.ok(paced.seconds >= 1.19, `paced run lasted ${paced.seconds} s, at least 1.2 s`)
    assert.ok(paced.messagesPerSecond <= 510, `paced rate ${paced.messagesPerSecond} msgs/s is the asked 500`)
    assert.ok(closed.messagesPerSecond > 2 * paced.messagesPerSecond, `the closed loop (${closed.messagesPerSecond} msgs/s) is not paced`)
    assert.ok(paced.p50ms >= 0 && paced.p50ms <= paced.p99ms && paced.p99ms <= paced.maxms, 'percentiles in order')
  })
})
