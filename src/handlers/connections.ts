import type { Client } from 'aedes'
import { clientRecordOf, setClientRecord } from '../aedes/internals.js'
import type { ClientInfo, ClientInfoLookup } from '../client-info.js'

/** A refusal decided while the CONNECT was checked, sent as CONNACK once Aedes asks. */
export interface PendingRefusal { returnCode: 2 | 3 | 4 | 5, reason: string }

/**
 * The core's state of one connection. It is the connection's ClientInfo object itself
 * (one object per connection: idle memory matters at a million connections); plugins
 * see it typed as ClientInfo only.
 */
export interface Connection extends ClientInfo {
  /** Why the connection is closing, once known (for the disconnect log line and metric). */
  closeReason: string | undefined
  pendingRefusal: PendingRefusal | undefined
  /** PUBLISH authorizations waiting for this client's previous one (per-client order through async hooks). */
  publishQueue: Array<(release: () => void) => void> | undefined
  publishing: boolean
  granted: Map<string, number> | undefined
  /** A persistent session of this client id that this identity owns and a clean CONNECT discards. */
  discardsOwnSession: boolean
}

/** Claims of a client that authentication gave none (shared, frozen). */
export const NO_CLAIMS: Readonly<Record<string, string>> = Object.freeze({})

/** Every field present from the start: one hidden class for all connections, no property array added later. */
export function newConnection (where: Pick<ClientInfo, 'listener' | 'remoteAddress' | 'remotePort'>): Connection {
  return {
    listener: where.listener,
    remoteAddress: where.remoteAddress,
    remotePort: where.remotePort,
    connectedAt: Date.now(),
    protocolVersion: undefined,
    clean: undefined,
    username: undefined,
    superuser: false,
    claims: NO_CLAIMS,
    granted: undefined,
    closeReason: undefined,
    pendingRefusal: undefined,
    publishQueue: undefined,
    publishing: false,
    discardsOwnSession: false
  }
}

/**
 * Connections by Aedes client: the record lives in a field the Aedes patch declares on every
 * client (src/aedes/internals.ts clientRecordOf), so it disappears with the client. It was a
 * WeakMap: a set and several hashed lookups per CONNECT, and an ephemeron entry per connection.
 */
export class ConnectionRegistry implements ClientInfoLookup {
  attach (client: Client, connection: Connection): void {
    setClientRecord(client, connection)
  }

  get (client: Client | null | undefined): Connection | undefined {
    return client ? clientRecordOf<Connection>(client) : undefined
  }
}
