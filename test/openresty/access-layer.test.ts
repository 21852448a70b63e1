/**
 * End to end through the access layer as deployed: openresty/nginx.conf with its Lua
 * handlers on the real stream Lua module (OpenResty, or Debian's nginx with the module built
 * from ../shared/vendor by scripts/stream-lua.sh; test/openresty/access-layer.ts says what
 * the test changes: ports, node addresses, paths), in front of three gateway processes in
 * Redis mode on one redis-server. Which node a client landed on is read from the nodes'
 * "client connected" log lines (every connection here has a unique user name).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import mqtt, { type IClientOptions, type MqttClient, type IConnackPacket } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { startNode, type ClusterNode } from '../helpers/cluster.js'
import { testCertificate } from '../helpers/gateway.js'
import { closesWithin, rawSocket, waitFor, endClient } from '../helpers/mqtt.js'
import { freePort } from '../helpers/process.js'
import { TestRedis } from '../helpers/redis.js'
import { AccessLayer, Landings, streamLua, writeAccessConfig } from './access-layer.js'

const NODE_IDS = ['gw-a', 'gw-b', 'gw-c']

let userSeq = 0
const nextUser = (): string => `u-${process.pid}-${++userSeq}`

interface Connected { client: MqttClient, connack: IConnackPacket, username: string }

/**
 * An MQTT.js client over a stream we build (so the local source address can be chosen).
 * `onMessage` is attached before the CONNECT: queued messages can arrive in the same read
 * as the CONNACK, before a listener added after the promise resolves.
 */
function connectOver (build: () => NodeJS.ReadWriteStream, opts: IClientOptions, onMessage?: (topic: string, payload: Buffer) => void): Promise<Connected> {
  const username = opts.username ?? nextUser()
  return new Promise((resolve, reject) => {
    const client = new mqtt.MqttClient(build as never, { reconnectPeriod: 0, connectTimeout: 5000, keepalive: 30, protocolVersion: 4, ...opts, username })
    if (onMessage) client.on('message', onMessage)
    const fail = (err: Error): void => { client.end(true); reject(err) }
    const onClose = (): void => fail(new Error('connection closed before CONNACK'))
    client.once('connect', (connack) => {
      client.removeListener('error', fail)
      client.removeListener('close', onClose)
      resolve({ client, connack, username })
    })
    client.once('error', fail)
    client.once('close', onClose)
  })
}

