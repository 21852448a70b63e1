import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { spawnGateway, start, run, type GatewayProcess } from '../helpers/process.js'
import { pollUntil, waitFor } from '../helpers/mqtt.js'

describe('the gateway as a process (README run command, default config)', () => {
  let gw: GatewayProcess
  before(async () => { gw = await spawnGateway(['--config', 'config/gateway.yaml']) })
  after(() => { if (gw.child.exitCode === null) gw.child.kill('SIGKILL') })

  it('mosquitto_sub / mosquitto_pub round trip over TCP', async () => {
    const sub = start('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(gw.ports.mqtt), '-t', 'cli/#', '-q', '1', '-C', '2', '-v', '-W', '10'])
    // Published only once mosquitto_sub's subscription is in place (QoS 0 is not queued for it).
    const subscriptions = async (): Promise<number> => Number(/mqgw_subscriptions_current (\d+)/.exec(await (await fetch(`http://127.0.0.1:${gw.ports.admin}/metrics`)).text())?.[1] ?? 0)
    assert.equal(await pollUntil(subscriptions, (n) => n >= 1, 5000), 1, 'subscriber subscribed')
    for (const qos of ['0', '1']) {
      const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.ports.mqtt), '-t', `cli/q${qos}`, '-m', `hello ${qos}`, '-q', qos])
      assert.equal(pub.code, 0, pub.stderr)
    }
    assert.equal(await sub.done, 0, sub.output())
    assert.equal(sub.output(), 'cli/q0 hello 0\ncli/q1 hello 1\n')
  })

  it('logs connect and disconnect as JSON with client id, address, protocol; never the password', async () => {
    const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(gw.ports.mqtt), '-i', 'logged-client', '-u', 'someone', '-P', 'sup3r-secret', '-t', 'x', '-m', 'y'])
    assert.equal(pub.code, 0)
    await waitFor(() => gw.stdout().includes('logged-client","remoteAddress'), 'disconnect line')
    const lines = gw.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    const connected = lines.find((l) => l.msg === 'client connected' && l.clientId === 'logged-client')
    assert.ok(connected)
    assert.equal(connected.remoteAddress, '127.0.0.1')
    assert.equal(connected.listener, 'mqtt')
    assert.equal(connected.protocolVersion, 4)
    assert.equal(connected.username, 'someone')
    assert.ok(lines.some((l) => l.msg === 'client disconnected' && l.clientId === 'logged-client' && l.reason === 'closed'))
    assert.ok(!gw.stdout().includes('sup3r-secret'))
  })

  it('SIGHUP does not kill the process; SIGTERM stops it gracefully with exit code 0', async () => {
    gw.child.kill('SIGHUP')
    // Marker: the handler's log line; the process answers after it.
    await waitFor(() => gw.stdout().includes('"SIGHUP: reloading"'), 'the SIGHUP handler')
    const ready = await fetch(`http://127.0.0.1:${gw.ports.admin}/readyz`)
    assert.equal(ready.status, 200)
    assert.equal(gw.child.exitCode, null)
    const connectedLines = (): number => gw.stdout().split('"client connected"').length - 1
    const connectedBefore = connectedLines()
    const sub = start('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(gw.ports.mqtt), '-t', 'bye', '-W', '10'])
    await waitFor(() => connectedLines() > connectedBefore, 'mosquitto_sub connected')
    const started = Date.now()
    gw.child.kill('SIGTERM')
    assert.equal(await gw.exited, 0)
    assert.ok(Date.now() - started < 5000)
    assert.match(gw.stdout(), /"gateway stopped"/)
    // the connected client was disconnected, not left hanging
    await sub.done
  })
})
