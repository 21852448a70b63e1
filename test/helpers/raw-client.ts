import { once } from 'node:events'
import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'

/**
 * A hand-driven MQTT client over a raw socket: it never acknowledges anything on its
 * own, so tests decide exactly when a PUBACK goes out (or never), and can stop reading.
 */
export class RawClient {
  readonly packets: Packet[] = []
  readonly socket: Socket
  readonly #parser = mqttPacket.parser()
  readonly closed: Promise<void>

  private constructor (socket: Socket) {
    this.socket = socket
    this.#parser.on('packet', (p: Packet) => this.packets.push(p))
    socket.on('data', (chunk: Buffer) => this.#parser.parse(chunk))
    socket.on('error', () => {})
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()))
  }

  static async connect (port: number, clientId: string, opts: { clean?: boolean } = {}): Promise<RawClient> {
    const socket = netConnect({ host: '127.0.0.1', port })
    await once(socket, 'connect')
    const client = new RawClient(socket)
    client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: opts.clean ?? true, clientId, keepalive: 60 })
    await client.waitFor((p) => p.cmd === 'connack', 'CONNACK')
    return client
  }

  send (packet: Record<string, unknown>): void {
    this.socket.write(mqttPacket.generate(packet as unknown as Packet))
  }

  publishes (): Array<mqttPacket.IPublishPacket> {
    return this.packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish')
  }

  async subscribe (topic: string, qos: 0 | 1 | 2): Promise<void> {
    const messageId = 1 + Math.floor(Math.random() * 60000)
    this.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] })
    await this.waitFor((p) => p.cmd === 'suback' && p.messageId === messageId, 'SUBACK')
  }

  ack (messageId: number): void {
    this.send({ cmd: 'puback', messageId })
  }

  readonly #acked = new Set<number>()

  /**
   * Acknowledges every PUBLISH as it arrives until `count` have arrived (bounded by
   * `timeoutMs`), then acknowledges any left, so nothing stays in flight.
   */
  async ackUntil (count: number, timeoutMs: number): Promise<void> {
    const ackNew = (): void => {
      for (const p of this.publishes()) {
        if (p.messageId !== undefined && !this.#acked.has(p.messageId)) {
          this.#acked.add(p.messageId)
          this.ack(p.messageId)
        }
      }
    }
    const deadline = Date.now() + timeoutMs
    while (this.publishes().length < count && Date.now() < deadline) {
      ackNew()
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    ackNew()
  }

  async waitFor (predicate: (p: Packet) => boolean, what: string, timeoutMs = 5000): Promise<Packet> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.packets.find(predicate)
      if (found) return found
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }

  destroy (): void {
    this.socket.destroy()
  }
}
