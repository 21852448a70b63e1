import { hostname } from 'node:os'
import { z } from 'zod'
import { LOG_FORMATS, LOG_LEVELS } from '../log.js'
import { persistenceSchema } from '../persistence/schema.js'

/**
 * The core configuration schema. Plugin sections are not listed here: each plugin
 * owns its schema and `buildConfigSchema` adds it under the plugin's section key, so
 * the core never learns any plugin's options.
 */

const port = z.number().int().min(0).max(65535)
const host = z.string().min(1)

const tcpListener = (defaults: { enabled: boolean, host: string, port: number }) => z.strictObject({
  enabled: z.boolean().default(defaults.enabled),
  host: host.default(defaults.host),
  port: port.default(defaults.port)
})

const wsPath = z.string().startsWith('/', 'must start with "/"')

const tlsFiles = {
  cert: z.string().min(1).default('tls/server.crt'),
  key: z.string().min(1).default('tls/server.key'),
  /** Optional CA bundle; with `requestCert` clients must present a certificate signed by it. */
  ca: z.string().min(1).optional(),
  requestCert: z.boolean().default(false)
}

const proxied = {
  /** Expect a PROXY protocol (v1/v2) header from a trusted proxy (listeners.trustedProxies); others are refused. */
  proxyProtocol: z.boolean().default(false),
  /**
   * TCP_NODELAY on accepted sockets (Nagle's algorithm off), as EMQX and HiveMQ do (Aedes and
   * Mosquitto leave Nagle on). The gateway already batches its writes per event-loop turn, so
   * Nagle only held a turn's write back until the previous one was acknowledged, and a reader
   * that sends nothing back (a QoS 0 subscriber) acknowledges late (Linux's delayed ACK, 40 ms):
   * bench/compare fan-in at 90 %, 2 alternating runs of 3 rounds, p99 per round 71 / 89 / 99 and
   * 21 / 64 / 31 ms with Nagle on, 21 / 15 / 24 and 28 / 16 / 19 ms with it off. The price: ~5 % more
   * CPU per message in fan-in at saturation (more, smaller segments); QoS 1, fan-out and connects
   * within noise (README, Operations). Off was the default until 2026-12.
   */
  tcpNoDelay: z.boolean().default(true)
}
const forwarded = {
  /** Take the client address from X-Forwarded-For when the request comes from a trusted proxy. */
  forwardedFor: z.boolean().default(false),
  /** Expect a PROXY protocol header (before TLS and HTTP) from a trusted proxy: the access layer routes WebSocket as a stream. */
  proxyProtocol: z.boolean().default(false)
}

export const listenersSchema = z.strictObject({
  /** Addresses or CIDR blocks of the access layer, for PROXY protocol and X-Forwarded-For. */
  trustedProxies: z.array(z.string().regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'an IP address or CIDR block')).default(['127.0.0.1', '::1']),
  proxyHeaderTimeoutMs: z.number().int().min(100).default(5000),
  /** ws/wss: a socket not upgraded to WebSocket within this (HTTP request included) is closed. */
  wsUpgradeTimeoutMs: z.number().int().min(100).default(10000),
  mqtt: tcpListener({ enabled: true, host: '0.0.0.0', port: 1883 }).extend(proxied).prefault({}),
  ws: tcpListener({ enabled: true, host: '0.0.0.0', port: 8083 }).extend({ path: wsPath.default('/mqtt'), ...forwarded }).prefault({}),
  mqtts: tcpListener({ enabled: false, host: '0.0.0.0', port: 8883 }).extend({ ...tlsFiles, ...proxied }).prefault({}),
  wss: tcpListener({ enabled: false, host: '0.0.0.0', port: 8084 }).extend({ path: wsPath.default('/mqtt'), ...tlsFiles, ...forwarded }).prefault({}),
  admin: tcpListener({ enabled: true, host: '127.0.0.1', port: 9100 }).extend({
    /** Bearer token of the REST API under /api/v1 (MQGW_ADMIN_API_TOKEN); without one the API is off. */
    apiToken: z.string().min(16, 'at least 16 characters').regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional(),
    /** HTTPS instead of HTTP (the token then never crosses the network in clear); `requestCert` with `ca`: client certificates. */
    tls: z.strictObject(tlsFiles).optional()
  }).prefault({})
})

export const limitsSchema = z.strictObject({
  /** Largest MQTT packet accepted (fixed header excluded), bytes. Larger: disconnect. */
  maxPacketSize: z.number().int().min(64).max(268435455).default(1048576),
  maxConnections: z.number().int().min(1).default(100000),
  /** Largest packet accepted before CONNACK (the CONNECT and anything pipelined behind it), bytes; capped by maxPacketSize. */
  maxConnectPacketSize: z.number().int().min(64).max(268435455).default(65536),
  /** Connections accepted but not yet past CONNACK, per client address; beyond it a new one is closed at once. 0 = no cap. */
  maxUnauthenticatedPerAddress: z.number().int().min(0).default(64),
  connectTimeoutMs: z.number().int().min(100).default(30000),
  /** Largest keepalive a client may ask for, seconds; 0 = no limit. */
  keepaliveMaxS: z.number().int().min(0).max(65535).default(0),
  maxClientIdLength: z.number().int().min(1).max(65535).default(256),
  maxTopicLength: z.number().int().min(1).max(65535).default(1024),
  maxTopicLevels: z.number().int().min(1).max(100).default(32),
  /** Topic filters one SUBSCRIBE may carry; those beyond get SUBACK 0x80. 0 = no limit. */
  maxFiltersPerSubscribe: z.number().int().min(0).default(100),
  /** Subscriptions one client may hold (restored ones included); new ones beyond get SUBACK 0x80. 0 = no limit. */
  maxSubscriptionsPerClient: z.number().int().min(0).default(1000),
  /** Retained messages in the store (cluster-wide in Redis mode); beyond, a retained PUBLISH is delivered but not retained. 0 = no limit. */
  maxRetainedMessages: z.number().int().min(0).default(1000000),
  /** Payload bytes of all retained messages. 0 = no limit. */
  maxRetainedBytes: z.number().int().min(0).default(1073741824),
  /** Retained messages one client id may have set (the last setter of a topic owns it). 0 = no limit. */
  maxRetainedPerClient: z.number().int().min(0).default(1000)
})

