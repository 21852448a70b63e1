import type { Client, PublishPacket, Subscription } from 'aedes'
import type { IConnectPacket } from 'mqtt-packet'
import type { ClientInfo } from '../client-info.js'

/**
 * Decisions a hook handler returns, in the style of Mosquitto 2 plugin events
 * (MOSQ_ERR_SUCCESS / MOSQ_ERR_PLUGIN_DEFER) and EMQX hooks (ok / stop):
 * `allow` and `deny` end the chain, `pass` hands the question to the next handler.
 */
export interface Allow { result: 'allow' }
export interface Deny { result: 'deny', reason: string }
export interface Pass { result: 'pass' }

export const ALLOW: Allow = Object.freeze({ result: 'allow' })
export const PASS: Pass = Object.freeze({ result: 'pass' })
export function deny (reason: string): Deny { return { result: 'deny', reason } }

export type Verdict = Allow | Deny | Pass

/** CONNACK return codes an authenticator may answer with (MQTT 3.1.1 §3.2.2.3). */
export type ConnackRefusal = 2 | 3 | 4 | 5

export interface AuthAllow extends Allow {
  superuser?: boolean
  /** Attributes of the identity (from an auth callback), usable by ACL templates. */
  claims?: Readonly<Record<string, string>>
}
export interface AuthDeny extends Deny {
  /** 4 = bad user name or password, 5 = not authorized (default), 3 = server unavailable. */
  returnCode?: ConnackRefusal
}
export type AuthVerdict = AuthAllow | AuthDeny | Pass

export interface PublishDeny extends Deny {
  /** true: close the connection (MQTT 3.1.1 has no negative PUBACK); false: drop the message but acknowledge it. */
  disconnect?: boolean
}
export type PublishVerdict = Allow | PublishDeny | Pass

/**
 * No QoS downgrade: Aedes 1.2.0 fixes the granted QoS of a SUBACK before calling
 * authorizeSubscribe, so a lower grant could not be announced to the client.
 */
export type SubscribeVerdict = Allow | Deny | Pass

/**
 * A plugin that takes a message over (e.g. routes it to Kafka) answers `handled`: the
 * client's PUBLISH is acknowledged (once the promise resolves) and the gateway does
 * not publish it to its own subscribers. A `deny` with `disconnect` refuses it without
 * acknowledgement (the client sends it again); without `disconnect` it is dropped.
 */
export interface Handled { result: 'handled' }
export const HANDLED: Handled = Object.freeze({ result: 'handled' })
export type MessageVerdict = Handled | PublishDeny | Pass

export interface ConnectRequest {
  client: Client
  packet: IConnectPacket
  info: ClientInfo
}
export interface AuthRequest {
  client: Client
  clientId: string
  username: string | undefined
  /** Raw password bytes; never log them. */
  password: Buffer | undefined
  info: ClientInfo
}
export interface PublishRequest {
  /** null for the will of a client whose broker died. */
  client: Client | null
  /** For a will of a dead node: its owner's identity as stored with the will. */
  info: ClientInfo | undefined
  packet: PublishPacket
  /** The publisher's client id: `client.id`, or the will owner's when `client` is null. */
  clientId: string | undefined
}
/** After authentication allowed a client: may this identity use this client id? */
export interface ConnectAuthorizeRequest {
  client: Client
  clientId: string
  info: ClientInfo
}
export interface SubscribeRequest {
  client: Client
  info: ClientInfo
  subscription: Subscription
}
export interface ForwardRequest {
  client: Client
  info: ClientInfo | undefined
  packet: PublishPacket
}

/** A connection the core tells observers about. */
export interface ClientEvent {
  client: Client
  info: ClientInfo
}

type MaybePromise<T> = T | Promise<T>

/**
 * Decision hooks: an ordered chain per hook point; the first handler that does not
 * `pass` decides (EMQX hooks, Mosquitto 2's defer).
 */
export interface DecisionHooks {
  preConnect: (req: ConnectRequest) => MaybePromise<Verdict>
  authenticate: (req: AuthRequest) => MaybePromise<AuthVerdict>
  /** Every handler may refuse (CONNACK 5) an identity that authentication allowed. */
  authorizeConnect: (req: ConnectAuthorizeRequest) => MaybePromise<Verdict>
  authorizePublish: (req: PublishRequest) => MaybePromise<PublishVerdict>
  authorizeSubscribe: (req: SubscribeRequest) => MaybePromise<SubscribeVerdict>
  /**
   * After authorization, before the PUBACK: where a message may be taken over. Called
   * in each client's publish order (the first handler synchronously), so a plugin that
   * starts its work synchronously keeps the client's order.
   */
  messagePublish: (req: PublishRequest) => MaybePromise<MessageVerdict>
  /** Synchronous: Aedes calls it inside every delivery. */
  authorizeForward: (req: ForwardRequest) => Verdict
}

/**
 * Observer events: every handler runs, synchronously, in registry order; what one throws
 * is logged and does not stop the others. For plugins that keep per-connection state.
 */
export interface ObserverHooks {
  /** A socket was handed to Aedes; nothing was read from it yet. Before any delivery. */
  clientCreated: (event: ClientEvent) => void
  /** CONNACK 0 was sent. */
  clientConnected: (event: ClientEvent) => void
  /** A connected client went away (for whatever reason; info.closeReason may say). */
  clientDisconnected: (event: ClientEvent) => void
}

export interface HookHandlers extends DecisionHooks, ObserverHooks {}

export type HookName = keyof HookHandlers
export type DecisionHookName = keyof DecisionHooks
export type ObserverHookName = keyof ObserverHooks
export const DECISION_HOOK_NAMES: readonly DecisionHookName[] = ['preConnect', 'authenticate', 'authorizeConnect', 'authorizePublish', 'messagePublish', 'authorizeSubscribe', 'authorizeForward']
export const OBSERVER_HOOK_NAMES: readonly ObserverHookName[] = ['clientCreated', 'clientConnected', 'clientDisconnected']
export const HOOK_NAMES: readonly HookName[] = [...DECISION_HOOK_NAMES, ...OBSERVER_HOOK_NAMES]
