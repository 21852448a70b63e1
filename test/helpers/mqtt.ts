import { once } from 'node:events'
import { connect as netConnect, type Socket } from 'node:net'
import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt'

export interface Received { topic: string, payload: string, qos: number, retain: boolean }

/** Connects without auto-reconnect; rejects on a refused CONNACK (err.code = return code) or a close before CONNACK. */
export function connectClient (url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
    const fail = (err: Error): void => {
      client.removeListener('connect', ok)
      client.end(true)
      reject(err)
    }
    const onClose = (): void => fail(new Error('connection closed before CONNACK'))
    const ok = (): void => {
      client.removeListener('error', fail)
      client.removeListener('close', onClose)
      resolve(client)
    }
    client.once('connect', ok)
    client.once('error', fail)
    client.once('close', onClose)
  })
}

/** Collects every message a client receives. */
export function collect (client: MqttClient): Received[] {
  const received: Received[] = []
  client.on('message', (topic, payload, packet) => {
    received.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain })
  })
  return received
}

/** Resolves once `predicate` holds, polling; rejects after `timeoutMs` with `what` in the message. */
export async function waitFor (predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const held = await pollUntil(async () => predicate(), (ok) => ok, timeoutMs, 10)
  if (!held) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

/**
 * Reads `read()` every `intervalMs` until `done(value)` holds or `timeoutMs` passes, and returns
 * the last value read; the caller asserts on it (so a timeout fails with the caller's message).
 */
export async function pollUntil<T> (read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let value = await read()
  while (!done(value) && Date.now() < deadline) {
    await sleep(intervalMs)
    value = await read()
  }
  return value
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export async function endClient (client: MqttClient, force = false): Promise<void> {
  if (client.disconnected && !client.connected) return
  await client.endAsync(force)
}

/** A raw TCP connection to the broker, for bytes no well-behaved client sends. */
export async function rawSocket (port: number): Promise<{ socket: Socket, data: () => Buffer, closed: Promise<void> }> {
  const socket = netConnect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return { socket, data: () => Buffer.concat(chunks), closed }
}

/** Resolves true if the socket closes within `ms`. */
export async function closesWithin (closed: Promise<void>, ms: number): Promise<boolean> {
  return Promise.race([closed.then(() => true), sleep(ms).then(() => false)])
}

/** SUBACK return codes as sent (MQTT.js turns 0x80 into an error and reports the requested QoS). */
export function subscribeRaw (client: MqttClient, topics: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  return new Promise((resolve) => {
    const onPacket = (packet: Packet): void => {
      if (packet.cmd !== 'suback') return
      client.removeListener('packetreceive', onPacket)
      resolve(packet.granted as number[])
    }
    client.on('packetreceive', onPacket)
    client.subscribe(topics, () => {})
  })
}

/**
 * Connects with a collector attached before CONNACK: messages a resumed session receives
 * right after CONNACK (its queue) can be handled before `connectClient`'s promise resolves,
 * so a collector attached afterwards would miss them.
 */
export function connectCollecting (url: string, opts: IClientOptions = {}): Promise<{ client: MqttClient, received: Received[] }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
    const received = collect(client)
    const fail = (err: Error): void => {
      client.removeListener('connect', ok)
      client.end(true)
      reject(err)
    }
    const onClose = (): void => fail(new Error('connection closed before CONNACK'))
    const ok = (): void => {
      client.removeListener('error', fail)
      client.removeListener('close', onClose)
      resolve({ client, received })
    }
    client.once('connect', ok)
    client.once('error', fail)
    client.once('close', onClose)
  })
}
