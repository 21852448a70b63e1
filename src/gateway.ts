import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { Aedes, type AedesOptions, type AedesPublishPacket, type AuthenticateError, type Client, type PublishPacket } from 'aedes'
import type { IConnectPacket } from 'mqtt-packet'
import { builtinPlugins } from '../plugins/index.js'
import { ClientInfoStore, WILL_OWNER_FIELD, willOwnerOf, type ClientInfo, type WillOwner } from './client-info.js'
import type { GatewayConfig } from './config/load.js'
import { guardParser } from './guards/packet-guard.js'
import { HookChains } from './hooks/chain.js'
import type { AuthVerdict, MessageVerdict, PublishVerdict, SubscribeVerdict, Verdict } from './hooks/types.js'
import { Readiness, openAdminListener } from './listeners/admin.js'
import { openMqttListeners, type BoundListener, type MqttListenerName } from './listeners/listeners.js'
import type { Peer } from './listeners/proxy-protocol.js'
import { SocketTracker } from './listeners/socket-tracker.js'
import { batchWritesPerTurn } from './listeners/write-batching.js'
import { createLogger, type Logger } from './log.js'
import { GatewayMetrics } from './metrics.js'
import { createPersistence, type PersistenceBackend } from './persistence/index.js'
import type { GatewayPlugin, PluginInstance } from './plugin.js'
import { ownerKey, type RetainedAdmission } from './persistence/ledgers.js'
import { exceedsTopicLimits, isValidTopicFilter } from './topic.js'

export interface GatewayOptions {
  config: GatewayConfig
  /** Directory relative paths in the config resolve against; default: cwd. */
  baseDir?: string
  /** The plugin registry; default: the built-in plugins. Tests add their own. */
  plugins?: readonly GatewayPlugin[]
  logger?: Logger
}

export interface GatewayPorts {
  mqtt?: number
  mqtts?: number
  ws?: number
  wss?: number
  admin?: number
}

const REFUSAL_REASON: Record<number, string> = { 2: 'identifier_rejected', 3: 'server_unavailable', 4: 'bad_credentials', 5: 'not_authorized' }
/** Claims of a client that authentication gave none (shared, frozen). */
const NO_CLAIMS: Readonly<Record<string, string>> = Object.freeze({})

function authError (returnCode: 2 | 3 | 4 | 5, message: string): AuthenticateError {
  // AuthErrorCode is a const enum in Aedes' types; the numeric codes are the same (MQTT 3.1.1 §3.2.2.3).
  return Object.assign(new Error(message), { returnCode }) as unknown as AuthenticateError
}

/**
 * A running gateway: Aedes plus listeners, the hook chains and the enabled plugins.
 * `Gateway.start()` resolves once every listener is bound; `stop()` undoes it.
 */
export class Gateway {
  readonly log: Logger
  readonly metrics: GatewayMetrics
  readonly readiness = new Readiness()
  readonly clients = new ClientInfoStore()
  readonly ports: GatewayPorts = {}
  readonly hooks: HookChains
  broker!: Aedes

  readonly #config: GatewayConfig
  readonly #baseDir: string
  readonly #plugins: readonly GatewayPlugin[]
  readonly #tracker: SocketTracker
  readonly #skipPublish = new WeakSet<object>()
  /** Label children resolved once: authorizeForward runs for every delivery. */
  readonly #outByQos: Array<{ inc: () => void }>
  #publish: (packet: PublishPacket, client: Client | null, done: (err?: Error) => void) => void = () => {}
  #listeners: BoundListener[] = []
  #admin: { close: () => Promise<void> } | undefined
  #pluginInstances: Array<{ name: string, instance: PluginInstance }> = []
  #backend: PersistenceBackend | undefined
  #stopping: Promise<void> | undefined
  /** When each retained-store limit was last logged (one line a minute per limit). */
  readonly #retainedRefusalLogged = new Map<RetainedAdmission, number>()
  /** Filter positions of the SUBSCRIBE packets being authorized (per-packet limit). */
  readonly #filterIndex = new WeakMap<object, Map<object, number>>()

  private constructor (opts: GatewayOptions) {
    this.#config = opts.config
    this.#baseDir = opts.baseDir ?? process.cwd()
    this.#plugins = opts.plugins ?? builtinPlugins
    this.log = opts.logger ?? createLogger(opts.config.log.level)
    this.hooks = new HookChains(opts.config.hooks.timeoutMs, this.log)
    this.#tracker = new SocketTracker(opts.config.limits.maxConnections)
    this.metrics = new GatewayMetrics({
      connectedClients: () => this.broker?.connectedClients ?? 0,
      sockets: () => this.#tracker.perListener(),
      subscriptions: () => this.#countSubscriptions(),
      bytes: () => this.#tracker.bytes()
    })
    this.hooks.onTiming = (hook, seconds) => this.metrics.hookDuration.observe({ hook }, seconds)
    this.#outByQos = [this.metrics.messagesOut.labels('0'), this.metrics.messagesOut.labels('1'), this.metrics.messagesOut.labels('2')]
  }

