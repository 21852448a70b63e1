import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load.js'
import { definePlugin } from '../../src/plugin.js'

const CLI = join(process.cwd(), 'dist/app/cli.js')

function problemsOf (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`)
    return err.message
  }
  assert.fail('expected a ConfigError')
}

const demoPlugin = definePlugin({
  name: 'demo',
  configKey: 'demo',
  schema: z.strictObject({ level: z.number().int().default(3), url: z.string().optional() }),
  envOverrides: [{ env: 'MQGW_DEMO_URL', path: ['demo', 'url'], parse: 'string' }],
  setup: () => {}
})

describe('configuration', () => {
  it('an empty file gives the documented defaults', () => {
    const config = parseConfig('', { plugins: [], env: {} })
    assert.equal(config.listeners.mqtt.port, 1883)
    assert.equal(config.listeners.mqtt.host, '0.0.0.0')
    assert.equal(config.listeners.ws.port, 8083)
    assert.equal(config.listeners.ws.path, '/mqtt')
    assert.equal(config.listeners.mqtts.enabled, false)
    assert.equal(config.listeners.mqtts.port, 8883)
    assert.equal(config.listeners.wss.port, 8084)
    assert.equal(config.listeners.admin.host, '127.0.0.1')
    assert.equal(config.listeners.admin.port, 9100)
    assert.deepEqual(config.limits, { maxPacketSize: 1048576, maxConnections: 100000, maxConnectPacketSize: 65536, maxUnauthenticatedPerAddress: 64, connectTimeoutMs: 30000, keepaliveMaxS: 0, maxClientIdLength: 256, maxTopicLength: 1024, maxTopicLevels: 32, maxFiltersPerSubscribe: 100, maxSubscriptionsPerClient: 1000, maxRetainedMessages: 1000000, maxRetainedBytes: 1073741824, maxRetainedPerClient: 1000 })
    assert.equal(config.listeners.wsUpgradeTimeoutMs, 10000)
    assert.equal(config.persistence.type, 'memory')
    assert.equal(config.log.level, 'info')
    assert.equal(config.log.format, 'auto')
    assert.match(config.node.id, /^[A-Za-z0-9._-]+$/)
    assert.deepEqual(config.workers, { count: 1, scheduling: 'round-robin', maxStartFailures: 5, restartDelayMs: 100, restartMaxDelayMs: 10000 })
  })

  it('workers.count > 1 needs Redis persistence and a fixed admin port (rules across core sections)', () => {
    assert.match(problemsOf(() => parseConfig('workers: { count: 3 }', { plugins: [], env: {} })), /workers\.count: 3 worker processes need persistence\.type: redis/)
    assert.match(problemsOf(() => parseConfig('', { plugins: [], env: { MQGW_WORKERS: '2' } })), /workers\.count: 2 worker processes need persistence\.type: redis/)
    const redis = 'persistence: { type: redis }\n'
    assert.equal(parseConfig(`${redis}workers: { count: 2 }`, { plugins: [], env: {} }).workers.count, 2)
    assert.match(problemsOf(() => parseConfig(`${redis}workers: { count: 2 }\nlisteners: { admin: { port: 0 } }`, { plugins: [], env: {} })), /listeners\.admin\.port: with workers\.count 2/)
    assert.match(problemsOf(() => parseConfig(`${redis}workers: { count: 2 }\nlisteners: { admin: { port: 65534 } }`, { plugins: [], env: {} })), /at most 65533/)
    // Without the admin listener its port does not matter.
    assert.equal(parseConfig(`${redis}workers: { count: 2 }\nlisteners: { admin: { enabled: false, port: 0 } }`, { plugins: [], env: {} }).workers.count, 2)
    assert.match(problemsOf(() => parseConfig('workers: { count: 0 }', { plugins: [], env: {} })), /workers\.count/)
  })

  it('the shipped config/gateway.yaml is valid: the core defaults plus the flow and sys plugins with their defaults', async () => {
    const { flowPlugin } = await import('../../plugins/flow/plugin.js')
    const { sysPlugin } = await import('../../plugins/sys/plugin.js')
    const { config } = loadConfigFile('config/gateway.yaml', { plugins: [flowPlugin, sysPlugin], env: {} })
    assert.deepEqual(config, parseConfig('flow: {}\nsys: {}', { plugins: [flowPlugin, sysPlugin], env: {} }))
  })

  it('every shipped config/*.yaml gateway config is valid with the built-in plugins, and the example ACL file loads', async () => {
    const { readdirSync } = await import('node:fs')
    const { builtinPlugins } = await import('../../plugins/index.js')
    const { AclRules } = await import('../../plugins/acl/rules.js')
    const files = readdirSync('config').filter((f) => f.endsWith('.yaml') && f !== 'acl.yaml')
    assert.ok(files.length >= 2)
    for (const f of files) {
      const { config } = loadConfigFile(join('config', f), { plugins: builtinPlugins, env: {} })
      const acl = config.acl as { file: string, callbacks: Record<string, unknown> } | undefined
      // The plugin resolves the rules file against the config file's directory.
      if (acl) assert.ok(AclRules.load(join('config', acl.file), new Set(Object.keys(acl.callbacks))).size > 0, f)
    }
  })

  it('unknown keys are errors naming the key path and line', () => {
    const message = problemsOf(() => parseConfig('listeners:\n  mqtt:\n    port: 1883\n    prot: 1884\nbogus: 1\n', { plugins: [], env: {} }))
    assert.match(message, /listeners\.mqtt\.prot \(line 4\): unknown key/)
    assert.match(message, /bogus \(line 5\): unknown key/)
  })

  it('wrong types are errors naming the key path and line', () => {
    const message = problemsOf(() => parseConfig('limits:\n  maxPacketSize: "big"\nlisteners:\n  ws: { path: mqtt }\n', { plugins: [], env: {} }))
    assert.match(message, /limits\.maxPacketSize \(line 2\): .*expected number/)
    assert.match(message, /listeners\.ws\.path \(line 4\): must start with "\/"/)
  })

  it('invalid YAML is reported with its position', () => {
    const message = problemsOf(() => parseConfig('listeners:\n  mqtt: { port: 1883\n', { plugins: [], env: {} }))
    assert.match(message, /invalid YAML/)
    assert.match(message, /line \d+/)
  })

  it('duplicate keys are an error, not a silent override', () => {
    const message = problemsOf(() => parseConfig('log: { level: info }\nlog: { level: debug }\n', { plugins: [], env: {} }))
    assert.match(message, /invalid YAML/)
  })

  it('a missing file is a clear error', () => {
    const message = problemsOf(() => loadConfigFile('/nonexistent/gateway.yaml', { plugins: [] }))
    assert.match(message, /config file not found: \/nonexistent\/gateway\.yaml/)
  })

  it('environment overrides apply before validation and are validated too', () => {
    const config = parseConfig('listeners: { mqtt: { port: 1883 } }', { plugins: [], env: { MQGW_MQTT_PORT: '2883', MQGW_NODE_ID: 'gw-7', MQGW_ADMIN_HOST: '0.0.0.0', MQGW_MQTTS_ENABLED: 'false' } })
    assert.equal(config.listeners.mqtt.port, 2883)
    assert.equal(config.node.id, 'gw-7')
    assert.equal(config.listeners.admin.host, '0.0.0.0')
    assert.match(problemsOf(() => parseConfig('', { plugins: [], env: { MQGW_WS_PORT: 'eighty' } })), /MQGW_WS_PORT="eighty" is not an integer/)
    assert.match(problemsOf(() => parseConfig('', { plugins: [], env: { MQGW_MQTT_PORT: '70000' } })), /listeners\.mqtt\.port/)
  })

  it('a plugin section is validated by the plugin\'s own schema and absent sections stay absent', () => {
    assert.equal(parseConfig('', { plugins: [demoPlugin], env: {} }).demo, undefined)
    assert.deepEqual(parseConfig('demo: {}', { plugins: [demoPlugin], env: {} }).demo, { level: 3 })
    assert.deepEqual(parseConfig('demo: {}', { plugins: [demoPlugin], env: { MQGW_DEMO_URL: 'http://x' } }).demo, { level: 3, url: 'http://x' })
    assert.match(problemsOf(() => parseConfig('demo:\n  level: high\n', { plugins: [demoPlugin], env: {} })), /demo\.level \(line 2\)/)
    assert.match(problemsOf(() => parseConfig('demo: { extra: 1 }', { plugins: [demoPlugin], env: {} })), /demo\.extra \(line 1\): unknown key/)
    // Without the plugin registered, its section is an unknown key.
    assert.match(problemsOf(() => parseConfig('demo: {}', { plugins: [], env: {} })), /demo \(line 1\): unknown key/)
  })

  describe('the CLI refuses a bad config before listening', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mqgw-config-'))
    const cases: Array<[string, string | undefined, RegExp]> = [
      ['missing file', undefined, /config file not found/],
      ['invalid YAML', 'listeners: [\n', /invalid YAML/],
      ['unknown key', 'listeners:\n  mqtt: { port: 1, colour: red }\n', /listeners\.mqtt\.colour \(line 2\): unknown key/],
      ['wrong type', 'limits:\n  maxConnections: lots\n', /limits\.maxConnections \(line 2\)/]
    ]
    for (const [name, content, expected] of cases) {
      it(name, () => {
        const file = join(dir, `${name.replace(/ /g, '-')}.yaml`)
        if (content !== undefined) writeFileSync(file, content)
        const run = spawnSync(process.execPath, [CLI, '--config', file], { encoding: 'utf8', timeout: 10000, env: { ...process.env, MQGW_MQTT_PORT: '0', MQGW_WS_PORT: '0', MQGW_ADMIN_PORT: '0' } })
        assert.equal(run.status, 1)
        assert.match(run.stderr, expected)
        assert.doesNotMatch(run.stdout, /gateway started/)
      })
    }

    it('--check validates without starting', () => {
      const run = spawnSync(process.execPath, [CLI, '--check', '--config', 'config/gateway.yaml'], { encoding: 'utf8', timeout: 10000 })
      assert.equal(run.status, 0)
      assert.match(run.stdout, /configuration valid/)
    })
  })
})
