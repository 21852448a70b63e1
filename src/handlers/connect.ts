import type { AuthenticateError, Client } from 'aedes'
import type { IConnectPacket } from 'mqtt-packet'
import { willOf } from '../aedes/internals.js'
import { WILL_OWNER_FIELD, type WillOwner } from '../client-info.js'
import type { AuthVerdict, ConnackRefusal, PublishVerdict, Verdict } from '../hooks/types.js'
import { ownerKey } from '../persistence/ledgers.js'
import { exceedsTopicLimits, isSysTopic } from '../topic.js'
import type { Connection } from './connections.js'
import type { HandlerContext } from './context.js'

type AuthenticateDone = (error: AuthenticateError | null, success: boolean | null) => void

const REFUSAL_REASON: Record<ConnackRefusal, string> = { 2: 'identifier_rejected', 3: 'server_unavailable', 4: 'bad_credentials', 5: 'not_authorized' }

function authError (returnCode: ConnackRefusal, message: string): AuthenticateError {
  // AuthErrorCode is a const enum in Aedes' types; the numeric codes are the same (MQTT 3.1.1 §3.2.2.3).
  return Object.assign(new Error(message), { returnCode }) as unknown as AuthenticateError
}

/**
 * CONNECT: the checks Aedes does not make (keepalive and client id limits), the
 * preConnect and authenticate chains, then what this identity may do with its CONNECT
 * (authorizeConnect, its will, the persistent session it asks for).
 */
export class ConnectHandler {
  readonly #ctx: HandlerContext

  constructor (ctx: HandlerContext) {
    this.#ctx = ctx
  }

  preConnect (client: Client, packet: IConnectPacket, cb: (error: Error | null, success: boolean) => void): void {
    const { connections, config, hooks, metrics, log } = this.#ctx
    const conn = connections.get(client)
    if (!conn) {
      cb(new Error('connection not registered by a listener'), false)
      return
    }
    conn.protocolVersion = packet.protocolVersion
    conn.clean = packet.clean !== false
    if (packet.username !== undefined) conn.username = packet.username
    const limits = config.limits
    // MQTT 3.1.1 cannot tell a client which keepalive to use: like Mosquitto's
    // max_keepalive, refuse with "identifier rejected" (Aedes' own code 6 is not valid 3.1.1).
    if (limits.keepaliveMaxS > 0 && (packet.keepalive === 0 || (packet.keepalive ?? 0) > limits.keepaliveMaxS)) {
      conn.pendingRefusal = { returnCode: 2, reason: `keepalive ${packet.keepalive ?? 0}s outside 1..${limits.keepaliveMaxS}s` }
    } else if (Buffer.byteLength(packet.clientId ?? '') > limits.maxClientIdLength) {
      conn.pendingRefusal = { returnCode: 2, reason: `client id longer than ${limits.maxClientIdLength} bytes` }
    }
    if (hooks.size('preConnect') === 0) {
      cb(null, true)
      return
    }
    hooks.decide<'preConnect', Verdict>('preConnect', { client, packet, info: conn }, (f) => ({ result: 'deny', reason: f.error.message }), (verdict) => {
      if (verdict.result !== 'deny') {
        cb(null, true)
        return
      }
      // Aedes sends no CONNACK for a preConnect error and closes the socket; an Error is
      // required (calling back (null, false) would leave the socket open).
      metrics.connectionsRefused.inc({ reason: 'preconnect_denied' })
      conn.closeReason = 'preconnect_denied'
      log.info({ clientId: packet.clientId, remoteAddress: conn.remoteAddress, reason: verdict.reason }, 'connection refused before CONNACK')
      cb(new Error(verdict.reason), false)
    })
  }

