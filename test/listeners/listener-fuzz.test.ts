import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { Duplex } from 'node:stream'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import mqttPacket from 'mqtt-packet'
import pp from 'proxy-protocol-js'
import { WebSocket, createWebSocketStream } from 'ws'
import { startTestGateway, testCertificate } from '../helpers/gateway.js'
import { pollUntil, sleep, waitFor } from '../helpers/mqtt.js'
import { freePort, spawnGateway, type GatewayProcess } from '../helpers/process.js'
import { seededInt } from '../helpers/seeded-random.js'
import { connectClient, endClient } from '../helpers/mqtt.js'

/**
 * Everything between accept and Aedes owning the stream (TLS handshake, HTTP parsing,
 * the WebSocket upgrade, the PROXY header) must handle its own errors and close only its
 * own socket: a real gateway process is hit with crafted and seeded random input and
 * resets, then must still serve MQTT on every listener.
 */

const connectPacket = (clientId: string): Buffer => mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 30 })
const v1Header = (src: string): Buffer => Buffer.from(`PROXY TCP4 ${src} 127.0.0.1 40001 1883\r\n`)

interface Ports { mqtt: number, ws: number, mqtts: number, wss: number, admin: number }

async function startNode (): Promise<{ gw: GatewayProcess, ports: Ports }> {
  const cert = testCertificate()
  const dir = mkdtempSync(join(tmpdir(), 'mqgw-fuzz-'))
  const mqtts = await freePort()
  const wss = await freePort()
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `
listeners:
  proxyHeaderTimeoutMs: 1000
  mqtt: { proxyProtocol: true }
  mqtts: { enabled: true, host: 127.0.0.1, port: ${mqtts}, cert: ${cert.cert}, key: ${cert.key}, proxyProtocol: true }
  wss: { enabled: true, host: 127.0.0.1, port: ${wss}, cert: ${cert.cert}, key: ${cert.key} }
  wsUpgradeTimeoutMs: 1000
log: { level: warn }
`)
  const gw = await spawnGateway(['--config', file])
  return { gw, ports: { ...gw.ports, mqtts, wss } }
}

/** Collects what a socket receives and whether it closed; never throws on errors. */
function track (socket: Socket): { data: () => Buffer, closed: Promise<void> } {
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return { data: () => Buffer.concat(chunks), closed }
}

async function tcp (port: number): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  await once(socket, 'connect')
  return socket
}

/** TLS sockets and the TCP socket under each: only a TCP socket can be reset (RST). */
const tcpUnder = new WeakMap<Socket, Socket>()

/** A TLS connection; `preface` (a PROXY header) is sent in plain text before the handshake, as proxies do. */
async function tls (port: number, preface?: Buffer): Promise<Socket> {
  const raw = netConnect({ host: '127.0.0.1', port })
  raw.on('error', () => {})
  await once(raw, 'connect')
  if (preface) raw.write(preface)
  // TLS over a plain Duplex, not over the socket itself: TLS would take the socket's handle,
  // and resetting a socket whose handle TLS owns crashes this (test) process.
  const carrier = new Duplex({
    read () {},
    write (chunk: Buffer, _enc, cb) { raw.write(chunk, () => cb()) },
    final (cb) { raw.end(); cb() }
  })
  raw.on('data', (c: Buffer) => carrier.push(c))
  raw.on('end', () => carrier.push(null))
  raw.on('close', () => carrier.destroy())
  carrier.on('error', () => {})
  const socket = tlsConnect({ socket: carrier, rejectUnauthorized: false, servername: 'localhost' })
  socket.on('error', () => {})
  await once(socket, 'secureConnect')
  tcpUnder.set(socket, raw)
  return socket
}

function reset (socket: Socket): void {
  const raw = tcpUnder.get(socket) ?? socket
  if (!raw.destroyed) raw.resetAndDestroy()
  socket.destroy()
}

/** CONNACK 0 over a raw stream (TCP or TLS), with an optional PROXY header first. */
async function mqttWorks (socket: Socket, clientId: string, proxy: boolean): Promise<void> {
  const t = track(socket)
  socket.write(Buffer.concat([proxy ? v1Header('203.0.113.50') : Buffer.alloc(0), connectPacket(clientId)]))
  await connacked(t, clientId)
  socket.destroy()
}

async function connacked (t: { data: () => Buffer }, clientId: string): Promise<void> {
  await waitFor(() => t.data().length >= 4, `CONNACK for ${clientId}`)
  assert.deepEqual([...t.data().subarray(0, 4)], [0x20, 0x02, 0x00, 0x00])
}

