import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { WebSocket } from 'ws'
import { startTestGateway, type TestGateway } from '../helpers/gateway.js'
import { closesWithin, collect, connectClient, endClient, pollUntil, rawSocket, sleep, waitFor } from '../helpers/mqtt.js'

/**
 * Limits on connections that have not been through CONNACK yet (issue #11 C.11, C.14):
 * what such a socket may make the gateway buffer, how many one address may hold, and
 * how long a WebSocket listener connection may stay un-upgraded.
 */

const connectPacket = (clientId: string, extra: Record<string, unknown> = {}): Buffer =>
  mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 30, ...extra } as unknown as mqttPacket.Packet)

/** The fixed header of a CONNECT announcing `remaining` bytes, and `body` bytes of it. */
function connectHeader (remaining: number, body = 16): Buffer {
  const len: number[] = []
  let n = remaining
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    len.push(byte)
  } while (n > 0)
  return Buffer.concat([Buffer.from([0x10, ...len]), Buffer.alloc(body, 0x41)])
}

async function refusedCount (gw: TestGateway, reason: string): Promise<number> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  const m = text.match(new RegExp(`mqgw_connections_refused_total\\{reason="${reason}"\\} (\\d+)`))
  return m ? Number(m[1]) : 0
}

/** mqgw_sockets_current for a listener, as scraped. */
async function openSockets (gw: TestGateway, listener: string): Promise<number> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  const m = text.match(new RegExp(`mqgw_sockets_current\\{listener="${listener}"\\} (\\d+)`))
  return m ? Number(m[1]) : 0
}

interface Held { socket: Socket, data: () => Buffer, closed: Promise<void>, isClosed: () => boolean }

/** A socket that has sent the first bytes of a CONNECT (`prefix`) and holds it there, unauthenticated. */
async function hold (port: number, prefix: Buffer): Promise<Held> {
  const raw = await rawSocket(port)
  let closed = false
  void raw.closed.then(() => { closed = true })
  raw.socket.write(prefix)
  return { ...raw, isClosed: () => closed }
}

