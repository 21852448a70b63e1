/**
 * docker-compose.yml, Dockerfile and .dockerignore, checked without a Docker engine (none
 * runs on the development machine): the compose file parses; the services, published
 * ports (1883, 8083), images and mounts are the documented ones; the access layer's
 * upstreams name the gateway services on the ports their config listens on; and every
 * gateway config file the compose file mounts passes the gateway's own validation
 * (`node dist/app/cli.js --check --config FILE`, with the service's environment).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { parse as yamlParse } from 'yaml'
import { CLI } from '../helpers/process.js'
import { nodeLines } from './access-layer.js'

const ROOT = process.cwd()

interface Service {
  image?: string
  build?: string | { context: string, dockerfile?: string }
  command?: string[]
  environment?: Record<string, string | number>
  ports?: string[]
  volumes?: string[]
  depends_on?: Record<string, { condition: string }>
  healthcheck?: { test: string[] }
}

const compose = yamlParse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Service>, volumes?: Record<string, unknown> }
const services = compose.services
const GATEWAYS = ['gw-1', 'gw-2']

/** "./a:/b:ro" → { source: ROOT/a, target: /b } (bind mounts only). */
function binds (service: Service): Array<{ source: string, target: string }> {
  return (service.volumes ?? []).flatMap((v) => {
    const [source = '', target = ''] = v.split(':')
    return source.startsWith('.') || source.startsWith('/') ? [{ source: resolve(ROOT, source), target }] : []
  })
}

/** The host file behind a container path, through the service's bind mounts. */
function hostPath (service: Service, containerPath: string): string | undefined {
  for (const { source, target } of binds(service)) {
    if (containerPath === target) return source
    if (containerPath.startsWith(target + '/')) return join(source, containerPath.slice(target.length + 1))
  }
  return undefined
}

function publishedPorts (service: Service): number[] {
  return (service.ports ?? []).map((p) => Number(String(p).split(':').at(-2)))
}

function check (file: string, env: Record<string, string>): Promise<{ code: number | null, out: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, '--check', '--config', file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    child.stderr.on('data', (c: Buffer) => { out += c.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), 15000)
    child.once('error', (e) => { clearTimeout(timer); reject(e) })
    child.once('exit', (code) => { clearTimeout(timer); resolvePromise({ code, out }) })
  })
}

