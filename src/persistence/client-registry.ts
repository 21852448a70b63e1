import type { Aedes, Client } from 'aedes'
import type { Cluster, Redis } from 'ioredis'
import type { Logger } from '../log.js'
import { closeTakenOverClient, replaceClientAnnouncement, sessionStore } from '../aedes/internals.js'
import { CLAIM_CLIENT, FORGET_EXPIRED_CLIENT, RELEASE_CLIENT } from './redis-scripts.js'

/** clientId -> id of the node the client last connected to (same hash tag as the session keys: FORGET_EXPIRED_CLIENT reads the online hash too). */
export const CLIENT_NODES_KEY = 'mqgw:{sessions}:nodes'
/** Registry entries examined per sweep when looking for entries of nodes that are gone. */
const SWEEP_SCAN_COUNT = 1000

/**
 * The topic on which node `nodeId` is told that one of its client ids connected on another
 * node (payload: the client id). Not a wildcard: mqemitter-redis SUBSCRIBEs it as one Redis
 * channel, so only that node receives it.
 */
export function takeoverTopic (nodeId: string): string {
  return `$SYS/${nodeId}/takeover/clients`
}

type RegistryConn = (Redis | Cluster) & {
  mqgwClaimClient: (registry: string, clientId: string, nodeId: string) => Promise<string | null>
  mqgwReleaseClient: (registry: string, clientId: string, nodeId: string) => Promise<number>
  mqgwForgetExpiredClient: (registry: string, online: string, clientId: string) => Promise<number>
}

/**
 * Which node holds each client id, so that a CONNECT tells only that node to close its copy
 * ([MQTT-3.1.4-2] across nodes). Aedes instead broadcasts every CONNECT on
 * `$SYS/<node>/new/clients` to every node, which makes the cluster's work per connect grow
 * with the number of nodes: bench/connections fell from ~1,400 connects/s with 1-6 processes
 * to 95 with 28. EMQX keeps the same kind of registry (emqx_cm_registry).
 *
 * Entries: written at every CONNECT (one script call, which also returns the previous node);
 * removed when a clean session's connection ends (only if the entry still names this node:
 * a takeover elsewhere stays on record); kept for a persistent session, whose node must hear
 * of its return to count it online (the sys plugin), until the session expires; removed for
 * nodes that are gone (sweep). The release of a connection and the claim of its successor on
 * the same node go out on one Redis connection in that order (Aedes closes the old client
 * before it registers the new one), so a same-node takeover never loses its entry.
 */
export class ClientRegistry {
  readonly #conn: RegistryConn
  readonly #nodeId: string
  readonly #log: Logger
  #cursor = '0'

  constructor (conn: Redis | Cluster, nodeId: string, log: Logger) {
    this.#conn = conn as RegistryConn
    this.#nodeId = nodeId
    this.#log = log
    this.#conn.defineCommand('mqgwClaimClient', { numberOfKeys: 1, lua: CLAIM_CLIENT })
    this.#conn.defineCommand('mqgwReleaseClient', { numberOfKeys: 1, lua: RELEASE_CLIENT })
    this.#conn.defineCommand('mqgwForgetExpiredClient', { numberOfKeys: 2, lua: FORGET_EXPIRED_CLIENT })
  }

  /** Replaces Aedes' broadcast with the registry: claim at CONNECT, tell the previous node, release at disconnect. */
  install (broker: Aedes): void {
    replaceClientAnnouncement(broker, (client: Client) => {
      this.#conn.mqgwClaimClient(CLIENT_NODES_KEY, client.id, this.#nodeId).then((previous) => {
        if (previous !== null && previous !== this.#nodeId) {
          broker.publish({ cmd: 'publish', topic: takeoverTopic(previous), payload: Buffer.from(client.id, 'utf8'), qos: 0, retain: false, dup: false }, () => {})
          // The will the client left on that node goes as well, as it would on one node (Aedes
          // deletes a client's stored will at CONNECT): if that node died with the connection,
          // its will would otherwise be published by the will sweep after the client is back,
          // e.g. a retained "offline" status over the "online" it just sent. A live node
          // publishes a will from memory when it closes the taken-over client, not from here.
          sessionStore(broker).delWill({ id: client.id, brokerId: previous }).catch((err: Error) => {
            this.#log.warn({ clientId: client.id, node: previous, err: err.message }, 'could not remove the will the client left on its previous node')
          })
        }
      }, (err: Error) => {
        this.#log.warn({ clientId: client.id, err: err.message }, 'could not record the client\'s node; another node holding the same client id is not told to close it')
      })
    })
    broker.subscribe(takeoverTopic(this.#nodeId), (packet, done) => {
      closeTakenOverClient(broker, packet.payload.toString(), done)
    }, () => {})
    broker.on('clientDisconnect', (client) => {
      if (!client.clean) return
      this.#conn.mqgwReleaseClient(CLIENT_NODES_KEY, client.id, this.#nodeId).catch((err: Error) => {
        this.#log.warn({ clientId: client.id, err: err.message }, 'could not remove the client\'s node from the registry')
      })
    })
  }

  /** An expired persistent session: its entry goes unless the client is online again. */
  async forgetExpired (clientId: string, onlineKey: string): Promise<void> {
    await this.#conn.mqgwForgetExpiredClient(CLIENT_NODES_KEY, onlineKey, clientId)
  }

  /**
   * Removes entries naming nodes that are gone (no heartbeat): no node holds those
   * connections any more. A bounded slice of the registry per call; the cursor carries over.
   */
  async sweepGoneNodes (isAlive: (nodeId: string) => Promise<boolean>): Promise<number> {
    const [next, entries] = await this.#conn.hscan(CLIENT_NODES_KEY, this.#cursor, 'COUNT', SWEEP_SCAN_COUNT)
    this.#cursor = next
    let removed = 0
    for (let i = 0; i + 1 < entries.length; i += 2) {
      const node = entries[i + 1]!
      if (!await isAlive(node)) removed += await this.#conn.mqgwReleaseClient(CLIENT_NODES_KEY, entries[i]!, node)
    }
    return removed
  }
}