async function wsWorks (url: string, clientId: string): Promise<void> {
  const ws = new WebSocket(url, ['mqtt'], { rejectUnauthorized: false })
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const stream = createWebSocketStream(ws)
  stream.on('error', () => {})
  const chunks: Buffer[] = []
  stream.on('data', (c: Buffer) => chunks.push(c))
  stream.write(connectPacket(clientId))
  await waitFor(() => Buffer.concat(chunks).length >= 4, `CONNACK over ${url}`)
  assert.deepEqual([...Buffer.concat(chunks).subarray(0, 4)], [0x20, 0x02, 0x00, 0x00])
  ws.terminate()
}

/** The node is alive and serves MQTT on all four listeners. */
async function servesEverywhere (gw: GatewayProcess, ports: Ports, tag: string): Promise<void> {
  assert.equal(gw.child.exitCode, null, `gateway exited: ${gw.stderr()}${gw.stdout().slice(-4000)}`)
  await mqttWorks(await tcp(ports.mqtt), `${tag}-mqtt`, true)
  await mqttWorks(await tls(ports.mqtts, v1Header('203.0.113.51')), `${tag}-mqtts`, false)
  await wsWorks(`ws://127.0.0.1:${ports.ws}/mqtt`, `${tag}-ws`)
  await wsWorks(`wss://127.0.0.1:${ports.wss}/mqtt`, `${tag}-wss`)
  assert.doesNotMatch(gw.stdout(), /uncaught exception|unhandled rejection/)
}

/** Writes `bytes` then ends, resets or just drops the socket; resolves when it is closed or after `ms`. */
async function throwAt (socket: Socket, bytes: Buffer, ending: number, ms = 1500): Promise<void> {
  const t = track(socket)
  socket.write(bytes)
  if (ending === 0) reset(socket)
  else if (ending === 1) socket.end()
  else if (ending === 2) setTimeout(() => reset(socket), 5)
  // ending 3: leave it to the gateway to close (timeouts), bounded below
  await Promise.race([t.closed, sleep(ms)])
  socket.destroy()
}

