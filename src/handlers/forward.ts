import type { AedesPublishPacket, Client } from 'aedes'
import type { HandlerContext } from './context.js'

/**
 * Every delivery to a subscriber (Aedes calls it synchronously, inside the delivery):
 * the authorizeForward chain may withhold it. Counts what goes out by QoS.
 */
export class ForwardHandler {
  readonly #ctx: HandlerContext
  /** Label children resolved once: this runs for every delivery. */
  readonly #outByQos: ReadonlyArray<{ inc: () => void }>

  constructor (ctx: HandlerContext) {
    this.#ctx = ctx
    const out = ctx.metrics.messagesOut
    this.#outByQos = [out.labels('0'), out.labels('1'), out.labels('2')]
  }

  authorizeForward (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const hooks = this.#ctx.hooks
    if (hooks.size('authorizeForward') > 0 && hooks.forward({ client, info: this.#ctx.connections.get(client), packet }).result === 'deny') {
      this.#ctx.metrics.messagesDropped.inc({ reason: 'forward_denied' })
      return null
    }
    this.#outByQos[packet.qos]?.inc()
    return packet
  }
}
