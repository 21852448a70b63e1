import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { pollUntil } from './mqtt.js'
import { freePort, track } from './process.js'
import { TestRedis } from './redis.js'

export const MASTER_NAME = 'mymaster'

/**
 * A real Sentinel deployment of our own on 127.0.0.1: a primary, one replica (`--replicaof`)
 * and three `redis-sentinel` processes (Debian's package; scripts/test.sh installs it) with
 * `sentinel monitor mymaster <primary> 2`, a 3 s down-after and a short failover timeout, so a
 * killed primary is replaced within a few seconds. Every process is ours, stopped by pid.
 *
 * Why not 1 s: right after a switch-master a sentinel that did not lead the failover reconnects
 * to the promoted server at most once a second (its link's reconnect period) and counts the
 * down-after from the switch, so with 1 s it may mark the new primary down before its first
 * PONG; the other sentinels' "master down" answers about the old primary still count for up to
 * 5 s, so that is an instant ODOWN and a second failover (seen in CI: the restarted old primary
 * promoted again 2 s after the first failover).
 *
 * `replicationDelayMs` > 0 puts a TCP relay of ours on the replication link (the replica
 * replicates from the relay, the relay from the primary) that holds the primary's stream for
 * that long: the replication lag of a loaded or distant replica, made deterministic. When the
 * primary dies the relay drops what it still holds, as the wire would; the replica then lacks
 * the primary's last writes, as Redis' asynchronous replication allows.
 */
export class TestSentinelGroup {
  primary = new TestRedis()
  replica: TestRedis | undefined
  readonly sentinelPorts: number[] = []
  /** How long start() took (the sentinels find each other through 2 s hello messages). */
  startMs = 0
  readonly #sentinels: ChildProcess[] = []
  readonly #dir = mkdtempSync(join(tmpdir(), 'mqgw-sentinel-'))
  #relay: LagRelay | undefined

  /** `gatewayOptions`: more keys of the gateway's `persistence.redis` (YAML flow style, e.g. `waitReplicas: 1`). */
  constructor (private readonly opts: { replicationDelayMs?: number, gatewayOptions?: string } = {}) {}

  /** The gateway's `persistence.redis` section (YAML flow style): the sentinels and the group name. */
  get configYaml (): string {
    const extra = this.opts.gatewayOptions !== undefined ? `, ${this.opts.gatewayOptions}` : ''
    return `{ sentinels: [${this.sentinelPorts.map((p) => `{ host: 127.0.0.1, port: ${p} }`).join(', ')}], name: ${MASTER_NAME}${extra} }`
  }