describe('nothing from the network stops the process', () => {
  let gw: GatewayProcess
  let ports: Ports
  before(async () => { ({ gw, ports } = await startNode()) })
  after(async () => {
    if (gw.child.exitCode === null) {
      gw.child.kill('SIGTERM')
      await gw.exited
    }
  })

  it('WebSocket upgrade requests with targets the URL parser rejects get 400 and close; the node keeps serving', async () => {
    for (const target of ['//', '//[/../mqtt', '//[/../mqtt?clientid=1', 'http://[', '/mqtt%']) {
      for (const port of [ports.ws]) {
        const socket = await tcp(port)
        const t = track(socket)
        socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n`)
        await Promise.race([t.closed, sleep(3000)])
        assert.equal(gw.child.exitCode, null, `gateway exited on target ${target}: ${gw.stdout().slice(-2000)}`)
        assert.match(t.data().toString('latin1'), /^HTTP\/1\.1 (400|404) /, `answer to ${target}`)
        socket.destroy()
      }
    }
    await servesEverywhere(gw, ports, 'after-bad-target')
  })

  it('ws and wss: a connection not upgraded within wsUpgradeTimeoutMs is closed, also after a TLS handshake; wss sockets are counted and measured', async () => {
    const metric = async (re: RegExp): Promise<number> => Number((await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text()).match(re)?.[1] ?? NaN)
    const bytesBefore = await metric(/mqgw_bytes_in_total (\d+)/)
    const idleTcp = track(await tcp(ports.ws))
    const idleTls = track(await tls(ports.wss))
    const started = Date.now()
    assert.equal(await metric(/mqgw_sockets_current\{listener="wss"\} (\d+)/), 1, 'the wss socket is counted')
    await Promise.all([idleTcp.closed, idleTls.closed])
    const elapsed = Date.now() - started
    assert.ok(elapsed < 2000, `closed after ${elapsed} ms (bound 1000 ms)`)
    // The gauge drops on the server socket's own 'close', which may come a moment after the client saw the FIN.
    assert.equal(await pollUntil(() => metric(/mqgw_sockets_current\{listener="wss"\} (\d+)/), (n) => n === 0, 2000, 50), 0)
    // The TLS handshake's bytes were counted: the TCP socket under TLS is the one measured.
    assert.ok(await metric(/mqgw_bytes_in_total (\d+)/) > bytesBefore)
  })

  it('PROXY protocol: a connection reset before its header is complete closes only itself (mqtt and mqtts)', async () => {
    const partials = [Buffer.from('PROXY TCP4 203.0.1'), Buffer.from('PRO'), Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 1, 2])]
    // Sockets the gateway holds on the two PROXY-protocol listeners (NaN once it does not answer).
    const held = async (): Promise<number> => {
      const text = await fetch(`http://127.0.0.1:${ports.admin}/metrics`).then((r) => r.text(), () => undefined)
      if (text === undefined) return NaN
      // A listener that never had a socket has no line yet: none held.
      const of = (listener: string): number => Number(new RegExp(`mqgw_sockets_current\\{listener="${listener}"\\} (\\d+)`).exec(text)?.[1] ?? 0)
      return of('mqtt') + of('mqtts')
    }
    const before = await held()
    assert.ok(Number.isFinite(before), 'the gateway answers /metrics')
    for (const partial of partials) {
      await throwAt(await tcp(ports.mqtt), partial, 2)
      await throwAt(await tcp(ports.mqtts), partial, 2)
      // A reset with the header half-sent must not leave the process to die a moment later.
      // Marker: the gateway has closed both sockets (an error of theirs comes before their
      // close), and answers after that.
      await pollUntil(held, (n) => n === before, 3000)
      assert.equal(gw.child.exitCode, null, `gateway exited: ${gw.stdout().slice(-2000)}`)
      assert.equal(await held(), before, `the reset sockets are closed and the gateway answers: ${gw.stdout().slice(-2000)}`)
    }
    await servesEverywhere(gw, ports, 'after-proxy-reset')
  })
  /** A subscriber connected before the fuzzing starts, over the PROXY-protocol mqtt port: it must keep working. */
  async function bystander (): Promise<{ received: () => string[], close: () => void }> {
    const socket = await tcp(ports.mqtt)
    const parser = mqttPacket.parser()
    const received: string[] = []
    let ready = false
    parser.on('packet', (p) => {
      if (p.cmd === 'suback') ready = true
      if (p.cmd === 'publish') received.push(p.payload.toString())
    })
    socket.on('data', (c: Buffer) => parser.parse(c))
    socket.write(Buffer.concat([v1Header('198.51.100.77'), connectPacket('bystander'),
      mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fuzz/marker', qos: 0 }] })]))
    await waitFor(() => ready, 'bystander SUBACK')
    return { received: () => received, close: () => socket.destroy() }
  }

  /** The bystander still receives what a wss client publishes after the fuzzing. */
  async function bystanderStillServed (b: { received: () => string[] }, marker: string): Promise<void> {
    const pub = await connectClient(`wss://127.0.0.1:${ports.wss}/mqtt`, { rejectUnauthorized: false })
    try {
      await pub.publishAsync('fuzz/marker', marker)
      await waitFor(() => b.received().includes(marker), `bystander receives ${marker}`)
    } finally {
      await endClient(pub)
    }
  }

  const FUZZ_BUDGET_MS = 12000
  const FUZZ_MAX_CASES = 800
  const PARALLEL = 8

  /** Runs `one(i)` for up to FUZZ_MAX_CASES cases or FUZZ_BUDGET_MS, PARALLEL at a time; returns the number run. */
  async function fuzz (one: (i: number) => Promise<void>): Promise<number> {
    const deadline = Date.now() + FUZZ_BUDGET_MS
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < FUZZ_MAX_CASES && Date.now() < deadline) {
        const i = next++
        try {
          await one(i)
        } catch (err) {
          // The usual symptom of a crash is a refused connection in the next case: say so.
          if (gw.child.exitCode !== null) throw new Error(`gateway exited (${gw.child.exitCode}) by case ${i} (replay with FUZZ_SEED): ${gw.stdout().slice(-3000)}`)
          throw err
        }
      }
    }
    await Promise.all(Array.from({ length: PARALLEL }, worker))
    return next
  }

  it('seeded fuzz: random request lines, headers, bodies and resets at ws and wss', async (t) => {
    const b = await bystander()
    const seed = Number(process.env.FUZZ_SEED ?? 1101)
    const int = seededInt(seed)
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
    const chars = ['/', '/', 'mqtt', '[', ']', '..', '.', '%', '%2', '%zz', '?', '#', '@', ':', '\\', 'clientid=', 'a', '\u00e9', '\u{1f600}', '//', '*', ' ']
    const target = (): string => {
      if (int(6) === 0) return pick(['//', '//[/../mqtt', '/mqtt', '*', 'http://[', 'http://gateway/mqtt', '/mqtt?clientid=' + int(1000), ''])
      let t = ''
      for (let n = int(12); n > 0; n--) t += pick(chars)
      return t
    }
    const header = (): string => pick([
      'Host: x', 'Connection: Upgrade', 'Connection: keep-alive', 'Upgrade: websocket', 'Upgrade: h2c', 'Upgrade: ',
      'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 8', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Key: x',
      'Sec-WebSocket-Protocol: mqtt', 'Sec-WebSocket-Protocol: mqttv3.1, mqtt', 'Sec-WebSocket-Protocol: ', 'Sec-WebSocket-Extensions: permessage-deflate',
      'X-Forwarded-For: ' + pick(['203.0.113.9', '::1', 'garbage', '1.2.3.4, 5.6.7.8', '']), 'Content-Length: ' + pick(['0', '5', '-1', 'x', '99999999999']),
      'Transfer-Encoding: chunked', 'Expect: 100-continue', 'X-' + 'a'.repeat(int(3) === 0 ? 20000 : 10) + ': b', 'bad header line', ': empty', 'Host: a\r\nHost: b'
    ])
    const request = (): Buffer => {
      const method = pick(['GET', 'GET', 'GET', 'POST', 'CONNECT', 'OPTIONS', 'G\u00c9T', ''])
      const version = pick(['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', ''])
      const lines = [`${method} ${target()} ${version}`]
      // Mostly a well-formed upgrade so that the interesting paths (upgrade handler, ws) are reached.
      if (int(3) > 0) lines.push('Host: x', 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol: mqtt')
      for (let n = int(5); n > 0; n--) lines.push(header())
      const text = lines.join(pick(['\r\n', '\r\n', '\n'])) + pick(['\r\n\r\n', '\r\n\r\n', '\r\n', ''])
      const bytes = Buffer.from(text, 'latin1')
      // After the head: nothing, random bytes (frames), or a masked WebSocket frame of random content.
      const tail = int(3) === 0 ? Buffer.from(Array.from({ length: int(64) }, () => int(256))) : Buffer.alloc(0)
      const full = Buffer.concat([bytes, tail])
      return int(4) === 0 ? full.subarray(0, int(full.length + 1)) : full
    }
    const ran = await fuzz(async () => {
      const secure = int(3) === 0
      const socket = secure ? await tls(ports.wss) : await tcp(ports.ws)
      await throwAt(socket, request(), int(4))
    })
    assert.ok(ran >= 50, `only ${ran} cases ran`)
    t.diagnostic(`${ran} cases, seed ${seed}`)
    await bystanderStillServed(b, 'after-ws-fuzz')
    await servesEverywhere(gw, ports, 'after-ws-fuzz')
    b.close()
  })

  it('seeded fuzz: random PROXY v1/v2 headers, TLS garbage and resets at the PROXY-protocol mqtt and mqtts ports', async (t) => {
    const b = await bystander()
    const seed = Number(process.env.FUZZ_SEED ?? 2202)
    const int = seededInt(seed)
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
    const randomBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)))
    const ip4 = (): string => pick([`${int(256)}.${int(256)}.${int(256)}.${int(256)}`, '203.0.113.7', '999.1.1.1', '1.2.3', '::1', 'x'])
    const ip6 = (): string => pick(['2001:db8::1', '::1', '::ffff:1.2.3.4', 'fe80::1%eth0', '1::2::3', '2001:db8::' + int(65536).toString(16)])
    const v1 = (): Buffer => {
      const proto = pick(['TCP4', 'TCP6', 'UNKNOWN', 'UDP4', 'tcp4', ''])
      const src = proto === 'TCP6' ? ip6() : ip4()
      const dst = proto === 'TCP6' ? ip6() : ip4()
      const port = (): string => pick([String(int(65536)), '70000', '-1', '0', 'x', ''])
      const parts = ['PROXY', proto, src, dst, port(), port()].slice(0, 2 + int(5))
      let text = parts.join(pick([' ', ' ', '  ', '\t']))
      if (int(5) === 0) text += 'x'.repeat(int(200))
      return Buffer.from(text + pick(['\r\n', '\r\n', '\n', '', '\r']), 'latin1')
    }
    const v2 = (): Buffer => {
      const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
      if (int(4) === 0) {
        // A well-formed one from the library, sometimes corrupted below.
        return Buffer.from(new pp.V2ProxyProtocol(pp.Command.PROXY, pp.TransportProtocol.STREAM,
          new pp.IPv4ProxyAddress(pp.IPv4Address.createFrom([int(256), int(256), int(256), int(256)]), int(65536), pp.IPv4Address.createFrom([127, 0, 0, 1]), 1883)).build())
      }
      const verCmd = pick([0x20, 0x21, 0x11, 0x2f, int(256)])
      const fam = pick([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, int(256)])
      const bodyLength = pick([0, 12, 36, 216, int(65536), int(300)])
      const body = randomBytes(Math.min(bodyLength, int(400)))
      const len = Buffer.alloc(2)
      len.writeUInt16BE(pick([bodyLength, body.length, int(65536)]))
      return Buffer.concat([signature, Buffer.from([verCmd, fam]), len, body])
    }
    const payload = (): Buffer => {
      let head = pick([v1, v2, v2, () => randomBytes(int(64)), () => Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 40001 1883\r\n')])()
      if (int(3) === 0) head = head.subarray(0, int(head.length + 1)) // truncated
      else if (int(6) === 0 && head.length > 0) head[int(head.length)] = int(256) // one byte corrupted
      const after = pick([Buffer.alloc(0), connectPacket(`fz-${int(1e6)}`), randomBytes(int(32))])
      return Buffer.concat([head, after])
    }
    const ran = await fuzz(async () => {
      const kind = int(5)
      if (kind === 0) {
        // Garbage instead of a TLS ClientHello, or a reset mid-handshake.
        const raw = await tcp(pick([ports.mqtts, ports.wss]))
        const hello = int(2) === 0 ? randomBytes(int(300)) : Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), randomBytes(int(200))])
        await throwAt(raw, hello, int(4), 1200)
        return
      }
      if (kind === 2) {
        // A good header, a TLS handshake, then random bytes or a CONNECT and an ending.
        const socket = await tls(ports.mqtts, pick([v1Header('203.0.113.8'), Buffer.from(new pp.V2ProxyProtocol(pp.Command.LOCAL, pp.TransportProtocol.UNSPEC, new pp.UnspecProxyAddress()).build())]))
        await throwAt(socket, pick([randomBytes(int(64)), connectPacket(`fzt-${int(1e6)}`)]), int(4), 1200)
        return
      }
      // The header comes before TLS on mqtts: random ones at both TCP ports.
      await throwAt(await tcp(kind === 1 ? ports.mqtts : ports.mqtt), payload(), int(4), 1200)
    })
    assert.ok(ran >= 50, `only ${ran} cases ran`)
    t.diagnostic(`${ran} cases, seed ${seed}`)
    await bystanderStillServed(b, 'after-proxy-fuzz')
    await servesEverywhere(gw, ports, 'after-proxy-fuzz')
    b.close()
  })
})

