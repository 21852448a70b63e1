import { once } from 'node:events'
import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { pollUntil } from './mqtt.js'

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
    await pollUntil(async () => { ackNew(); return this.publishes().length }, (n) => n >= count, timeoutMs, 5)
    ackNew()
  }

  async waitFor (predicate: (p: Packet) => boolean, what: string, timeoutMs = 5000): Promise<Packet> {
    const found = await pollUntil(async () => this.packets.find(predicate), (p) => p !== undefined, timeoutMs, 5)
    if (found === undefined) throw new Error(`timed out waiting for ${what}`)
    return found
  }

  /**
   * A PINGREQ/PINGRESP round trip. The broker writes its PINGRESP to this socket after
   * every packet it had already decided to send here, so once it arrives, such a packet
   * has arrived too: a marker for "nothing more was sent" where no message can be one
   * (a full in-flight window holds every later message back).
   */
  async ping (timeoutMs = 5000): Promise<void> {
    const before = this.packets.filter((p) => p.cmd === 'pingresp').length
    this.send({ cmd: 'pingreq' })
    const answered = await pollUntil(async () => this.packets.filter((p) => p.cmd === 'pingresp').length, (n) => n > before, timeoutMs, 5)
    if (answered <= before) throw new Error('timed out waiting for PINGRESP')
  }

  destroy (): void {
    this.socket.destroy()
  }
}
