import { Aedes, type AedesOptions } from 'aedes'
import { AdminRouter, mountAdminApi, type ReloadOutcome } from './admin/index.js'
import type { GatewayConfig } from './config/schema.js'
import { AcceptedHandler } from './handlers/accepted.js'
import { ConnectHandler } from './handlers/connect.js'
import { ConnectionRegistry } from './handlers/connections.js'
import type { HandlerContext } from './handlers/context.js'
import { ForwardHandler } from './handlers/forward.js'
import { observeBroker } from './handlers/observe.js'
import { PublishHandler } from './handlers/publish.js'
import { SubscribeHandler, type SubscribePacketLike } from './handlers/subscribe.js'
import { HookChains } from './hooks/chain.js'
import { openAdminListener } from './listeners/admin.js'
import { openMqttListeners, tlsOptions, type BoundListener } from './listeners/listeners.js'
import { SocketTracker } from './listeners/socket-tracker.js'
import { createLogger, type Logger } from './log.js'
import { GatewayMetrics } from './metrics.js'
import { createPersistence, type PersistenceBackend } from './persistence/index.js'
import type { GatewayPlugin, PluginInstance } from './plugin.js'
import { Readiness } from './readiness.js'
import { connectedClients } from './aedes/internals.js'
import { packageVersion } from './version.js'

export interface GatewayOptions {
  config: GatewayConfig
  /** Directory relative paths in the config resolve against: the config file's directory. */
  baseDir: string
  /** The plugins, in hook order (the composition root passes the registry). */
  plugins: readonly GatewayPlugin[]
  logger?: Logger
  /** The gateway's version (admin API node info, $SYS); default: package.json's. */
  version?: string
}

export interface GatewayPorts {
  mqtt?: number
  mqtts?: number
  ws?: number
  wss?: number
  admin?: number
}

/**
 * A running gateway: Aedes plus listeners, the hook chains, the packet handlers
 * (src/handlers/) and the enabled plugins. This file is the lifecycle only:
 * `Gateway.start()` resolves once every listener is bound; `stop()` undoes it.
 */
export class Gateway {
  readonly log: Logger
  readonly metrics: GatewayMetrics
  readonly readiness = new Readiness()
  readonly clients = new ConnectionRegistry()
  readonly ports: GatewayPorts = {}
  readonly hooks: HookChains
  /** The admin REST API (/api/v1); plugins add routes through `ctx.admin`. */
  readonly admin: AdminRouter
  readonly startedAt = Date.now()
  broker!: Aedes

  readonly #config: GatewayConfig
  readonly #baseDir: string
  readonly #plugins: readonly GatewayPlugin[]
  readonly #version: string
  readonly #tracker: SocketTracker
  #listeners: BoundListener[] = []
  #admin: { close: () => Promise<void> } | undefined
  #pluginInstances: Array<{ name: string, instance: PluginInstance }> = []
  #backend: PersistenceBackend | undefined
  #stopping: Promise<void> | undefined

