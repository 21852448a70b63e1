import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { Cluster, Redis } from 'ioredis'
import { RateLimitedWarn, type Logger } from '../log.js'
import { SubscriptionIndex } from '../bus/subscription-index.js'
import { RouteAcks, type ChangeReply } from './route-acks.js'
import { RouteChangeBatches, type RouteChange } from './route-batch.js'
import { TurnClock } from './turn-clock.js'
import { ROUTE_CHANGE, ROUTE_JOIN, ROUTE_LEAVE, ROUTE_LOAD, ROUTE_TICK } from './route-scripts.js'

const MEMBERS_KEY = 'mqgw:{routes}:members'
const VERSIONS_KEY = 'mqgw:{routes}:versions'
const TICKS_KEY = 'mqgw:{routes}:ticks'
const ROUTES_PREFIX = 'mqgw:{routes}:node:'
/**
 * Channels of the table. U+0000 cannot be in an MQTT topic name [MQTT-1.5.3-2], and the bus
 * never PUBLISHes a topic starting with this prefix (redis-bus.ts), so no client can forge
 * a route change through the gateway.
 */
export const ROUTE_CHANNEL_PREFIX = 'mqgw\0routes'
const CONTROL_CHANNEL = ROUTE_CHANNEL_PREFIX
const replyChannel = (node: string): string => `${ROUTE_CHANNEL_PREFIX}\0${node}`
/** How often a node proves to itself that its control subscription is live (a tick through Redis). */
const TICK_MS = 500
/**
 * A node skips Redis only while its newest tick came back less than LEASE_MS after it was
 * sent. A route change published after that tick arrives before any later tick (Redis sends a
 * subscriber's messages in PUBLISH order), so a node whose ticks stop is publishing everything
 * LEASE_MS after the last one it saw: that is how long a SUBSCRIBE waits for a node that does
 * not acknowledge (ACK_WAIT_MS, counted from the change's reply, with a margin for clock rates).
 */
const LEASE_MS = 2000
const ACK_WAIT_MS = LEASE_MS + 200
/** Distinct topics whose answer is cached; the cache is emptied when full and on a change of a wildcard filter (a change of an exact filter drops that topic's answer only). */
const CACHE_MAX = 10000
/**
 * Route changes sent in one script call at most (a reconnect storm's SUBSCRIBEs of one turn):
 * the script runs alone in Redis, so a bound keeps it short.
 */
const BATCH_MAX = 256


type RouteConn = (Redis | Cluster) & {
  mqgwRouteChange: (members: string, versions: string, routes: string, ticks: string, node: string, reqId: string, channel: string, ...opsAndFilters: string[]) => Promise<ChangeReply | null>
  mqgwRouteJoin: (members: string, versions: string, routes: string, ticks: string, node: string, mode: string, reqId: string, channel: string, ...filters: string[]) => Promise<ChangeReply>
  mqgwRouteLeave: (members: string, versions: string, routes: string, node: string, channel: string) => Promise<number>
  mqgwRouteLoad: (members: string, versions: string, prefix: string) => Promise<unknown[]>
  mqgwRouteTick: (members: string, ticks: string, channel: string, message: string, node: string) => Promise<string[]>
}

interface Control { n: string, v: number, o: '+' | '-' | '=' | 'x', f?: unknown, r?: string }


/**
 * The cluster route table (issue #15): which filters each other node has local subscribers
 * for, so that a message no other node wants is not PUBLISHed to Redis (EMQX keeps the same
 * kind of table and forwards only to nodes that need a message).
 *
 * Exact across SUBACK: a node announces a filter new to it only once its Redis SUBSCRIBE is
 * in place, and the bus's on() (which Aedes' SUBACK follows) completes when every other
 * route-aware member has applied the route and acknowledged it, or, for one that does not
 * answer, after its lease (LEASE_MS) has surely run out, by which time it publishes everything.
 * Fail safe: a node that has not loaded the table, whose control subscription is down or
 * reconnecting, that saw a gap in a node's versions, or whose tick is overdue, PUBLISHes
 * every message. Removals are announced without waiting (a stale route costs a useless
 * PUBLISH, never a lost delivery); routes of dead nodes go with the registry's sweep.
 *
 * `passive` (persistence.redis.routeTable: false): the node announces `#` (send it
 * everything) and never skips Redis itself, so it may share a cluster with route-aware nodes.
 */