export const brokerSchema = z.strictObject({
  /** How long a socket may refuse to drain before the client is destroyed (Aedes default 60 s is too long). */
  drainTimeoutMs: z.number().int().min(100).default(15000),
  /** Hash shards of the exact-topic subscription index (src/bus/subscription-index.ts). */
  subscriptionShards: z.number().int().min(1).max(65536).default(256),
  /** Packets buffered per client while its CONNECT is being authenticated. */
  queueLimit: z.number().int().min(1).default(42),
  heartbeatIntervalMs: z.number().int().min(100).default(60000)
})

export const hooksSchema = z.strictObject({
  /** Bound on any one async plugin handler; an auth handler that times out denies. */
  timeoutMs: z.number().int().min(1).default(5000)
})


/**
 * Worker processes of this gateway on one machine (app/workers.ts, node:cluster): one Node
 * process is single-threaded and holds at most ~19k sockets under a 20k descriptor limit.
 */
export const workersSchema = z.strictObject({
  /** Gateway processes sharing the listener ports; 1 = this process serves (no primary). More than 1 needs persistence.type redis. */
  count: z.number().int().min(1).max(64).default(1),
  /**
   * Who spreads connections over workers: `round-robin` (the primary accepts each and hands it to
   * a free worker: even spread, ~0.2-0.3 ms of primary CPU per connection, measured in bench/workers)
   * or `kernel` (every worker accepts on the shared socket: no primary cost, uneven under bursts).
   */
  scheduling: z.enum(['round-robin', 'kernel']).default('round-robin'),
  /** A worker that exits before it finished starting this many times in a row makes the primary stop and exit 1. */
  maxStartFailures: z.number().int().min(1).max(100).default(5),
  /** Delay before restarting a worker that exited: doubles per consecutive start-up failure, from this, up to restartMaxDelayMs. */
  restartDelayMs: z.number().int().min(0).default(100),
  restartMaxDelayMs: z.number().int().min(0).default(10000)
})

export const coreConfigShape = {
  node: z.strictObject({
    id: z.string().min(1).max(128).regex(/^[A-Za-z0-9._-]+$/, 'only letters, digits, ".", "_" and "-"').default(defaultNodeId)
  }).prefault({}),
  listeners: listenersSchema.prefault({}),
  limits: limitsSchema.prefault({}),
  broker: brokerSchema.prefault({}),
  hooks: hooksSchema.prefault({}),
  workers: workersSchema.prefault({}),
  persistence: persistenceSchema.default({ type: 'memory' }),
  log: z.strictObject({ level: z.enum(LOG_LEVELS).default('info'), format: z.enum(LOG_FORMATS).default('auto') }).prefault({}),
  shutdown: z.strictObject({
    /** Upper bound for a graceful stop; past it the process exits anyway. */
    timeoutMs: z.number().int().min(100).default(10000)
  }).prefault({})
}

export const coreConfigSchema = z.strictObject(coreConfigShape)
export type CoreConfig = z.infer<typeof coreConfigSchema>

/**
 * Rules across core sections (plugins have GatewayPlugin.check): each a "key.path: problem"
 * line, checked by --check and at start like schema errors.
 */
export function coreProblems (config: CoreConfig): string[] {
  const problems: string[] = []
  const { count } = config.workers
  if (count > 1 && config.persistence.type !== 'redis') {
    problems.push(`workers.count: ${count} worker processes need persistence.type: redis (with ${config.persistence.type} persistence each worker would keep its own sessions and clients on different workers would not see each other's messages)`)
  }
  const admin = config.listeners.admin
  if (count > 1 && admin.enabled && (admin.port === 0 || admin.port + count > 65535)) {
    problems.push(`listeners.admin.port: with workers.count ${count} worker i's admin listener is on port + 1 + i, so the port must be fixed (not 0) and at most ${65535 - count}`)
  }
  return problems
}

/** The validated configuration: the core sections plus any plugin section present. */
export type GatewayConfig = CoreConfig & Record<string, unknown>

/** An environment variable that overrides one key of the config (for containers). */
export interface EnvOverride {
  env: string
  /** Key path inside the whole config, e.g. ['kafka', 'brokers']. */
  path: readonly string[]
  parse: 'string' | 'integer' | 'boolean' | 'csv'
}

/**
 * Persistence keys and cluster topics include the node id, so it must survive restarts:
 * the host name is stable across restarts of a container or VM, a random UUID is not.
 */
export function defaultNodeId (): string {
  const name = hostname().toLowerCase().replace(/[^a-z0-9._-]/g, '-').slice(0, 120)
  return name.length > 0 ? name : 'gw-1'
}