describe('mqtts with PROXY protocol', () => {
  it('reads the header before the TLS handshake, as nginx (proxy_protocol + proxy_ssl) and HAProxy (send-proxy + ssl) send it', async () => {
    const cert = testCertificate()
    const gw = await startTestGateway(`listeners: { mqtts: { enabled: true, host: 127.0.0.1, port: 0, cert: ${cert.cert}, key: ${cert.key}, proxyProtocol: true } }`)
    try {
      const port = gw.gateway.ports.mqtts!
      // Header and ClientHello in one segment, then a v2 header on its own.
      await mqttWorks(await tls(port, v1Header('203.0.113.60')), 'tls-v1', false)
      const v2 = Buffer.from(new pp.V2ProxyProtocol(pp.Command.PROXY, pp.TransportProtocol.STREAM,
        new pp.IPv4ProxyAddress(pp.IPv4Address.createFrom([198, 51, 100, 61]), 40002, pp.IPv4Address.createFrom([127, 0, 0, 1]), 8883)).build())
      await mqttWorks(await tls(port, v2), 'tls-v2', false)
      await waitFor(() => gw.logs.find('client connected').length === 2, 'connect logs')
      const byId = Object.fromEntries(gw.logs.find('client connected').map((l) => [l.clientId, l.remoteAddress]))
      assert.deepEqual(byId, { 'tls-v1': '203.0.113.60', 'tls-v2': '198.51.100.61' })
      // No header: the TLS ClientHello is not a PROXY header; refused and counted.
      const bareTls = tlsConnect({ socket: await tcp(port), rejectUnauthorized: false })
      bareTls.on('error', () => {})
      const closed = await Promise.race([new Promise((resolve) => bareTls.once('close', () => resolve(true))), sleep(3000).then(() => false)])
      assert.equal(closed, true, 'a TLS client without a PROXY header is closed')
      const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
      assert.match(metrics, /mqgw_connections_refused_total\{reason="proxy_protocol"\} 1\n/)
    } finally {
      await gw.stop()
    }
  })
})
