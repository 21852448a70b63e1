import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { Aedes, type AedesOptions, type AedesPublishPacket, type AuthenticateError, type Client, type PublishPacket } from 'aedes'
import type { IConnectPacket } from 'mqtt-packet'
import { builtinPlugins } from '../plugins/index.js'
import { ClientInfoStore, type ClientInfo } from './client-info.js'
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
      authorizeSubscribe: (client, sub, cb) => this.#authorizeSubscribe(client, sub, cb),
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
      pendingRefusal: undefined
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
    broker.on('client', (client) => {
      const info = this.clients.get(client)
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
        cb(null, true)
      })
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
    const info = this.clients.get(client)
    // The common case, no publish hooks at all: nothing to order, no closures.
    if (this.hooks.size('authorizePublish') === 0 && this.hooks.size('messagePublish') === 0) {
      if (client && packet.qos === 1 && packet.messageId !== undefined) this.#publishBeforeAck(client, packet, cb)
      else cb(null)
      return
    }
    const authorize = (release: () => void): void => {
      if (this.hooks.size('authorizePublish') === 0) {
        this.#routeMessage(client, info, packet, cb)
        release()
        return
      }
      this.hooks.decide<'authorizePublish', PublishVerdict>('authorizePublish', { client, info, packet },
        (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}`, disconnect: true }),
        (verdict) => {
          if (verdict.result !== 'deny') {
            // Started before the next PUBLISH of this client is authorized: order kept.
            this.#routeMessage(client, info, packet, cb)
            release()
            return
          }
          release()
          this.metrics.messagesDropped.inc({ reason: 'publish_denied' })
          if ('disconnect' in verdict && verdict.disconnect) {
            cb(new Error(`publish to "${topic}" denied: ${verdict.reason}`))
          } else {
            this.#skipPublish.add(packet)
            cb(null)
          }
        })
    }
    // Aedes hands every packet of one socket read to its handlers at once, so async hooks
    // could finish out of order; each client's PUBLISHes pass authorization one at a time.
    // Without publish hooks everything up to here is synchronous and already in order.
    if (info && client && (this.hooks.size('authorizePublish') > 0 || this.hooks.size('messagePublish') > 0)) this.#inPublishOrder(info, authorize)
    else authorize(noop)
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
  #routeMessage (client: Client | null, info: ClientInfo | undefined, packet: PublishPacket, cb: (error?: Error | null) => void): void {
    const publish = (): void => {
      if (client && packet.qos === 1 && packet.messageId !== undefined) this.#publishBeforeAck(client, packet, cb)
      else cb(null)
    }
    if (this.hooks.size('messagePublish') === 0) {
      publish()
      return
    }
    this.hooks.decide<'messagePublish', MessageVerdict>('messagePublish', { client, info, packet },
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

  #authorizeSubscribe (client: Client, sub: { topic: string, qos: 0 | 1 | 2 }, cb: (error: Error | null, subscription?: { topic: string, qos: 0 | 1 | 2 } | null) => void): void {
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
    if (this.hooks.size('authorizeSubscribe') === 0) {
      cb(null, sub)
      return
    }
    const info = this.clients.get(client)
    if (!info) {
      cb(null, null)
      return
    }
    this.hooks.decide<'authorizeSubscribe', SubscribeVerdict>('authorizeSubscribe', { client, info, subscription: sub },
      (f) => ({ result: 'deny', reason: `${f.plugin}: ${f.error.message}` }),
      (verdict) => {
        if (verdict.result === 'deny') {
          cb(null, null)
          return
        }
        cb(null, sub)
      })
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
