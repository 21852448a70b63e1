import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { CLI, run } from '../helpers/process.js'
import { TestRedis } from '../helpers/redis.js'
import { alive, spawnPrimary } from '../helpers/workers.js'

const dir = mkdtempSync(join(tmpdir(), 'mqgw-workers-start-'))
function configFile (name: string, yaml: string): string {
  const file = join(dir, name)
  writeFileSync(file, yaml)
  return file
}

const MEMORY_LINE = /workers\.count: 2 worker processes need persistence\.type: redis \(with memory persistence each worker would keep its own sessions and clients on different workers would not see each other's messages\)/

describe('workers: configuration checks and start-up failures', () => {
  it('memory persistence with 2 workers: --check and start fail with one clear line (config key, --workers, MQGW_WORKERS)', async () => {
    const keyed = configFile('memory-key.yaml', 'workers: { count: 2 }\n')
    const plain = configFile('memory.yaml', 'log: { level: warn }\n')
    const cases: Array<{ args: string[], env?: Record<string, string> }> = [
      { args: ['--config', keyed, '--check'] },
      { args: ['--config', plain, '--check', '--workers', '2'] },
      { args: ['--config', plain, '--check'], env: { MQGW_WORKERS: '2' } },
      // Without --check: the same refusal before anything listens.
      { args: ['--config', keyed] }
    ]
    for (const c of cases) {
      const result = await runCli(c.args, c.env)
      assert.equal(result.code, 1, `${c.args.join(' ')}: ${result.stdout}${result.stderr}`)
      assert.match(result.stderr, MEMORY_LINE)
      assert.equal(result.stderr.match(/workers\.count/g)?.length, 1, 'one line about it')
      assert.equal(result.stdout, '')
    }
    // One worker (the default) in memory mode stays valid.
    const single = await runCli(['--config', plain, '--check', '--workers', '1'])
    assert.equal(single.code, 0, single.stderr)
  })

  it('--workers that is not a positive integer is refused with the key named', async () => {
    const plain = configFile('memory-2.yaml', 'log: { level: warn }\n')
    for (const bad of ['0', 'two']) {
      const result = await runCli(['--config', plain, '--check', '--workers', bad])
      assert.equal(result.code, 1)
      assert.match(result.stderr, bad === 'two' ? /--workers: "two" is not a positive integer/ : /workers\.count: Too small/)
    }
  })

  describe('with Redis', () => {
    const redis = new TestRedis()
    before(() => redis.start())
    after(() => redis.stop())

    it('redis persistence with 2 workers passes --check; an admin port 0 does not', async () => {
      const ok = configFile('redis.yaml', `persistence: { type: redis, redis: ${redis.configYaml} }\nworkers: { count: 2 }\n`)
      const valid = await runCli(['--config', ok, '--check'])
      assert.equal(valid.code, 0, valid.stderr)
      const zero = configFile('redis-admin-0.yaml', `persistence: { type: redis, redis: ${redis.configYaml} }\nworkers: { count: 2 }\nlisteners: { admin: { port: 0 } }\n`)
      const refused = await runCli(['--config', zero, '--check'])
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, /listeners\.admin\.port: with workers\.count 2 worker i's admin listener is on port \+ 1 \+ i/)
    })

    it('workers that fail at start-up again and again make the primary stop and exit 1, not loop', async () => {
      // The MQTT port is taken by another process: every worker's listener fails to bind.
      const blocker: Server = createServer()
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
      const taken = (blocker.address() as { port: number }).port
      try {
        const primary = await spawnPrimary(`persistence: { type: redis, redis: ${redis.configYaml} }
workers: { count: 2, maxStartFailures: 3, restartDelayMs: 50 }
`, [], { env: { MQGW_MQTT_PORT: String(taken) }, waitReady: false })
        const bound = setTimeout(() => primary.child.kill('SIGKILL'), 90000)
        const { code, signal } = await primary.exited
        clearTimeout(bound)
        assert.equal(signal, null, 'exited by itself within the bound')
        assert.equal(code, 1, primary.stdout().slice(-3000))
        const lines = primary.lines()
        const fatal = lines.filter((l) => l.msg === 'worker failed to start repeatedly; stopping every worker')
        assert.equal(fatal.length, 1)
        assert.equal(fatal[0]!.startFailures, 3)
        // Every exit was one line with its exit code; the failed slot was restarted twice before giving up.
        const exits = lines.filter((l) => l.msg === 'worker exited; restarting' && l.worker === fatal[0]!.worker)
        assert.equal(exits.length, 2)
        assert.ok(exits.every((l) => l.code === 1))
        // Bounded backoff: the delay doubles per quick exit (restartDelayMs 50).
        assert.deepEqual(exits.map((l) => l.restartInMs), [50, 100])
        assert.deepEqual(lines.filter((l) => l.msg === 'worker started'), [], 'no worker ever started')
        // No worker process left behind.
        const pids = [...new Set(lines.filter((l) => l.worker !== undefined && l.component === undefined).map((l) => l.pid as number))]
        assert.ok(pids.length >= 3, `worker processes seen: ${pids.join(',')}`)
        assert.deepEqual(pids.filter(alive), [])
      } finally {
        blocker.close()
      }
    })
  })
})

/** The CLI as its own process; `env` on top of this one's (through env(1), so this process's environment is untouched). */
function runCli (args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return run('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, CLI, ...args], 30000)
}
