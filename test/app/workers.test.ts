import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { collect, connectClient, endClient, pollUntil, waitFor, type Received } from '../helpers/mqtt.js'
import { TestRedis } from '../helpers/redis.js'
import { alive, metricValue, spawnPrimary, type PrimaryProcess } from '../helpers/workers.js'

const TOKEN = 'workers-test-token-0123456789'

interface Placed { id: string, client: MqttClient, worker: number, closed: boolean, received: Received[] }

/** Connects a client, records its messages and its close, and finds its worker. */
async function place (primary: PrimaryProcess, id: string, url = `mqtt://127.0.0.1:${primary.ports.mqtt}`): Promise<Placed> {
  const client = await connectClient(url, { clientId: id })
  const placed: Placed = { id, client, worker: -1, closed: false, received: collect(client) }
  client.on('close', () => { placed.closed = true })
  placed.worker = await workerOf(primary, id)
  return placed
}

/** Which worker holds a client: the one whose admin API knows it (client lists are per node). */
async function workerOf (primary: PrimaryProcess, clientId: string, workers = 2): Promise<number> {
  for (let i = 0; i < workers; i++) {
    const res = await fetch(`${primary.workerAdmin(i)}/api/v1/clients/${clientId}`, { headers: { authorization: `Bearer ${TOKEN}` } })
    await res.arrayBuffer()
    if (res.status === 200) return i
  }
  return -1
}

