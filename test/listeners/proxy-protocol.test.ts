import assert from 'node:assert/strict'
import { connect as netConnect, type Socket } from 'node:net'
import { describe, it } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import mqttPacket from 'mqtt-packet'
import pp from 'proxy-protocol-js'
import { WebSocket, createWebSocketStream } from 'ws'
import { startTestGateway, testCertificate } from '../helpers/gateway.js'
import { closesWithin, rawSocket, sleep, waitFor } from '../helpers/mqtt.js'

const connect = (clientId: string): Buffer => mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 30 })

describe('PROXY protocol and X-Forwarded-For from trusted proxies', () => {
  it('v1 and v2 headers give the real client address (logs, auth); CONNECT may follow in the same packet', async () => {
    const gw = await startTestGateway('listeners: { mqtt: { proxyProtocol: true } }')
    try {
      const v1 = await rawSocket(gw.gateway.ports.mqtt!)
      v1.socket.write(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 40001 1883\r\n'), connect('via-v1')]))
      await waitFor(() => v1.data().length >= 4 && v1.data()[3] === 0, 'CONNACK 0 after a v1 header')
      const v2header = new pp.V2ProxyProtocol(pp.Command.PROXY, pp.TransportProtocol.STREAM,
        new pp.IPv4ProxyAddress(pp.IPv4Address.createFrom([198, 51, 100, 9]), 40002, pp.IPv4Address.createFrom([127, 0, 0, 1]), 1883)).build()
      const v2 = await rawSocket(gw.gateway.ports.mqtt!)
      v2.socket.write(Buffer.from(v2header))
      await sleep(20)
      v2.socket.write(connect('via-v2'))
      await waitFor(() => v2.data().length >= 4 && v2.data()[3] === 0, 'CONNACK 0 after a v2 header')
      await waitFor(() => gw.logs.find('client connected').length >= 2, 'connect logs')
      const byId = Object.fromEntries(gw.logs.find('client connected').map((l) => [l.clientId, l.remoteAddress]))
      assert.deepEqual(byId, { 'via-v1': '203.0.113.7', 'via-v2': '198.51.100.9' })
      v1.socket.destroy()
      v2.socket.destroy()
    } finally {
      await gw.stop()
    }
  })

  it('without a header, with garbage, or from an untrusted address the connection is refused', async () => {
    const gw = await startTestGateway('listeners: { mqtt: { proxyProtocol: true }, proxyHeaderTimeoutMs: 300 }')
    try {
      const bare = await rawSocket(gw.gateway.ports.mqtt!)
      bare.socket.write(connect('no-header'))
      assert.equal(await closesWithin(bare.closed, 2000), true)
      assert.equal(bare.data().length, 0)
      const silent = await rawSocket(gw.gateway.ports.mqtt!)
      assert.equal(await closesWithin(silent.closed, 2000), true)
    } finally {
      await gw.stop()
    }
    const strict = await startTestGateway('listeners: { mqtt: { proxyProtocol: true }, trustedProxies: ["10.0.0.0/8"] }')
    try {
      const untrusted = await rawSocket(strict.gateway.ports.mqtt!)
      untrusted.socket.write(Buffer.concat([Buffer.from('PROXY TCP4 1.2.3.4 127.0.0.1 1 1883\r\n'), connect('spoofer')]))
      assert.equal(await closesWithin(untrusted.closed, 2000), true)
      const metrics = await (await fetch(`${strict.adminUrl}/metrics`)).text()
      assert.match(metrics, /mqgw_connections_refused_total\{reason="untrusted_proxy"\} 1/)
    } finally {
      await strict.stop()
    }
  })

  it('WebSocket: X-Forwarded-For from a trusted proxy is the client address; ignored when not enabled', async () => {
    for (const enabled of [true, false]) {
      const gw = await startTestGateway(`listeners: { ws: { forwardedFor: ${enabled} } }`)
      try {
        const ws = new WebSocket(gw.wsUrl, ['mqtt'], { headers: { 'x-forwarded-for': '192.0.2.1, 198.51.100.20' } })
        await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
        const stream = createWebSocketStream(ws)
        stream.write(connect(`ws-${enabled}`))
        await waitFor(() => gw.logs.find('client connected').length === 1, 'connect log')
        assert.equal(gw.logs.find('client connected')[0]!.remoteAddress, enabled ? '198.51.100.20' : '127.0.0.1')
        ws.terminate()
      } finally {
        await gw.stop()
      }
    }
  })

  it('WebSocket and WSS with proxyProtocol (the access layer routes WebSocket as a stream): the header, before HTTP or TLS, gives the client address; without it the connection is refused', async () => {
    const cert = testCertificate()
    const gw = await startTestGateway(`listeners:
  ws: { proxyProtocol: true }
  wss: { enabled: true, host: 127.0.0.1, port: 0, cert: ${cert.cert}, key: ${cert.key}, proxyProtocol: true }
  proxyHeaderTimeoutMs: 300`)
    try {
      const wssPort = gw.gateway.ports.wss!
      /** A TCP connection that starts with a PROXY v1 header naming `address`. */
      const proxied = (port: number, address: string): Socket => {
        const socket = netConnect({ host: '127.0.0.1', port })
        socket.write(`PROXY TCP4 ${address} 127.0.0.1 40000 ${port}\r\n`)
        return socket
      }
      const open = async (url: string, createConnection: () => Socket, clientId: string): Promise<WebSocket> => {
        const ws = new WebSocket(url, ['mqtt'], { createConnection, rejectUnauthorized: false })
        await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
        createWebSocketStream(ws).write(connect(clientId))
        return ws
      }
      const plain = await open(gw.wsUrl, () => proxied(gw.gateway.ports.ws!, '203.0.113.21'), 'ws-proxied')
      const secure = await open(`wss://127.0.0.1:${wssPort}/mqtt`, () => tlsConnect({ socket: proxied(wssPort, '203.0.113.22'), rejectUnauthorized: false }), 'wss-proxied')
      await waitFor(() => gw.logs.find('client connected').length === 2, 'connect logs')
      const byId = Object.fromEntries(gw.logs.find('client connected').map((l) => [l.clientId, l.remoteAddress]))
      assert.deepEqual(byId, { 'ws-proxied': '203.0.113.21', 'wss-proxied': '203.0.113.22' })
      plain.terminate()
      secure.terminate()
      // A plain upgrade request without the header is not a PROXY header: refused, nothing answered.
      const bare = await rawSocket(gw.gateway.ports.ws!)
      bare.socket.write('GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
      assert.equal(await closesWithin(bare.closed, 2000), true)
      assert.equal(bare.data().length, 0)
      const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
      assert.match(metrics, /mqgw_connections_refused_total\{reason="proxy_protocol"\} 1/)
    } finally {
      await gw.stop()
    }
  })
})
