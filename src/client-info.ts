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