  get config (): Readonly<GatewayConfig> { return this.#config }

  static async start (opts: GatewayOptions): Promise<Gateway> {
    const gateway = new Gateway(opts)
    try {
      await gateway.#start()
    } catch (err) {
      await gateway.stop().catch(() => {})
      throw err
    }
    return gateway
  }

  async #start (): Promise<void> {
    const config = this.#config
    let listenersUp = false
    this.readiness.register('listeners', () => listenersUp ? { ready: true } : { ready: false, reason: 'listeners not bound' })

    this.#backend = await createPersistence(config, { log: this.log, readiness: this.readiness, metrics: this.metrics })
    // Admin first: /healthz and /readyz (503) answer while dependencies come up.
    if (config.listeners.admin.enabled) {
      const admin = await openAdminListener({ host: config.listeners.admin.host, port: config.listeners.admin.port, registry: this.metrics.registry, readiness: this.readiness, log: this.log })
      this.#admin = admin
      this.ports.admin = admin.port
    }
    await this.#backend.ready()
    const options: AedesOptions = {
      id: config.node.id,
      drainTimeout: config.broker.drainTimeoutMs,
      queueLimit: config.broker.queueLimit,
      heartbeatInterval: config.broker.heartbeatIntervalMs,
      connectTimeout: config.limits.connectTimeoutMs,
      // Keepalive and client id limits are enforced in preConnect/authenticate below:
      // Aedes' keepaliveLimit answers with return code 6, which MQTT 3.1.1 does not define.
      keepaliveLimit: 0,
      maxClientsIdLength: 65535,
      // Aedes closes the connection for a SUBSCRIBE deeper than this; the core applies
      // limits.maxTopicLevels itself so that a deep filter gets SUBACK 0x80 instead.
      maxTopicLevels: 100,
      preConnect: (client, packet, cb) => this.#preConnect(client, packet, cb),
      authenticate: (client, username, password, cb) => this.#authenticate(client, username, password, cb),
      authorizePublish: (client, packet, cb) => this.#authorizePublish(client, packet, cb),
      // The patched Aedes passes the SUBSCRIBE packet as a 4th argument (per-packet limits).
      authorizeSubscribe: (client, sub, cb, ...rest: unknown[]) => this.#authorizeSubscribe(client, sub, cb, rest[0] as SubscribePacketLike | undefined),
      authorizeForward: (client, packet) => this.#authorizeForward(client, packet),
      published: (packet, client, cb) => this.hooks.published(packet, client, () => cb(null))
    }
    if (this.#backend.persistence !== undefined) options.persistence = this.#backend.persistence
    options.mq = this.#backend.mq
    this.broker = await Aedes.createBroker(options)
    this.#interceptPublish()
    this.#observeBroker()
    await this.#backend.start(this.broker)

    for (const plugin of this.#plugins) {
      const section = (config as Record<string, unknown>)[plugin.configKey]
      if (section === undefined) continue
      const log = this.log.child({ plugin: plugin.name })
      const instance = await plugin.setup({
        config: section,
        gatewayConfig: config,
        configDir: this.#baseDir,
        broker: this.broker,
        log,
        metrics: this.metrics,
        readiness: this.readiness,
        clients: this.clients,
        hook: (hook, handler) => this.hooks.register(hook, plugin.name, handler)
      })
      this.#pluginInstances.push({ name: plugin.name, instance: instance ?? {} })
      log.info('plugin started')
    }

    this.#listeners = await openMqttListeners({
      config,
      baseDir: this.#baseDir,
      tracker: this.#tracker,
      log: this.log,
      onRefused: (reason) => this.metrics.connectionsRefused.inc({ reason }),
      broker: this.broker,
      handle: (stream, socket, listener, req, peer) => this.#handle(stream, socket, listener, req, peer)
    })
    for (const l of this.#listeners) this.ports[l.name] = l.port
    listenersUp = true
    this.log.info({ node: config.node.id, listeners: this.#listeners.map((l) => `${l.name}://${l.host}:${l.port}`), admin: this.ports.admin, plugins: this.#pluginInstances.map((p) => p.name), persistence: config.persistence.type }, 'gateway started')
  }

  #handle (stream: Duplex, socket: Socket, listener: MqttListenerName, req?: IncomingMessage, peer?: Peer): void {
    // TCP and TLS only. The WebSocket stream has no _writev: uncorking it replays one ws.send
    // per packet, each waiting for the socket's write callback, and with the socket batched
    // too that callback comes a turn later, so a client would get one frame per turn.
    if (stream === socket) batchWritesPerTurn(stream)
    const client = this.broker.handle(stream, req)
    guardParser(client, this.#config.limits.maxPacketSize, this.#config.limits.maxConnectPacketSize)
    this.clients.attach(client, {
      listener,
      remoteAddress: peer?.address ?? socket.remoteAddress ?? 'unknown',
      remotePort: peer?.port ?? socket.remotePort ?? 0,
      connectedAt: Date.now(),
      // Every field present from the start: one hidden class for all infos, and no
      // out-of-object property array per connection when fields are set later.
      protocolVersion: undefined,
      closeReason: undefined,
      clean: undefined,
      username: undefined,
      superuser: false,
      claims: NO_CLAIMS,
      publishQueue: undefined,
      publishing: undefined,
      pendingRefusal: undefined,
      granted: undefined,
      discardsOwnSession: false
    })
  }

  /**
   * Aedes calls broker.publish with the very packet object that went through
   * authorizePublish; two kinds of packets are remembered there and skipped here:
   * - denied without disconnect: acknowledged (MQTT 3.1.1 has no negative PUBACK) but
   *   never published;
   * - QoS 1 already published inside authorizePublish (see #publishBeforeAck).
   */
  #interceptPublish (): void {
    const broker = this.broker as unknown as { publish: (packet: PublishPacket, client: Client | null, done: (err?: Error) => void) => void }
    const publish = broker.publish.bind(this.broker)
    this.#publish = publish
    const skip = this.#skipPublish
    broker.publish = (packet, client, done) => {
      if (skip.has(packet)) {
        skip.delete(packet)
        if (typeof client === 'function') (client as (err?: Error) => void)()
        else done()
        return
      }
      publish(packet, client, done)
    }
  }

  /**
   * Aedes writes a QoS 1 PUBACK right after authorizePublish and only then calls
   * broker.publish, which stores the message for persistent subscribers (Redis) and
   * hands it to the bus: a crash in between loses an acknowledged message. So the
   * gateway publishes first, here, and lets the PUBACK go only once that succeeded;
   * if storing fails the client gets no PUBACK and the connection is closed, so the
   * client sends it again. Wills (no messageId) keep Aedes' own path.
   */
  #publishBeforeAck (client: Client, packet: PublishPacket, cb: (error?: Error | null) => void): void {
    this.#publish(packet, client, (err) => {
      if (err) {
        this.metrics.messagesDropped.inc({ reason: 'store_failed' })
        this.log.warn({ clientId: client.id, topic: packet.topic, err: err.message }, 'QoS 1 publish could not be stored; not acknowledged')
        cb(new Error(`publish not stored: ${err.message}`))
        return
      }
      this.#skipPublish.add(packet)
      cb(null)
    })
  }

  #observeBroker (): void {
    const { broker, metrics, log } = this
    const inByQos = [metrics.messagesIn.labels('0'), metrics.messagesIn.labels('1'), metrics.messagesIn.labels('2')]
    broker.on('publish', (packet, client) => {
      if (client) inByQos[packet.qos]?.inc()
    })
    // Aedes emits errors of its background work here (the sweep that publishes dead nodes'
    // wills, reading them from Redis): without a listener one would end the process.
    // Aedes' typings list no 'error' event, though aedes.js emits one.
    ;(broker as unknown as NodeJS.EventEmitter).on('error', (err: Error) => {
      log.error({ err: err.message }, 'broker background task failed; it runs again at its next interval')
    })
    broker.on('unsubscribe', (topics, client) => {
      const granted = this.clients.get(client)?.granted
      if (granted) for (const topic of topics) granted.delete(topic)
    })
    broker.on('client', (client) => {
      const info = this.clients.get(client)
      this.#recordSessionOwner(client, info)
      metrics.connectionsTotal.inc({ listener: info?.listener ?? 'unknown' })
      log.info({ clientId: client.id, username: info?.username, remoteAddress: info?.remoteAddress, listener: info?.listener, protocolVersion: client.version, clean: client.clean }, 'client connected')
    })
    broker.on('clientDisconnect', (client) => {
      const info = this.clients.get(client)
      const reason = info?.closeReason ?? 'closed'
      metrics.disconnects.inc({ reason })
      log.info({ clientId: client.id, remoteAddress: info?.remoteAddress, listener: info?.listener, reason }, 'client disconnected')
    })
    broker.on('keepaliveTimeout', (client) => {
      const info = this.clients.get(client)
      if (info) info.closeReason = 'keepalive_timeout'
    })
    broker.on('clientError', (client, err) => {
      const info = this.clients.get(client)
      if (info && info.closeReason === undefined) {
        info.closeReason = reasonOf(err)
        log.warn({ clientId: client.id, remoteAddress: info.remoteAddress, listener: info.listener, err: err.message }, 'client error; closing its connection')
      }
    })
    broker.on('connectionError', (client, err) => {
      const info = this.clients.get(client)
      if (info && info.closeReason !== undefined) return
      if (info) info.closeReason = reasonOf(err)
      metrics.connectionsRefused.inc({ reason: reasonOf(err) })
      log.warn({ clientId: (client as { id: string | null }).id ?? undefined, remoteAddress: info?.remoteAddress, listener: info?.listener, err: err.message }, 'connection error before CONNACK; closing it')
    })
  }

  #countSubscriptions (): number {
    const clients = (this.broker as unknown as { clients?: Record<string, { subscriptions: object }> } | undefined)?.clients
    if (!clients) return 0
    let n = 0
    for (const id in clients) n += Object.keys(clients[id]!.subscriptions).length
    return n
  }

  #refuse (returnCode: 2 | 3 | 4 | 5, reason: string, client: Client, info: ClientInfo | undefined): AuthenticateError {
    const label = REFUSAL_REASON[returnCode] ?? 'not_authorized'
    this.metrics.connectionsRefused.inc({ reason: label })
    if (info) info.closeReason = label
    this.log.info({ clientId: client.id, username: info?.username, remoteAddress: info?.remoteAddress, listener: info?.listener, returnCode, reason }, 'connection refused')
    return authError(returnCode, reason)
  }

  #preConnect (client: Client, packet: IConnectPacket, cb: (error: Error | null, success: boolean) => void): void {
    const info = this.clients.get(client)
    if (!info) {
      cb(new Error('connection not registered by a listener'), false)
      return
    }
    info.protocolVersion = packet.protocolVersion
    info.clean = packet.clean !== false
    if (packet.username !== undefined) info.username = packet.username
    const limits = this.#config.limits
    // MQTT 3.1.1 cannot tell a client which keepalive to use: like Mosquitto's
    // max_keepalive, refuse with "identifier rejected" (Aedes' own code 6 is not valid 3.1.1).
    if (limits.keepaliveMaxS > 0 && (packet.keepalive === 0 || (packet.keepalive ?? 0) > limits.keepaliveMaxS)) {
      info.pendingRefusal = { returnCode: 2, reason: `keepalive ${packet.keepalive ?? 0}s outside 1..${limits.keepaliveMaxS}s` }
    } else if (Buffer.byteLength(packet.clientId ?? '') > limits.maxClientIdLength) {
      info.pendingRefusal = { returnCode: 2, reason: `client id longer than ${limits.maxClientIdLength} bytes` }
    }
    this.hooks.decide<'preConnect', Verdict>('preConnect', { client, packet, info }, (f) => ({ result: 'deny', reason: f.error.message }), (verdict) => {
      if (verdict.result === 'deny') {
        // Aedes sends no CONNACK for a preConnect error and closes the socket; an Error is
        // required (calling back (null, false) would leave the socket open).
        this.metrics.connectionsRefused.inc({ reason: 'preconnect_denied' })
        info.closeReason = 'preconnect_denied'
        this.log.info({ clientId: packet.clientId, remoteAddress: info.remoteAddress, reason: verdict.reason }, 'connection refused before CONNACK')
        cb(new Error(verdict.reason), false)
      } else {
        cb(null, true)
      }
    })
  }

  #authenticate (client: Client, username: string | undefined, password: Buffer | undefined, cb: (error: AuthenticateError | null, success: boolean | null) => void): void {
    const info = this.clients.get(client)
    if (!info) {
      cb(authError(3, 'connection not registered'), null)
      return
    }
    if (info.pendingRefusal) {
      cb(this.#refuse(info.pendingRefusal.returnCode, info.pendingRefusal.reason, client, info), null)
      return
    }
    // A persistent session cannot be served without its store: "server unavailable".
    if (info.clean === false && this.#backend && !this.#backend.available()) {
      cb(this.#refuse(3, 'session store unavailable', client, info), null)
      return
    }
    this.hooks.decide<'authenticate', AuthVerdict>('authenticate', { client, clientId: client.id, username, password, info },
      // Fail closed: an authenticator that errors or times out refuses the client.
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}`, returnCode: 5 }),
      (verdict) => {
        if (verdict.result === 'deny') {
          cb(this.#refuse(('returnCode' in verdict && verdict.returnCode) || 5, verdict.reason, client, info), null)
          return
        }
        if (verdict.result === 'allow') {
          info.superuser = verdict.superuser ?? false
          if (verdict.claims) info.claims = Object.freeze({ ...verdict.claims })
        }
        this.#authorizeIdentity(client, info, cb)
      })
  }

  /**
   * After authentication: what this identity may do with its CONNECT. Plugins may refuse
   * the client id (authorizeConnect); the will is a PUBLISH by this identity and is
   * authorized as one now, as Mosquitto 2 does (CONNACK 5), not only when it fires; and a
   * persistent session is resumed or discarded only by the identity that owns it.
   */
  #authorizeIdentity (client: Client, info: ClientInfo, cb: (error: AuthenticateError | null, success: boolean | null) => void): void {
    this.hooks.decide<'authorizeConnect', Verdict>('authorizeConnect', { client, clientId: client.id, info },
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}` }),
      (verdict) => {
        if (verdict.result === 'deny') {
          cb(this.#refuse(5, verdict.reason, client, info), null)
          return
        }
        const will = (client as unknown as { _will?: PublishPacket | null })._will
        if (!will) {
          this.#checkSessionOwner(client, info, cb)
          return
        }
        const problem = this.#willTopicProblem(will.topic)
        if (problem !== undefined) {
          cb(this.#refuse(5, `will: ${problem}`, client, info), null)
          return
        }
        const owner: WillOwner = { clientId: client.id, username: info.username, superuser: info.superuser, claims: info.claims, listener: info.listener }
        if (this.hooks.size('authorizePublish') === 0) {
          ;(will as unknown as Record<string, unknown>)[WILL_OWNER_FIELD] = owner
          this.#checkSessionOwner(client, info, cb)
          return
        }
        this.hooks.decide<'authorizePublish', PublishVerdict>('authorizePublish', { client, info, packet: will, clientId: client.id },
          (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}` }),
          (willVerdict) => {
            if (willVerdict.result === 'deny') {
              cb(this.#refuse(5, `will topic not authorized: ${willVerdict.reason}`, client, info), null)
              return
            }
            // Stored with the will (Redis keeps it as msgpack): a will published for a dead
            // node is authorized again as this owner (#authorizePublish).
            ;(will as unknown as Record<string, unknown>)[WILL_OWNER_FIELD] = owner
            this.#checkSessionOwner(client, info, cb)
          })
      })
  }

  #willTopicProblem (topic: string): string | undefined {
    if (topic.length === 0) return 'empty topic'
    if (topic.includes('+') || topic.includes('#')) return 'wildcards are not allowed in a will topic'
    if (topic.startsWith('$SYS/') || topic === '$SYS') return '$SYS topics are reserved for the broker'
    if (exceedsTopicLimits(topic, this.#config.limits)) return 'topic exceeds maxTopicLength or maxTopicLevels'
    return undefined
  }

  /**
   * A client id whose persistent session belongs to another user name is refused (CONNACK 5)
   * before Aedes resumes or discards that session: taking over a client id must not hand
   * over, or delete, another identity's subscriptions and queued messages.
   */
  #checkSessionOwner (client: Client, info: ClientInfo, cb: (error: AuthenticateError | null, success: boolean | null) => void): void {
    const owners = this.#backend?.sessionOwners
    if (!owners) {
      cb(null, true)
      return
    }
    const decide = (owner: string | undefined): void => {
      if (owner !== undefined && owner !== ownerKey(info.username)) {
        cb(this.#refuse(5, 'client id belongs to a persistent session of another user', client, info), null)
        return
      }
      // A clean CONNECT of the owner discards its session: forget the ownership with it.
      info.discardsOwnSession = owner !== undefined && info.clean !== false
      cb(null, true)
    }
    let owner: string | undefined | Promise<string | undefined>
    try {
      owner = owners.get(client.id)
    } catch (err) {
      owner = Promise.reject(err)
    }
    if (typeof owner === 'string' || owner === undefined) {
      decide(owner)
      return
    }
    owner.then(decide, (err: Error) => {
      // Unknown owner: refusing is the only answer that cannot hand a session to the wrong user.
      cb(this.#refuse(3, `session owner lookup failed: ${err.message}`, client, info), null)
    })
  }

  #recordSessionOwner (client: Client, info: ClientInfo | undefined): void {
    const owners = this.#backend?.sessionOwners
    if (!owners || !info) return
    const done = (err: Error): void => { this.log.warn({ clientId: client.id, err: err.message }, 'could not record the session owner') }
    try {
      if (info.clean === false) void Promise.resolve(owners.set(client.id, ownerKey(info.username))).catch(done)
      else if (info.discardsOwnSession) void Promise.resolve(owners.delete(client.id)).catch(done)
    } catch (err) {
      done(err as Error)
    }
  }

  #authorizePublish (client: Client | null, packet: PublishPacket, cb: (error?: Error | null) => void): void {
    const topic = packet.topic
    // Aedes' default authorizePublish blocks $SYS/; replacing the hook must keep that.
    if (topic.startsWith('$SYS/')) {
      this.metrics.messagesDropped.inc({ reason: 'sys_topic' })
      cb(new Error('$SYS/ topics are reserved for the broker'))
      return
    }
    const limits = this.#config.limits
    if (exceedsTopicLimits(topic, limits)) {
      this.metrics.messagesDropped.inc({ reason: 'topic_too_long' })
      cb(new Error(`topic exceeds maxTopicLength ${limits.maxTopicLength} bytes or maxTopicLevels ${limits.maxTopicLevels}`))
      return
    }
    let info = this.clients.get(client)
    let publisher = client
    let clientId = client?.id
    const isWill = (packet as unknown as Record<string, unknown>)[WILL_OWNER_FIELD] !== undefined
    if (isWill) {
      // A will: authorized as the identity that set it. Aedes hands a dead node's will over
      // with no client, or with whichever connection holds that client id on this node now.
      const owner = willOwnerOf(packet)
      if (owner && !(client && info && client.id === owner.clientId && info.username === owner.username)) {
        publisher = null
        info = this.#infoOfWillOwner(owner)
        clientId = owner.clientId
      }
    }
    // The common case, no publish hooks and no retained store to account: nothing to order, no closures.
    if (this.hooks.size('authorizePublish') === 0 && this.hooks.size('messagePublish') === 0 && !packet.retain && info?.publishing !== true) {
      if (client && packet.qos === 1 && packet.messageId !== undefined) this.#publishBeforeAck(client, packet, cb)
      else cb(null)
      return
    }
    const authorize = (release: () => void): void => {
      const accepted = (): void => {
        // Started before the next PUBLISH of this client is authorized: order kept.
        this.#admitRetained(packet, clientId, () => {
          this.#routeMessage(client, publisher, info, packet, cb)
          release()
        })
      }
      if (this.hooks.size('authorizePublish') === 0) {
        accepted()
        return
      }
      this.hooks.decide<'authorizePublish', PublishVerdict>('authorizePublish', { client: publisher, info, packet, clientId },
        (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}`, disconnect: true }),
        (verdict) => {
          if (verdict.result !== 'deny') {
            accepted()
            return
          }
          release()
          this.metrics.messagesDropped.inc({ reason: 'publish_denied' })
          // A denied will is dropped, never an error: for a dead node's will Aedes would emit
          // the error on the broker and keep the will to retry it forever.
          if (!isWill && client && 'disconnect' in verdict && verdict.disconnect) {
            cb(new Error(`publish to "${topic}" denied: ${verdict.reason}`))
          } else {
            this.#skipPublish.add(packet)
            cb(null)
          }
        })
    }
    // Aedes hands every packet of one socket read to its handlers at once, so async hooks
    // (and the Redis retained ledger) could finish out of order; each client's PUBLISHes
    // pass authorization one at a time. Without them everything up to here is synchronous.
    if (info && client) this.#inPublishOrder(info, authorize)
    else authorize(noop)
  }

  #infoOfWillOwner (owner: WillOwner): ClientInfo {
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

  /**
   * The retained-store limits: a retained PUBLISH beyond them is still delivered, but not
   * retained (its retain flag is cleared), counted, and logged once a minute per limit.
   * A failing ledger (Redis down) does not block the message: the store itself then decides.
   */
  #admitRetained (packet: PublishPacket, clientId: string | undefined, next: () => void): void {
    if (!packet.retain || !this.#backend) {
      next()
      return
    }
    const ledger = this.#backend.retainedLedger
    const topic = packet.topic
    const failed = (err: Error): void => {
      this.log.warn({ topic, err: err.message }, 'retained ledger unavailable; message retained without accounting')
      next()
    }
    if (packet.payload.length === 0) {
      // Clears the topic's retained message.
      try {
        void Promise.resolve(ledger.release(topic)).catch((err: Error) => this.log.warn({ topic, err: err.message }, 'retained ledger release failed'))
      } catch (err) {
        this.log.warn({ topic, err: (err as Error).message }, 'retained ledger release failed')
      }
      next()
      return
    }
    const limits = this.#config.limits
    const admitted = (result: RetainedAdmission): void => {
      if (result !== 'ok') {
        packet.retain = false
        this.metrics.retainedRefused.inc({ reason: result })
        const now = Date.now()
        if ((this.#retainedRefusalLogged.get(result) ?? 0) + 60000 <= now) {
          this.#retainedRefusalLogged.set(result, now)
          this.log.warn({ clientId, topic, limit: RETAINED_LIMIT_NAME[result] }, 'retained store limit reached; message delivered but not retained (logged once a minute per limit)')
        }
      }
      next()
    }
    let result: RetainedAdmission | Promise<RetainedAdmission>
    try {
      result = ledger.admit(topic, packet.payload.length, clientId ?? '', { maxMessages: limits.maxRetainedMessages, maxBytes: limits.maxRetainedBytes, maxPerClient: limits.maxRetainedPerClient })
    } catch (err) {
      failed(err as Error)
      return
    }
    if (typeof result === 'string') admitted(result)
    else result.then(admitted, failed)
  }

  #inPublishOrder (info: ClientInfo, task: (release: () => void) => void): void {
    const queue = info.publishQueue ??= []
    queue.push(task)
    if (info.publishing) return
    info.publishing = true
    this.#drainPublishQueue(info)
  }

  #drainPublishQueue (info: ClientInfo): void {
    const queue = info.publishQueue!
    // A loop, not recursion: a read of thousands of packets decided synchronously must not grow the stack.
    while (queue.length > 0) {
      const task = queue.shift()!
      let inCall = true
      let releasedInCall = false
      task(() => {
        if (inCall) releasedInCall = true
        else this.#drainPublishQueue(info)
      })
      inCall = false
      if (!releasedInCall) return
    }
    info.publishing = false
  }

  /** After authorization: a plugin may take the message over (messagePublish), else it is published here. */
  #routeMessage (client: Client | null, publisher: Client | null, info: ClientInfo | undefined, packet: PublishPacket, cb: (error?: Error | null) => void): void {
    const publish = (): void => {
      if (client && packet.qos === 1 && packet.messageId !== undefined) this.#publishBeforeAck(client, packet, cb)
      else cb(null)
    }
    if (this.hooks.size('messagePublish') === 0) {
      publish()
      return
    }
    this.hooks.decide<'messagePublish', MessageVerdict>('messagePublish', { client: publisher, info, packet, clientId: publisher?.id ?? willOwnerOf(packet)?.clientId },
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}`, disconnect: true }),
      (verdict) => {
        if (verdict.result === 'pass') {
          publish()
        } else if (verdict.result === 'handled') {
          this.#skipPublish.add(packet)
          cb(null)
        } else if ('disconnect' in verdict && verdict.disconnect) {
          this.metrics.messagesDropped.inc({ reason: 'not_accepted' })
          cb(new Error(`publish to "${packet.topic}" not accepted: ${verdict.reason}`))
        } else {
          this.metrics.messagesDropped.inc({ reason: 'not_accepted' })
          this.#skipPublish.add(packet)
          cb(null)
        }
      })
  }

  #authorizeSubscribe (client: Client, sub: { topic: string, qos: 0 | 1 | 2 }, cb: (error: Error | null, subscription?: { topic: string, qos: 0 | 1 | 2 } | null) => void, packet?: SubscribePacketLike): void {
    const limits = this.#config.limits
    if (!isValidTopicFilter(sub.topic)) {
      // A malformed filter is a protocol violation: close, as Aedes does for the cases it detects.
      cb(new Error(`invalid topic filter "${sub.topic.slice(0, 128)}"`))
      return
    }
    if (exceedsTopicLimits(sub.topic, limits)) {
      this.log.info({ clientId: client.id, topic: sub.topic.slice(0, 128) }, 'subscription refused: filter exceeds topic limits')
      cb(null, null)
      return
    }
    const info = this.clients.get(client)
    if (!info) {
      cb(null, null)
      return
    }
    const max = limits.maxFiltersPerSubscribe
    if (packet && max > 0 && packet.subscriptions.length > max && this.#filterPosition(packet, sub) >= max) {
      this.metrics.subscriptionsRefused.inc({ reason: 'max_filters_per_subscribe' })
      // One line per packet, not one per refused filter.
      if (this.#filterPosition(packet, sub) === max) this.log.info({ clientId: client.id, filters: packet.subscriptions.length, maxFiltersPerSubscribe: max }, 'SUBSCRIBE carries more filters than maxFiltersPerSubscribe; those beyond refused')
      cb(null, null)
      return
    }
    if (this.hooks.size('authorizeSubscribe') === 0) {
      this.#grant(client, info, sub, cb)
      return
    }
    this.hooks.decide<'authorizeSubscribe', SubscribeVerdict>('authorizeSubscribe', { client, info, subscription: sub },
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}` }),
      (verdict) => {
        if (verdict.result === 'deny') {
          cb(null, null)
          return
        }
        this.#grant(client, info, sub, cb)
      })
  }

  /** Records a granted filter, unless the client already holds maxSubscriptionsPerClient others. */
  #grant (client: Client, info: ClientInfo, sub: { topic: string, qos: 0 | 1 | 2 }, cb: (error: Error | null, subscription?: { topic: string, qos: 0 | 1 | 2 } | null) => void): void {
    const granted = info.granted ??= new Map()
    const max = this.#config.limits.maxSubscriptionsPerClient
    if (max > 0 && granted.size >= max && !granted.has(sub.topic)) {
      this.metrics.subscriptionsRefused.inc({ reason: 'max_subscriptions_per_client' })
      this.log.info({ clientId: client.id, topic: sub.topic.slice(0, 128), maxSubscriptionsPerClient: max }, 'subscription refused: client holds maxSubscriptionsPerClient subscriptions')
      cb(null, null)
      return
    }
    granted.set(sub.topic, sub.qos)
    cb(null, sub)
  }

  /** The index of `sub` in its SUBSCRIBE packet (one index per packet, built once). */
  #filterPosition (packet: SubscribePacketLike, sub: object): number {
    let positions = this.#filterIndex.get(packet)
    if (!positions) {
      positions = new Map()
      for (let i = 0; i < packet.subscriptions.length; i++) positions.set(packet.subscriptions[i]!, i)
      this.#filterIndex.set(packet, positions)
    }
    return positions.get(sub) ?? -1
  }

  #authorizeForward (client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const verdict = this.hooks.size('authorizeForward') === 0
      ? undefined
      : this.hooks.forward({ client, info: this.clients.get(client), packet })
    if (verdict?.result === 'deny') {
      this.metrics.messagesDropped.inc({ reason: 'forward_denied' })
      return null
    }
    this.#outByQos[packet.qos]?.inc()
    return packet
  }

  /** SIGHUP: every plugin re-reads its files; a failing plugin keeps its old state. */
  async reload (): Promise<void> {
    for (const { name, instance } of this.#pluginInstances) {
      try {
        await instance.reload?.()
      } catch (err) {
        this.log.error({ plugin: name, err: (err as Error).message }, 'plugin reload failed; previous state kept')
      }
    }
  }

  /** Stops accepting, disconnects clients, closes plugins and the store. Idempotent. */
  stop (): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop (): Promise<void> {
    this.log.info('gateway stopping')
    const listeners = this.#listeners
    this.#listeners = []
    // Stop accepting first; close() resolves once existing sockets are gone, so do not wait yet.
    const closingListeners = Promise.all(listeners.map((l) => l.close()))
    if (this.broker) await new Promise<void>((resolve) => this.broker.close(() => resolve()))
    // Sockets that never sent CONNECT are not Aedes clients yet.
    this.#tracker.destroyAll()
    await closingListeners
    for (const { name, instance } of [...this.#pluginInstances].reverse()) {
      try {
        await instance.close?.()
      } catch (err) {
        this.log.error({ plugin: name, err: (err as Error).message }, 'plugin failed to close')
      }
    }
    this.#pluginInstances = []
    await this.#backend?.close()
    await this.#admin?.close()
    this.log.info('gateway stopped')
  }
}

function noop (): void {}

const RETAINED_LIMIT_NAME: Record<Exclude<RetainedAdmission, 'ok'>, string> = { count: 'maxRetainedMessages', bytes: 'maxRetainedBytes', client: 'maxRetainedPerClient' }

/** What the patched Aedes passes to authorizeSubscribe as the SUBSCRIBE packet. */
interface SubscribePacketLike { cmd: 'subscribe', subscriptions: ReadonlyArray<{ topic: string }> }

function reasonOf (err: Error): string {
  const code = (err as { code?: unknown }).code
  if (code === 'PACKET_TOO_LARGE') return 'packet_too_large'
  if (code === 'MALFORMED_STRING') return 'malformed_packet'
  if (typeof code === 'string' && code.startsWith('E')) return 'socket_error'
  const message = err.message.toLowerCase()
  if (message.includes('connect did not arrive')) return 'connect_timeout'
  if (message.includes('keep alive') || message.includes('keepalive')) return 'keepalive_timeout'
  if (message.includes('denied')) return 'publish_denied'
  if (message.includes('reserved')) return 'sys_topic'
  return 'protocol_error'
}