describe('the access layer (openresty/nginx.conf, stream Lua module) in front of three gateway nodes (Redis mode)', () => {
  const redis = new TestRedis()
  let nodes: ClusterNode[] = []
  let access: AccessLayer | undefined
  let landings: Landings
  let dir = ''
  const ports = { mqtt: 0, ws: 0, mqtts: 0, wss: 0, health: 0 }

  const tcp = (localAddress: string, opts: IClientOptions, onMessage?: (topic: string, payload: Buffer) => void): Promise<Connected> =>
    connectOver(() => netConnect({ host: '127.0.0.1', port: ports.mqtt, localAddress }), opts, onMessage)
  const tls = (localAddress: string, opts: IClientOptions): Promise<Connected> =>
    connectOver(() => tlsConnect({ socket: netConnect({ host: '127.0.0.1', port: ports.mqtts, localAddress }), rejectUnauthorized: false }), opts)
  const ws = (localAddress: string, opts: IClientOptions, via: { query?: string, headers?: Record<string, string>, secure?: boolean } = {}): Promise<Connected> => {
    const username = opts.username ?? nextUser()
    const url = via.secure ? `wss://127.0.0.1:${ports.wss}/mqtt${via.query ?? ''}` : `ws://127.0.0.1:${ports.ws}/mqtt${via.query ?? ''}`
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(url, {
        reconnectPeriod: 0, connectTimeout: 5000, keepalive: 30, protocolVersion: 4, ...opts, username,
        wsOptions: { localAddress, headers: via.headers ?? {}, rejectUnauthorized: false }
      })
      const fail = (err: Error): void => { client.end(true); reject(err) }
      client.once('connect', (connack) => { client.removeListener('error', fail); resolve({ client, connack, username }) })
      client.once('error', fail)
      client.once('close', () => fail(new Error('connection closed before CONNACK')))
    })
  }

  /** Connects, reads the node, disconnects. */
  async function landOnce (connectFn: () => Promise<Connected>, nth = 1): Promise<string> {
    const { client, username } = await connectFn()
    const node = await landings.nodeOf(username, nth)
    await endClient(client)
    return node
  }

  /** Connects, waits until a node has it, returns the client address that node was told (PROXY header), disconnects. */
  async function landedAddress (connectFn: () => Promise<Connected>): Promise<string | undefined> {
    const { client, username } = await connectFn()
    await landings.nodeOf(username)
    const address = landings.addressOf(username)
    await endClient(client)
    return address
  }

  before(async () => {
    streamLua() // the module first: without it, one line saying what to install, before anything starts
    await redis.start()
    nodes = await Promise.all(NODE_IDS.map((id) => startNode(redis, id, { env: { MQGW_LOG_LEVEL: 'info' }, yaml: 'listeners: { mqtt: { proxyProtocol: true }, ws: { proxyProtocol: true } }' })))
    landings = new Landings(nodes)
    for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort()
    dir = mkdtempSync(join(tmpdir(), 'mqgw-access-'))
    writeAccessConfig({
      dir,
      ports,
      nodes: nodes.map((n) => ({ name: n.id, host: '127.0.0.1', mqtt: n.ports.mqtt, ws: n.ports.ws, admin: n.ports.admin })),
      tls: testCertificate()
    })
    access = new AccessLayer(dir, ports)
    await access.start()
  })

  after(async () => {
    await access?.stop()
    await Promise.all(nodes.map((n) => n.stop()))
    await redis.stop()
    if (dir && !process.env.TEST_LOG) rmSync(dir, { recursive: true, force: true })
  })

  it('127.0.0.2 to 127.0.0.254 are usable source addresses on loopback', async () => {
    const { client } = await tcp('127.0.0.254', { clientId: 'loopback-check' })
    const local = (client.stream as unknown as { localAddress?: string }).localAddress
    assert.equal(local, '127.0.0.254')
    await endClient(client)
  })

  it('TCP: the same client id lands on the same node across 20 reconnects from 20 source addresses', async () => {
    for (const clientId of ['phone-alice', 'sensor-0042', '设备-7']) {
      const landed = new Set<string>()
      for (let i = 0; i < 20; i++) {
        landed.add(await landOnce(() => tcp(`127.0.0.${2 + i}`, { clientId })))
      }
      assert.equal(landed.size, 1, `${clientId} landed on ${[...landed].join(', ')}`)
    }
    // nginx connects to the nodes from 127.0.0.1; the PROXY header carries the client's own address.
    assert.equal(await landedAddress(() => tcp('127.0.0.77', { clientId: 'address-check' })), '127.0.0.77')
  })

  it('TCP: different client ids from one source address spread over all three nodes', async () => {
    const perNode = new Map<string, number>()
    for (let i = 0; i < 60; i++) {
      const node = await landOnce(() => tcp('127.0.0.1', { clientId: `spread-${i}` }))
      perNode.set(node, (perNode.get(node) ?? 0) + 1)
    }
    assert.deepEqual([...perNode.keys()].sort(), NODE_IDS, JSON.stringify(Object.fromEntries(perNode)))
  })

  it('TCP: without a usable client id (empty id, CONNECT over 16 kB) the source address decides', async () => {
    const byAddress = new Map<string, string>()
    for (let a = 50; a < 60; a++) {
      const addr = `127.0.0.${a}`
      const landed = new Set<string>()
      for (let i = 0; i < 3; i++) landed.add(await landOnce(() => tcp(addr, { clientId: '' })))
      assert.equal(landed.size, 1, `empty client id from ${addr} landed on ${[...landed].join(', ')}`)
      byAddress.set(addr, [...landed][0]!)
    }
    // A CONNECT longer than $mqtt_connect_max (a 20 kB will) is routed by address too, and works.
    for (const addr of ['127.0.0.50', '127.0.0.51', '127.0.0.52']) {
      const node = await landOnce(() => tcp(addr, { clientId: 'big-will-client', will: { topic: 'w', payload: Buffer.alloc(20000, 1), qos: 0, retain: false } }))
      assert.equal(node, byAddress.get(addr), `big CONNECT from ${addr}`)
    }
    assert.ok(new Set(byAddress.values()).size >= 2, `10 source addresses all on one node: ${JSON.stringify(Object.fromEntries(byAddress))}`)
  })

  it('garbage or a non-CONNECT first packet is passed to a node (by address), which closes it; nginx keeps serving', async () => {
    const publish = mqttPacket.generate({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 0, retain: false, dup: false } as unknown as mqttPacket.Packet)
    for (const bytes of [Buffer.from('GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n'), publish, Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01])]) {
      const raw = await rawSocket(ports.mqtt)
      raw.socket.write(bytes)
      assert.ok(await closesWithin(raw.closed, 5000), `connection with first bytes ${bytes.subarray(0, 8).toString('hex')} not closed`)
    }
    assert.ok(await landOnce(() => tcp('127.0.0.1', { clientId: 'after-garbage' })))
  })

  it('a CONNECT that does not arrive whole within preread_timeout (5 s) is closed by nginx', async () => {
    const partial = await rawSocket(ports.mqtt)
    const silent = await rawSocket(ports.mqtt)
    const started = Date.now()
    partial.socket.write(mqttPacket.generate({ cmd: 'connect', clientId: 'slow', protocolVersion: 4, keepalive: 60, clean: true } as unknown as mqttPacket.Packet).subarray(0, 9))
    assert.ok(await closesWithin(partial.closed, 9000), 'partial CONNECT not closed')
    assert.ok(await closesWithin(silent.closed, 2000), 'silent connection not closed')
    const elapsed = Date.now() - started
    assert.ok(elapsed >= 4000 && elapsed < 9000, `closed after ${elapsed} ms`)
    assert.equal(partial.data().length, 0, 'nothing reached a node: no CONNACK')
  })

  it('TLS termination: the CONNECT is read after the handshake; an id lands on its TCP node', async () => {
    for (const clientId of ['tls-1', 'tls-2', 'tls-3', 'phone-alice']) {
      const viaTcp = await landOnce(() => tcp('127.0.0.1', { clientId }))
      for (let i = 0; i < 3; i++) {
        assert.equal(await landOnce(() => tls(`127.0.0.${30 + i}`, { clientId })), viaTcp, `${clientId} over TLS`)
      }
    }
  })

  it('WebSocket: ?clientid= and X-MQTT-Client-Id route by client id across 20 source addresses; ids spread; else by address', async () => {
    for (const clientId of ['ws-alice', 'ws-bob']) {
      const byQuery = new Set<string>()
      const byHeader = new Set<string>()
      for (let i = 0; i < 20; i++) {
        byQuery.add(await landOnce(() => ws(`127.0.0.${2 + i}`, { clientId }, { query: `?clientid=${encodeURIComponent(clientId)}` })))
        byHeader.add(await landOnce(() => ws(`127.0.0.${2 + i}`, { clientId }, { headers: { 'X-MQTT-Client-Id': clientId } })))
      }
      assert.equal(byQuery.size, 1, `${clientId} by query: ${[...byQuery].join(', ')}`)
      assert.deepEqual(byHeader, byQuery, `${clientId}: header and query give the same key`)
      assert.equal(await landOnce(() => ws('127.0.0.9', { clientId }, { secure: true, query: `?clientid=${clientId}` })), [...byQuery][0], 'WSS')
    }
    const perNode = new Map<string, number>()
    for (let i = 0; i < 60; i++) {
      const node = await landOnce(() => ws('127.0.0.1', { clientId: `ws-spread-${i}` }, { query: `?clientid=ws-spread-${i}` }))
      perNode.set(node, (perNode.get(node) ?? 0) + 1)
    }
    assert.deepEqual([...perNode.keys()].sort(), NODE_IDS, JSON.stringify(Object.fromEntries(perNode)))
    const byAddress = new Set<string>()
    for (let i = 0; i < 5; i++) byAddress.add(await landOnce(() => ws('127.0.0.77', { clientId: `ws-noid-${i}` })))
    assert.equal(byAddress.size, 1, 'no id source: same address, same node')
    // The stream proxy sends a PROXY header to the node's WebSocket listener too.
    assert.equal(await landedAddress(() => ws('127.0.0.78', { clientId: 'ws-address-check' }, { query: '?clientid=ws-address-check' })), '127.0.0.78')
  })

  it('one client id, one node on every transport: TCP, TLS, WebSocket (query or header) and WSS agree', async () => {
    const perNode = new Map<string, number>()
    for (let i = 0; i < 12; i++) {
      const clientId = `any-transport-${i}`
      const viaTcp = await landOnce(() => tcp(`127.0.0.${2 + i}`, { clientId }))
      perNode.set(viaTcp, (perNode.get(viaTcp) ?? 0) + 1)
      assert.equal(await landOnce(() => tls(`127.0.0.${40 + i}`, { clientId })), viaTcp, `${clientId} over TLS`)
      assert.equal(await landOnce(() => ws(`127.0.0.${60 + i}`, { clientId }, { query: `?clientid=${encodeURIComponent(clientId)}` })), viaTcp, `${clientId} over WebSocket (?clientid=)`)
      assert.equal(await landOnce(() => ws(`127.0.0.${80 + i}`, { clientId }, { headers: { 'X-MQTT-Client-Id': clientId } })), viaTcp, `${clientId} over WebSocket (X-MQTT-Client-Id)`)
      assert.equal(await landOnce(() => ws(`127.0.0.${100 + i}`, { clientId }, { secure: true, query: `?clientid=${encodeURIComponent(clientId)}` })), viaTcp, `${clientId} over WSS`)
    }
    // A percent-encoded non-ASCII id over WebSocket is the same id as in the CONNECT over TCP.
    const viaTcp = await landOnce(() => tcp('127.0.0.120', { clientId: '设备-7' }))
    assert.equal(await landOnce(() => ws('127.0.0.121', { clientId: '设备-7' }, { query: `?clientid=${encodeURIComponent('设备-7')}` })), viaTcp, '设备-7 over WebSocket')
    // Not all on one node, so the agreement is not the trivial one.
    assert.ok(perNode.size >= 2, JSON.stringify(Object.fromEntries(perNode)))
  })

  it('WebSocket: a request the node refuses (wrong path, not an upgrade) gets the node\'s answer through the stream proxy', async () => {
    const plain = await fetch(`http://127.0.0.1:${ports.ws}/mqtt?clientid=x`, { headers: { connection: 'close' } })
    assert.equal(plain.status, 426, 'a plain GET on the WebSocket path: 426 Upgrade Required from the node')
    await plain.text()
    const raw = await rawSocket(ports.ws)
    raw.socket.write('GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
    assert.ok(await closesWithin(raw.closed, 5000), 'closed after the refusal')
    assert.match(raw.data().toString(), /^HTTP\/1\.1 404 /)
    assert.ok(await landOnce(() => ws('127.0.0.1', { clientId: 'after-refusal' }, { query: '?clientid=after-refusal' })))
  })

  it('stopping one node moves only its clients; they resume their persistent sessions (QoS 1 queue) from Redis on another node', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `persist-${i}`)
    const home = new Map<string, string>()
    const clients = new Map<string, MqttClient>()
    const closed = new Set<string>()
    const received = new Map<string, string[]>()
    // A persistent session is resumed only by the user who owns it: one user name per session.
    const owner = (clientId: string): string => `${clientId}-${process.pid}`
    for (const [i, clientId] of ids.entries()) {
      received.set(clientId, [])
      const { client, username } = await tcp(`127.0.0.${100 + i}`, { clientId, clean: false, username: owner(clientId) }, (_t, payload) => received.get(clientId)!.push(payload.toString()))
      home.set(clientId, await landings.nodeOf(username))
      await client.subscribeAsync(`fo/${clientId}`, { qos: 1 })
      client.once('close', () => closed.add(clientId))
      clients.set(clientId, client)
    }
    const count = (node: string): number => [...home.values()].filter((n) => n === node).length
    const victimId = [...NODE_IDS].sort((a, b) => count(b) - count(a))[0]!
    const victims = ids.filter((id) => home.get(id) === victimId)
    const survivors = ids.filter((id) => home.get(id) !== victimId)
    assert.ok(victims.length > 0 && survivors.length > 0, JSON.stringify(Object.fromEntries(home)))

    await nodes.find((n) => n.id === victimId)!.stop()
    await waitFor(() => victims.every((id) => closed.has(id)), "the stopped node's clients to be disconnected", 10000)

    // QoS 1 to every client: live for the connected ones, queued in Redis for the others.
    const pub = await tcp('127.0.0.1', { clientId: 'fo-publisher' })
    for (const id of ids) await pub.client.publishAsync(`fo/${id}`, `m-${id}`, { qos: 1 })
    await endClient(pub.client)
    await waitFor(() => survivors.every((id) => received.get(id)!.includes(`m-${id}`)), 'live delivery to the connected clients', 5000)
    // Each survivor got a message published after the node stopped, on its own connection:
    // that connection outlived the stop, so a close caused by the stop would be seen by now.
    assert.deepEqual(survivors.filter((id) => closed.has(id)), [], 'clients of the other nodes stay connected')

    const moved = new Map<string, string>()
    for (const [i, id] of victims.entries()) {
      const got: string[] = []
      const { client, connack, username } = await tcp(`127.0.0.${200 + i}`, { clientId: id, clean: false, username: owner(id) }, (_t, payload) => got.push(payload.toString()))
      const node = await landings.nodeOf(username, 2)
      assert.notEqual(node, victimId)
      assert.equal(connack.sessionPresent, true, `${id}: session resumed on ${node}`)
      await waitFor(() => got.includes(`m-${id}`), `${id} to receive its queued QoS 1 message on ${node}`, 5000)
      moved.set(id, node)
      await endClient(client)
      // The moved client keeps landing on the same surviving node.
      assert.equal(await landOnce(() => tcp(`127.0.0.${220 + i}`, { clientId: id, clean: false, username: owner(id) }), 3), node, `${id} second reconnect`)
    }
    // The clients of the other nodes were not moved: they reconnect to their node.
    for (const [i, id] of survivors.entries()) {
      await endClient(clients.get(id)!)
      assert.equal(await landOnce(() => tcp(`127.0.0.${160 + i}`, { clientId: id, clean: false, username: owner(id) }), 2), home.get(id), `${id} stays on its node`)
    }
    for (const c of clients.values()) await endClient(c, true)
    process.stdout.write(`# stopped ${victimId}: ${victims.length} clients moved (${JSON.stringify(Object.fromEntries(moved))}), ${survivors.length} stayed\n`)
  })
})
