import type { Client } from 'aedes'

export type ListenerName = 'mqtt' | 'mqtts' | 'ws' | 'wss' | (string & {})

/**
 * What the gateway knows about a connection beyond what Aedes keeps: where it came from
 * and who authentication said it is. Plugins read it (hook requests, `ClientInfoLookup`);
 * the core's own per-connection state (src/handlers/connections.ts) is not part of it.
 */
export interface ClientInfo {
  readonly listener: ListenerName
  readonly remoteAddress: string
  readonly remotePort: number
  readonly connectedAt: number
  protocolVersion?: number
  /** CONNECT's clean session flag. */
  clean?: boolean
  username?: string
  superuser: boolean
  claims: Readonly<Record<string, string>>
  /**
   * The filters the gateway granted this connection (SUBSCRIBE and restored session), with
   * their QoS: what the gateway knows it allowed, so that a delivery can be checked against
   * a grant instead of against a cache that may have expired.
   */
  readonly granted?: ReadonlyMap<string, number>
}

/** Read access to the connections' infos, for plugins. */
export interface ClientInfoLookup {
  get: (client: Client | null | undefined) => ClientInfo | undefined
}

/**
 * Who set a will, stored with it (Redis keeps wills as msgpack of the packet): a will
 * published for a dead node is authorized as its owner, not as whoever holds the client
 * id now, nor as nobody.
 */
export interface WillOwner {
  clientId: string
  username: string | undefined
  superuser: boolean
  claims: Readonly<Record<string, string>>
  listener: ListenerName
}

/** The will packet field that carries its WillOwner (plain data: it survives msgpack). */
export const WILL_OWNER_FIELD = 'mqgwOwner'

export function willOwnerOf (packet: object): WillOwner | undefined {
  const owner = (packet as Record<string, unknown>)[WILL_OWNER_FIELD]
  if (typeof owner !== 'object' || owner === null) return undefined
  const o = owner as Partial<WillOwner>
  if (typeof o.clientId !== 'string' || typeof o.superuser !== 'boolean' || typeof o.listener !== 'string') return undefined
  if (o.username !== undefined && o.username !== null && typeof o.username !== 'string') return undefined
  const claims: Record<string, string> = {}
  if (typeof o.claims === 'object' && o.claims !== null) {
    for (const [k, v] of Object.entries(o.claims)) if (typeof v === 'string') claims[k] = v
  }
  return { clientId: o.clientId, username: o.username ?? undefined, superuser: o.superuser, claims: Object.freeze(claims), listener: o.listener }
}