  async start (): Promise<void> {
    const started = Date.now()
    await this.primary.start()
    let upstreamPort = this.primary.port
    if ((this.opts.replicationDelayMs ?? 0) > 0) {
      this.#relay = new LagRelay(this.primary.port, this.opts.replicationDelayMs!)
      upstreamPort = await this.#relay.listen()
    }
    this.replica = new TestRedis(['--replicaof', '127.0.0.1', String(upstreamPort)])
    await this.replica.start()
    // Linked before the sentinels start: they learn replicas from the primary's INFO, which they
    // ask for at once and then only every 10 s.
    const linked = await pollUntil(async () => /master_link_status:up/.test(await this.#info(this.replica!.port, 'replication')), (ok) => ok, 10000, 50)
    if (!linked) throw new Error('replica did not finish its first sync within 10 s')
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const file = join(this.#dir, `sentinel-${port}.conf`)
      // Sentinel rewrites its file (discovered peers, epochs): it must be writable and its own.
      writeFileSync(file, [
        `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${this.#dir}`, `logfile ${join(this.#dir, `sentinel-${port}.log`)}`,
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${this.primary.port} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} 3000`,
        `sentinel failover-timeout ${MASTER_NAME} 5000`,
        ''
      ].join('\n'))
      const child = track(spawn('redis-sentinel', [file], { stdio: 'ignore' }))
      child.once('error', () => {})
      this.#sentinels.push(child)
      this.sentinelPorts.push(port)
    }
    // Ready for a failover once every sentinel knows the replica (linked to its primary) and
    // the two other sentinels (hello messages every 2 s): until then a quorum cannot form.
    const settled = await pollUntil(async () => {
      const views = await Promise.all(this.sentinelPorts.map((p) => this.#sentinelView(p)))
      return views.every((v) => v.sentinels === 2 && v.replicasUp === 1)
    }, (ok) => ok, 20000, 200)
    if (!settled) throw new Error(`sentinels did not discover each other and the replica within 20 s (logs in ${this.#dir})`)
    this.startMs = Date.now() - started
  }

  async #sentinelView (port: number): Promise<{ sentinels: number, replicasUp: number }> {
    const c = oneShot(port)
    try {
      const sentinels = await c.call('SENTINEL', 'SENTINELS', MASTER_NAME) as unknown[]
      const replicas = await c.call('SENTINEL', 'REPLICAS', MASTER_NAME) as string[][]
      const flagsOf = (r: string[]): string => r[r.indexOf('flags') + 1] ?? ''
      return { sentinels: sentinels.length, replicasUp: replicas.filter((r) => flagsOf(r) === 'slave').length }
    } catch {
      return { sentinels: -1, replicasUp: -1 }
    } finally {
      c.disconnect()
    }
  }

  async #info (port: number, section: string): Promise<string> {
    const c = oneShot(port)
    try { return await c.info(section) } catch { return '' } finally { c.disconnect() }
  }

  /** The primary's port as the sentinels' majority reports it now. */
  async masterPort (): Promise<number | undefined> {
    const ports = await Promise.all(this.sentinelPorts.map(async (p) => {
      const c = oneShot(p)
      try {
        const addr = await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME) as [string, string] | null
        return addr ? Number(addr[1]) : undefined
      } catch { return undefined } finally { c.disconnect() }
    }))
    const votes = new Map<number, number>()
    for (const p of ports) if (p !== undefined) votes.set(p, (votes.get(p) ?? 0) + 1)
    return [...votes].find(([, n]) => n >= 2)?.[0]
  }

  /** The replica's replication offset (what it has applied of the primary's stream). */
  async replicaOffset (): Promise<number> {
    return Number(/slave_repl_offset:(\d+)/.exec(await this.#info(this.replica!.port, 'replication'))?.[1] ?? -1)
  }

  /**
   * `SENTINEL FAILOVER`: a switch while the old primary stays up (maintenance); resolves with the
   * new primary's port. The command needs no agreement from the other sentinels, so one of them
   * may still be reconfiguring the chosen replica (seen: -failover-abort-slave-timeout); and a
   * sentinel has no good replica until INFO shows it: asked again until the primary changes.
   */
  async manualFailover (timeoutMs = 30000): Promise<number> {
    const before = await this.masterPort()
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const c = oneShot(this.sentinelPorts[0]!)
      const answer = await c.call('SENTINEL', 'FAILOVER', MASTER_NAME).then(String, (err: Error) => err.message).finally(() => c.disconnect())
      if (answer === 'OK') {
        const after = await pollUntil(() => this.masterPort(), (p) => p !== undefined && p !== before, Math.min(8000, deadline - Date.now()), 100)
        if (after !== undefined && after !== before) return after
      } else {
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
    }
    throw new Error(`SENTINEL FAILOVER did not switch the primary within ${timeoutMs / 1000} s`)
  }

  /** SIGKILL of the primary: no shutdown, no last flush to the replica. */
  async crashPrimary (): Promise<void> {
    await this.primary.stop('SIGKILL')
    this.#relay?.dropAll()
  }

  /**
   * Starts the killed primary again (same port and data directory), as its supervisor would;
   * resolves once the group has settled (see settled()). Sentinel normally turns the returning
   * server into a replica of the promoted one (about 8 s after it sees it report itself as a
   * primary); should a second failover have promoted it instead, the group is as good.
   */
  async restartOldPrimary (timeoutMs = 45000): Promise<{ master: number, replica: number }> {
    await this.primary.start()
    return this.settled(timeoutMs)
  }

  /**
   * Resolves once the group is whole again: the sentinels' majority names a primary, that
   * server says it is one, and the other server is its replica with the link up and synced.
   */
  async settled (timeoutMs = 45000): Promise<{ master: number, replica: number }> {
    const ports = [this.primary.port, this.replica!.port]
    const state = await pollUntil(async () => {
      const master = await this.masterPort()
      const other = ports.find((p) => p !== master)
      if (master === undefined || other === undefined || !ports.includes(master)) return undefined
      const [mi, ri] = await Promise.all([this.#info(master, 'replication'), this.#info(other, 'replication')])
      const whole = /role:master/.test(mi) && /role:slave/.test(ri) && new RegExp(`master_port:${master}\\b`).test(ri) &&
        /master_link_status:up/.test(ri) && /master_sync_in_progress:0/.test(ri)
      return whole ? { master, replica: other } : undefined
    }, (s) => s !== undefined, timeoutMs, 200)
    if (state === undefined) throw new Error(`the Sentinel group did not settle (a primary and its linked replica) within ${timeoutMs / 1000} s (logs in ${this.#dir})`)
    return state
  }

  async stop (): Promise<void> {
    await Promise.all(this.#sentinels.map((child) => {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      return exited
    }))
    this.#relay?.close()
    await Promise.all([this.primary.stop(), this.replica?.stop()])
  }
}

function oneShot (port: number): Redis {
  const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 })
  c.on('error', () => {})
  return c
}

/**
 * A TCP relay that delays one direction (upstream to downstream) by `delayMs` and drops what
 * it holds when either side goes away.
 */
export class LagRelay {
  readonly #server: Server
  readonly #pairs = new Set<[Socket, Socket]>()

  constructor (private readonly upstreamPort: number, private readonly delayMs: number) {
    this.#server = createServer((down) => {
      const up = netConnect(upstreamPort, '127.0.0.1')
      const pair: [Socket, Socket] = [up, down]
      this.#pairs.add(pair)
      const end = (): void => { this.#pairs.delete(pair); up.destroy(); down.destroy() }
      up.on('data', (chunk: Buffer) => { setTimeout(() => { if (!down.destroyed) down.write(chunk) }, this.delayMs) })
      down.on('data', (chunk: Buffer) => up.write(chunk))
      for (const s of pair) { s.on('error', end); s.on('close', end) }
    })
  }

  async listen (): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', () => resolve()))
    return (this.#server.address() as { port: number }).port
  }

  dropAll (): void {
    for (const [up, down] of this.#pairs) { up.destroy(); down.destroy() }
    this.#pairs.clear()
  }

  close (): void {
    this.dropAll()
    this.#server.close()
  }
}
