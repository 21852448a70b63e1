import type { Aedes } from 'aedes'
import { onBrokerError } from '../aedes/internals.js'
import { reasonOf } from '../errors.js'
import type { ConnectHandler } from './connect.js'
import type { HandlerContext } from './context.js'
import type { SubscribeHandler } from './subscribe.js'

/**
 * Aedes' events: metrics, one log line per connect and disconnect, the reason a
 * connection closed, and the observer events plugins register for.
 */
export function observeBroker (broker: Aedes, ctx: HandlerContext, handlers: { connect: ConnectHandler, subscribe: SubscribeHandler }): void {
  const { connections, hooks, metrics, log } = ctx
  const inByQos = metrics.messagesInByQos
  broker.on('publish', (packet, client) => {
    if (client && packet.qos <= 2) inByQos[packet.qos]!++
  })
  // Aedes emits errors of its background work here (the sweep that publishes dead nodes'
  // wills, reading them from Redis): without a listener one would end the process.
  onBrokerError(broker, (err) => {
    log.error({ err: err.message }, 'broker background task failed; it runs again at its next interval')
  })
  broker.on('unsubscribe', (filters, client) => handlers.subscribe.unsubscribed(client, filters))
  broker.on('client', (client) => {
    const conn = connections.get(client)
    metrics.connectionsTotal.inc({ listener: conn?.listener ?? 'unknown' })
    // The line's fields are built only when it is written (a million CONNECTs at level warn build none).
    if (log.isLevelEnabled('info')) log.info({ clientId: client.id, username: conn?.username, remoteAddress: conn?.remoteAddress, listener: conn?.listener, protocolVersion: client.version, clean: client.clean }, 'client connected')
    if (!conn) return
    handlers.connect.connected(client, conn)
    hooks.notify('clientConnected', { client, info: conn })
  })
  broker.on('clientDisconnect', (client) => {
    const conn = connections.get(client)
    const reason = conn?.closeReason ?? 'closed'
    metrics.disconnects.inc({ reason })
    if (log.isLevelEnabled('info')) log.info({ clientId: client.id, remoteAddress: conn?.remoteAddress, listener: conn?.listener, reason }, 'client disconnected')
    if (conn) hooks.notify('clientDisconnected', { client, info: conn })
  })
  broker.on('keepaliveTimeout', (client) => {
    const conn = connections.get(client)
    if (conn) conn.closeReason = 'keepalive_timeout'
  })
  broker.on('clientError', (client, err) => {
    const conn = connections.get(client)
    if (!conn || conn.closeReason !== undefined) return
    const reason = reasonOf(err)
    conn.closeReason = reason
    if (reason === 'store_failed') metrics.messagesDropped.inc({ reason })
    log.warn({ clientId: client.id, remoteAddress: conn.remoteAddress, listener: conn.listener, reason, err: err.message }, 'client error; closing its connection')
  })
  broker.on('connectionError', (client, err) => {
    const conn = connections.get(client)
    if (conn && conn.closeReason !== undefined) return
    const reason = reasonOf(err)
    if (conn) conn.closeReason = reason
    metrics.connectionsRefused.inc({ reason })
    log.warn({ clientId: (client as { id: string | null }).id ?? undefined, remoteAddress: conn?.remoteAddress, listener: conn?.listener, reason, err: err.message }, 'connection error before CONNACK; closing it')
  })
}
