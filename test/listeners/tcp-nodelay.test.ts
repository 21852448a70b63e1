import assert from 'node:assert/strict'
import { Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { MqttClient } from 'mqtt'
import { startTestGateway, testCertificate } from '../helpers/gateway.js'
import { connectClient, endClient } from '../helpers/mqtt.js'

/**
 * listeners.<mqtt|mqtts>.tcpNoDelay (default true): the gateway turns Nagle's algorithm off on
 * the sockets it accepts. It batches its own writes per event-loop turn, so Nagle only held a
 * turn's write back until the previous one was acknowledged, and a reader that sends nothing
 * back (a QoS 0 subscriber) acknowledges late (Linux's delayed ACK, 40 ms): bench/compare
 * fan-in at 90 % had p99 20-99 ms with Nagle on, 15-28 ms with it off (README, Operations).
 * What is asserted is the gateway's request to the kernel (setNoDelay on its own socket, the
 * one whose peer is the test's client); Linux does not report TCP_NODELAY anywhere else.
 */
describe('listeners: TCP_NODELAY on accepted sockets', () => {
  const calls: Array<{ localPort: number | undefined, remotePort: number | undefined, on: boolean }> = []
  const original = Socket.prototype.setNoDelay
  before(() => {
    Socket.prototype.setNoDelay = function (this: Socket, noDelay?: boolean): Socket {
      calls.push({ localPort: this.localPort, remotePort: this.remotePort, on: noDelay !== false })
      return original.call(this, noDelay)
    }
  })
  after(() => { Socket.prototype.setNoDelay = original })

  /** The gateway's setNoDelay calls on its side of `client`'s connection to `port`. */
  const serverSideCalls = (client: MqttClient, port: number): boolean[] => {
    const clientPort = (client.stream as Socket).localPort
    assert.ok(clientPort !== undefined, 'the client has a local port')
    return calls.filter((c) => c.localPort === port && c.remotePort === clientPort).map((c) => c.on)
  }

  it('is on by default for mqtt and mqtts', async () => {
    const cert = testCertificate()
    const gw = await startTestGateway(`
listeners:
  mqtts: { enabled: true, host: 127.0.0.1, port: 0, cert: ${cert.cert}, key: ${cert.key} }
`)
    try {
      const plain = await connectClient(gw.mqttUrl, { clientId: 'nodelay-plain' })
      const tls = await connectClient(`mqtts://127.0.0.1:${gw.gateway.ports.mqtts!}`, { clientId: 'nodelay-tls', rejectUnauthorized: false })
      try {
        assert.deepEqual(serverSideCalls(plain, gw.gateway.ports.mqtt!), [true], 'the mqtt listener turned Nagle off on its socket')
        // The TLS client's stream is its TLS socket; its local port is the TCP connection's.
        assert.deepEqual(serverSideCalls(tls, gw.gateway.ports.mqtts!), [true], 'the mqtts listener turned Nagle off on its TCP socket')
      } finally {
        await endClient(plain)
        await endClient(tls)
      }
    } finally {
      await gw.stop()
    }
  })

  it('tcpNoDelay: false leaves Nagle on (the socket was accepted and served: CONNACK came back)', async () => {
    const gw = await startTestGateway(`
listeners:
  mqtt: { tcpNoDelay: false }
`)
    try {
      const client = await connectClient(gw.mqttUrl, { clientId: 'nagle' })
      try {
        // setNoDelay would have been called at accept, before the CONNECT was read.
        assert.deepEqual(serverSideCalls(client, gw.gateway.ports.mqtt!), [], 'no setNoDelay on the gateway side')
      } finally {
        await endClient(client)
      }
    } finally {
      await gw.stop()
    }
  })
})
