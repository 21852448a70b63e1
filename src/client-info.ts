import type { Client } from 'aedes'

export type ListenerName = 'mqtt' | 'mqtts' | 'ws' | 'wss' | (string & {})

/**
 * What the gateway knows about a connection beyond what Aedes keeps: where it came
 * from and who authentication said it is. Kept in a WeakMap so that it disappears
 * with the Aedes client and no plugin needs to add properties to Aedes' objects.
 */
export interface ClientInfo {
  listener: ListenerName
  remoteAddress: string
  remotePort: number
  connectedAt: number
  protocolVersion?: number
  /** Why the connection is closing, once known (for the disconnect log line and metric). */
  closeReason?: string
  /** CONNECT's clean session flag. */
  clean?: boolean
  username?: string
  superuser: boolean
  claims: Readonly<Record<string, string>>
  /** PUBLISH authorizations waiting for this client's previous one (per-client order through async hooks). */
  publishQueue?: Array<(release: () => void) => void>
  publishing?: boolean
  /** A refusal decided while the CONNECT was checked, sent as CONNACK once Aedes allows it. */
  pendingRefusal?: { returnCode: 2 | 3 | 4 | 5, reason: string }
  /**
   * The filters the gateway granted this connection (SUBSCRIBE and restored session), with
   * their QoS: what the gateway knows it allowed, so that a delivery can be checked against
   * a grant instead of against a cache that may have expired.
   */
  granted?: Map<string, number>
  /** A persistent session of this client id that this identity owns and a clean CONNECT discards. */
  discardsOwnSession?: boolean
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

export class ClientInfoStore {
  readonly #infos = new WeakMap<Client, ClientInfo>()

  attach (client: Client, info: ClientInfo): void {
    this.#infos.set(client, info)
  }

  get (client: Client | null | undefined): ClientInfo | undefined {
    return client ? this.#infos.get(client) : undefined
  }
}
