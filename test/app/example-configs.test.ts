import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { waitFor } from '../helpers/mqtt.js'
import { CLI, run, spawnGateway } from '../helpers/process.js'
import { TestRedis } from '../helpers/redis.js'

/**
 * Every gateway config shipped in config/ is what an operator copies first: it must pass
 * --check and start, from any working directory (relative paths in it, like the ACL
 * rules file, resolve against the config file's directory, as the README says).
 */
const CONFIG_DIR = resolve('config')
const SHIPPED = readdirSync(CONFIG_DIR).filter((f) => f.endsWith('.yaml') && f !== 'acl.yaml').sort()

describe('shipped example configs, from another working directory (real processes)', () => {
  const elsewhere = mkdtempSync(join(tmpdir(), 'mqgw-cwd-'))
  const redis = new TestRedis()
  before(async () => { await redis.start() })
  after(async () => { await redis.stop() })

  it('config/ holds the three shipped configs; the cluster one uses Redis and Kafka', () => {
    assert.deepEqual(SHIPPED, ['cluster.yaml', 'gateway.yaml', 'secure.example.yaml'])
    const cluster = readFileSync(join(CONFIG_DIR, 'cluster.yaml'), 'utf8')
    assert.match(cluster, /^persistence:\s*\n\s+type: redis/m)
    assert.match(cluster, /^kafka:/m)
  })

  for (const file of SHIPPED) {
    it(`${file} passes --check and starts with the working directory elsewhere`, async () => {
      const path = join(CONFIG_DIR, file)
      const check = await run(process.execPath, [CLI, '--check', '--config', path], 15000, elsewhere)
      assert.equal(check.code, 0, check.stderr)
      assert.match(check.stdout, /configuration valid/)
      // Ports, hosts and the Redis URL from the environment, as in production; the Kafka
      // brokers point at a closed port (the bridge connects in the background; /healthz
      // answers as soon as the gateway started).
      const text = readFileSync(path, 'utf8')
      const env: Record<string, string> = { MQGW_NODE_ID: `cfg-${file.replace(/\W/g, '-')}` }
      if (/^persistence:\s*\n\s+type: redis/m.test(text)) env.MQGW_REDIS_URL = redis.url
      if (/^kafka:/m.test(text)) env.MQGW_KAFKA_BROKERS = '127.0.0.1:1'
      const gw = await spawnGateway(['--config', path], env, 'healthz', 15000, elsewhere)
      try {
        await waitFor(() => gw.stdout().includes('"gateway started"'), 'gateway started log line')
        gw.child.kill('SIGTERM')
        assert.equal(await gw.exited, 0, gw.stderr())
      } finally {
        if (gw.child.exitCode === null) gw.child.kill('SIGKILL')
      }
    })
  }
})