export class RouteTable {
  readonly #conn: RouteConn
  readonly #sub: Redis | Cluster
  readonly #node: string
  readonly #log: Logger
  readonly #passive: boolean
  #closed = false
  #ready = false
  #leaseUntil = 0
  readonly #clock = new TurnClock()
  #pending: Control[] = []
  readonly #versions = new Map<string, number>()
  readonly #nodeFilters = new Map<string, Set<string>>()
  readonly #filterNodes = new Map<string, number>()
  #index = new SubscriptionIndex<string>({ shards: 16 })
  readonly #cache = new Map<string, boolean>()
  /** This node's filters: how many local listeners each, and the announcement on() waits for. */
  readonly #local = new Map<string, { count: number, ready: Promise<void> }>()
  /** Changes of one filter in order (an add after a remove must not overtake it). */
  readonly #chains = new Map<string, Promise<void>>()
  readonly #acks: RouteAcks
  #joined: Promise<void> | undefined
  #tick: NodeJS.Timeout | undefined
  /** This turn's route changes, sent together by #send (one script call, one ack per node). */
  readonly #batches = new RouteChangeBatches((batch) => this.#send(batch), BATCH_MAX)
  // At most one line a second per kind: a Redis outage would otherwise log once per SUBSCRIBE.
  readonly #warnings: RateLimitedWarn
  /** The newest reload: an older one's load must not mark the table ready (its snapshot may predate changes applied since). */
  #reloads = 0

