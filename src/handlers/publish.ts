import type { Client, PublishPacket } from 'aedes'
import type { AuthorizePublishDone } from '../aedes/internals.js'
import { WILL_OWNER_FIELD, willOwnerOf, type ClientInfo, type WillOwner } from '../client-info.js'
import { GatewayError } from '../errors.js'
import { noop } from '../noop.js'
import type { MessageVerdict, PublishVerdict } from '../hooks/types.js'
import { exceedsTopicLimits } from '../topic.js'
import type { HandlerContext } from './context.js'
import { inPublishOrder } from './publish-order.js'
import { RetainedAdmissions } from './retained-admission.js'

/**
 * PUBLISH (and wills): the core's checks, the authorizePublish chain, the retained-store
 * limits, then the messagePublish chain where a plugin may take the message over.
 *
 * Answers Aedes through the patched callback (src/aedes/internals.ts): `(null)` publish
 * (Aedes then publishes, and only after that sends the PUBACK), `(null, false)`
 * acknowledge without publishing, `(error)` close the connection without acknowledging.
 */
export class PublishHandler {
  readonly #ctx: HandlerContext
  readonly #retained: RetainedAdmissions

  constructor (ctx: HandlerContext) {
    this.#ctx = ctx
    this.#retained = new RetainedAdmissions(ctx)
  }

  authorizePublish (client: Client | null, packet: PublishPacket, cb: AuthorizePublishDone): void {
    const { hooks, metrics, config } = this.#ctx
    const topic = packet.topic
    // Aedes' default authorizePublish blocks $SYS/; replacing the hook must keep that.
    if (topic.startsWith('$SYS/')) {
      metrics.messagesDropped.inc({ reason: 'sys_topic' })
      cb(new GatewayError('sys_topic', '$SYS/ topics are reserved for the broker'))
      return
    }
    const limits = config.limits
    if (exceedsTopicLimits(topic, limits)) {
      metrics.messagesDropped.inc({ reason: 'topic_too_long' })
      cb(new GatewayError('topic_too_long', `topic exceeds maxTopicLength ${limits.maxTopicLength} bytes or maxTopicLevels ${limits.maxTopicLevels}`))
      return
    }
    const conn = this.#ctx.connections.get(client)
    let info: ClientInfo | undefined = conn
    let publisher = client
    let clientId = client?.id
    const isWill = (packet as unknown as Record<string, unknown>)[WILL_OWNER_FIELD] !== undefined
    if (isWill) {
      // A will: authorized as the identity that set it. Aedes hands a dead node's will over
      // with no client, or with whichever connection holds that client id on this node now.
      const owner = willOwnerOf(packet)
      if (owner && !(client && conn && client.id === owner.clientId && conn.username === owner.username)) {
        publisher = null
        info = infoOfWillOwner(owner)
        clientId = owner.clientId
      }
    }
    // The common case, no publish hooks and no retained store to account: nothing to order, no closures.
    if (hooks.size('authorizePublish') === 0 && hooks.size('messagePublish') === 0 && !packet.retain && conn?.publishing !== true) {
      cb(null)
      return
    }
    const authorize = (release: () => void): void => {
      const accepted = (): void => {
        // Started before the next PUBLISH of this client is authorized: order kept.
        const route = (): void => {
          this.#routeMessage(publisher, info, packet, cb)
          release()
        }
        if (packet.retain) this.#retained.admit(packet, clientId, route)
        else route()
      }
      if (hooks.size('authorizePublish') === 0) {
        accepted()
        return
      }
      hooks.decide<'authorizePublish', PublishVerdict>('authorizePublish', { client: publisher, info, packet, clientId },
        (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}`, disconnect: true }),
        (verdict) => {
          if (verdict.result !== 'deny') {
            accepted()
            return
          }
          release()
          metrics.messagesDropped.inc({ reason: 'publish_denied' })
          // A denied will is dropped, never an error: for a dead node's will Aedes would emit
          // the error on the broker and keep the will to retry it forever.
          if (!isWill && client && 'disconnect' in verdict && verdict.disconnect) {
            cb(new GatewayError('publish_denied', `publish to "${topic}" denied: ${verdict.reason}`))
          } else {
            cb(null, false)
          }
        })
    }
    if (conn && client) inPublishOrder(conn, authorize)
    else authorize(noop)
  }

  /** After authorization: a plugin may take the message over (messagePublish), else Aedes publishes it. */
  #routeMessage (publisher: Client | null, info: ClientInfo | undefined, packet: PublishPacket, cb: AuthorizePublishDone): void {
    const { hooks, metrics } = this.#ctx
    if (hooks.size('messagePublish') === 0) {
      cb(null)
      return
    }
    hooks.decide<'messagePublish', MessageVerdict>('messagePublish', { client: publisher, info, packet, clientId: publisher?.id ?? willOwnerOf(packet)?.clientId },
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}`, disconnect: true }),
      (verdict) => {
        if (verdict.result === 'pass') {
          cb(null)
        } else if (verdict.result === 'handled') {
          cb(null, false)
        } else if ('disconnect' in verdict && verdict.disconnect) {
          metrics.messagesDropped.inc({ reason: 'not_accepted' })
          cb(new GatewayError('not_accepted', `publish to "${packet.topic}" not accepted: ${verdict.reason}`))
        } else {
          metrics.messagesDropped.inc({ reason: 'not_accepted' })
          cb(null, false)
        }
      })
  }
}

/** A dead node's will is authorized as the identity stored with it. */
function infoOfWillOwner (owner: WillOwner): ClientInfo {
  return {
    listener: owner.listener,
    remoteAddress: 'unknown',
    remotePort: 0,
    connectedAt: 0,
    superuser: owner.superuser,
    claims: owner.claims,
    ...(owner.username !== undefined ? { username: owner.username } : {})
  }
}
