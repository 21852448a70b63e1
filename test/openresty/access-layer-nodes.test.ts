/**
 * The access layer's node choice, measured on real connections through openresty/nginx.conf
 * on the stream Lua module (see access-layer.ts for what the test changes): the spread of
 * 1,000 random client ids over 3 gateway nodes, the ids that move when a 4th node is added
 * (upstreams.conf edited, then a reload, as an operator does), and readiness: a node whose
 * /readyz turns 503 (its Redis stopped) gets no new connections until it is ready again.
 * Every landing is also compared with the ring computed by openresty/lua/mqtt_ring.lua under
 * a plain luajit, so the balancer is known to use that ring and no other.
 * gw-b has a Redis of its own, so that stopping it makes only gw-b unready.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { pollUntil, waitFor } from '../helpers/mqtt.js'
import { freePort } from '../helpers/process.js'
import { TestRedis } from '../helpers/redis.js'
import { AccessLayer, Landings, streamLua, writeAccessConfig, writeUpstreams, type NodeLine } from './access-layer.js'
import { prng, runLua } from './connect-parsers.js'

let seq = 0

/** Each id's node order on the ring of `names`, from mqtt_ring.lua under luajit. */
async function ringOrders (names: string[], ids: string[]): Promise<Map<string, string[]>> {
  const { code, out } = await runLua(['test_ring.lua', names.join(','), '1000'], ids.join('\n') + '\n')
  assert.equal(code, 0, out)
  const lines = out.trim().split('\n')
  assert.equal(lines.length, ids.length)
  return new Map(ids.map((id, i) => [id, lines[i]!.split(',')]))
}