  private constructor (opts: GatewayOptions) {
    this.#config = opts.config
    this.#baseDir = opts.baseDir
    this.#plugins = opts.plugins
    this.log = opts.logger ?? createLogger(opts.config.log.level, undefined, opts.config.log.format)
    this.hooks = new HookChains(opts.config.hooks.timeoutMs, this.log)
    this.#version = opts.version ?? packageVersion()
    this.admin = new AdminRouter({ token: opts.config.listeners.admin.apiToken, log: this.log.child({ component: 'admin-api' }) })
    this.#tracker = new SocketTracker(opts.config.limits.maxConnections)
    this.metrics = new GatewayMetrics({
      connectedClients: () => this.broker?.connectedClients ?? 0,
      sockets: () => this.#tracker.perListener(),
      subscriptions: () => this.#countSubscriptions(),
      bytes: () => this.#tracker.bytes(),
      readiness: () => this.readiness.report(),
      retained: () => this.#backend?.retainedLedger.count()
    })
    this.hooks.onTiming = (hook, seconds) => this.metrics.hookDuration.observe({ hook }, seconds)
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

    const backend = this.#backend = await createPersistence(config, { log: this.log, readiness: this.readiness, metrics: this.metrics })
    // Admin first: /healthz and /readyz (503) answer while dependencies come up.
    if (config.listeners.admin.enabled) {
      const adminTls = config.listeners.admin.tls === undefined ? undefined : tlsOptions(config.listeners.admin.tls, this.#baseDir)
      const admin = await openAdminListener({ host: config.listeners.admin.host, port: config.listeners.admin.port, registry: this.metrics.registry, readiness: this.readiness, log: this.log, api: this.admin, tls: adminTls })
      this.#admin = admin
      this.ports.admin = admin.port
    }
    await backend.ready()

    const ctx: HandlerContext = { config, hooks: this.hooks, metrics: this.metrics, log: this.log, connections: this.clients, backend }
    const connect = new ConnectHandler(ctx)
    const publish = new PublishHandler(ctx)
    const subscribe = new SubscribeHandler(ctx)
    const forward = new ForwardHandler(ctx)
    const options: AedesOptions = {
      id: config.node.id,
      drainTimeout: config.broker.drainTimeoutMs,
      queueLimit: config.broker.queueLimit,
      heartbeatInterval: config.broker.heartbeatIntervalMs,
      connectTimeout: config.limits.connectTimeoutMs,
      // Keepalive and client id limits are enforced by the connect handler: Aedes'
      // keepaliveLimit answers with return code 6, which MQTT 3.1.1 does not define.
      keepaliveLimit: 0,
      maxClientsIdLength: 65535,
      // Aedes closes the connection for a SUBSCRIBE deeper than this; the subscribe handler
      // applies limits.maxTopicLevels itself so that a deep filter gets SUBACK 0x80 instead.
      maxTopicLevels: 100,
      preConnect: (client, packet, cb) => connect.preConnect(client, packet, cb),
      authenticate: (client, username, password, cb) => connect.authenticate(client, username, password, cb),
      // Typed by Aedes as (error) => void; the patch reads a second argument (src/aedes/internals.ts).
      authorizePublish: (client, packet, cb) => publish.authorizePublish(client, packet, cb),
      // The patched Aedes passes the SUBSCRIBE packet as a 4th argument (per-packet limits).
      authorizeSubscribe: (client, sub, cb, ...rest: unknown[]) => subscribe.authorizeSubscribe(client, sub, cb, rest[0] as SubscribePacketLike | undefined),
      authorizeForward: (client, packet) => forward.authorizeForward(client, packet),
      mq: backend.mq
    }
    if (backend.persistence !== undefined) options.persistence = backend.persistence
    this.broker = await Aedes.createBroker(options)
    observeBroker(this.broker, ctx, { connect, subscribe })
    await backend.start(this.broker)
    mountAdminApi(this.admin, {
      nodeId: config.node.id,
      version: this.#version,
      startedAt: this.startedAt,
      broker: this.broker,
      clients: this.clients,
      inspector: backend.inspector(this.broker),
      listeners: () => this.#listeners.map((l) => ({ name: l.name, host: l.host, port: l.port })),
      plugins: () => this.#pluginInstances.map((p) => p.name),
      persistence: { type: config.persistence.type, available: backend.available },
      ready: () => this.readiness.report().ready,
      reload: () => this.reload()
    })
    await this.#setupPlugins()

    const accepted = new AcceptedHandler(this.broker, ctx)
    this.#listeners = await openMqttListeners({
      config,
      baseDir: this.#baseDir,
      tracker: this.#tracker,
      log: this.log,
      onRefused: (reason) => this.metrics.connectionsRefused.inc({ reason }),
      onWsWritesDropped: (writes) => this.metrics.wsWritesDropped.inc(writes),
      broker: this.broker,
      handle: (stream, socket, listener, req, peer) => accepted.accept(stream, socket, listener, req, peer)
    })
    for (const l of this.#listeners) this.ports[l.name] = l.port
    listenersUp = true
    this.log.info({ node: config.node.id, listeners: this.#listeners.map((l) => `${l.name}://${l.host}:${l.port}`), admin: this.ports.admin, plugins: this.#pluginInstances.map((p) => p.name), persistence: config.persistence.type }, 'gateway started')
  }

  async #setupPlugins (): Promise<void> {
    for (const plugin of this.#plugins) {
      const section = this.#config[plugin.configKey]
      if (section === undefined) continue
      const log = this.log.child({ plugin: plugin.name })
      const instance = await plugin.setup({
        config: section,
        gatewayConfig: this.#config,
        configDir: this.#baseDir,
        version: this.#version,
        broker: this.broker,
        log,
        metrics: this.metrics,
        readiness: this.readiness,
        clients: this.clients,
        admin: this.admin,
        hook: (hook, handler) => this.hooks.register(hook, plugin.name, handler)
      })
      this.#pluginInstances.push({ name: plugin.name, instance: instance ?? {} })
      log.info('plugin started')
    }
  }

  #countSubscriptions (): number {
    if (!this.broker) return 0
    const clients = connectedClients(this.broker)
    let n = 0
    // Counted in place rather than by Object.keys(): this walks every connected client on each
    // scrape and $SYS tick, and an array per idle client (~15-20k per process) was most of it.
    for (const id in clients) {
      for (const _filter in clients[id]!.subscriptions) n++
    }
    return n
  }

  /** SIGHUP (and POST /api/v1/reload): every plugin re-reads its files; a failing plugin keeps its old state. */
  async reload (): Promise<ReloadOutcome[]> {
    const outcomes: ReloadOutcome[] = []
    for (const { name, instance } of this.#pluginInstances) {
      if (!instance.reload) continue
      try {
        const result = await instance.reload()
        outcomes.push(result && !result.ok ? { plugin: name, ok: false, error: result.error } : { plugin: name, ok: true })
      } catch (err) {
        this.log.error({ plugin: name, err: (err as Error).message }, 'plugin reload failed; previous state kept')
        outcomes.push({ plugin: name, ok: false, error: (err as Error).message })
      }
    }
    return outcomes
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