describe('limits before CONNACK', () => {
  it('limits.maxConnectPacketSize (default 64 KiB): a CONNECT announcing more is closed from its fixed header; after CONNACK maxPacketSize applies', async () => {
    const gw = await startTestGateway()
    try {
      // 1 MiB announced (within maxPacketSize), 16 bytes sent: closed at once, not after the 30 s connect timeout.
      const big = await hold(gw.gateway.ports.mqtt!, connectHeader(1024 * 1024 - 16))
      assert.equal(await closesWithin(big.closed, 2000), true, 'a CONNECT announcing 1 MiB is closed from its header')
      assert.equal(big.data().length, 0, 'no CONNACK for it')
      // Just over the limit, also over WebSocket.
      const ws = new WebSocket(gw.wsUrl, ['mqtt'])
      await once(ws, 'open')
      const wsClosed = once(ws, 'close')
      ws.send(connectHeader(65536 + 1))
      assert.equal(await closesWithin(wsClosed.then(() => {}), 2000), true, 'over WebSocket too')
      // A PUBLISH pipelined behind the CONNECT, before the CONNACK, gets the small limit as well.
      const pipelined = await hold(gw.gateway.ports.mqtt!, Buffer.concat([connectPacket('pipelined'),
        mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(100000), qos: 0, dup: false, retain: false })]))
      await closesWithin(pipelined.closed, 2000)
      assert.equal(pipelined.isClosed(), true, 'a large PUBLISH before CONNACK closes the connection')
      assert.equal(await refusedCount(gw, 'packet_too_large'), 3)
      const line = gw.logs.find('connection error before CONNACK; closing it').find((l) => String(l.err).includes('maxConnectPacketSize'))
      assert.ok(line, `one log line names the limit: ${JSON.stringify(gw.logs.lines.filter((l) => l.level !== 30 || String(l.msg).includes('error')))}`)

      // Under the limit: a 60 KB CONNECT (a long password) is served.
      const fat = await rawSocket(gw.gateway.ports.mqtt!)
      fat.socket.write(connectPacket('fat', { username: 'u', password: Buffer.alloc(60000, 0x70) }))
      await waitFor(() => fat.data().length >= 4, 'CONNACK for a 60 KB CONNECT')
      assert.deepEqual([...fat.data().subarray(0, 4)], [0x20, 0x02, 0x00, 0x00])
      fat.socket.destroy()
      // After CONNACK: a 200 KB PUBLISH goes through (maxPacketSize 1 MiB applies).
      const sub = await connectClient(gw.mqttUrl, { clientId: 'sub' })
      const got = collect(sub)
      await sub.subscribeAsync('big', { qos: 0 })
      const pub = await connectClient(gw.mqttUrl, { clientId: 'pub' })
      await pub.publishAsync('big', Buffer.alloc(200000, 0x62))
      await waitFor(() => got.length === 1, '200 KB message delivered')
      assert.equal(got[0]!.payload.length, 200000)
      await endClient(sub)
      await endClient(pub)
    } finally {
      await gw.stop()
    }
  })

  it('limits.maxUnauthenticatedPerAddress (default 64): the 65th connection from one address is refused while 64 hang; CONNACK and every close release their slot', async () => {
    const gw = await startTestGateway()
    const port = gw.gateway.ports.mqtt!
    const all: Held[] = []
    try {
      // Clients past CONNACK do not count: 70 of them from the same address first.
      const authenticated: Held[] = []
      for (let i = 0; i < 70; i++) authenticated.push(await hold(port, connectPacket(`ok-${i}`)))
      await waitFor(() => authenticated.every((h) => h.data().length >= 4), '70 CONNACKs')

      // The first bytes of a CONNECT whose client id has 4 characters: any 4-character id completes it.
      const id = (i: number): string => `c${String(i).padStart(3, '0')}`
      const half = connectPacket(id(0)).subarray(0, 6)
      for (let round = 0; round < 4; round++) {
        const held: Held[] = []
        for (let i = 0; i < 64; i++) held.push(await hold(port, half))
        all.push(...held)
        const refusedBefore = await refusedCount(gw, 'max_unauthenticated_per_address')
        const extra = await hold(port, half)
        assert.equal(await closesWithin(extra.closed, 2000), true, `round ${round}: the 65th is closed at once`)
        // Over WebSocket the same address is at its cap as well.
        const ws = new WebSocket(gw.wsUrl, ['mqtt'])
        ws.on('error', () => {})
        await new Promise((resolve) => ws.once('close', resolve))
        assert.equal(await refusedCount(gw, 'max_unauthenticated_per_address'), refusedBefore + 2)
        assert.equal(held.filter((h) => h.isClosed()).length, 0, `round ${round}: the 64 are still open`)
        // Each round releases the 64 differently; the next round must again admit exactly 64.
        if (round === 0) {
          // CONNACK: the rest of the CONNECT, answered; they are no longer unauthenticated.
          held.forEach((h, i) => h.socket.write(connectPacket(id(i)).subarray(6)))
          await waitFor(() => held.every((h) => h.data().length >= 4), '64 CONNACKs')
        } else if (round === 1) {
          for (const h of held) h.socket.destroy()
          await Promise.all(held.map((h) => h.closed))
        } else if (round === 2) {
          for (const h of held) h.socket.resetAndDestroy()
          await Promise.all(held.map((h) => h.closed))
        } else {
          // The gateway closes them: a malformed rest of the CONNECT.
          for (const h of held) h.socket.write(Buffer.alloc(20, 0xff))
          await Promise.all(held.map((h) => h.closed))
        }
        // The client side has seen its sockets close; wait until the gateway has too (the
        // 70 and the 64 of round 0, past CONNACK, stay open).
        const open = await pollUntil(() => openSockets(gw, 'mqtt'), (n) => n === 70 + 64, 3000)
        assert.equal(open, 70 + 64, `round ${round}: sockets the gateway still holds`)
      }
      // After all that, a new connection is admitted and served.
      const late = await rawSocket(port)
      late.socket.write(connectPacket('late'))
      await waitFor(() => late.data().length >= 4, 'CONNACK for a new connection')
      assert.deepEqual([...late.data().subarray(0, 4)], [0x20, 0x02, 0x00, 0x00])
      late.socket.destroy()
      const lines = gw.logs.lines.filter((l) => l.msg === 'connection refused: too many connections from this address not yet past CONNACK')
      assert.equal(lines.length, 1, 'eight refusals within the interval log one line')
      for (const h of authenticated) h.socket.destroy()
    } finally {
      for (const h of all) h.socket.destroy()
      await gw.stop()
    }
  })

  it('counts the PROXY protocol peer, not the proxy, when the proxy is trusted', async () => {
    const gw = await startTestGateway('listeners: { mqtt: { proxyProtocol: true } }\nlimits: { maxUnauthenticatedPerAddress: 3 }')
    const port = gw.gateway.ports.mqtt!
    const header = (src: string): Buffer => Buffer.from(`PROXY TCP4 ${src} 127.0.0.1 40001 1883\r\n`)
    const held: Held[] = []
    try {
      const half = connectPacket('x').subarray(0, 6)
      for (let i = 0; i < 3; i++) held.push(await hold(port, Buffer.concat([header('203.0.113.7'), half])))
      const fourth = await hold(port, Buffer.concat([header('203.0.113.7'), half]))
      assert.equal(await closesWithin(fourth.closed, 2000), true, 'the 4th from 203.0.113.7 is refused')
      const other = await hold(port, Buffer.concat([header('198.51.100.1'), connectPacket('other')]))
      await waitFor(() => other.data().length >= 4, 'another peer behind the same proxy is served')
      assert.equal(held.filter((h) => h.isClosed()).length, 0)
      held.push(other)
    } finally {
      for (const h of held) h.socket.destroy()
      await gw.stop()
    }
  })

  it('WebSocket listener sockets count in maxConnections from accept and are closed if not upgraded within listeners.wsUpgradeTimeoutMs', async () => {
    const gw = await startTestGateway('limits: { maxConnections: 3 }\nlisteners: { wsUpgradeTimeoutMs: 800 }')
    const wsPort = gw.gateway.ports.ws!
    try {
      const idle = await rawSocket(wsPort)
      const partial = await rawSocket(wsPort)
      partial.socket.write('GET /mqtt HTTP/1.1\r\nHost: x\r\n')
      const keptAlive = await rawSocket(wsPort)
      keptAlive.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
      await waitFor(() => keptAlive.data().toString().includes('426'), '426 for a plain request')
      // Three sockets on the ws port, none upgraded: the cap is reached.
      const started = Date.now()
      const fourth = await rawSocket(gw.gateway.ports.mqtt!)
      fourth.socket.write(connectPacket('fourth'))
      assert.equal(await closesWithin(fourth.closed, 2000), true, 'the 4th connection is refused at accept')
      assert.equal(fourth.data().length, 0)
      assert.equal(await refusedCount(gw, 'max_connections'), 1)
      // All three closed by the upgrade bound (Node's own header timeout would be 60 s).
      for (const s of [idle, partial, keptAlive]) assert.equal(await closesWithin(s.closed, 2500), true)
      const elapsed = Date.now() - started
      assert.ok(elapsed < 2500, `closed after ${elapsed} ms`)
      // Their slots are free again, and an upgraded client is not subject to the bound.
      const ws = await connectClient(gw.wsUrl, { clientId: 'ws-client' })
      const got = collect(ws)
      await ws.subscribeAsync('t', { qos: 0 })
      await sleep(1200)
      const pub = await connectClient(gw.mqttUrl, { clientId: 'pub' })
      await pub.publishAsync('t', 'still here')
      await waitFor(() => got.length === 1, 'the upgraded client, older than the bound, still receives')
      await endClient(pub)
      await endClient(ws)
    } finally {
      await gw.stop()
    }
  })
})
