import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { Generator } from '../../bench/connections-fleet.js'
import { pollUntil } from '../helpers/mqtt.js'
import { freePort, spawnGateway, type GatewayProcess } from '../helpers/process.js'

const execFileAsync = promisify(execFile)

function metricValue (text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' '))
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1))
}

/**
 * The Go idle generator of bench/connections (bench/loadgen-go/idle.go), built and run as
 * the bench runs it, against a real gateway process: so CI keeps it building and working.
 */
describe('mqgw-loadgen idle against a real gateway', () => {
  let gw: GatewayProcess
  const connectionsNow = async (): Promise<number> =>
    metricValue(await (await fetch(`http://127.0.0.1:${gw.ports.admin}/metrics`)).text(), 'mqgw_connections_current')

  before(async () => {
    // scripts/test.sh builds it first (Go modules fetched outside the test's time bound); here a no-op.
    await execFileAsync('sh', ['scripts/loadgen.sh'], { timeout: 90000 })
    gw = await spawnGateway(['--config', 'config/gateway.yaml'], { MQGW_LOG_LEVEL: 'warn' })
  })
  after(async () => {
    gw.child.kill('SIGTERM')
    await gw.exited
  })

  it('holds 200 connections from two source addresses, pings every K s, and closes them all on SIGTERM', { timeout: 60000 }, async () => {
    // Keepalive 1 s: the gateway drops a connection silent for 1.5 s, so connections still held
    // after several seconds show the PINGREQs arrive.
    const gen = new Generator({ n: 200, targets: [`127.0.0.1:${gw.ports.mqtt}`], sources: ['127.0.0.2', '127.0.0.3'], prefix: 'lg-test', keepaliveS: 1, inflight: 20, upTimeoutS: 30, holdMaxS: 60 })
    try {
      const up = await gen.up
      assert.equal(up.connected, 200, JSON.stringify(up))
      assert.equal(up.held, 200)
      assert.equal(up.failed, 0, JSON.stringify(up.failedBy))
      assert.ok(up.latencyMs.p99 > 0 && up.latencyMs.p99 <= up.latencyMs.max, JSON.stringify(up.latencyMs))
      assert.equal(Object.values(up.latencyHist.counts).reduce((a, b) => a + b, 0), 200)
      assert.equal(await pollUntil(connectionsNow, (n) => n === 200, 10000), 200)

      // Three keepalive periods: about 600 PINGREQs, each answered.
      const stats = await pollUntil(() => gen.stats(), (s) => s.pingsSent >= 600, 15000, 250)
      assert.ok(stats.pingsSent >= 600, JSON.stringify(stats))
      assert.equal(stats.held, 200)
      assert.equal(stats.lostWhileHeld, 0)
      assert.equal(stats.pingrespMissing, 0)
      assert.equal(stats.unexpectedPackets, 0)
      assert.ok(stats.pingresps >= stats.pingsSent - stats.pingOutstanding, JSON.stringify(stats))
      assert.equal(await connectionsNow(), 200)

      const final = await gen.stop()
      assert.ok(final !== undefined, 'no final line after SIGTERM')
      assert.equal(final.held, 200)
      assert.equal(final.lostWhileHeld, 0)
      assert.equal(await gen.exited, 0)
      assert.equal(await pollUntil(connectionsNow, (n) => n === 0, 10000), 0)
    } finally {
      gen.child.kill('SIGKILL')
    }
  })

  it('-ping-period (bench/keepalive): 0 sends no PINGREQ, so the gateway drops the connections after 1.5 x keepalive; 1 with keepalive 3 pings every second', { timeout: 60000 }, async () => {
    const silent = new Generator({ n: 50, targets: [`127.0.0.1:${gw.ports.mqtt}`], sources: ['127.0.0.5'], prefix: 'lg-silent', keepaliveS: 1, inflight: 10, upTimeoutS: 30, holdMaxS: 60 }, ['-ping-period', '0'])
    const fast = new Generator({ n: 50, targets: [`127.0.0.1:${gw.ports.mqtt}`], sources: ['127.0.0.6'], prefix: 'lg-fast', keepaliveS: 3, inflight: 10, upTimeoutS: 30, holdMaxS: 60 }, ['-ping-period', '1'])
    try {
      assert.equal((await silent.up).held, 50)
      assert.equal((await fast.up).held, 50)
      // The silent ones are closed by the gateway's keepalive (1.5 s), with no PINGREQ sent.
      const gone = await pollUntil(() => silent.stats(), (s) => s.lostWhileHeld === 50, 15000, 250)
      assert.equal(gone.lostWhileHeld, 50, JSON.stringify(gone))
      assert.equal(gone.pingsSent, 0)
      // The fast ones: a PINGREQ per connection per second (keepalive 3 s would allow 4.5 s).
      const s0 = await fast.stats()
      const t0 = performance.now()
      const s1 = await pollUntil(() => fast.stats(), (s) => s.pingsSent - s0.pingsSent >= 150, 15000, 250)
      const perSecond = (s1.pingsSent - s0.pingsSent) / ((performance.now() - t0) / 1000)
      assert.ok(perSecond >= 25 && perSecond <= 75, `${perSecond.toFixed(1)} PINGREQs/s from 50 connections pinging every second`)
      assert.equal(s1.held, 50)
      assert.equal(s1.lostWhileHeld, 0)
      assert.equal(s1.pingrespMissing, 0)
    } finally {
      await Promise.all([silent.stop(), fast.stop()])
    }
  })

  it('reports connects to a port nobody listens on as refused, and exits on stdin EOF', { timeout: 30000 }, async () => {
    const closed = await freePort()
    const gen = new Generator({ n: 50, targets: [`127.0.0.1:${closed}`], sources: ['127.0.0.4'], prefix: 'lg-refused', keepaliveS: 60, inflight: 10, upTimeoutS: 10, holdMaxS: 60 })
    try {
      const up = await gen.up
      assert.equal(up.connected, 0)
      assert.equal(up.failed, 50)
      assert.deepEqual(up.failedBy, { refused: 50 })
      gen.child.stdin!.end()
      assert.equal(await gen.exited, 0)
    } finally {
      gen.child.kill('SIGKILL')
    }
  })
})