describe('workers: 2 gateway processes on one machine (real CLI, real Redis)', () => {
  const redis = new TestRedis()
  let primary: PrimaryProcess
  const clients: Placed[] = []

  before(async () => {
    await redis.start()
    primary = await spawnPrimary(`node: { id: wk }
persistence: { type: redis, redis: ${redis.configYaml} }
workers: { restartDelayMs: 100 }
`, ['--workers', '2'], { env: { MQGW_ADMIN_API_TOKEN: TOKEN } })
  })
  after(async () => {
    await Promise.all(clients.map((c) => endClient(c.client).catch(() => {})))
    if (primary?.child.exitCode === null && primary.child.signalCode === null) {
      primary.child.kill('SIGKILL')
      await primary.exited
    }
    // Workers exit when their primary's IPC channel closes; any left is killed by pid.
    for (const i of [0, 1]) for (const pid of primary?.workerPids(i) ?? []) if (alive(pid)) process.kill(pid, 'SIGKILL')
    await redis.stop()
  })

  it('names each worker <node.id>-w<i> and serves its admin API on admin port + 1 + i', async () => {
    for (const i of [0, 1]) {
      const res = await fetch(`${primary.workerAdmin(i)}/api/v1/node`, { headers: { authorization: `Bearer ${TOKEN}` } })
      assert.equal(res.status, 200)
      const node = await res.json() as { node: string }
      assert.equal(node.node, `wk-w${i}`)
      // The token rules hold on every worker: no token, no API.
      const denied = await fetch(`${primary.workerAdmin(i)}/api/v1/node`)
      await denied.arrayBuffer()
      assert.equal(denied.status, 401)
    }
    // Clients and subscriptions belong to a node: the primary has no REST API.
    const onPrimary = await fetch(`http://127.0.0.1:${primary.ports.admin}/api/v1/node`, { headers: { authorization: `Bearer ${TOKEN}` } })
    await onPrimary.arrayBuffer()
    assert.equal(onPrimary.status, 404)
    const readyz = await (await fetch(`http://127.0.0.1:${primary.ports.admin}/readyz`)).json() as { checks: Record<string, { ready: boolean }> }
    assert.deepEqual(Object.keys(readyz.checks).sort(), ['worker-0', 'worker-1'])
  })

  it('40 clients are spread over both workers (round-robin), and the primary sums their metrics', async () => {
    for (let n = 0; n < 40; n++) clients.push(await place(primary, `spread-${n}`))
    const perWorker = [0, 1].map((i) => clients.filter((c) => c.worker === i).length)
    assert.equal(perWorker[0]! + perWorker[1]!, 40, `every client found on a worker: ${perWorker.join('/')}`)
    // Round-robin hands connections out in turn; allow a little for other sockets.
    assert.ok(perWorker[0]! >= 15 && perWorker[1]! >= 15, `balanced: ${perWorker.join('/')}`)
    assert.equal(await metricValue(primary.workerAdmin(0), 'mqgw_connections_current'), perWorker[0])
    assert.equal(await metricValue(primary.workerAdmin(1), 'mqgw_connections_current'), perWorker[1])
    assert.equal(await metricValue(`http://127.0.0.1:${primary.ports.admin}`, 'mqgw_connections_current'), 40)
    assert.equal(await metricValue(`http://127.0.0.1:${primary.ports.admin}`, 'mqgw_ready'), 2, 'both workers ready, summed')
    assert.equal(await metricValue(`http://127.0.0.1:${primary.ports.admin}`, 'mqgw_workers_scraped'), 2)
  })

  it('a message published on one worker reaches a subscriber on the other, QoS 0 and QoS 1, both ways', async () => {
    const on0 = clients.find((c) => c.worker === 0)!
    const on1 = clients.find((c) => c.worker === 1)!
    await on0.client.subscribeAsync('cross/to0/#', { qos: 1 })
    await on1.client.subscribeAsync('cross/to1/#', { qos: 1 })
    await on1.client.publishAsync('cross/to0/q0', 'a', { qos: 0 })
    await on1.client.publishAsync('cross/to0/q1', 'b', { qos: 1 })
    await on0.client.publishAsync('cross/to1/q0', 'c', { qos: 0 })
    await on0.client.publishAsync('cross/to1/q1', 'd', { qos: 1 })
    await waitFor(() => on0.received.length >= 2 && on1.received.length >= 2, 'messages across workers', 10000)
    assert.deepEqual(on0.received.map((m) => `${m.topic} ${m.payload} ${m.qos}`).sort(), ['cross/to0/q0 a 0', 'cross/to0/q1 b 1'])
    assert.deepEqual(on1.received.map((m) => `${m.topic} ${m.payload} ${m.qos}`).sort(), ['cross/to1/q0 c 0', 'cross/to1/q1 d 1'])
  })

  it('the WebSocket listener is shared too: a ws client on either worker reaches a TCP subscriber', async () => {
    const on0 = clients.find((c) => c.worker === 0)!
    const on1 = clients.find((c) => c.worker === 1)!
    await on0.client.subscribeAsync('ws/to0', { qos: 1 })
    await on1.client.subscribeAsync('ws/to1', { qos: 1 })
    const viaWs = [await place(primary, 'ws-a', `ws://127.0.0.1:${primary.ports.ws}/mqtt`), await place(primary, 'ws-b', `ws://127.0.0.1:${primary.ports.ws}/mqtt`)]
    clients.push(...viaWs)
    assert.deepEqual(viaWs.map((c) => c.worker).sort(), [0, 1], 'round-robin on the ws port as on the mqtt port')
    for (const c of viaWs) await c.client.publishAsync(`ws/to${1 - c.worker}`, c.id, { qos: 1 })
    await waitFor(() => on0.received.some((m) => m.topic === 'ws/to0') && on1.received.some((m) => m.topic === 'ws/to1'), 'ws messages across workers', 10000)
  })

  it('SIGKILL of worker 1: it is restarted and serves again; worker 0 clients are not affected', async () => {
    const [sub0, pub0] = clients.filter((c) => c.worker === 0)
    assert.ok(sub0 && pub0)
    await sub0.client.subscribeAsync('marker/#', { qos: 1 })
    const killed = primary.workerPids(1).at(-1)!
    process.kill(killed, 'SIGKILL')
    // The primary's /readyz says so while worker 1 is down or starting again.
    const down = await pollUntil(async () => { const r = await fetch(`http://127.0.0.1:${primary.ports.admin}/readyz`); return { status: r.status, body: await r.json() as { checks: Record<string, { ready: boolean }> } } }, (r) => r.status === 503, 5000, 20)
    assert.equal(down.status, 503)
    assert.equal(down.body.checks['worker-1']?.ready, false)
    await waitFor(() => primary.workerPids(1).length === 2, 'worker 1 restarted', 60000)
    const exitLine = primary.lines().find((l) => l.msg === 'worker exited; restarting' && l.worker === 1)
    assert.ok(exitLine, 'one line with the exit')
    assert.equal(exitLine.signal, 'SIGKILL')
    assert.equal(exitLine.pid, killed)
    assert.ok(!alive(killed))
    const restarted = primary.workerPids(1)[1]!
    assert.notEqual(restarted, killed)
    assert.ok(alive(restarted))
    // Its clients lost their connection; worker 0's kept theirs.
    await waitFor(() => clients.filter((c) => c.worker === 1).every((c) => c.closed), 'worker 1 clients closed')
    assert.deepEqual(clients.filter((c) => c.worker === 0 && c.closed).map((c) => c.id), [])
    // Worker 0 clients still talk (marker), and the restarted worker serves: a new client that lands
    // on it reaches the subscriber on worker 0.
    await pub0.client.publishAsync('marker/same-worker', 'still here', { qos: 1 })
    let fresh: Placed | undefined
    for (let n = 0; n < 6 && fresh === undefined; n++) {
      const placed = await place(primary, `after-restart-${n}`)
      clients.push(placed)
      if (placed.worker === 1) fresh = placed
    }
    assert.ok(fresh, 'a new connection landed on the restarted worker')
    await fresh.client.publishAsync('marker/from-restarted', 'back', { qos: 1 })
    await waitFor(() => sub0.received.filter((m) => m.topic.startsWith('marker/')).length >= 2, 'both markers', 10000)
    assert.deepEqual(sub0.received.filter((m) => m.topic.startsWith('marker/')).map((m) => m.payload).sort(), ['back', 'still here'])
    assert.deepEqual(clients.filter((c) => c.worker === 0 && c.closed).map((c) => c.id), [])
    // The primary polls its workers' readiness every 500 ms.
    const ready = await pollUntil(async () => { const r = await fetch(`http://127.0.0.1:${primary.ports.admin}/readyz`); await r.arrayBuffer(); return r.status }, (s) => s === 200, 5000)
    assert.equal(ready, 200)
    assert.equal(await metricValue(`http://127.0.0.1:${primary.ports.admin}`, 'mqgw_worker_restarts_total{worker="1"}'), 1)
  })

  it('SIGTERM to the primary drains every worker and exits 0; no worker pid is left', async () => {
    const pids = [primary.workerPids(0).at(-1)!, primary.workerPids(1).at(-1)!]
    assert.ok(pids.every(alive))
    const started = Date.now()
    primary.child.kill('SIGTERM')
    const { code } = await primary.exited
    assert.equal(code, 0, primary.stdout().slice(-2000))
    assert.ok(Date.now() - started < 15000)
    assert.deepEqual(pids.filter(alive), [])
    // Each worker ran its own graceful stop; every client was disconnected.
    assert.equal(primary.lines().filter((l) => l.msg === 'gateway stopped').length, 2)
    await waitFor(() => clients.every((c) => c.closed), 'every client disconnected')
  })
})
