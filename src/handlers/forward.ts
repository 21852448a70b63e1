import type { AedesPublishPacket, Client } from 'aedes'
import type { HandlerContext } from './context.js'

/**
 * Every delivery to a subscriber (Aedes calls it synchronously, inside the delivery):
 * the authorizeForward chain may withhold it. Counts what goes out by QoS.
 */
export class ForwardHandler {
  readonly #ctx: HandlerContext
  /** Plain counts by QoS (GatewayMetrics.messagesOutByQos): this runs for every delivery. */
  readonly #outByQos: number[]

  constructor (ctx: HandlerContext) {
    this.#ctx = ctx
    this.#outByQos = ctx.metrics.messagesOutByQos
  }

  authorizeForward (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const hooks = this.#ctx.hooks
    if (hooks.size('authorizeForward') > 0 && hooks.forward({ client, info: this.#ctx.connections.get(client), packet }).result === 'deny') {
      this.#ctx.metrics.messagesDropped.inc({ reason: 'forward_denied' })
      return null
    }
    if (packet.qos <= 2) this.#outByQos[packet.qos]!++
    return packet
  }
}