describe('docker-compose.yml (parsed; no Docker engine here)', () => {
  it('has the access layer, two gateway nodes, Redis, Kafka, Prometheus and Grafana', () => {
    assert.deepEqual(Object.keys(services).sort(), ['grafana', 'gw-1', 'gw-2', 'kafka', 'openresty', 'prometheus', 'redis'])
    assert.match(services.openresty!.image!, /^openresty\/openresty:/)
    assert.match(services.redis!.image!, /^redis:/)
    assert.match(services.kafka!.image!, /^apache\/kafka:/)
  })

  it('publishes MQTT 1883 and MQTT over WebSocket 8083 on the access layer only', () => {
    assert.deepEqual(publishedPorts(services.openresty!).sort(), [1883, 8083])
    for (const gw of GATEWAYS) assert.deepEqual(publishedPorts(services[gw]!), [], `${gw} publishes no port`)
    assert.deepEqual(publishedPorts(services.redis!), [])
  })

  it('the access layer mounts openresty/ where its command and nginx.conf expect it', () => {
    const svc = services.openresty!
    const cmd = svc.command!
    const confPath = cmd[cmd.indexOf('-c') + 1]!
    const conf = hostPath(svc, confPath)
    assert.equal(conf, join(ROOT, 'openresty/nginx.conf'))
    const nginxConf = readFileSync(conf, 'utf8')
    const luaPath = /lua_package_path "([^"?]+)\?\.lua;;"/.exec(nginxConf)
    assert.ok(luaPath, 'lua_package_path')
    for (const f of ['mqtt_connect.lua', 'mqtt_preread.lua', 'mqtt_ws_preread.lua', 'mqtt_nodes.lua', 'mqtt_ring.lua']) {
      const host = hostPath(svc, luaPath[1]! + f)
      assert.ok(host && existsSync(host), `${luaPath[1]}${f} is mounted`)
    }
    for (const inc of nginxConf.matchAll(/^\s*include\s+(\S+);/gm)) {
      assert.ok(existsSync(join(ROOT, 'openresty', inc[1]!)), `include ${inc[1]}`)
    }
    assert.deepEqual(Object.keys(svc.depends_on ?? {}).sort(), GATEWAYS)
    // The healthcheck asks the http server of nginx.conf, on the port it listens on.
    const health = /http:\/\/127\.0\.0\.1:(\d+)\/healthz/.exec(svc.healthcheck!.test.join(' '))
    assert.ok(health, 'healthcheck URL')
    assert.match(nginxConf, new RegExp(`http \\{[\\s\\S]*listen ${health[1]};[\\s\\S]*location = /healthz`))
  })

  it('upstreams.conf names the gateway services on the ports their config listens on; they expect its PROXY headers', () => {
    const cluster = yamlParse(readFileSync(join(ROOT, 'config/cluster.yaml'), 'utf8')) as { listeners: Record<'mqtt' | 'ws' | 'admin', { port: number, host: string, proxyProtocol?: boolean }> }
    const nodes = nodeLines(readFileSync(join(ROOT, 'openresty/upstreams.conf'), 'utf8'))
    assert.deepEqual(nodes, GATEWAYS.map((g) => ({ name: g, host: g, mqtt: cluster.listeners.mqtt.port, ws: cluster.listeners.ws.port, admin: cluster.listeners.admin.port })))
    // The readiness checks reach the admin port over the compose network.
    assert.equal(cluster.listeners.admin.host, '0.0.0.0')
    assert.match(readFileSync(join(ROOT, 'openresty/nginx.conf'), 'utf8'), /^\s*proxy_protocol on;/m)
    assert.equal(cluster.listeners.mqtt.proxyProtocol, true)
    assert.equal(cluster.listeners.ws.proxyProtocol, true)
  })

  it('gateway nodes: built from the Dockerfile, distinct stable node ids, Redis service, readiness healthcheck', () => {
    const ids = new Set<string>()
    for (const gw of GATEWAYS) {
      const svc = services[gw]!
      const context = typeof svc.build === 'string' ? svc.build : svc.build!.context
      assert.equal(resolve(ROOT, context), ROOT)
      assert.ok(existsSync(join(ROOT, 'Dockerfile')))
      ids.add(String(svc.environment!.MQGW_NODE_ID))
      assert.equal(new URL(String(svc.environment!.MQGW_REDIS_URL)).hostname, 'redis')
      assert.ok(svc.depends_on?.redis, `${gw} waits for redis`)
      assert.match(svc.healthcheck!.test.join(' '), /\/readyz/)
    }
    assert.deepEqual([...ids].sort(), GATEWAYS)
  })

  it('every gateway config file it mounts passes `mqtt-gateway --check` with the service environment', async () => {
    let checked = 0
    for (const gw of GATEWAYS) {
      const svc = services[gw]!
      const cmd = svc.command!
      const configPath = cmd[cmd.indexOf('--config') + 1]!
      const mounted = binds(svc).filter((b) => /\.ya?ml$/.test(b.source))
      assert.ok(mounted.some((b) => b.target === configPath), `${gw} mounts its --config ${configPath}`)
      const env = Object.fromEntries(Object.entries(svc.environment ?? {}).map(([k, v]) => [k, String(v)]))
      for (const { source } of mounted) {
        assert.ok(statSync(source).isFile(), source)
        const { code, out } = await check(source, env)
        assert.equal(code, 0, `${gw}: ${source}: ${out}`)
        assert.match(out, /configuration valid/)
        checked++
      }
    }
    assert.ok(checked >= 2)
  })

  it('config/cluster.yaml: Redis persistence, PROXY protocol from the access layer, the Kafka bridge on the compose Kafka', () => {
    const cluster = yamlParse(readFileSync(join(ROOT, 'config/cluster.yaml'), 'utf8')) as Record<string, unknown> & { persistence: { type: string }, listeners: { mqtt: { proxyProtocol: boolean }, ws: { proxyProtocol: boolean } }, kafka: { brokers: string[] } }
    assert.equal(cluster.persistence.type, 'redis')
    assert.equal(cluster.listeners.mqtt.proxyProtocol, true)
    assert.equal(cluster.listeners.ws.proxyProtocol, true)
    assert.deepEqual(cluster.kafka.brokers, ['kafka:9092'])
  })

  it('Kafka runs in KRaft mode (no ZooKeeper), single node', () => {
    const env = services.kafka!.environment!
    assert.match(String(env.KAFKA_PROCESS_ROLES), /broker/)
    assert.match(String(env.KAFKA_PROCESS_ROLES), /controller/)
    assert.match(String(env.KAFKA_CONTROLLER_QUORUM_VOTERS), /^1@kafka:\d+$/)
    assert.equal(Object.keys(env).some((k) => /ZOOKEEPER/i.test(k)), false)
  })

  it('Dockerfile: multi-stage (npm ci + tsc), runtime node:20-slim as a non-root user, runs the CLI with the cluster config', () => {
    const df = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    const froms = [...df.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1])
    assert.ok(froms.length >= 2, 'multi-stage')
    assert.equal(froms.at(-1), 'node:20-slim')
    assert.match(df, /RUN npm ci\b/)
    assert.match(df, /npx tsc -p tsconfig\.json/)
    const lastStage = df.slice(df.lastIndexOf('\nFROM '))
    assert.match(lastStage, /^USER node$/m)
    assert.match(lastStage, /^CMD \["node", ("--[a-z-]+=\d+", )*"dist\/app\/cli\.js", "--config", "\/app\/config\/cluster\.yaml"\]$/m)
    // Every COPY source of the build context exists and is not excluded by .dockerignore.
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    for (const m of df.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) {
        assert.ok(existsSync(join(ROOT, src)), `COPY ${src}`)
        assert.ok(!ignored.includes(src), `.dockerignore excludes ${src}`)
      }
    }
    for (const must of ['node_modules', 'dist', '.git', 'tls', '**/*.key']) assert.ok(ignored.includes(must), `.dockerignore has ${must}`)
  })
})
