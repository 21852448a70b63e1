import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './process.js'

/**
 * A real redis-server of our own on 127.0.0.1 (scripts/test.sh installs Debian's
 * redis-server): a free port, a temporary directory, append-only file fsynced on every
 * write (so a restart in a test loses nothing Redis acknowledged). Stopped by pid.
 */
export class TestRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'mqgw-redis-'))
  port = 0
  #child: ChildProcess | undefined

  get url (): string { return `redis://127.0.0.1:${this.port}` }

  async start (): Promise<void> {
    if (this.port === 0) this.port = await freePort()
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir,
      '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'no', '--logfile', join(this.dir, 'redis.log')],
    { stdio: 'ignore' })
    this.#child = child
    const spawnError = new Promise<never>((_resolve, reject) => child.once('error', (err) => reject(new Error(`redis-server could not start: ${err.message} (npm test installs it)`))))
    const deadline = Date.now() + 10000
    for (;;) {
      if (Date.now() > deadline) throw new Error('redis-server did not answer PING within 10 s')
      const ok = await Promise.race([spawnError, this.#ping()])
      if (ok) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
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

  async stop (): Promise<void> {
    const child = this.#child
    this.#child = undefined
    if (!child || child.exitCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    await exited
  }
}
