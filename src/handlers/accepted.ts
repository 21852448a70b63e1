import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Aedes } from 'aedes'
import { guardParser } from '../aedes/packet-guard.js'
import { batchWritesPerTurn } from '../aedes/write-batching.js'
import type { MqttListenerName } from '../listeners/listeners.js'
import type { Peer } from '../listeners/proxy-protocol.js'
import { newConnection } from './connections.js'
import type { HandlerContext } from './context.js'

/**
 * A listener accepted a socket (and read its PROXY header or WebSocket upgrade): Aedes
 * takes the stream over, the parser gets its guards, the core its connection record,
 * and observers hear of the client before any byte of it is read.
 */
export class AcceptedHandler {
  readonly #broker: Aedes
  readonly #ctx: HandlerContext

  constructor (broker: Aedes, ctx: HandlerContext) {
    this.#broker = broker
    this.#ctx = ctx
  }

  accept (stream: Duplex, socket: Socket, listener: MqttListenerName, req?: IncomingMessage, peer?: Peer): void {
    const ctx = this.#ctx
    // TCP and TLS. A WebSocket stream (src/listeners/ws-duplex.ts) batches its own writes the
    // same way, into one frame per turn; its TCP socket is written once per frame and is left alone.
    // Reads: the Aedes patch reads every stream in flowing mode and bounds a socket's large
    // reads per turn (node_modules/aedes/lib/read-turns.js), so no publisher monopolises the loop.
    if (stream === socket) batchWritesPerTurn(stream)
    const client = this.#broker.handle(stream, req)
    const limits = ctx.config.limits
    guardParser(client, limits.maxPacketSize, limits.maxConnectPacketSize)
    const conn = newConnection({
      listener,
      remoteAddress: peer?.address ?? socket.remoteAddress ?? 'unknown',
      remotePort: peer?.port ?? socket.remotePort ?? 0
    })
    ctx.connections.attach(client, conn)
    if (ctx.hooks.size('clientCreated') > 0) ctx.hooks.notify('clientCreated', { client, info: conn })
  }
}