describe('the access layer: spread over the nodes, a node added, readiness (real connections)', () => {
  const shared = new TestRedis()
  const ownRedis = new TestRedis() // gw-b's
  let nodes: ClusterNode[] = []
  let access: AccessLayer | undefined
  let landings: Landings
  let dir = ''
  const ports = { mqtt: 0, ws: 0, health: 0 }
  const seed = Number(process.env.TEST_SEED ?? Date.now() % 1_000_000)
  const rand = prng(seed)
  const ids = Array.from({ length: 1000 }, () => `dev-${Math.floor(rand() * 2 ** 48).toString(36)}`)
  let home = new Map<string, string>()

  const line = (n: ClusterNode): NodeLine => ({ name: n.id, host: '127.0.0.1', mqtt: n.ports.mqtt, ws: n.ports.ws, admin: n.ports.admin })
  const node = (id: string): ClusterNode => nodes.find((n) => n.id === id)!

  /** One MQTT connection through the access layer (CONNECT, CONNACK, DISCONNECT); the node it landed on. */
  async function land (clientId: string): Promise<string> {
    const username = `${clientId}~${++seq}`
    const socket = netConnect({ host: '127.0.0.1', port: ports.mqtt })
    const connack = new Promise<Buffer>((resolve, reject) => {
      let got = Buffer.alloc(0)
      const timer = setTimeout(() => reject(new Error(`${clientId}: no CONNACK within 5 s`)), 5000)
      socket.on('data', (c: Buffer) => {
        got = Buffer.concat([got, c])
        if (got.length >= 4) { clearTimeout(timer); resolve(got) }
      })
      socket.once('error', (e) => { clearTimeout(timer); reject(e) })
      socket.once('close', () => { clearTimeout(timer); reject(new Error(`${clientId}: closed before CONNACK`)) })
    })
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, username, keepalive: 30, clean: true } as unknown as mqttPacket.Packet))
    const bytes = await connack
    assert.deepEqual([...bytes.subarray(0, 4)], [0x20, 0x02, 0x00, 0x00], `${clientId}: CONNACK accepted`)
    socket.end(Buffer.from([0xe0, 0x00]))
    return await landings.nodeOf(username)
  }

  /** Lands every id, `width` at a time (bounded: 1,000 ids take a few seconds). */
  async function landAll (list: string[], width = 16): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    let next = 0
    await Promise.all(Array.from({ length: width }, async () => {
      while (next < list.length) {
        const id = list[next++]!
        out.set(id, await land(id))
      }
    }))
    return out
  }

  before(async () => {
    streamLua() // the module first: without it, one line saying what to install, before anything starts
    await Promise.all([shared.start(), ownRedis.start()])
    nodes = await Promise.all(['gw-a', 'gw-b', 'gw-c', 'gw-d'].map((id) => startNode(id === 'gw-b' ? ownRedis : shared, id, {
      env: { MQGW_LOG_LEVEL: 'info' },
      yaml: 'listeners: { mqtt: { proxyProtocol: true }, ws: { proxyProtocol: true } }'
    })))
    landings = new Landings(nodes)
    for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort()
    dir = mkdtempSync(join(tmpdir(), 'mqgw-access-nodes-'))
    writeAccessConfig({ dir, ports, nodes: ['gw-a', 'gw-b', 'gw-c'].map((id) => line(node(id))) })
    access = new AccessLayer(dir, ports)
    await access.start()
  })

  after(async () => {
    await access?.stop()
    await Promise.all(nodes.map((n) => n.stop()))
    await Promise.all([shared.stop(), ownRedis.stop()])
    if (dir && !process.env.TEST_LOG) rmSync(dir, { recursive: true, force: true })
  })

  it('1,000 random client ids over 3 nodes: each node gets 33% +- 5%, every id on its ring node', async () => {
    const started = Date.now()
    home = await landAll(ids)
    const ring = await ringOrders(['gw-a', 'gw-b', 'gw-c'], ids)
    const perNode = new Map<string, number>()
    for (const [id, n] of home) {
      perNode.set(n, (perNode.get(n) ?? 0) + 1)
      assert.equal(n, ring.get(id)![0], `seed ${seed}: ${id} landed on ${n}, its ring node is ${ring.get(id)![0]}`)
    }
    assert.deepEqual([...perNode.keys()].sort(), ['gw-a', 'gw-b', 'gw-c'])
    for (const [n, count] of perNode) assert.ok(count >= 280 && count <= 380, `seed ${seed}: ${n} got ${count} of 1000: ${JSON.stringify(Object.fromEntries(perNode))}`)
    process.stdout.write(`# seed ${seed}: 1000 ids over 3 nodes ${JSON.stringify(Object.fromEntries([...perNode].sort()))} in ${Date.now() - started} ms\n`)
  })

  it('a node whose /readyz is 503 (its Redis stopped) gets no new connections; its ids go to their next ring node; back when ready', async () => {
    const mine = ids.filter((id) => home.get(id) === 'gw-b').slice(0, 20)
    const others = ids.filter((id) => home.get(id) !== 'gw-b').slice(0, 10)
    assert.equal(mine.length, 20)
    const ring = await ringOrders(['gw-a', 'gw-b', 'gw-c'], mine)
    const gwB = node('gw-b')
    const readyz = (): Promise<number> => fetch(`${gwB.admin}/readyz`).then((r) => r.status, () => 0)

    await ownRedis.stop()
    const t0 = Date.now()
    assert.equal(await pollUntil(readyz, (s) => s === 503, 5000), 503, 'gw-b /readyz is 503 without its Redis')
    // gw-b still accepts TCP connections: only the readiness check can keep nginx away from it.
    await waitFor(() => /node gw-b is out/.test(access!.stderr()), 'the access layer to take gw-b out', 5000)
    const outAfter = Date.now() - t0
    for (const id of mine) {
      const want = ring.get(id)![1]!
      assert.equal(await land(id), want, `${id} while gw-b is out: its next ring node`)
      assert.equal(await land(id), want, `${id} again: the same node`)
    }
    for (const id of others) assert.equal(await land(id), home.get(id), `${id} stays on its node`)

    await ownRedis.start()
    const t1 = Date.now()
    assert.equal(await pollUntil(readyz, (s) => s === 200, 15000), 200, 'gw-b ready again with its Redis back')
    await waitFor(() => /node gw-b is in again/.test(access!.stderr()), 'the access layer to take gw-b back', 5000)
    const inAfter = Date.now() - t1
    for (const id of mine) assert.equal(await land(id), 'gw-b', `${id} back on gw-b`)
    process.stdout.write(`# gw-b out ${outAfter} ms after its Redis stopped, in ${inAfter} ms after it restarted; 20 ids moved to their next node and back\n`)
  })

  it('adding a 4th node (upstreams.conf + reload) moves about 1/4 of the ids, all to the new node', async () => {
    writeUpstreams(dir, ['gw-a', 'gw-b', 'gw-c', 'gw-d'].map((id) => line(node(id))))
    await access!.reload()
    const after4 = await landAll(ids)
    const ring = await ringOrders(['gw-a', 'gw-b', 'gw-c', 'gw-d'], ids)
    let moved = 0
    for (const [id, n] of after4) {
      assert.equal(n, ring.get(id)![0], `seed ${seed}: ${id} on ${n}, ring says ${ring.get(id)![0]}`)
      if (n === home.get(id)) continue
      moved++
      assert.equal(n, 'gw-d', `seed ${seed}: ${id} moved from ${home.get(id)} to ${n}, not to the new node`)
    }
    assert.ok(moved >= 190 && moved <= 310, `seed ${seed}: ${moved} of 1000 ids moved`)
    process.stdout.write(`# seed ${seed}: a 4th node took ${moved} of 1000 ids (${(moved / 10).toFixed(1)}%), none moved between the old nodes\n`)
  })

  it('a node that dies refuses connections before the checks notice: each is retried on the id\'s next ring node', async () => {
    const gwD = node('gw-d')
    const ring = await ringOrders(['gw-a', 'gw-b', 'gw-c', 'gw-d'], ids)
    const mine = ids.filter((id) => ring.get(id)![0] === 'gw-d').slice(0, 10)
    assert.equal(mine.length, 10)
    const before = access!.stderr().length
    await gwD.crash()
    // Connect at once: the checks need 2 failed rounds (about 1-2 s) to take gw-d out, so the
    // first connections meet a refused connect and nginx asks the balancer again.
    for (const id of mine) assert.equal(await land(id), ring.get(id)![1], `${id}: the next node of its ring order`)
    const log = access!.stderr().slice(before)
    assert.match(log, new RegExp(`connect\\(\\) failed \\(111: Connection refused\\) while connecting to upstream.*upstream: "127\\.0\\.0\\.1:${gwD.ports.mqtt}"`), 'a refused connect to gw-d was retried')
    await waitFor(() => /node gw-d is out/.test(access!.stderr()), 'the checks to take gw-d out', 5000)
    for (const id of mine) assert.equal(await land(id), ring.get(id)![1], `${id} once gw-d is out`)
  })
})