  authenticate (client: Client, username: string | undefined, password: Buffer | undefined, cb: AuthenticateDone): void {
    const conn = this.#ctx.connections.get(client)
    if (!conn) {
      cb(authError(3, 'connection not registered'), null)
      return
    }
    if (conn.pendingRefusal) {
      cb(this.#refuse(conn.pendingRefusal.returnCode, conn.pendingRefusal.reason, client, conn), null)
      return
    }
    // A persistent session cannot be served without its store: "server unavailable".
    if (conn.clean === false && !this.#ctx.backend.available()) {
      cb(this.#refuse(3, 'session store unavailable', client, conn), null)
      return
    }
    // No authenticator (the default config): every client passes; no request built for nobody.
    if (this.#ctx.hooks.size('authenticate') === 0) {
      this.#authorizeIdentity(client, conn, cb)
      return
    }
    this.#ctx.hooks.decide<'authenticate', AuthVerdict>('authenticate', { client, clientId: client.id, username, password, info: conn },
      // Fail closed: an authenticator that errors or times out refuses the client.
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}`, returnCode: 5 }),
      (verdict) => {
        if (verdict.result === 'deny') {
          cb(this.#refuse(('returnCode' in verdict && verdict.returnCode) || 5, verdict.reason, client, conn), null)
          return
        }
        if (verdict.result === 'allow') {
          conn.superuser = verdict.superuser ?? false
          if (verdict.claims) conn.claims = Object.freeze({ ...verdict.claims })
        }
        this.#authorizeIdentity(client, conn, cb)
      })
  }

  /** Once CONNACK 0 went out: a persistent session now belongs to this identity. */
  connected (client: Client, conn: Connection): void {
    // A clean session that owned nothing (most CONNECTs): nothing to record.
    if (conn.clean !== false && !conn.discardsOwnSession) return
    const owners = this.#ctx.backend.sessionOwners
    const failed = (err: Error): void => { this.#ctx.log.warn({ clientId: client.id, err: err.message }, 'could not record the session owner') }
    try {
      if (conn.clean === false) void Promise.resolve(owners.set(client.id, ownerKey(conn.username))).catch(failed)
      else if (conn.discardsOwnSession) void Promise.resolve(owners.delete(client.id)).catch(failed)
    } catch (err) {
      failed(err as Error)
    }
  }

  #refuse (returnCode: ConnackRefusal, reason: string, client: Client, conn: Connection): AuthenticateError {
    const label = REFUSAL_REASON[returnCode]
    this.#ctx.metrics.connectionsRefused.inc({ reason: label })
    conn.closeReason = label
    this.#ctx.log.info({ clientId: client.id, username: conn.username, remoteAddress: conn.remoteAddress, listener: conn.listener, returnCode, reason }, 'connection refused')
    return authError(returnCode, reason)
  }

  /**
   * After authentication: what this identity may do with its CONNECT. Plugins may refuse
   * the client id (authorizeConnect); the will is a PUBLISH by this identity and is
   * authorized as one now, as Mosquitto 2 does (CONNACK 5), not only when it fires; and a
   * persistent session is resumed or discarded only by the identity that owns it.
   */
  #authorizeIdentity (client: Client, conn: Connection, cb: AuthenticateDone): void {
    const hooks = this.#ctx.hooks
    if (hooks.size('authorizeConnect') === 0) {
      this.#authorizeWill(client, conn, cb)
      return
    }
    hooks.decide<'authorizeConnect', Verdict>('authorizeConnect', { client, clientId: client.id, info: conn },
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}` }),
      (verdict) => {
        if (verdict.result === 'deny') {
          cb(this.#refuse(5, verdict.reason, client, conn), null)
          return
        }
        this.#authorizeWill(client, conn, cb)
      })
  }

  /** The will, authorized as a PUBLISH of this identity; then the session owner. */
  #authorizeWill (client: Client, conn: Connection, cb: AuthenticateDone): void {
    const hooks = this.#ctx.hooks
    const will = willOf(client)
    if (!will) {
      this.#checkSessionOwner(client, conn, cb)
      return
    }
    const problem = this.#willTopicProblem(will.topic)
    if (problem !== undefined) {
      cb(this.#refuse(5, `will: ${problem}`, client, conn), null)
      return
    }
    const owner: WillOwner = { clientId: client.id, username: conn.username, superuser: conn.superuser, claims: conn.claims, listener: conn.listener }
    // Stored with the will (Redis keeps it as msgpack): a will published for a dead
    // node is authorized again as this owner (PublishHandler).
    const stamp = (): void => { (will as unknown as Record<string, unknown>)[WILL_OWNER_FIELD] = owner }
    if (hooks.size('authorizePublish') === 0) {
      stamp()
      this.#checkSessionOwner(client, conn, cb)
      return
    }
    hooks.decide<'authorizePublish', PublishVerdict>('authorizePublish', { client, info: conn, packet: will, clientId: client.id },
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}` }),
      (willVerdict) => {
        if (willVerdict.result === 'deny') {
          cb(this.#refuse(5, `will topic not authorized: ${willVerdict.reason}`, client, conn), null)
          return
        }
        stamp()
        this.#checkSessionOwner(client, conn, cb)
      })
  }

  #willTopicProblem (topic: string): string | undefined {
    if (topic.length === 0) return 'empty topic'
    if (topic.includes('+') || topic.includes('#')) return 'wildcards are not allowed in a will topic'
    if (isSysTopic(topic)) return '$SYS topics are reserved for the broker'
    if (exceedsTopicLimits(topic, this.#ctx.config.limits)) return 'topic exceeds maxTopicLength or maxTopicLevels'
    return undefined
  }

  /**
   * A client id whose persistent session belongs to another user name is refused (CONNACK 5)
   * before Aedes resumes or discards that session: taking over a client id must not hand
   * over, or delete, another identity's subscriptions and queued messages.
   */
  #checkSessionOwner (client: Client, conn: Connection, cb: AuthenticateDone): void {
    const decide = (owner: string | undefined): void => {
      if (owner !== undefined && owner !== ownerKey(conn.username)) {
        cb(this.#refuse(5, 'client id belongs to a persistent session of another user', client, conn), null)
        return
      }
      // A clean CONNECT of the owner discards its session: forget the ownership with it.
      conn.discardsOwnSession = owner !== undefined && conn.clean !== false
      cb(null, true)
    }
    let owner: string | undefined | Promise<string | undefined>
    try {
      owner = this.#ctx.backend.sessionOwners.get(client.id)
    } catch (err) {
      owner = Promise.reject(err)
    }
    if (typeof owner === 'string' || owner === undefined) {
      decide(owner)
      return
    }
    owner.then(decide, (err: Error) => {
      // Unknown owner: refusing is the only answer that cannot hand a session to the wrong user.
      cb(this.#refuse(3, `session owner lookup failed: ${err.message}`, client, conn), null)
    })
  }
}