  constructor (conn: Redis | Cluster, sub: Redis | Cluster, node: string, log: Logger, passive: boolean) {
    this.#conn = conn as RouteConn
    this.#sub = sub
    this.#node = node
    this.#log = log
    this.#warnings = new RateLimitedWarn(log, 1000)
    this.#passive = passive
    this.#acks = new RouteAcks(this.#node, ACK_WAIT_MS, (nodes) => {
      this.#warn(`route not acknowledged by ${nodes.join(', ')}; waited out their lease (they publish everything by now)`)
    })
    this.#conn.defineCommand('mqgwRouteChange', { numberOfKeys: 4, lua: ROUTE_CHANGE })
    this.#conn.defineCommand('mqgwRouteJoin', { numberOfKeys: 4, lua: ROUTE_JOIN })
    this.#conn.defineCommand('mqgwRouteLeave', { numberOfKeys: 3, lua: ROUTE_LEAVE })
    this.#conn.defineCommand('mqgwRouteLoad', { numberOfKeys: 2, lua: ROUTE_LOAD })
    this.#conn.defineCommand('mqgwRouteTick', { numberOfKeys: 2, lua: ROUTE_TICK })
  }

  /** Whether a message on `topic` must go to Redis: some other node may have a subscriber for it. */
  wantsRemote (topic: string): boolean {
    if (!this.#ready || this.#clock.now() >= this.#leaseUntil) return true
    let wanted = this.#cache.get(topic)
    if (wanted === undefined) {
      try {
        wanted = this.#index.match(topic).length > 0
      } catch {
        wanted = true // beyond the matcher's limits: send it, the other nodes decide
      }
      if (this.#cache.size >= CACHE_MAX) this.#cache.clear()
      this.#cache.set(topic, wanted)
    }
    return wanted
  }

  /** Subscribes the control channels, joins with this node's filters, loads the others'. */
  async start (): Promise<void> {
    if (this.#passive) {
      this.#joined = this.#join(['#'])
      await this.#joined
      return
    }
    this.#sub.on('message', (channel: string, message: string) => this.#onMessage(channel, message))
    // A new connection may have missed changes: publish everything until the table is reloaded.
    this.#sub.on('close', () => { this.#ready = false })
    this.#sub.on('ready', () => { if (this.#joined !== undefined) void this.#reload(true) })
    this.#tick = setInterval(() => { this.#sendTick() }, TICK_MS)
    this.#tick.unref()
    await this.#reload(true)
  }

  #sendTick (): void {
    this.#conn.mqgwRouteTick(MEMBERS_KEY, TICKS_KEY, replyChannel(this.#node), `t:${performance.now()}`, this.#node).then((counts) => { this.#acks.observe(counts) }, () => {})
  }

  /** Joins again if this node is no longer a member (swept while cut off; a passive node hears of it only here). Run by the sweep. */
  async refresh (): Promise<void> {
    if (this.#closed || this.#joined === undefined) return
    if (await this.#conn.hexists(MEMBERS_KEY, this.#node) === 0) await this.#rejoin()
  }

  /** `join`: announce this node's filters again too (a new connection: it may have been swept meanwhile). */
  async #reload (join: boolean): Promise<void> {
    this.#ready = false
    const reload = ++this.#reloads
    // Changes that arrive from here until the load's reply are applied after it.
    this.#pending = []
    try {
      await this.#sub.subscribe(CONTROL_CHANNEL, replyChannel(this.#node))
      if (join) {
        this.#joined = this.#join([...this.#local.keys()])
        await this.#joined
      }
      this.#sendTick()
      await this.#load(reload)
    } catch (err) {
      this.#warn('could not load the cluster route table; publishing every message to Redis meanwhile', err as Error)
      if (!this.#closed && reload === this.#reloads) setTimeout(() => { void this.#reload(join) }, 1000).unref()
    }
  }

  async #load (reload: number): Promise<void> {
    const rows = await this.#conn.mqgwRouteLoad(MEMBERS_KEY, VERSIONS_KEY, ROUTES_PREFIX)
    if (reload !== this.#reloads || this.#closed) return
    this.#versions.clear()
    this.#nodeFilters.clear()
    this.#filterNodes.clear()
    this.#index = new SubscriptionIndex<string>({ shards: 16 })
    for (let i = 0; i + 3 < rows.length; i += 4) {
      const node = String(rows[i])
      if (node === this.#node) continue
      this.#versions.set(node, Number(rows[i + 2]))
      this.#setFilters(node, (rows[i + 3] as string[]).map(String))
    }
    const pending = this.#pending
    this.#pending = []
    this.#ready = true
    for (const msg of pending) this.#apply(msg)
    this.#cache.clear()
  }

  /** Local listener added for `filter`; resolves when the route may be relied on (SUBACK after). */
  added (filter: string, subscribed: Promise<void>): Promise<void> {
    let entry = this.#local.get(filter)
    if (entry === undefined) {
      entry = { count: 0, ready: this.#serial(filter, () => subscribed.then(() => this.#announce(filter))) }
      this.#local.set(filter, entry)
    }
    entry.count++
    return entry.ready
  }

  /** Local listener removed; the route goes without waiting (a stale route only costs PUBLISHes). */
  removed (filter: string): void {
    const entry = this.#local.get(filter)
    if (entry === undefined || --entry.count > 0) return
    this.#local.delete(filter)
    void this.#serial(filter, () => this.#change('-', filter))
  }

  #serial (filter: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.#chains.get(filter) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    this.#chains.set(filter, next)
    void next.finally(() => { if (this.#chains.get(filter) === next) this.#chains.delete(filter) }).catch(() => {})
    return next
  }

  async #announce (filter: string): Promise<void> {
    if (this.#passive || this.#closed) return
    try { await this.#joined } catch { await this.#rejoin() }
    await this.#change('+', filter)
  }

  /**
   * Queues one change for this turn's script call. Resolves once it is announced (for '+', also
   * acknowledged or waited out), or was not announced that way (rejoined instead: the join
   * carries every current filter and is acknowledged itself).
   */
  #change (op: '+' | '-', filter: string): Promise<void> {
    if (this.#passive || this.#closed) return Promise.resolve()
    return this.#batches.push(op, filter)
  }

  /** One script call for `batch`; resolves when it is done, with the wait for acknowledgements. */
  async #send (batch: RouteChange[]): Promise<{ acknowledged: Promise<void> } | undefined> {
    if (this.#closed) return undefined
    const adds = batch.some((c) => c.op === '+')
    // Removals need no acknowledgement (a stale route costs a useless PUBLISH, never a delivery).
    const reqId = adds ? randomBytes(6).toString('base64url') : ''
    const wait = adds ? this.#acks.expect(reqId, false) : undefined
    let reply: ChangeReply | null = null
    try {
      reply = await this.#conn.mqgwRouteChange(MEMBERS_KEY, VERSIONS_KEY, ROUTES_PREFIX + this.#node, TICKS_KEY, this.#node, reqId, CONTROL_CHANNEL, ...batch.flatMap((c) => [c.op, c.filter]))
      if (reply === null) this.#log.warn('this node was swept from the route table (heartbeat lapsed); announcing its routes again')
    } catch (err) {
      this.#warn('route change failed; announcing this node\'s routes again', err as Error)
    }
    if (reply !== null) return wait === undefined ? undefined : { acknowledged: wait(reply) }
    if (adds) this.#acks.forget(reqId)
    await this.#rejoin()
    return undefined
  }

  /** Joins again with every current filter (the change that failed is in it), retrying while Redis is away. */
  async #rejoin (): Promise<void> {
    if (this.#passive) {
      try { await this.#join(['#']) } catch (err) { this.#warn('route table join failed', err as Error) }
      return
    }
    for (let attempt = 0; !this.#closed; attempt++) {
      try {
        this.#joined = this.#join([...this.#local.keys()])
        await this.#joined
        return
      } catch (err) {
        this.#warn('route table join failed; retrying', err as Error)
        await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * (attempt + 1))))
      }
    }
  }

  async #join (filters: string[]): Promise<void> {
    const reqId = randomBytes(6).toString('base64url')
    const wait = this.#acks.expect(reqId, this.#passive)
    try {
      await wait(await this.#conn.mqgwRouteJoin(MEMBERS_KEY, VERSIONS_KEY, ROUTES_PREFIX + this.#node, TICKS_KEY, this.#node, this.#passive ? 'p' : 'a', reqId, CONTROL_CHANNEL, ...filters))
    } finally {
      this.#acks.forget(reqId)
    }
  }

  #onMessage (channel: string, message: string): void {
    if (channel === CONTROL_CHANNEL) {
      let msg: Control
      try {
        msg = JSON.parse(message) as Control
        if (typeof msg.n !== 'string' || typeof msg.v !== 'number' || !['+', '-', '=', 'x'].includes(msg.o)) throw new Error('not a route change')
      } catch (err) {
        this.#warn('malformed route table message dropped', err as Error)
        return
      }
      if (msg.n === this.#node) {
        // Swept by another node (this node's heartbeat lapsed: it was stalled or cut off from
        // Redis for three sweep periods): the others stopped routing here; join again at once.
        if (msg.o === 'x' && !this.#closed) void this.#rejoin()
        return
      }
      if (this.#ready) this.#apply(msg)
      else this.#pending.push(msg)
      // Loading or not, this node is safe from here on: it publishes everything until the
      // table is loaded, and the load or the pending list holds this change.
      if (typeof msg.r === 'string' && msg.r !== '') this.#conn.publish(replyChannel(msg.n), `a:${msg.r}:${this.#node}`).catch(() => {})
      return
    }
    if (channel !== replyChannel(this.#node)) return
    if (message.startsWith('t:')) {
      const sent = Number(message.slice(2))
      if (Number.isFinite(sent)) this.#leaseUntil = Math.max(this.#leaseUntil, sent + LEASE_MS)
    } else if (message.startsWith('a:')) {
      const [, reqId, from] = message.split(':')
      if (reqId !== undefined && from !== undefined) this.#acks.acked(reqId, from)
    }
  }

  #apply (msg: Control): void {
    const known = this.#versions.get(msg.n) ?? 0
    if (msg.v <= known) return
    if ((msg.o === '+' || msg.o === '-') && msg.v !== known + 1) {
      // A change of this node was missed (connection lost a message): reload, publishing everything meanwhile.
      this.#log.warn({ node: msg.n, known, got: msg.v }, 'gap in a node\'s route versions; reloading the route table')
      void this.#reload(false)
      return
    }
    this.#versions.set(msg.n, msg.v)
    if (msg.o === '=') this.#setFilters(msg.n, Array.isArray(msg.f) ? msg.f.map(String) : [])
    else if (msg.o === 'x') this.#setFilters(msg.n, [])
    else if (typeof msg.f === 'string') {
      const filters = this.#nodeFilters.get(msg.n) ?? new Set<string>()
      this.#nodeFilters.set(msg.n, filters)
      if (msg.o === '+' && !filters.has(msg.f)) { filters.add(msg.f); this.#count(msg.f, 1) }
      if (msg.o === '-' && filters.delete(msg.f)) this.#count(msg.f, -1)
      // A filter without wildcards matches one topic, itself: only that answer can change. A
      // reconnect storm of per-user filters (`user/${username}/inbox`) then keeps every other
      // cached answer instead of emptying the cache once per SUBSCRIBE.
      if (!msg.f.includes('+') && !msg.f.includes('#')) {
        this.#cache.delete(msg.f)
        return
      }
    }
    this.#cache.clear()
  }

  #setFilters (node: string, filters: string[]): void {
    for (const f of this.#nodeFilters.get(node) ?? []) this.#count(f, -1)
    const set = new Set(filters)
    if (set.size === 0) this.#nodeFilters.delete(node)
    else this.#nodeFilters.set(node, set)
    for (const f of set) this.#count(f, 1)
  }

  /** How many other nodes have `filter`; the matcher holds the filters with at least one. */
  #count (filter: string, delta: number): void {
    const n = (this.#filterNodes.get(filter) ?? 0) + delta
    if (n > 0) {
      if (n === 1 && delta > 0) {
        try { this.#index.add(filter, filter) } catch { /* too deep for the matcher: wantsRemote then answers true for such topics */ }
      }
      this.#filterNodes.set(filter, n)
    } else {
      this.#filterNodes.delete(filter)
      this.#index.remove(filter, filter)
    }
  }

  /** Routes of members whose heartbeat lapsed go (run by the registry's sweep on every node). */
  async sweepGone (isAlive: (node: string) => Promise<boolean>): Promise<number> {
    let removed = 0
    for (const node of await this.#conn.hkeys(MEMBERS_KEY)) {
      if (!await isAlive(node)) removed += await this.#conn.mqgwRouteLeave(MEMBERS_KEY, VERSIONS_KEY, ROUTES_PREFIX + node, node, CONTROL_CHANNEL)
    }
    return removed
  }

  /** Leaves the table (the others stop routing here at once); bounded by `ms`. */
  async close (ms = 1000): Promise<void> {
    this.#closed = true
    this.#ready = false
    clearInterval(this.#tick)
    const leave = this.#conn.mqgwRouteLeave(MEMBERS_KEY, VERSIONS_KEY, ROUTES_PREFIX + this.#node, this.#node, CONTROL_CHANNEL).catch(() => 0)
    await Promise.race([leave, new Promise((resolve) => setTimeout(resolve, ms).unref())])
  }

  #warn (text: string, err?: Error): void {
    this.#warnings.warn(text, err === undefined ? {} : { err: err.message }, text)
  }
}
