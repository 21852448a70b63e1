import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { GatewayMetrics } from '../src/metrics.js'
import { sleep } from './helpers/mqtt.js'

/**
 * src/metrics.ts: what a scrape costs an idle process at scale (issue #14) and what it still
 * reports: the byte counters read the open sockets once per scrape, and the event-loop delay
 * histogram, sampled every 100 ms instead of every 10 ms, still sees a stall.
 */
function metrics (bytes: () => { read: number, written: number }): GatewayMetrics {
  return new GatewayMetrics({
    connectedClients: () => 0,
    sockets: () => new Map(),
    subscriptions: () => 0,
    bytes,
    readiness: () => ({ ready: true, checks: {} }),
    retained: () => 0
  })
}

const sample = (text: string, name: string): number => {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
  assert.ok(m, `${name} in the scrape`)
  return Number(m[1])
}

describe('GatewayMetrics', () => {
  it('one pass over the sockets per scrape for both byte counters, and each scrape sees new bytes', async () => {
    let calls = 0
    let read = 100
    let written = 40
    const m = metrics(() => { calls++; return { read, written } })
    const first = await m.registry.metrics()
    assert.equal(calls, 1, 'bytes() read once for mqgw_bytes_in_total and mqgw_bytes_out_total')
    assert.equal(sample(first, 'mqgw_bytes_in_total'), 100)
    assert.equal(sample(first, 'mqgw_bytes_out_total'), 40)
    // The next scrape (a later turn) reads the sockets again.
    await new Promise((resolve) => setImmediate(resolve))
    read = 150
    written = 90
    const second = await m.registry.metrics()
    assert.equal(calls, 2)
    assert.equal(sample(second, 'mqgw_bytes_in_total'), 150)
    assert.equal(sample(second, 'mqgw_bytes_out_total'), 90)
  })

  it('the event-loop lag metrics still report a 400 ms stall', async () => {
    const m = metrics(() => ({ read: 0, written: 0 }))
    await sleep(250) // the histogram samples from now
    const until = Date.now() + 400
    while (Date.now() < until) { /* a stall: nothing else runs */ }
    await sleep(250)
    const text = await m.registry.metrics()
    // The delay of the sample due during the stall: 400 ms minus at most one 100 ms interval.
    assert.ok(sample(text, 'mqgw_nodejs_eventloop_lag_max_seconds') >= 0.25, text.split('\n').filter((l) => l.includes('eventloop_lag')).join('\n'))
  })
})
