import { PUBLISH_NOT_STORED } from './aedes/internals.js'

/**
 * Why a connection closed or a packet was refused, as the `reason` label of the
 * disconnect and refusal metrics.
 */
export type CloseReason =
  | 'publish_denied' | 'not_accepted' | 'sys_topic' | 'topic_too_long' | 'invalid_filter'
  | 'store_failed' | 'packet_too_large' | 'malformed_packet' | 'socket_error'
  | 'connect_timeout' | 'keepalive_timeout' | 'protocol_error'

/** An error of the gateway's own: it carries its reason, nobody reads its text to classify it. */
export class GatewayError extends Error {
  constructor (readonly reason: CloseReason, message: string) {
    super(message)
    this.name = 'GatewayError'
  }
}

/** The reason of an error that closes a connection: ours by reason, Aedes' and the socket's by code. */
export function reasonOf (err: Error): CloseReason {
  if (err instanceof GatewayError) return err.reason
  const code = (err as { code?: unknown }).code
  if (code === 'PACKET_TOO_LARGE') return 'packet_too_large'
  if (code === 'MALFORMED_STRING') return 'malformed_packet'
  if (code === PUBLISH_NOT_STORED) return 'store_failed'
  if (typeof code === 'string' && code.startsWith('E')) return 'socket_error'
  // Aedes' own errors carry no code; this one is the only one counted apart.
  if (err.message.includes('connect did not arrive')) return 'connect_timeout'
  return 'protocol_error'
}
