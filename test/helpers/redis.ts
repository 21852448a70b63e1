import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster, Redis } from 'ioredis'
import { pollUntil } from './mqtt.js'
import { freePort, track } from './process.js'

/**
 * A real redis-server of our own on 127.0.0.1 (scripts/test.sh installs Debian's
 * redis-server): a free port, a temporary directory, append-only file fsynced on every
 * write (so a restart in a test loses nothing Redis acknowledged). Stopped by pid.
 */
export class TestRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'mqgw-redis-'))
  port = 0
  #child: ChildProcess | undefined

  /** `extraArgs`: more redis-server options (e.g. cluster mode, see TestRedisCluster). */
  constructor (private readonly extraArgs: string[] = []) {}

  get url (): string { return `redis://127.0.0.1:${this.port}` }

  /** The gateway's `persistence.redis` section (YAML flow style) for this server. */
  get configYaml (): string { return `{ url: "${this.url}" }` }

  async start (): Promise<void> {
    if (this.port === 0) this.port = await freePort()
    const child = track(spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir,
      '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'no', '--logfile', join(this.dir, 'redis.log'), ...this.extraArgs],
    { stdio: 'ignore' }))
    this.#child = child
    const spawnError = new Promise<never>((_resolve, reject) => child.once('error', (err) => reject(new Error(`redis-server could not start: ${err.message} (npm test installs it)`))))
    const answered = await pollUntil(() => Promise.race([spawnError, this.#ping()]), (ok) => ok, 10000, 50)
    if (!answered) throw new Error('redis-server did not answer PING within 10 s')
  }

  async #ping (): Promise<boolean> {
    const client = new Redis(this.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      await client.connect()
      return (await client.ping()) === 'PONG'
    } catch {
      return false
    } finally {
      client.disconnect()
    }
  }

  /** A client for assertions on keys. */
  client (): Redis {
    const c = new Redis(this.port, '127.0.0.1', { maxRetriesPerRequest: 1 })
    c.on('error', () => {})
    return c
  }

  /**
   * A MONITOR connection calling `onCommand` with each command's arguments. ioredis switches a
   * connection to monitoring only once MONITOR's OK has resolved (a promise): a monitored line
   * in the same read as the OK, likely while gateways send ticks and sweeps, meets an empty
   * command queue and fails the connection ("Command queue state error"). Such an attempt is
   * closed and another made.
   */
  async monitor (onCommand: (args: string[]) => void, attempts = 5): Promise<Redis> {
    for (let attempt = 1; ; attempt++) {
      const m = new Redis(this.port, '127.0.0.1', { monitor: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
      try {
        await new Promise<void>((resolve, reject) => {
          m.once('monitoring', () => resolve())
          m.once('error', reject)
        })
        m.on('error', () => {})
        m.on('monitor', (_time: string, args: unknown[]) => { onCommand(args.map(String)) })
        return m
      } catch (err) {
        m.disconnect()
        if (attempt >= attempts || !/Command queue state error/.test((err as Error).message)) throw err
      }
    }
  }

  async stop (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.#child
    this.#child = undefined
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill(signal)
    await exited
  }
}

/**
 * A real Redis Cluster of our own: `size` redis-server masters in cluster mode on 127.0.0.1,
 * joined with `redis-cli --cluster create` (all 16384 slots, no replicas). Stopped by pid.
 */
export class TestRedisCluster {
  readonly nodes: TestRedis[]

  constructor (size = 3) {
    this.nodes = Array.from({ length: size }, () => new TestRedis(['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000']))
  }

  get configYaml (): string {
    return `{ cluster: [${this.nodes.map((n) => `{ host: 127.0.0.1, port: ${n.port} }`).join(', ')}] }`
  }

  async start (): Promise<void> {
    // Each node keeps its cluster state file in its own directory (--dir).
    await Promise.all(this.nodes.map((n) => n.start()))
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...this.nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30000 })
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.error?.message ?? created.stdout + created.stderr}`)
    const allOk = await pollUntil(async () => {
      const states = await Promise.all(this.nodes.map(async (n) => {
        const c = n.client()
        try { return /cluster_state:ok/.test(await c.cluster('INFO') as string) } finally { c.disconnect() }
      }))
      return states.every(Boolean)
    }, (ok) => ok, 15000, 100)
    if (!allOk) throw new Error('Redis Cluster did not reach cluster_state:ok within 15 s')
  }

  /** A cluster-aware client for assertions. */
  client (): Cluster {
    const c = new Cluster(this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })))
    c.on('error', () => {})
    return c
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()))
  }
}
