import { once } from 'node:events'
import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { pollUntil } from '../helpers/mqtt.js'

/**
 * The conformance suite's client: a raw TCP socket, packets built and parsed by mqtt-packet
 * (or hand-built bytes where mqtt-packet refuses to build the malformed packet), nothing
 * acknowledged or retried on its own, so every byte the gateway sends is seen as sent.
 */
export class Wire {
  readonly packets: Packet[] = []
  /** Packets received, by command (cheap to poll in long runs). */
  readonly counts = new Map<string, number>()
  readonly socket: Socket
  readonly closed: Promise<void>
  #isClosed = false
  #parseError: Error | undefined
  readonly #parser: ReturnType<typeof mqttPacket.parser>

  private constructor (socket: Socket, protocolVersion: number) {
    this.socket = socket
    this.#parser = mqttPacket.parser({ protocolVersion })
    this.#parser.on('packet', (p: Packet) => {
      this.packets.push(p)
      this.counts.set(p.cmd, (this.counts.get(p.cmd) ?? 0) + 1)
    })
    this.#parser.on('error', (err: Error) => { this.#parseError = err })
    socket.on('data', (chunk: Buffer) => this.#parser.parse(chunk))
    socket.on('error', () => {})
    this.closed = new Promise((resolve) => socket.once('close', () => { this.#isClosed = true; resolve() }))
  }

  static async open (port: number, protocolVersion = 4): Promise<Wire> {
    const socket = netConnect({ host: '127.0.0.1', port })
    await once(socket, 'connect')
    return new Wire(socket, protocolVersion)
  }

  /** Opens a socket and sends CONNECT; resolves with the CONNACK (asserting nothing about it). */
  static async connect (port: number, clientId: string, opts: Partial<mqttPacket.IConnectPacket> = {}): Promise<{ wire: Wire, connack: mqttPacket.IConnackPacket }> {
    const version = opts.protocolVersion ?? 4
    const wire = await Wire.open(port, version)
    wire.send(connectPacket(clientId, opts))
    const connack = await wire.next('connack') as mqttPacket.IConnackPacket
    return { wire, connack }
  }

  /** From now on, acknowledges every QoS 1 PUBLISH as it arrives, except those `keep` selects. */
  autoAck (keep: (p: mqttPacket.IPublishPacket) => boolean = () => false): void {
    this.#parser.on('packet', (p: Packet) => {
      if (p.cmd === 'publish' && p.qos === 1 && !keep(p)) this.send({ cmd: 'puback', messageId: p.messageId })
    })
  }

  get isClosed (): boolean { return this.#isClosed }
  get parseError (): Error | undefined { return this.#parseError }

  send (packet: Record<string, unknown>): void {
    this.socket.write(mqttPacket.generate(packet as unknown as Packet))
  }

  sendRaw (bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  publishes (): mqttPacket.IPublishPacket[] {
    return this.packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish')
  }

  payloads (): string[] {
    return this.publishes().map((p) => p.payload.toString())
  }

  /** The first packet (from `from` on) matching; rejects after `timeoutMs`. */
  async waitFor (predicate: (p: Packet) => boolean, what: string, timeoutMs = 5000, from = 0): Promise<Packet> {
    const find = async (): Promise<Packet | undefined> => {
      for (let i = from; i < this.packets.length; i++) if (predicate(this.packets[i]!)) return this.packets[i]!
      return undefined
    }
    const found = await pollUntil(find, (p) => p !== undefined, timeoutMs, 5)
    if (found === undefined) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(Object.fromEntries(this.counts))}${this.#isClosed ? ' (closed)' : ''}`)
    return found
  }

  /** The next packet of a command after those already read by `next` calls. */
  #cursor = 0
  async next (cmd: string, timeoutMs = 5000): Promise<Packet> {
    const p = await this.waitFor((x) => x.cmd === cmd, cmd, timeoutMs, this.#cursor)
    this.#cursor = this.packets.indexOf(p) + 1
    return p
  }

  async subscribe (subscriptions: Array<{ topic: string, qos: number }>, messageId = nextId()): Promise<number[]> {
    this.send({ cmd: 'subscribe', messageId, subscriptions })
    const ack = await this.waitFor((p) => p.cmd === 'suback' && p.messageId === messageId, 'SUBACK') as mqttPacket.ISubackPacket
    return ack.granted as number[]
  }

  /** A PUBLISH sent and its acknowledgement flow completed (PUBACK, or PUBREC/PUBREL/PUBCOMP). */
  async publish (topic: string, payload: string | Buffer, qos: 0 | 1 | 2 = 0, retain = false): Promise<void> {
    if (qos === 0) {
      this.send({ cmd: 'publish', topic, payload, qos, retain, dup: false })
      return
    }
    const messageId = nextId()
    this.send({ cmd: 'publish', topic, payload, qos, retain, dup: false, messageId })
    if (qos === 1) {
      await this.waitFor((p) => p.cmd === 'puback' && p.messageId === messageId, 'PUBACK')
      return
    }
    await this.waitFor((p) => p.cmd === 'pubrec' && p.messageId === messageId, 'PUBREC')
    this.send({ cmd: 'pubrel', messageId })
    await this.waitFor((p) => p.cmd === 'pubcomp' && p.messageId === messageId, 'PUBCOMP')
  }

  /** Waits for a PUBLISH with this payload. */
  async received (payload: string, timeoutMs = 5000): Promise<mqttPacket.IPublishPacket> {
    return await this.waitFor((p) => p.cmd === 'publish' && p.payload.toString() === payload, `PUBLISH ${payload}`, timeoutMs) as mqttPacket.IPublishPacket
  }

  /** Resolves true if the gateway closes the connection within `ms`. */
  async closesWithin (ms = 2000): Promise<boolean> {
    return Promise.race([this.closed.then(() => true), sleep(ms).then(() => false)])
  }

  /** PINGREQ/PINGRESP round trip: proves the connection is open and processed everything sent before. */
  async ping (timeoutMs = 2000): Promise<boolean> {
    const from = this.packets.length
    this.send({ cmd: 'pingreq' })
    try {
      await this.waitFor((p) => p.cmd === 'pingresp', 'PINGRESP', timeoutMs, from)
      return true
    } catch {
      return false
    }
  }

  disconnect (): void {
    this.send({ cmd: 'disconnect' })
  }

  destroy (): void {
    this.socket.destroy()
  }
}

let idCounter = 0
export function nextId (): number {
  idCounter = (idCounter % 65000) + 1
  return idCounter
}

export function connectPacket (clientId: string, opts: Partial<mqttPacket.IConnectPacket> = {}): Record<string, unknown> {
  const version = opts.protocolVersion ?? 4
  return { cmd: 'connect', protocolId: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version, clean: true, clientId, keepalive: 60, ...opts }
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Encodes an MQTT string (2-byte length + bytes) from raw bytes, for ill-formed UTF-8. */
export function mqttString (bytes: Buffer | string): Buffer {
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes
  const len = Buffer.alloc(2)
  len.writeUInt16BE(b.length)
  return Buffer.concat([len, b])
}

/** A whole packet from a first byte and a body (remaining length encoded here). */
export function rawPacket (firstByte: number, body: Buffer): Buffer {
  const len: number[] = []
  let n = body.length
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    len.push(byte)
  } while (n > 0)
  return Buffer.concat([Buffer.from([firstByte, ...len]), body])
}

/** A CONNECT built by hand: for flag combinations mqtt-packet will not generate. */
export function rawConnect (opts: { protocolName?: string, level?: number, flags: number, keepalive?: number, payload: Buffer[] }): Buffer {
  const keepalive = Buffer.alloc(2)
  keepalive.writeUInt16BE(opts.keepalive ?? 60)
  const body = Buffer.concat([mqttString(opts.protocolName ?? 'MQTT'), Buffer.from([opts.level ?? 4, opts.flags]), keepalive, ...opts.payload])
  return rawPacket(0x10, body)
}
