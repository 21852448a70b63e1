import { once } from 'node:events'
import { connect as netConnect } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'

export interface RawConnectOptions {
  port: number
  clientId: string
  username?: string
  /** Raw bytes, so tests can send passwords that are not valid UTF-8. */
  password?: Buffer
  /** Local (source) address: 127.0.0.x reaches a 127.0.0.1 listener on Linux, so a test has many peers. */
  localAddress?: string
  protocolVersion?: 3 | 4
  timeoutMs?: number
}

/**
 * One CONNECT over a raw socket; resolves with the CONNACK return code, or -1 if the
 * socket closed (or `timeoutMs` passed) without one. The socket is closed afterwards.
 */
export async function rawConnect (opts: RawConnectOptions): Promise<number> {
  const socket = netConnect({ host: '127.0.0.1', port: opts.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) })
  socket.on('error', () => {})
  try {
    await once(socket, 'connect')
    const parser = mqttPacket.parser()
    const connack = new Promise<number>((resolve) => {
      parser.on('packet', (p: Packet) => { if (p.cmd === 'connack') resolve(p.returnCode ?? -1) })
      socket.on('data', (chunk: Buffer) => parser.parse(chunk))
      socket.once('close', () => resolve(-1))
      setTimeout(() => resolve(-1), opts.timeoutMs ?? 10_000).unref()
    })
    const v3 = opts.protocolVersion === 3
    socket.write(mqttPacket.generate({
      cmd: 'connect',
      protocolId: v3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: v3 ? 3 : 4,
      clean: true,
      clientId: opts.clientId,
      keepalive: 30,
      ...(opts.username !== undefined ? { username: opts.username } : {}),
      ...(opts.password !== undefined ? { password: opts.password } : {})
    }))
    return await connack
  } catch {
    return -1
  } finally {
    socket.destroy()
  }
}
